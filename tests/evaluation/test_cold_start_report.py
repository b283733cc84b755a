"""The cold-start slice of the popularity baseline, and the report's model-vs-popularity cold-start section."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from hllm.data.splits import leave_one_out
from hllm.evaluation.baselines import popularity_metrics
from hllm.evaluation.report import write_report
from hllm.training.data import ItemVocab


def test_popularity_metrics_include_the_cold_slice() -> None:
    # 16 users; every item w0..w15 is in some training sequence, "new" is only ever a test target (3 users).
    rows = []
    for u in range(16):
        sequence = [f"w{(u + k) % 16}" for k in range(4)]
        sequence[-1] = "new" if u < 3 else sequence[-1]
        rows += [(f"u{u}", item, 100 * u + t) for t, item in enumerate(sequence)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    items = pd.DataFrame({"item_id": [*(f"w{i}" for i in range(16)), "new"]})
    metrics = popularity_metrics(leave_one_out(interactions), ItemVocab.from_items(items))
    assert metrics["count"] == 16 and metrics["cold/count"] == 3
    # "new" has no training count: the 13 warm items outside each 3-item history all rank above it.
    assert metrics["cold/recall@10"] == 0.0 and metrics["cold/ndcg@10"] == 0.0


def _metrics(model_cold: float, popularity_cold: float, cold_count: int) -> dict:
    def values(overall: float, cold: float) -> dict:
        nan = math.nan if cold_count == 0 else None
        return {
            "recall@10": overall,
            "ndcg@10": overall / 2,
            "count": 600,
            "cold/recall@10": nan or cold,
            "cold/ndcg@10": nan or cold / 2,
            "cold/count": cold_count,
        }

    return {
        "valid": values(0.5, 0.0),
        "test": values(0.5, model_cold),
        "popularity_test": values(0.08, popularity_cold),
    }


def _section(page: str) -> str:
    return page.split("<h2>Cold start: model vs popularity</h2>", 1)[1].split("<h2>", 1)[0]


def test_report_shows_model_vs_popularity_on_the_cold_slice(tmp_path: Path) -> None:
    page = write_report(_metrics(0.3125, 0.0, 96), tmp_path / "report").read_text()
    section = _section(page)
    assert "96 of 600 test targets are cold-start items" in section
    rows = dict(re.findall(r"<tr><td>([^<]+)</td>(.*?)</tr>", section))
    cells = {name: re.findall(r"<td>([^<]*)</td>", rest) for name, rest in rows.items()}
    assert cells["model, cold-start targets"] == ["0.3125", "0.1562", "96"]
    assert cells["popularity, cold-start targets"] == ["0.0000", "0.0000", "96"]
    assert cells["model, all test targets"][:2] == ["0.5000", "0.2500"]
    assert cells["popularity, all test targets"][:2] == ["0.0800", "0.0400"]


def test_report_says_when_there_is_no_cold_slice(tmp_path: Path) -> None:
    section = _section(write_report(_metrics(0.0, 0.0, 0), tmp_path / "report").read_text())
    assert "None of the 600 test targets is a cold-start item" in section and "<table>" not in section
