"""``hllm train``, ``hllm evaluate``, ``hllm embed-items``: the model jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hllm.cli.common import _guarded, _load_validated, _run_config, app, console, out


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Argument(help="Dataset folder (prepared Parquet, or any source: it is validated).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config [default: the demo's].")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
) -> None:
    """Train HLLM (or the SASRec baseline) with DeepSpeed; keeps the best validation weights in OUT/model."""
    from hllm.training.build import run_training

    def action():
        run = _run_config(config, overrides)
        return run_training(_load_validated(data), run, out_dir, resume=resume)

    result = _guarded(action)
    out.print(json.dumps({"best_epoch": result.best_epoch, "stopped": result.stopped, **result.best_metrics}, indent=2))
    out.print(f"model: {out_dir / 'model'}  curve: {out_dir / 'curve.png'}  metrics: {out_dir / 'metrics.jsonl'}")


@app.command("evaluate")
def evaluate_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Trained model folder (RUN/model).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset folder the model was trained on.")],
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write the metrics JSON here.")] = None,
) -> None:
    """Full-ranking Recall/NDCG@{5,10,50,200} on the validation and test targets, with the cold slice."""
    from hllm.evaluation.evaluate import evaluate_dataset
    from hllm.predictor import Predictor

    def action():
        dataset = _load_validated(data)
        return evaluate_dataset(Predictor.load(model_dir, dataset.items), dataset)

    metrics = _guarded(action)
    text = json.dumps(metrics, indent=2)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
    out.print(text)


@app.command("embed-items")
def embed_items_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Trained HLLM folder (RUN/model).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Dataset folder whose items to embed.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder (resumable).")],
    chunk_size: Annotated[int, typer.Option(help="Items per resumable part.")] = 512,
) -> None:
    """Write the item-vector table (item_id, vector) with the Item LLM; a rerun resumes where it stopped."""
    from rich.progress import Progress

    from hllm.embedding import embed_items

    with Progress(console=console) as bar:
        task = bar.add_task("embed items", total=None)

        def action():
            items = _load_validated(data).items
            return embed_items(
                model_dir,
                items,
                out_dir,
                chunk_size=chunk_size,
                progress=lambda d, t: bar.update(task, completed=d, total=t),
            )

        path = _guarded(action)
    out.print(f"wrote {path}")
