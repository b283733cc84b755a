"""Evaluate a trained run against the popularity baseline and write one self-contained HTML report.

The report holds the model vs popularity on the cold-start slice (test targets no training sequence holds), the
metric table (validation and test, every K, with the cold-start slice), a model-vs-baseline chart and the
training curves (images inlined as base64, so the file can be moved or served as one artifact).
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from pathlib import Path

from hllm.data.schema import Dataset
from hllm.evaluation.ranking import DEFAULT_KS

logger = logging.getLogger(__name__)


def evaluate_run(model_dir: str | Path, dataset: Dataset) -> dict[str, dict[str, float]]:
    """``{"valid", "test"}`` metrics of the model in ``model_dir`` and ``"popularity_test"`` on the same split."""
    from hllm.data.splits import leave_one_out
    from hllm.evaluation.baselines import popularity_metrics
    from hllm.evaluation.evaluate import evaluate_dataset
    from hllm.predictor import Predictor
    from hllm.training.data import ItemVocab

    metrics = evaluate_dataset(Predictor.load(model_dir, dataset.items), dataset)
    split = leave_one_out(dataset.interactions)
    metrics["popularity_test"] = popularity_metrics(split, ItemVocab.from_items(dataset.items))
    return metrics


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _comparison_chart(metrics: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [f"{kind}@{k}" for kind in ("recall", "ndcg") for k in DEFAULT_KS]
    fig, ax = plt.subplots(figsize=(9, 3.2))
    width = 0.4
    xs = range(len(names))
    ax.bar([x - width / 2 for x in xs], [metrics["test"].get(n, 0) for n in names], width, label="model (test)")
    ax.bar(
        [x + width / 2 for x in xs], [metrics["popularity_test"].get(n, 0) for n in names], width, label="popularity"
    )
    ax.set_xticks(list(xs), names, rotation=30)
    ax.set(title="model vs popularity baseline, test split (full ranking, history masked)")
    ax.legend()
    fig.tight_layout()
    return _png(fig)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(metrics: dict) -> str:
    columns = [f"{kind}@{k}" for kind in ("recall", "ndcg") for k in DEFAULT_KS]
    rows = [
        ("model, validation", metrics["valid"], ""),
        ("model, test", metrics["test"], ""),
        ("popularity, test", metrics["popularity_test"], ""),
        ("model, test, cold-start targets", metrics["test"], "cold/"),
        ("popularity, test, cold-start targets", metrics["popularity_test"], "cold/"),
        ("model, validation, cold-start targets", metrics["valid"], "cold/"),
    ]
    head = "".join(f"<th>{c}</th>" for c in [*columns, "count"])
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_fmt(values.get(prefix + c))}</td>" for c in [*columns, "count"])
        + "</tr>"
        for name, values, prefix in rows
    )
    return f"<table><tr><th></th>{head}</tr>{body}</table>"


def _cold_start(metrics: dict) -> str:
    """Model vs popularity on the cold-start test targets, beside the same metrics on every test target."""
    model, popularity = metrics["test"], metrics["popularity_test"]
    count, total = model.get("cold/count", 0), model.get("count", 0)
    if not count:
        return f"<p>None of the {total} test targets is a cold-start item: there is no cold-start slice.</p>"
    columns = ["recall@10", "ndcg@10", "count"]
    rows = [
        ("model, cold-start targets", model, "cold/"),
        ("popularity, cold-start targets", popularity, "cold/"),
        ("model, all test targets", model, ""),
        ("popularity, all test targets", popularity, ""),
    ]
    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>"
        + "".join(f"<td>{_fmt(values.get(prefix + c))}</td>" for c in columns)
        + "</tr>"
        for name, values, prefix in rows
    )
    return (
        f"<p>{count} of {total} test targets are cold-start items: they occur in no training sequence, so only "
        "their text is known (popularity, and any ID-only model, cannot rank them).</p>"
        f"<table><tr><th></th>{head}</tr>{body}</table>"
    )


def write_report(metrics: dict, out_html: str | Path, *, curve_png: str | Path | None = None, title: str = "") -> Path:
    """Write the HTML report of ``metrics`` (as returned by `evaluate_run`) to ``out_html``."""
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>HLLM evaluation</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}"
        "</style></head><body>",
        f"<h1>HLLM evaluation {html.escape(title)}</h1>",
        "<p>Leave-one-out, full ranking over the whole catalogue, the user's history masked. Cold-start targets: "
        "items that never occur in any training sequence (only their text is known).</p>",
        "<h2>Cold start: model vs popularity</h2>",
        _cold_start(metrics),
        "<h2>Metrics</h2>",
        _table(metrics),
        "<h2>Model vs baseline</h2>",
        f"<img alt='model vs popularity' src='data:image/png;base64,{_comparison_chart(metrics)}'>",
    ]
    curve = Path(curve_png) if curve_png else None
    if curve is not None and curve.is_file():
        encoded = base64.b64encode(curve.read_bytes()).decode()
        parts += ["<h2>Training curves</h2>", f"<img alt='training curves' src='data:image/png;base64,{encoded}'>"]
    parts += ["<h2>Raw metrics</h2>", f"<pre>{html.escape(json.dumps(metrics, indent=2))}</pre></body></html>"]
    out.write_text("\n".join(parts))
    logger.info("wrote evaluation report %s", out)
    return out
