from __future__ import annotations

import json
from pathlib import Path

import bentoml
from kfp import dsl
from testdata import artifact

from hllm.predictor import Predictor
from hllm_components.register.component import component


def test_registered_model_carries_metrics_config_and_lineage(prepared, trained, scores, tmp_path: Path) -> None:
    model, run, _ = trained
    record = artifact(dsl.Artifact, tmp_path / "registration")
    component.python_func(
        model=model,
        run=run,
        scores=scores,
        dataset=prepared,
        registration=record,
        model_name="register-test",
        pipeline_run="run-42",
    )
    tag = json.loads(Path(record.path).read_text())["tag"]
    saved = bentoml.models.get(tag)
    assert saved.info.metadata["dataset_fingerprint"] == prepared.metadata["fingerprint"]
    assert saved.info.metadata["pipeline_run"] == "run-42"
    assert saved.info.metadata["metrics"]["test"]["count"] == 80
    assert saved.info.labels["model"] == "hllm"
    # The stored folder is a complete model: the Predictor loads it as is.
    assert Predictor.load(saved.path).item_ids == Predictor.load(model.path).item_ids
    # The item index is built here and stored with the model; 60 items: the recorded kind is exact search.
    index = json.loads((Path(saved.path) / "item_index" / "index.json").read_text())
    assert index["kind"] == "exact" and index["items"] == len(Predictor.load(model.path).item_ids)
    assert json.loads(Path(record.path).read_text())["index"]["kind"] == "exact"
    assert Predictor.load(saved.path, index_kind="auto").ann.kind == "exact"
    assert bentoml.models.get("register-test:latest").tag == saved.tag
