"""``hllm run`` (the whole pipeline locally: the main job) and ``hllm pipeline compile|submit``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from hllm.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_GATE_REFUSED,
    Policy,
    _guarded,
    _run_config,
    app,
    console,
    out,
)

pipeline_app = typer.Typer(help="Compile and submit the kfp training pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
Image = Annotated[str | None, typer.Option(help="Component base image [default: $HLLM_IMAGE or the project's].")]
GpusPerNode = Annotated[int, typer.Option(help="GPUs the train step requests per node (0 = CPU).")]
EmbedGpus = Annotated[int, typer.Option(help="GPUs the embed-items step requests.")]


def _settings(image: str | None, gpus_per_node: int, embed_gpus: int):
    from hllm_pipelines.training import Settings

    return Settings(**({"image": image} if image else {}), gpus_per_node=gpus_per_node, embed_gpus=embed_gpus)


def _pipeline_arguments(config: Path | None, overrides: list[str] | None) -> dict:
    """The pipeline parameters a run config decides: the config itself, the data gate, the stored history length."""
    run = _guarded(lambda: _run_config(config, overrides))
    return {
        "run_config": run.to_yaml(),
        "data_overrides": [f"{k}={json.dumps(v)}" for k, v in run.to_dict()["data"].items()],
        "history_length": run.train.max_seq_len,
    }


@app.command("run")
def run(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of the demo dataset.")] = 0,
    src: Annotated[Path | None, typer.Option(help="Use this dataset folder instead of the demo dataset.")] = None,
    policy: Policy = "strict",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config [default: the demo's].")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")] = None,
    thresholds: Annotated[str, typer.Option(help="Gate thresholds as JSON (see hllm.gating).")] = "{}",
    feast_home: Annotated[Path | None, typer.Option(help="Feast data folder [default: OUT/feast].")] = None,
    model_name: Annotated[str, typer.Option(help="BentoML model name to register under.")] = "hllm",
) -> None:
    """Run the whole training pipeline locally (kfp's local runner): the main job.

    validate -> Feast sync -> embed items -> train -> evaluate -> gate -> register (BentoML store, honouring
    $BENTOML_HOME). Exit 0 when a model was registered, 1 when the data failed validation, 3 when the gate
    refused the model, 2 for unusable input or a failed step.
    """
    from hllm.data.validation import POLICIES
    from hllm.gating import GateThresholds
    from hllm_pipelines.local import run_local

    _guarded(lambda: GateThresholds.from_json(thresholds))  # fail now, not after training
    configured = _pipeline_arguments(config, overrides)  # the same: a bad config fails before any work
    if policy not in POLICIES:
        console.print(f"[red]error:[/red] unknown policy '{policy}', expected one of {list(POLICIES)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    started = time.perf_counter()
    if src is None:
        from hllm.data.synth import SynthConfig, generate

        src = out_dir / "raw"
        generate(SynthConfig(seed=seed)).save_csv(src)
        console.print(f"synthetic demo dataset (seed {seed}) -> {src}")
    arguments = {
        "data_uri": str(src.resolve()),
        **configured,
        "feast_home": str((feast_home or out_dir / "feast").resolve()),
        "policy": policy,
        "gate_thresholds": thresholds,
        "model_name": model_name,
    }
    try:
        result = run_local(out_dir, **arguments)
    except RuntimeError as exc:
        _report_failed_run(out_dir, exc)
    summary = {
        "elapsed_s": round(time.perf_counter() - started, 1),
        "run": str(result.run_dir),
        "artifacts": result.artifacts,
        "feast_online_store": arguments["feast_home"],
        "gate": {"passed": result.gate.get("passed"), "reasons": result.gate.get("reasons")},
        "registered": result.registered,
    }
    for name in ("test", "popularity_test"):
        if name in result.metrics:
            summary[name] = {k: round(result.metrics[name][k], 4) for k in ("recall@10", "ndcg@10", "recall@200")}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    out.print(json.dumps(summary, indent=2))
    console.print(f"summary: {out_dir / 'summary.json'}")
    if not result.registered:
        console.print("[yellow]the gate refused the model: nothing was registered[/yellow]")
        raise typer.Exit(EXIT_GATE_REFUSED)
    console.print(f"[green]registered {result.registered}[/green]; report: {result.artifacts.get('evaluate.report')}")


def _report_failed_run(out_dir: Path, exc: RuntimeError):
    import re

    from hllm_pipelines.local import latest_run

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    console.print(f"[red]error:[/red] {escape(text)}", highlight=False)
    run_dir = latest_run(out_dir.resolve() / "pipeline_root")
    failed_validation = "validate-data" in text
    if run_dir is not None:
        console.print(f"artifacts so far: {run_dir}")
        docs = run_dir / "validate-data" / "data_docs"
        if failed_validation and docs.is_file():
            console.print(f"data docs: {docs}")
    raise typer.Exit(EXIT_GATE_FAILED if failed_validation else EXIT_BAD_INPUT)


@pipeline_app.command("compile")
def pipeline_compile(
    output: Annotated[Path, typer.Option("--out", "-o", help="IR YAML path.")] = Path("hllm_training.yaml"),
    image: Image = None,
    gpus_per_node: GpusPerNode = 0,
    embed_gpus: EmbedGpus = 0,
    which: Annotated[str, typer.Option("--pipeline", help="training | retraining (drift check -> training).")] = (
        "training"
    ),
) -> None:
    """Compile the training (or drift-triggered retraining) pipeline to kfp IR YAML."""
    from hllm_pipelines.cluster import compile_pipeline

    path = _guarded(lambda: compile_pipeline(output, _settings(image, gpus_per_node, embed_gpus), which))
    out.print(f"wrote {path}")


@pipeline_app.command("submit")
def pipeline_submit(
    host: Annotated[str, typer.Option(help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow:80.")],
    data_uri: Annotated[str, typer.Option(help="Dataset location as the pipeline pods see it.")],
    feast_home: Annotated[str, typer.Option(help="Feast data folder as the pods see it.")] = "/data/feast",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config [default: the demo's].")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")] = None,
    thresholds: Annotated[str, typer.Option(help="Gate thresholds as JSON.")] = "{}",
    num_nodes: Annotated[int, typer.Option(help="Training nodes (> 1 launches a PyTorchJob).")] = 1,
    shared_dir: Annotated[str, typer.Option(help="Shared volume mount path (multi-node).")] = "",
    shared_pvc: Annotated[str, typer.Option(help="Shared ReadWriteMany PVC name (multi-node).")] = "",
    experiment: Annotated[str, typer.Option(help="KFP experiment.")] = "hllm",
    cron: Annotated[str | None, typer.Option(help="Create a recurring run with this 6-field cron.")] = None,
    image: Image = None,
    gpus_per_node: GpusPerNode = 0,
    embed_gpus: EmbedGpus = 0,
) -> None:
    """Upload the pipeline to a Kubeflow Pipelines endpoint and start a run (or a recurring run)."""
    from hllm_pipelines.cluster import submit

    arguments = {
        "data_uri": data_uri,
        **_pipeline_arguments(config, overrides),
        "feast_home": feast_home,
        "gate_thresholds": thresholds,
        "num_nodes": num_nodes,
        "shared_dir": shared_dir,
        "shared_pvc": shared_pvc,
    }
    result = submit(
        host, arguments, settings=_settings(image, gpus_per_node, embed_gpus), experiment=experiment, cron=cron
    )
    out.print(json.dumps(result, indent=2))
