from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp import dsl
from testdata import artifact

from hllm.predictor import Predictor
from hllm_components.train.component import component


def test_training_exports_a_loadable_model_and_its_run(prepared, trained) -> None:
    model, run, _ = trained
    assert model.metadata["model"] == "hllm" and model.metadata["mode"] == "cached"
    assert (Path(run.path) / "metrics.jsonl").is_file() and (Path(run.path) / "curve.png").is_file()
    predictor = Predictor.load(model.path)
    assert len(predictor.recommend([[predictor.item_ids[0]]], k=3)[0]) == 3


def test_multi_node_needs_a_shared_volume(prepared, trained, run_config: str, tmp_path: Path) -> None:
    _, _, vectors = trained
    with pytest.raises(ValueError, match="shared_dir, shared_pvc and image"):
        component.python_func(
            dataset=prepared,
            text_vectors=vectors,
            run_config=run_config,
            model=artifact(dsl.Model, tmp_path / "model"),
            run=artifact(dsl.Artifact, tmp_path / "run"),
            num_nodes=2,
        )


def test_run_config_travels_with_the_run(trained, run_config: str) -> None:
    _, run, _ = trained
    saved = json.loads((Path(run.path) / "run_config.json").read_text())
    assert saved["train"]["epochs"] == 2 and saved["hllm"]["item_backbone_config"]["hidden_size"] == 32
