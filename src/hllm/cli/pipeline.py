"""``hllm run`` (the whole pipeline locally: the main job) and ``hllm pipeline compile|submit``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

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
    ctx: typer.Context,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")] = Path("runs/demo"),
    seed: Annotated[int, typer.Option(help="Seed of the demo dataset.")] = 0,
    src: Annotated[Path | None, typer.Option(help="Use this dataset folder instead of the demo dataset.")] = None,
    policy: Policy = "strict",
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Run config [default: the demo's].")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")] = None,
    thresholds: Annotated[str, typer.Option(help="Gate thresholds as JSON (see hllm.gating).")] = "{}",
    feast_home: Annotated[Path | None, typer.Option(help="Feast data folder [default: OUT/feast].")] = None,
    model_name: Annotated[str, typer.Option(help="BentoML model name to register under.")] = "hllm",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Stream every step's output (also: hllm --verbose run).")
    ] = False,
) -> None:
    """Run the whole training pipeline locally (kfp's local runner): the main job.

    validate -> Feast sync -> embed items -> train -> evaluate -> gate -> register (BentoML store, honouring
    $BENTOML_HOME). Prints one line per step and a closing table; each step's full output goes to
    OUT/logs/<step>.log, the summary to OUT/summary.json. Exit 0 when a model was registered, 1 when the data
    failed validation, 3 when the gate refused the model, 2 for unusable input or a failed step.
    """
    from hllm.data.validation import POLICIES
    from hllm.gating import GateThresholds
    from hllm_pipelines.local import main_job
    from hllm_pipelines.progress import Reporter

    _guarded(lambda: GateThresholds.from_json(thresholds))  # fail now, not after training
    configured = _pipeline_arguments(config, overrides)  # the same: a bad config fails before any work
    if policy not in POLICIES:
        console.print(f"[red]error:[/red] unknown policy '{policy}', expected one of {list(POLICIES)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    started = time.perf_counter()
    verbose = verbose or bool(ctx.find_root().params.get("verbose"))  # `hllm -v run` or `hllm run -v`
    stream = sys.stdout  # kfp's output replaces sys.stdout during the run; the reporter keeps the real one
    reporter = Reporter(stream, terminal=stream.isatty(), progress=not verbose)
    if src is None:
        from hllm.data.synth import SynthConfig, generate

        src = out_dir / "raw"
        generate(SynthConfig(seed=seed)).save_csv(src)
        reporter.line(f"synthetic demo dataset (seed {seed}) -> {src}")
    reporter.line(f"pipeline run under {out_dir}; each step's output: {out_dir / 'logs'}/<step>.log")
    outcome = main_job(
        out_dir,
        reporter,
        echo=stream if verbose else None,
        started=started,
        data_uri=str(src.resolve()),
        **configured,
        feast_home=str((feast_home or out_dir / "feast").resolve()),
        policy=policy,
        gate_thresholds=thresholds,
        model_name=model_name,
    )
    codes = {"registered": 0, "refused": EXIT_GATE_REFUSED, "rejected": EXIT_GATE_FAILED}
    raise typer.Exit(codes.get(outcome, EXIT_BAD_INPUT))


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
