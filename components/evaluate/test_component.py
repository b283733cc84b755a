from __future__ import annotations

import json
from pathlib import Path


def test_metrics_report_and_scores(scores) -> None:
    values = json.loads(Path(scores.path).read_text())
    assert set(values) == {"valid", "test", "popularity_test"} and values["test"]["count"] == 80
    folder = Path(scores.path).parent
    report = (folder / "report.html").read_text()
    assert "Training curves" in report and "cold-start" in report and "data:image/png;base64" in report


def test_metric_names_are_kfp_safe(prepared, trained, tmp_path: Path) -> None:
    from kfp import dsl
    from testdata import artifact

    from hllm_components.evaluate.component import component

    model, run, _ = trained
    metrics = artifact(dsl.Metrics, tmp_path / "metrics")
    component.python_func(
        dataset=prepared,
        model=model,
        run=run,
        metrics=metrics,
        report=artifact(dsl.HTML, tmp_path / "r.html"),
        scores=artifact(dsl.Artifact, tmp_path / "s.json"),
    )
    assert "test_ndcg_at_10" in metrics.metadata and "popularity_test_recall_at_10" in metrics.metadata
    assert all("@" not in k and "/" not in k for k in metrics.metadata)
