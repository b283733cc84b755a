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


OVERLAYS = ["manifests/base", "manifests/overlays/istio", "manifests/overlays/no-mesh"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kustomize_renders_and_every_manifest_validates(overlay: str) -> None:
    text = _render(overlay)
    kinds = [d["kind"] for d in yaml.safe_load_all(text)]
    assert validate_documents(text, overlay) == len(kinds)
    assert {
        "Rollout",
        "AnalysisTemplate",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "CronJob",
    } <= set(kinds)
    assert {"ServiceAccount", "Role", "RoleBinding"} <= set(kinds) and "Deployment" not in kinds


def _docs(text: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rollout_is_a_canary_with_background_analysis_and_the_hpa_scales_it(overlay: str) -> None:
    docs = _docs(_render(overlay))
    canary = docs[("Rollout", "hllm")]["spec"]["strategy"]["canary"]
    weights = [s["setWeight"] for s in canary["steps"] if "setWeight" in s]
    assert weights == [10, 25, 50, 100]
    assert all("pause" in canary["steps"][i + 1] for i, s in enumerate(canary["steps"][:-1]) if "setWeight" in s)
    (ref,) = canary["analysis"]["templates"]
    template = docs[("AnalysisTemplate", ref["templateName"])]
    assert {a["name"] for a in canary["analysis"]["args"]} == {a["name"] for a in template["spec"]["args"]}
    hash_arg = next(a for a in canary["analysis"]["args"] if a["name"] == "canary-hash")
    assert hash_arg["valueFrom"] == {"podTemplateHashValue": "Latest"}
    assert {m["name"] for m in template["spec"]["metrics"]} == {
        "error-ratio",
        "recommend-p99-seconds",
        "fallback-ratio",
    }
    target = docs[("HorizontalPodAutoscaler", "hllm")]["spec"]["scaleTargetRef"]
    assert target == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": "hllm"}


def test_istio_overlay_routes_through_the_virtualservice_and_destinationrule() -> None:
    docs = _docs(_render("manifests/overlays/istio"))
    istio = docs[("Rollout", "hllm")]["spec"]["strategy"]["canary"]["trafficRouting"]["istio"]
    service = docs[("VirtualService", istio["virtualService"]["name"])]
    assert [r["name"] for r in service["spec"]["http"]] == istio["virtualService"]["routes"]
    subsets = {s["name"] for s in docs[("DestinationRule", istio["destinationRule"]["name"])]["spec"]["subsets"]}
    assert {istio["destinationRule"]["stableSubsetName"], istio["destinationRule"]["canarySubsetName"]} == subsets
    assert [d["destination"]["subset"] for d in service["spec"]["http"][0]["route"]] == ["stable", "canary"]
    no_mesh = _docs(_render("manifests/overlays/no-mesh"))
    assert "trafficRouting" not in no_mesh[("Rollout", "hllm")]["spec"]["strategy"]["canary"]
    assert not [k for k in no_mesh if k[0] in ("VirtualService", "DestinationRule")]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        (("spec", "strategy", "canary"), "stepz"),
        (("spec", "template", "spec", "containers", 0), "imagePullPolicyy"),
    ],
)
def test_a_misspelt_rollout_field_fails_validation(path: tuple, field: str) -> None:
    rollout = _docs(_render("manifests/base"))[("Rollout", "hllm")]
    node = rollout
    for key in path:
        node = node[key]
    node[field] = "x"
    with pytest.raises(ManifestError, match=field):
        validate_manifest(rollout)


