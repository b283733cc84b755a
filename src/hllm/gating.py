"""The promotion gate: may a newly trained model replace the current one?

A candidate passes when every check passes (all are reported, not only the first failure):

1. absolute floors on test metrics (``min_metrics``, e.g. ``{"ndcg@10": 0.02}``);
2. a lift over the popularity baseline on the same split (``min_lift_over_popularity``: candidate >= lift x
   popularity on ``metric``), so that a model that learned nothing is refused even on easy data;
3. no regression against the champion, the model serving now (``max_regression``: candidate >= (1 - x) x
   champion on ``metric``); skipped, and said so, when there is no champion yet.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class GateThresholds:
    """Thresholds of the gate; validated on construction."""

    metric: str = "ndcg@10"
    min_metrics: dict[str, float] = field(default_factory=lambda: {"ndcg@10": 0.0})
    min_lift_over_popularity: float = 1.1
    max_regression: float = 0.02

    def __post_init__(self) -> None:
        if self.min_lift_over_popularity < 0:
            raise ValueError(f"min_lift_over_popularity={self.min_lift_over_popularity} must be >= 0")
        if not 0 <= self.max_regression < 1:
            raise ValueError(f"max_regression={self.max_regression} must be in [0, 1)")
        for name, value in self.min_metrics.items():
            if not 0 <= value <= 1:
                raise ValueError(f"min_metrics['{name}']={value} must be in [0, 1]")

    @classmethod
    def from_json(cls, text: str) -> GateThresholds:
        values = json.loads(text) if text.strip() else {}
        if not isinstance(values, dict):
            raise ValueError(f"gate thresholds must be a JSON object, got {text!r}")
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown gate threshold(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**values)


@dataclass
class GateDecision:
    passed: bool
    reasons: list[str]
    candidate: dict[str, float]
    champion: dict[str, float] | None
    thresholds: dict

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _value(metrics: dict[str, float], name: str, whose: str) -> float:
    if name not in metrics:
        raise ValueError(f"{whose} metrics have no '{name}'; available: {sorted(metrics)}")
    value = float(metrics[name])
    if math.isnan(value):
        raise ValueError(f"{whose} metric '{name}' is NaN")
    return value


def decide(
    candidate: dict[str, float],
    popularity: dict[str, float],
    thresholds: GateThresholds,
    champion: dict[str, float] | None = None,
) -> GateDecision:
    """Check ``candidate`` (test metrics) against the thresholds, popularity and the champion's test metrics."""
    reasons: list[str] = []
    ok = True
    for name, floor in sorted(thresholds.min_metrics.items()):
        value = _value(candidate, name, "candidate")
        passed = value >= floor
        ok &= passed
        reasons.append(f"{'pass' if passed else 'FAIL'}: {name} {value:.4f} {'>=' if passed else '<'} floor {floor}")
    metric = thresholds.metric
    value = _value(candidate, metric, "candidate")
    need = thresholds.min_lift_over_popularity * _value(popularity, metric, "popularity")
    passed = value >= need
    ok &= passed
    reasons.append(
        f"{'pass' if passed else 'FAIL'}: {metric} {value:.4f} {'>=' if passed else '<'} "
        f"{thresholds.min_lift_over_popularity}x popularity ({need:.4f})"
    )
    if champion is None:
        reasons.append("skip: no champion yet, nothing to regress against")
    else:
        need = (1 - thresholds.max_regression) * _value(champion, metric, "champion")
        passed = value >= need
        ok &= passed
        reasons.append(
            f"{'pass' if passed else 'FAIL'}: {metric} {value:.4f} {'>=' if passed else '<'} champion "
            f"x {1 - thresholds.max_regression:.2f} ({need:.4f})"
        )
    return GateDecision(bool(ok), reasons, dict(candidate), dict(champion) if champion else None, asdict(thresholds))


def champion_test_metrics(champion_dir: str | Path, stored: dict, dataset) -> tuple[dict[str, float] | None, str]:
    """The champion's test metrics on the candidate's dataset, and how they were obtained.

    Stored metrics are only comparable when the champion was scored on the same data (same fingerprint). Otherwise
    the champion is re-scored on the candidate's split; items it has never seen are embedded from their text
    first (HLLM), and an ID-only champion that cannot score the new catalogue gives ``None``.
    """
    from hllm.evaluation.evaluate import evaluate_dataset
    from hllm.predictor import Predictor

    if stored.get("dataset_fingerprint") == dataset.fingerprint() and "test" in stored.get("metrics", {}):
        return stored["metrics"]["test"], "champion's stored metrics (same dataset)"
    predictor = Predictor.load(champion_dir)
    unknown = dataset.items[~dataset.items["item_id"].isin(predictor.index.keys())]
    if len(unknown):
        try:
            predictor.upsert_items(unknown.to_dict("records"))
        except ValueError as exc:
            return None, f"champion cannot score this catalogue ({exc})"
    return evaluate_dataset(predictor, dataset, splits=("test",))["test"], (
        f"champion re-scored on this dataset ({len(unknown)} new items embedded from their text)"
    )
