"""evaluate: full-ranking metrics of the trained model vs popularity, as kfp Metrics and an HTML report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output

from .. import DEFAULT_IMAGE  # the package constant (a relative import: no library is loaded here)


def evaluate(
    dataset: Input[Dataset],
    model: Input[Model],
    run: Input[Artifact],
    metrics: Output[Metrics],
    report: Output[HTML],
    scores: Output[Artifact],
):
    import json
    import math
    from pathlib import Path

    from hllm.data.schema import load_dataset
    from hllm.evaluation.report import evaluate_run, write_report

    if not report.uri.endswith(".html"):  # kfp names the file after the output: make it open as a web page
        report.uri += ".html"
    values = evaluate_run(model.path, load_dataset(dataset.path))
    write_report(values, report.path, curve_png=Path(run.path) / "curve.png", title=model.metadata.get("model", ""))
    with open(scores.path, "w") as f:
        json.dump(values, f, indent=2)
    for split in ("valid", "test", "popularity_test"):
        for name, value in values[split].items():
            if name != "count" and not math.isnan(value):
                metrics.log_metric(f"{split}_{name}".replace("@", "_at_").replace("/", "_"), round(float(value), 6))


def make(image: str = DEFAULT_IMAGE):
    return dsl.component(evaluate, base_image=image)


component = make()
