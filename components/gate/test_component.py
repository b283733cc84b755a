from __future__ import annotations

import json
from pathlib import Path

from kfp import dsl
from testdata import artifact

from hllm_components.gate.component import component


def _scores(tmp_path: Path, ndcg: float) -> dsl.Artifact:
    values = {"test": {"ndcg@10": ndcg}, "popularity_test": {"ndcg@10": 0.02}}
    path = tmp_path / f"scores-{ndcg}"
    path.write_text(json.dumps(values))
    return artifact(dsl.Artifact, path)


def test_decision_without_champion(prepared, tmp_path: Path) -> None:
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    passed = component.python_func(
        scores=_scores(tmp_path, 0.05), dataset=prepared, decision=decision, model_name="nobody-yet"
    )
    assert passed is True and json.loads(Path(decision.path).read_text())["champion"] is None


def test_weak_model_is_refused_with_reasons(prepared, tmp_path: Path) -> None:
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    passed = component.python_func(
        scores=_scores(tmp_path, 0.021), dataset=prepared, decision=decision, champion="none"
    )
    assert passed is False
    assert any(r.startswith("FAIL") and "popularity" in r for r in decision.metadata["reasons"])


def test_champion_scored_on_the_same_data_uses_its_stored_metrics(prepared, tmp_path: Path) -> None:
    import bentoml

    metadata = {"metrics": {"test": {"ndcg@10": 0.2}}, "dataset_fingerprint": prepared.metadata["fingerprint"]}
    with bentoml.models.create("gate-test", metadata=metadata):
        pass
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    passed = component.python_func(
        scores=_scores(tmp_path, 0.1), dataset=prepared, decision=decision, model_name="gate-test"
    )
    saved = json.loads(Path(decision.path).read_text())
    assert passed is False and saved["champion"] == {"ndcg@10": 0.2}
    assert saved["reasons"][0] == "champion: champion's stored metrics (same dataset)"


def test_champion_from_other_data_is_rescored_on_this_split(prepared, trained, tmp_path: Path) -> None:
    import shutil

    import bentoml

    model, _, _ = trained
    metadata = {"metrics": {"test": {"ndcg@10": 0.99}}, "dataset_fingerprint": "another-dataset"}
    with bentoml.models.create("gate-rescore", metadata=metadata) as saved:
        shutil.copytree(model.path, saved.path, dirs_exist_ok=True)
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    component.python_func(scores=_scores(tmp_path, 0.1), dataset=prepared, decision=decision, model_name="gate-rescore")
    result = json.loads(Path(decision.path).read_text())
    assert result["champion"]["ndcg@10"] != 0.99 and result["champion"]["count"] == 80  # scored here, not copied
    assert result["reasons"][0].startswith("champion: champion re-scored on this dataset (0 new items")


def test_the_promoted_champion_is_compared_not_the_latest_model(prepared, tmp_path: Path) -> None:
    import bentoml

    from hllm_serving.registry import promote

    fingerprint = prepared.metadata["fingerprint"]
    for ndcg in (0.2, 0.01):  # the champion first, then a weaker model registered later
        metadata = {"metrics": {"test": {"ndcg@10": ndcg}}, "dataset_fingerprint": fingerprint}
        with bentoml.models.create("gate-champion", metadata=metadata) as saved:
            pass
        if ndcg == 0.2:
            promote(str(saved.tag))
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    passed = component.python_func(
        scores=_scores(tmp_path, 0.1), dataset=prepared, decision=decision, model_name="gate-champion"
    )
    assert passed is False and json.loads(Path(decision.path).read_text())["champion"] == {"ndcg@10": 0.2}
