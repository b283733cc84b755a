"""Manifests validate offline; the committed PyTorchJob equals what the train step submits."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hllm.manifests import ManifestError, validate_documents, validate_manifest
from hllm.training import launch

REPO = Path(__file__).resolve().parents[1]
PYTORCHJOB = REPO / "manifests" / "training" / "pytorchjob.yaml"


def _example_job() -> dict:
    args = launch.train_args("/shared/runs/example/data", "/shared/runs/example/run", "/shared/runs/example/run.yaml")
    return launch.pytorchjob(
        "hllm-train-example",
        "ghcr.io/hllm-project/hllm:0.1.0-cuda",
        args,
        num_nodes=2,
        gpus_per_node=8,
        shared_pvc="hllm-shared",
        shared_mount="/shared",
    )


def test_committed_pytorchjob_is_what_the_train_step_renders_and_it_validates() -> None:
    assert yaml.safe_load(PYTORCHJOB.read_text()) == _example_job()
    assert validate_documents(PYTORCHJOB.read_text(), str(PYTORCHJOB)) == 1


def test_every_replica_runs_torchrun_over_all_nodes() -> None:
    job = _example_job()
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 1
    command = replicas["Worker"]["template"]["spec"]["containers"][0]["command"][-1]
    assert "--nnodes 2 --nproc_per_node 8" in command and "-m hllm.cli train /shared/runs/example/data" in command
    limits = replicas["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 8


def test_single_node_is_not_a_pytorchjob() -> None:
    with pytest.raises(ValueError, match="num_nodes=1"):
        launch.pytorchjob("x", "img", [], num_nodes=1, gpus_per_node=1, shared_pvc="p")


def test_a_typo_inside_a_pod_template_is_caught() -> None:
    job = _example_job()
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(ManifestError, match="imagePullPolicyy"):
        validate_manifest(job)


def test_a_bad_custom_resource_field_is_caught() -> None:
    job = copy.deepcopy(_example_job())
    job["spec"]["runPolicy"]["cleanPodPolicy"] = "Sometimes"
    with pytest.raises(ManifestError, match="Sometimes"):
        validate_manifest(job)


def test_unknown_kind_fails() -> None:
    with pytest.raises(ManifestError, match="unknown kind"):
        validate_manifest({"apiVersion": "example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"}})


def test_core_kind_is_checked_strictly() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"portz": []}}
    with pytest.raises(ManifestError, match="portz"):
        validate_manifest(service)


def _render(path: str) -> str:
    import subprocess

    return subprocess.run(["kubectl", "kustomize", str(REPO / path)], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("overlay", ["manifests/base", "manifests/overlays/canary"])
def test_kustomize_renders_and_every_manifest_validates(overlay: str) -> None:
    text = _render(overlay)
    kinds = [d["kind"] for d in yaml.safe_load_all(text)]
    assert validate_documents(text, overlay) == len(kinds)
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "CronJob",
    } <= set(kinds)
    assert {"ServiceAccount", "Role", "RoleBinding"} <= set(kinds)


def test_service_pods_are_hardened() -> None:
    for doc in yaml.safe_load_all(_render("manifests/overlays/canary")):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"readinessProbe", "livenessProbe", "resources"} <= set(container)


def test_drift_monitor_has_least_privilege() -> None:
    docs = list(yaml.safe_load_all(_render("manifests/base")))
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["hllm-drift-monitor"], "verbs": ["get"]}
    ]
    (cron,) = [d for d in docs if d["kind"] == "CronJob"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["serviceAccountName"] == "hllm-drift-monitor"


def test_deploy_canary_sets_image_and_weights() -> None:
    from hllm.rollout import render_canary

    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(render_canary("reg:5000/hllm:1.2.3", 25))}
    canary = docs[("Deployment", "hllm-canary")]["spec"]["template"]["spec"]["containers"][0]["image"]
    stable = docs[("Deployment", "hllm")]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert canary == "reg:5000/hllm:1.2.3" and stable == "ghcr.io/hllm-project/hllm:0.1.0-cpu"
    routes = docs[("VirtualService", "hllm")]["spec"]["http"][0]["route"]
    assert [(r["destination"]["subset"], r["weight"]) for r in routes] == [("stable", 75), ("canary", 25)]


def test_deploy_canary_pins_the_models_each_version_serves() -> None:
    from hllm.rollout import render_canary

    text = render_canary("reg/hllm:2", 10, model="hllm:new123", stable_model="hllm:old456")
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text)}
    env = {
        name: docs[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]["env"][0]
        for name in ("hllm", "hllm-canary")
    }
    assert env["hllm-canary"] == {"name": "HLLM_MODEL", "value": "hllm:new123"}
    assert env["hllm"] == {"name": "HLLM_MODEL", "value": "hllm:old456"}


@pytest.mark.parametrize(("image", "weight", "match"), [("reg/hllm:1", 101, "weight=101"), ("reg:5000/hllm", 5, "tag")])
def test_deploy_canary_rejects_bad_arguments(image: str, weight: int, match: str) -> None:
    from hllm.rollout import render_canary

    with pytest.raises(ValueError, match=match):
        render_canary(image, weight)


def test_deploy_canary_cli_writes_a_valid_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hllm.cli import app

    result = CliRunner().invoke(
        app, ["deploy", "canary", "--image", "r/hllm:2", "--weight", "5", "--out", str(tmp_path / "c.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert validate_documents((tmp_path / "c.yaml").read_text()) == 14  # 10 base + 1 policy + 3 canary


@pytest.mark.parametrize(
    ("canary", "stable", "action"),
    [
        ((1000, 2, 30.0), (5000, 10, 28.0), "promote"),
        ((100, 0, 30.0), (5000, 10, 28.0), "hold"),
        ((1000, 30, 30.0), (5000, 10, 28.0), "rollback"),  # 3% errors
        ((1000, 2, 60.0), (5000, 10, 28.0), "rollback"),  # p99 over the 50 ms target
        ((1000, 2, 45.0), (5000, 10, 30.0), "rollback"),  # 1.5x stable's p99
        ((100, 20, 30.0), (5000, 10, 28.0), "rollback"),  # breach beats "not enough traffic"
    ],
)
def test_canary_decision(canary, stable, action) -> None:
    from hllm.rollout import VersionMetrics, decide_canary

    decision = decide_canary(VersionMetrics(*canary), VersionMetrics(*stable))
    assert decision.action == action and decision.reasons


def test_recurring_run_definition_matches_what_submit_sends() -> None:
    spec = yaml.safe_load((REPO / "manifests" / "kfp" / "recurring-run.yaml").read_text())
    from hllm_pipelines.training import Settings, build

    inputs = build(Settings()).component_spec.inputs
    assert set(spec["parameters"]) <= set(inputs) and spec["max_concurrency"] == 1
    assert len(spec["cron"].split()) == 6
    from hllm.gating import GateThresholds

    GateThresholds.from_json(spec["parameters"]["gate_thresholds"])  # a valid gate configuration
