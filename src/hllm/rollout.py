"""Canary rollout: render the canary overlay for an image and a traffic weight, and decide from live metrics
whether to promote the canary, roll it back or keep watching."""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hllm.manifests import MANIFESTS, validate_documents

CANARY_OVERLAY = MANIFESTS / "overlays" / "canary"


def split_image(image: str) -> dict[str, str]:
    """``registry/name:tag`` or ``registry/name@sha256:...`` -> kustomize ``images`` fields."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return {"newName": name, "digest": digest}
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon belongs to a registry port
        raise ValueError(f"image '{image}' needs an explicit tag or digest (never deploy :latest implicitly)")
    return {"newName": name, "newTag": tag}


def _model_patch(deployment: str, model: str) -> dict:
    # HLLM_MODEL is the first env entry of the service container (manifests/base/deployment.yaml).
    return {
        "target": {"group": "apps", "kind": "Deployment", "name": deployment},
        "patch": yaml.safe_dump(
            [
                {"op": "test", "path": "/spec/template/spec/containers/0/env/0/name", "value": "HLLM_MODEL"},
                {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": model},
            ]
        ),
    }


def render_canary(
    image: str,
    weight: int,
    overlay: Path = CANARY_OVERLAY,
    *,
    model: str | None = None,
    stable_model: str | None = None,
) -> str:
    """The canary overlay with the canary on ``image`` receiving ``weight`` % of traffic, validated offline.

    ``model`` / ``stable_model`` pin the BentoML model tag each version serves (default ``hllm:latest``, which a
    restart of the stable pods would silently move to the newest model: pin both in production).
    """
    if not 0 <= weight <= 100:
        raise ValueError(f"weight={weight} must be in [0, 100]")
    for tag in (model, stable_model):
        if tag is not None and (":" not in tag or tag.endswith(":")):
            raise ValueError(f"model tag '{tag}' must be name:version")
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [],
        "images": [{"name": "hllm-canary", **split_image(image)}],
        "patches": [
            {
                "target": {"group": "networking.istio.io", "kind": "VirtualService", "name": "hllm"},
                "patch": yaml.safe_dump(
                    [
                        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 100 - weight},
                        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": weight},
                    ]
                ),
            }
        ],
    }
    if model:
        kustomization["patches"].append(_model_patch("hllm-canary", model))
    if stable_model:
        kustomization["patches"].append(_model_patch("hllm", stable_model))
    with tempfile.TemporaryDirectory() as tmp:
        kustomization["resources"] = [os.path.relpath(overlay.resolve(), tmp)]  # kustomize refuses absolute roots
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        try:
            done = subprocess.run(
                ["kubectl", "kustomize", "--load-restrictor", "LoadRestrictionsNone", tmp],
                capture_output=True,
                text=True,
            )
        except FileNotFoundError:
            raise ValueError("kubectl is not installed (needed for `kubectl kustomize`)") from None
    if done.returncode != 0:
        raise ValueError(f"kustomize failed on {overlay}: {done.stderr.strip()}")
    validate_documents(done.stdout, "canary overlay")
    return done.stdout


@dataclass
class VersionMetrics:
    """Live metrics of one version over the observation window (from Prometheus)."""

    requests: int
    errors: int
    p99_ms: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass
class CanaryPolicy:
    min_requests: int = 500
    max_error_rate: float = 0.01
    max_error_rate_increase: float = 0.005
    max_p99_ms: float = 50.0
    max_p99_ratio: float = 1.2


@dataclass
class CanaryDecision:
    action: str  # promote | rollback | hold
    reasons: list[str] = field(default_factory=list)


def decide_canary(canary: VersionMetrics, stable: VersionMetrics, policy: CanaryPolicy | None = None) -> CanaryDecision:
    """Roll back on any breach (errors or latency, absolute or against stable), hold until enough traffic, else
    promote."""
    policy = policy or CanaryPolicy()
    breaches = []
    if canary.error_rate > policy.max_error_rate:
        breaches.append(f"error rate {canary.error_rate:.4f} > {policy.max_error_rate}")
    if canary.error_rate > stable.error_rate + policy.max_error_rate_increase:
        breaches.append(
            f"error rate {canary.error_rate:.4f} > stable {stable.error_rate:.4f} + {policy.max_error_rate_increase}"
        )
    if canary.p99_ms > policy.max_p99_ms:
        breaches.append(f"p99 {canary.p99_ms:.1f} ms > {policy.max_p99_ms} ms")
    if stable.p99_ms and canary.p99_ms > stable.p99_ms * policy.max_p99_ratio:
        breaches.append(f"p99 {canary.p99_ms:.1f} ms > {policy.max_p99_ratio}x stable ({stable.p99_ms:.1f} ms)")
    if breaches:
        return CanaryDecision("rollback", breaches)
    if canary.requests < policy.min_requests:
        return CanaryDecision("hold", [f"{canary.requests} canary requests < {policy.min_requests} needed to judge"])
    return CanaryDecision("promote", [f"{canary.requests} requests, error rate and p99 within limits"])
