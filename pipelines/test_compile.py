"""The compiled pipeline: loads back, names every step, carries the accelerator and caching settings."""

from __future__ import annotations

from pathlib import Path

import yaml
from kfp import components

from hllm_pipelines.cluster import compile_pipeline
from hllm_pipelines.training import Settings

STEPS = {"validate-data", "sync-features", "embed-items", "train", "evaluate", "gate"}


def _load(path: Path) -> dict:
    """The pipeline spec; a platform spec (kfp-kubernetes settings) follows as a second YAML document."""
    documents = list(yaml.safe_load_all(path.read_text()))
    spec = documents[0]
    spec["platforms"] = {k: v for d in documents[1:] for k, v in d.get("platforms", {}).items()}
    return spec


def _tasks(spec: dict) -> dict:
    root = spec["root"]["dag"]["tasks"]
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    return {**root, **inner}


def test_spec_loads_back_with_every_step(tmp_path: Path) -> None:
    path = compile_pipeline(tmp_path / "p.yaml", Settings(image="registry.local/hllm:test"))
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "hllm-training"
    spec = _load(path)
    tasks = _tasks(spec)
    assert STEPS | {"register", "deploy"} <= set(tasks)
    assert tasks["deploy"]["inputs"]["artifacts"]["registration"]["taskOutputArtifact"]["producerTask"] == "register"
    gate = spec["root"]["dag"]["tasks"]["condition-1"]
    assert gate["taskInfo"]["name"] == "gate-passed"
    assert gate["triggerPolicy"]["condition"] == "inputs.parameter_values['pipelinechannel--gate-Output'] == true"
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.local/hllm:test"}
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert {"data_uri", "run_config", "gate_thresholds", "num_nodes", "feast_home"} <= set(inputs)


def test_external_data_steps_are_never_cached(tmp_path: Path) -> None:
    spec = _load(compile_pipeline(tmp_path / "p.yaml"))
    tasks = _tasks(spec)
    for name in ("validate-data", "sync-features", "gate", "register", "deploy"):
        assert not tasks[name]["cachingOptions"].get("enableCache", False), name
    assert tasks["train"]["cachingOptions"]["enableCache"] is True


