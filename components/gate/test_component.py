from __future__ import annotations

import json
from pathlib import Path

from kfp import dsl
from testdata import artifact

from components.gate.component import component


def _scores(tmp_path: Path, ndcg: float) -> dsl.Artifact:
    values = {"test": {"ndcg@10": ndcg}, "popularity_test": {"ndcg@10": 0.02}}
    path = tmp_path / f"scores-{ndcg}"
    path.write_text(json.dumps(values))
    return artifact(dsl.Artifact, path)


def test_decision_without_champion(tmp_path: Path) -> None:
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    passed = component.python_func(scores=_scores(tmp_path, 0.05), decision=decision, model_name="nobody-yet")
    assert passed is True and json.loads(Path(decision.path).read_text())["champion"] is None


def test_weak_model_is_refused_with_reasons(tmp_path: Path) -> None:
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    passed = component.python_func(scores=_scores(tmp_path, 0.021), decision=decision, champion="none")
    assert passed is False
    assert any(r.startswith("FAIL") and "popularity" in r for r in decision.metadata["reasons"])


def test_champion_from_the_bentoml_store(tmp_path: Path) -> None:
    import bentoml

    with bentoml.models.create("gate-test", metadata={"metrics": {"test": {"ndcg@10": 0.2}}}):
        pass
    decision = artifact(dsl.Artifact, tmp_path / "decision")
    passed = component.python_func(scores=_scores(tmp_path, 0.1), decision=decision, model_name="gate-test")
    assert passed is False and json.loads(Path(decision.path).read_text())["champion"] == {"ndcg@10": 0.2}
