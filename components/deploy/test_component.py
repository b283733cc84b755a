from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import yaml
from kfp import dsl
from testdata import artifact

from hllm_components.deploy.component import component


def _registration(tmp_path: Path, tag: str = "hllm:abc123") -> dsl.Artifact:
    path = tmp_path / "registration"
    path.write_text(json.dumps({"tag": tag}))
    return artifact(dsl.Artifact, path)


def test_local_deploy_renders_the_rollout_on_the_new_model_and_applies_nothing(tmp_path: Path, capsys) -> None:
    out = artifact(dsl.Artifact, tmp_path / "manifests")
    how = component.python_func(registration=_registration(tmp_path), manifests=out, service_image="reg/hllm:2")
    docs = {
        (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all((Path(out.path) / "rollout.yaml").read_text())
    }
    (container,) = docs[("Rollout", "hllm")]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "reg/hllm:2" and container["env"][0] == {"name": "HLLM_MODEL", "value": "hllm:abc123"}
    assert how.startswith("kubectl apply -f") and str(Path(out.path) / "rollout.yaml") in capsys.readouterr().out
    patch = json.loads((Path(out.path) / "rollout-patch.json").read_text())
    assert {"op": "replace", "path": "/spec/template/spec/containers/0/env/0/value", "value": "hllm:abc123"} in patch


def test_cluster_deploy_patches_the_live_rollout(tmp_path: Path, monkeypatch) -> None:
    calls = []

    class CustomObjectsApi:
        def patch_namespaced_custom_object(self, *args):
            calls.append(args)

    fake = types.ModuleType("kubernetes")
    fake.client = types.SimpleNamespace(CustomObjectsApi=CustomObjectsApi)
    fake.config = types.SimpleNamespace(load_incluster_config=lambda: calls.append("in-cluster"))
    monkeypatch.setitem(sys.modules, "kubernetes", fake)
    out = artifact(dsl.Artifact, tmp_path / "manifests")
    component.python_func(
        registration=_registration(tmp_path),
        manifests=out,
        service_image="reg/hllm:2",
        target="cluster",
        namespace="shop",
    )
    assert calls[0] == "in-cluster"
    group, version, namespace, plural, name, patch = calls[1]
    assert (group, version, namespace, plural, name) == ("argoproj.io", "v1alpha1", "shop", "rollouts", "hllm")
    assert {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "reg/hllm:2"} in patch
    assert not (Path(out.path) / "rollout.yaml").exists()


def test_unknown_target_is_refused(tmp_path: Path) -> None:
    out = artifact(dsl.Artifact, tmp_path / "manifests")
    with pytest.raises(ValueError, match="target='staging'"):
        component.python_func(
            registration=_registration(tmp_path), manifests=out, service_image="r/h:1", target="staging"
        )
