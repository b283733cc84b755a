"""The promotion gate: floors, lift over popularity, regression against the champion; every check reported."""

from __future__ import annotations

import pytest

from hllm.gating import GateThresholds, decide

POPULARITY = {"ndcg@10": 0.01, "recall@10": 0.02}


def test_passes_without_a_champion_and_says_so() -> None:
    decision = decide({"ndcg@10": 0.05, "recall@10": 0.1}, POPULARITY, GateThresholds())
    assert decision.passed
    assert any(r.startswith("skip: no champion") for r in decision.reasons)


def test_weak_model_fails_the_lift_over_popularity() -> None:
    decision = decide({"ndcg@10": 0.0105}, POPULARITY, GateThresholds(min_lift_over_popularity=1.1))
    assert not decision.passed
    assert any(r.startswith("FAIL") and "popularity" in r for r in decision.reasons)


def test_regression_against_the_champion_fails_and_small_noise_passes() -> None:
    thresholds = GateThresholds(max_regression=0.05)
    assert decide({"ndcg@10": 0.096}, POPULARITY, thresholds, champion={"ndcg@10": 0.1}).passed
    refused = decide({"ndcg@10": 0.09}, POPULARITY, thresholds, champion={"ndcg@10": 0.1})
    assert not refused.passed and any("champion" in r and r.startswith("FAIL") for r in refused.reasons)


def test_every_failed_floor_is_reported() -> None:
    thresholds = GateThresholds(min_metrics={"ndcg@10": 0.5, "recall@10": 0.5}, min_lift_over_popularity=0)
    decision = decide({"ndcg@10": 0.1, "recall@10": 0.2}, POPULARITY, thresholds)
    assert not decision.passed
    assert sum(r.startswith("FAIL") for r in decision.reasons) == 2


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"max_regression": 1.5}', "max_regression"),
        ('{"min_metrics": {"ndcg@10": 2}}', "min_metrics"),
        ('{"min_lift": 1}', "unknown gate threshold"),
    ],
)
def test_bad_thresholds_are_named(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GateThresholds.from_json(text)


def test_missing_or_nan_metric_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'ndcg@10'"):
        decide({"recall@10": 0.1}, POPULARITY, GateThresholds(min_metrics={}))
    with pytest.raises(ValueError, match="NaN"):
        decide({"ndcg@10": float("nan")}, POPULARITY, GateThresholds(min_metrics={}))