def test_accelerators_are_set_in_the_pipeline(tmp_path: Path) -> None:
    spec = _load(compile_pipeline(tmp_path / "p.yaml", Settings(gpus_per_node=4, embed_gpus=1)))
    executors = spec["deploymentSpec"]["executors"]
    train = executors["exec-train"]["container"]["resources"]["accelerator"]
    embed = executors["exec-embed-items"]["container"]["resources"]["accelerator"]
    assert (train["resourceType"], train["resourceCount"]) == ("nvidia.com/gpu", "4")
    assert (embed["resourceType"], embed["resourceCount"]) == ("nvidia.com/gpu", "1")
    assert "accelerator" not in executors["exec-evaluate"]["container"].get("resources", {})
    platform = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert platform["exec-train"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert platform["exec-train"]["emptyDirMounts"][0]["mountPath"] == "/dev/shm"


def test_cpu_spec_requests_no_gpu(tmp_path: Path) -> None:
    spec = _load(compile_pipeline(tmp_path / "p.yaml"))
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "accelerator" not in executor["container"].get("resources", {})


class _RecordingClient:
    """Stands in for kfp.Client (no KFP server here): records what would be uploaded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_experiment(self, name: str):
        self.calls.append(("experiment", {"name": name}))
        return type("Experiment", (), {"experiment_id": "exp-1"})()

    def create_run_from_pipeline_package(self, pipeline_file: str, **kwargs):
        kwargs["spec"] = components.load_component_from_file(pipeline_file).name  # the uploaded file is a spec
        self.calls.append(("run", kwargs))
        return type("Run", (), {"run_id": "run-1"})()

    def create_recurring_run(self, **kwargs):
        kwargs["spec"] = components.load_component_from_file(kwargs["pipeline_package_path"]).name
        self.calls.append(("recurring", kwargs))
        return type("Recurring", (), {"recurring_run_id": "rr-1"})()


def test_submit_uploads_the_compiled_spec_with_the_arguments() -> None:
    from hllm_pipelines.cluster import submit

    client = _RecordingClient()
    arguments = {"data_uri": "/data/office", "run_config": "train: {}\n"}
    assert submit("http://kfp", arguments, client=client) == {"run_id": "run-1", "experiment_id": "exp-1"}
    kind, call = client.calls[-1]
    assert kind == "run" and call["arguments"] == arguments and call["spec"] == "hllm-training"


def test_recurring_run_never_overlaps_itself() -> None:
    from hllm_pipelines.cluster import submit

    client = _RecordingClient()
    result = submit("http://kfp", {"data_uri": "/d", "run_config": ""}, client=client, cron="0 0 3 * * *")
    kind, call = client.calls[-1]
    assert result["recurring_run_id"] == "rr-1" and kind == "recurring"
    assert call["cron_expression"] == "0 0 3 * * *" and call["max_concurrency"] == 1 and call["spec"] == "hllm-training"


def test_retraining_pipeline_compiles_with_drift_gate(tmp_path: Path) -> None:
    path = compile_pipeline(tmp_path / "r.yaml", which="retraining")
    assert components.load_component_from_file(str(path)).name == "hllm-retraining"
    spec = _load(path)
    root = spec["root"]["dag"]["tasks"]
    assert {"drift-check", "condition-1"} <= set(root)
    assert "pipelinechannel--drift-check-Output" in root["condition-1"]["triggerPolicy"]["condition"]
    inner = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    assert list(inner) == ["hllm-training"]  # the whole training pipeline, nested
    forwarded = inner["hllm-training"]["inputs"]["parameters"]
    for name in ("run_config", "data_overrides", "history_length"):  # the run config reaches every step
        assert forwarded[name]["componentInputParameter"] == f"pipelinechannel--{name}", name
    assert "exec-deploy" in spec["deploymentSpec"]["executors"]  # ... through register and deploy


def test_cluster_storage_and_secrets_are_wired(tmp_path: Path) -> None:
    spec = _load(compile_pipeline(tmp_path / "p.yaml"))
    platform = spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for step in ("validate-data", "sync-features", "embed-items", "train", "evaluate", "gate", "register"):
        mounts = {m["mountPath"] for m in platform[f"exec-{step}"]["pvcMount"]}
        assert "/data" in mounts, step
    assert {m["mountPath"] for m in platform["exec-register"]["pvcMount"]} == {"/data", "/models"}
    env = {e["name"]: e["value"] for e in spec["deploymentSpec"]["executors"]["exec-register"]["container"]["env"]}
    assert env["BENTOML_HOME"] == "/models/bentoml"
    secrets = platform["exec-sync-features"]["secretAsEnv"][0]
    assert secrets["secretName"] == "hllm-feast" and len(secrets["keyToEnv"]) == 2


def test_local_build_keeps_the_local_stores(tmp_path: Path) -> None:
    spec = _load(compile_pipeline(tmp_path / "p.yaml", Settings(cluster=False)))
    assert "env" not in spec["deploymentSpec"]["executors"]["exec-register"]["container"]
    assert not spec["platforms"].get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {}).get("exec-gate")


def test_deploy_applies_on_a_cluster_and_only_renders_locally(tmp_path: Path) -> None:
    cluster = _load(compile_pipeline(tmp_path / "c.yaml"))["root"]["inputDefinitions"]["parameters"]
    local = _load(compile_pipeline(tmp_path / "l.yaml", Settings(cluster=False)))["root"]["inputDefinitions"]
    assert cluster["deploy_target"]["defaultValue"] == "cluster"
    assert local["parameters"]["deploy_target"]["defaultValue"] == "local"
