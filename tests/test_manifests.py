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