def test_a_misspelt_analysis_template_field_fails_validation() -> None:
    template = _docs(_render("manifests/base"))[("AnalysisTemplate", "hllm-canary")]
    template["spec"]["metrics"][0]["successCondtion"] = template["spec"]["metrics"][0].pop("successCondition")
    with pytest.raises(ManifestError, match="successCondtion"):
        validate_manifest(template)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_runs_one_worker_per_cpu_it_is_given(overlay: str) -> None:
    (container,) = _docs(_render(overlay))[("Rollout", "hllm")]["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    workers = [a.split("=", 1)[1] for a in args if a.startswith("serving.workers=")]
    assert len(workers) == 1 and args[args.index(f"serving.workers={workers[0]}") - 1] == "--set"
    resources = container["resources"]
    assert int(workers[0]) == int(resources["limits"]["cpu"]) == int(resources["requests"]["cpu"])


def test_service_pods_are_hardened() -> None:
    rollout = _docs(_render("manifests/overlays/istio"))[("Rollout", "hllm")]
    pod = rollout["spec"]["template"]["spec"]
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


@pytest.mark.parametrize("mesh", ["istio", "none"])
def test_deploy_canary_sets_the_rollouts_image_and_model(mesh: str) -> None:
    from hllm.rollout import render_canary

    docs = _docs(render_canary("reg:5000/hllm:1.2.3", model="hllm:new123", mesh=mesh))
    (container,) = docs[("Rollout", "hllm")]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "reg:5000/hllm:1.2.3"
    assert container["env"][0] == {"name": "HLLM_MODEL", "value": "hllm:new123"}
    # only the service moves to the new image; the drift monitor keeps the release's
    cron = docs[("CronJob", "hllm-drift-monitor")]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cron["containers"][0]["image"] == "ghcr.io/hllm-project/hllm:0.1.0-cpu"
    assert (("VirtualService", "hllm") in docs) == (mesh == "istio")


def test_deploy_canary_without_a_model_keeps_the_templates() -> None:
    from hllm.rollout import render_canary

    (container,) = _docs(render_canary("reg/hllm@sha256:abc"))[("Rollout", "hllm")]["spec"]["template"]["spec"][
        "containers"
    ]
    assert container["image"] == "reg/hllm@sha256:abc" and container["env"][0]["value"] == "hllm:latest"


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        ("reg:5000/hllm", {}, "tag"),
        ("reg/hllm:1", {"mesh": "linkerd"}, "mesh='linkerd'"),
        ("reg/hllm:1", {"model": "hllm"}, "name:version"),
    ],
)
def test_deploy_canary_rejects_bad_arguments(image: str, kwargs: dict, match: str) -> None:
    from hllm.rollout import render_canary

    with pytest.raises(ValueError, match=match):
        render_canary(image, **kwargs)


def test_deploy_canary_cli_writes_a_valid_file(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hllm.cli import app

    result = CliRunner().invoke(
        app, ["deploy", "canary", "--image", "r/hllm:2", "--model", "hllm:v2", "--out", str(tmp_path / "c.yaml")]
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "c.yaml").read_text()
    assert validate_documents(text) == 14  # 12 base (Rollout, AnalysisTemplate, ...) + VirtualService + DestinationRule
    assert "kubectl apply" in result.output


def test_recurring_run_definition_matches_what_submit_sends() -> None:
    spec = yaml.safe_load((REPO / "manifests" / "kfp" / "recurring-run.yaml").read_text())
    from hllm_pipelines.training import Settings, build

    inputs = build(Settings()).component_spec.inputs
    assert set(spec["parameters"]) <= set(inputs) and spec["max_concurrency"] == 1
    assert len(spec["cron"].split()) == 6
    from hllm.gating import GateThresholds

    GateThresholds.from_json(spec["parameters"]["gate_thresholds"])  # a valid gate configuration


def test_online_store_redis_is_durable_and_reachable_only_by_the_service_and_pipeline() -> None:
    text = _render("manifests/online-store")
    assert validate_documents(text, "online-store") == 4
    docs = _docs(text)
    conf = docs[("ConfigMap", "hllm-redis")]["data"]["redis.conf"].split("\n")
    assert "appendonly yes" in conf and "maxmemory-policy noeviction" in conf  # the event log must never be evicted
    redis_pods = docs[("StatefulSet", "hllm-redis")]["spec"]["template"]["metadata"]["labels"]
    # The service's egress rule (base NetworkPolicy) selects exactly these pods on the Redis port.
    service_policy = _docs(_render("manifests/base"))[("NetworkPolicy", "hllm")]
    egress = [rule for rule in service_policy["spec"]["egress"] if {"protocol": "TCP", "port": 6379} in rule["ports"]]
    assert egress and all(peer["podSelector"]["matchLabels"].items() <= redis_pods.items() for peer in egress[0]["to"])
    ingress = docs[("NetworkPolicy", "hllm-redis")]["spec"]["ingress"][0]["from"]
    assert {"app": "hllm"} in [peer.get("podSelector", {}).get("matchLabels") for peer in ingress]
