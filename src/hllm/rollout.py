"""Canary rollout with Argo Rollouts: render the service's Rollout for a new image and model, validated offline.

Applying the rendered manifests changes the Rollout's pod template; the Argo Rollouts controller then runs the
canary (10% -> 25% -> 50% -> 100% with pauses, ``manifests/base/rollout.yaml``) and its background analysis
(``manifests/base/analysistemplate.yaml``; `hllm.analysis` runs the same template locally), and promotes the
canary or rolls it back. ``mesh="istio"`` routes the weights through the Istio VirtualService; ``mesh="none"``
weights by replica counts.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import yaml

from hllm.manifests import MANIFESTS, validate_documents

OVERLAYS = {"istio": MANIFESTS / "overlays" / "istio", "none": MANIFESTS / "overlays" / "no-mesh"}
ANALYSIS_TEMPLATE = MANIFESTS / "base" / "analysistemplate.yaml"
ROLLOUT = {"group": "argoproj.io", "kind": "Rollout", "name": "hllm"}


def split_image(image: str) -> dict[str, str]:
    """``registry/name:tag`` or ``registry/name@sha256:...`` -> kustomize ``images`` fields."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return {"newName": name, "digest": digest}
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon belongs to a registry port
        raise ValueError(f"image '{image}' needs an explicit tag or digest (never deploy :latest implicitly)")
    return {"newName": name, "newTag": tag}


def rollout_patch(image: str, model: str | None = None) -> list[dict]:
    """JSON patch (RFC 6902) pointing the Rollout's service container at ``image`` and model tag ``model``.

    The service container is the Rollout's first and HLLM_MODEL its first env entry (manifests/base/rollout.yaml);
    ``test`` operations make the patch fail, rather than change the wrong field, if that layout ever changes.
    """
    split_image(image)  # refuses an image without tag or digest
    if model is not None and (":" not in model or model.startswith(":") or model.endswith(":")):
        raise ValueError(f"model tag '{model}' must be name:version")
    container = "/spec/template/spec/containers/0"
    ops = [
        {"op": "test", "path": f"{container}/name", "value": "hllm"},
        {"op": "replace", "path": f"{container}/image", "value": image},
    ]
    if model:
        ops += [
            {"op": "test", "path": f"{container}/env/0/name", "value": "HLLM_MODEL"},
            {"op": "replace", "path": f"{container}/env/0/value", "value": model},
        ]
    return ops


def render_canary(image: str, *, model: str | None = None, mesh: str = "istio") -> str:
    """The Rollout's manifests with the service on ``image`` serving BentoML model ``model``, validated offline.

    Args:
        image: the service image, with an explicit tag or digest.
        model: the BentoML model tag (``name:version``) the new pods serve; default: the template's
            (``hllm:latest``, which moves with every registration: pin it in production).
        mesh: ``istio`` (VirtualService weights) or ``none`` (weights by replica count).
    """
    patch = rollout_patch(image, model)
    if mesh not in OVERLAYS:
        raise ValueError(f"mesh='{mesh}' must be one of {sorted(OVERLAYS)}")
    overlay = OVERLAYS[mesh]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [],
        "patches": [{"target": ROLLOUT, "patch": yaml.safe_dump(patch)}],
    }
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
    validate_documents(done.stdout, f"rollout ({mesh})")
    return done.stdout
