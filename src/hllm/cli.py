"""The ``hllm`` command line. Heavy libraries are imported inside the command that needs them."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from hllm import __version__

app = typer.Typer(help="HLLM: train, evaluate and serve a hierarchical LLM recommender.", no_args_is_help=True)
data_app = typer.Typer(help="Read, validate, synthesise and download datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
out = Console()
logger = logging.getLogger("hllm")
T = TypeVar("T")

# Exit codes: 1 = the data was read but the validation gate rejected it; 2 = unusable input or arguments.
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_GATE_REFUSED = 3  # hllm run: the promotion gate refused the trained model
EXIT_DRIFT = 4  # hllm drift check: the current window drifted from the reference
_TELEMETRY_OFF = {
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "FEAST_USAGE": "False",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}

Policy = Annotated[str, typer.Option(help="strict: any failed expectation fails; quarantine: set bad rows aside.")]
Fmt = Annotated[str, typer.Option("--format", "-f", help="auto | hllm | movielens | parquet")]
ConfigPath = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (a 'data:' section or flat).")]
Overrides = Annotated[list[str] | None, typer.Option("--set", help="key=value override, repeatable.")]


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Configure logging once and turn off third-party usage telemetry (unless the user set it)."""
    for key, value in _TELEMETRY_OFF.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_third_parties)


_NOISY = ("great_expectations", "urllib3", "filelock", "matplotlib", "DeepSpeed", "deepspeed")


def _quiet_third_parties(record: logging.LogRecord) -> bool:
    """Drop third-party INFO chatter; a filter on the handler, since libraries reset their own logger levels."""
    return record.levelno >= logging.WARNING or not record.name.startswith(_NOISY)


def _guarded(action: Callable[[], T]) -> T:
    """Run ``action``; turn data and config errors into a clear message and an exit code, never a traceback."""
    from hllm.data.schema import DataError
    from hllm.data.validation import ValidationFailed

    try:
        return action()
    except ValidationFailed as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_GATE_FAILED) from None
    except (DataError, ValueError, OSError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def _data_config(config: Path | None, overrides: list[str] | None):  # -> DataConfig
    from hllm.config import DataConfig, load_config

    return load_config(DataConfig, config, overrides)


def _default_report_dir(src: Path) -> Path:
    return Path("runs") / "validate" / (src.resolve().name or "dataset")


@data_app.command("validate")
def data_validate(
    path: Annotated[Path, typer.Argument(help="Dataset folder (any supported format).")],
    policy: Policy = "strict",
    fmt: Fmt = "auto",
    name: Annotated[str | None, typer.Option(help="Which dataset/<name>.csv in the official folder form.")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Where reports go \\[default: runs/validate/<name>].")] = None,
    config: ConfigPath = None,
    overrides: Overrides = None,
) -> None:
    """Run the validation gate on PATH; exit 1 when it fails, 2 when PATH cannot be read."""
    report = _guarded(
        lambda: _gate(path, fmt, name, policy, report_dir or _default_report_dir(path), config, overrides)
    )
    _print_report(report)


@data_app.command("prepare")
def data_prepare(
    src: Annotated[Path, typer.Argument(help="Source dataset folder.")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder for the Parquet tables.")],
    fmt: Fmt = "auto",
    name: Annotated[str | None, typer.Option(help="Which dataset/<name>.csv in the official folder form.")] = None,
    policy: Policy = "strict",
    config: ConfigPath = None,
    overrides: Overrides = None,
) -> None:
    """Read SRC, validate it and write canonical Parquet tables (+ validation reports) to --out."""

    def action():
        report = _gate(src, fmt, name, policy, out_dir / "validation", config, overrides)
        report.dataset.save(out_dir)
        return report

    report = _guarded(action)
    _print_report(report)
    out.print(f"wrote {out_dir / 'interactions.parquet'} and {out_dir / 'items.parquet'}")


def _gate(src, fmt, name, policy, report_dir, config, overrides):
    from hllm.data.readers import read_raw
    from hllm.data.schema import DataError
    from hllm.data.validation import POLICIES, require_pass, validate_tables

    if policy not in POLICIES:
        raise DataError(f"unknown policy '{policy}', expected one of {list(POLICIES)}")
    data_config = _data_config(config, overrides)
    raw = read_raw(src, fmt, name=name)
    console.print(f"read {len(raw.interactions):,} interactions and {len(raw.items):,} items ({raw.format})")
    report = validate_tables(raw, data_config, policy=policy, report_dir=report_dir)
    require_pass(report)
    return report


def _print_report(report) -> None:
    counts = report.counts
    for table in ("interactions", "items"):
        c = counts[table]
        out.print(f"{table}: {c['accepted']:,} accepted, {c['rejected']:,} rejected of {c['read']:,}")
    for check in report.failed_checks:
        out.print(escape(f"  quarantined {check.unexpected_count} row(s): [{check.column}] {check.description}"))
    if report.report_dir:
        out.print(f"summary: {Path(report.report_dir) / 'summary.json'}")
        out.print(f"data docs: {Path(report.report_dir) / 'data_docs' / 'index.html'}")
    out.print(f"[green]validation passed[/green] ({report.policy}); fingerprint {report.dataset.fingerprint()}")


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same dataset.")] = 0,
    users: Annotated[int | None, typer.Option(help="Number of users.")] = None,
    items: Annotated[int | None, typer.Option(help="Number of items.")] = None,
    as_parquet: Annotated[
        bool, typer.Option("--parquet", help="Write Parquet instead of the HLLM CSV layout.")
    ] = False,
) -> None:
    """Write the deterministic synthetic demo dataset (HLLM CSV layout by default)."""
    from hllm.data.synth import SynthConfig, generate

    def action():
        kwargs = {"seed": seed}
        if users is not None:
            kwargs["n_users"] = users
        if items is not None:
            kwargs["n_items"] = items
        dataset = generate(SynthConfig(**kwargs))
        return dataset.save(out_dir) if as_parquet else dataset.save_csv(out_dir), dataset

    folder, dataset = _guarded(action)
    out.print(
        f"wrote {dataset.num_users:,} users, {dataset.num_items:,} items, "
        f"{len(dataset.interactions):,} interactions to {folder}"
    )


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="movielens-1m | movielens-25m | movielens-100k")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Download folder.")] = Path("data/raw"),
) -> None:
    """Download a public dataset from its publisher, verify its checksum and unpack it."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from hllm.data.download import download_dataset

    with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(), console=console) as bar:
        task = bar.add_task(name, total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        folder = _guarded(lambda: download_dataset(name, out_dir, progress=progress))
    out.print(f"unpacked to {folder}; next: hllm data prepare {folder} --out data/{name}")


def _load_validated(path: Path):
    """A prepared folder (``hllm data prepare``) as is; any other source through the strict gate."""
    from hllm.data.schema import METADATA_FILE, load_dataset

    if (path / METADATA_FILE).is_file():
        return load_dataset(path)
    return _gate(path, "auto", None, "strict", _default_report_dir(path), None, None).dataset


@app.command("train")
def train_cmd(
    data: Annotated[Path, typer.Argument(help="Dataset folder (prepared Parquet, or any source: it is validated).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Run folder.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML with train/hllm/sasrec sections.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
) -> None:
    """Train HLLM (or the SASRec baseline) with DeepSpeed; keeps the best validation weights in OUT/model."""
    from hllm.training.build import load_run_config, run_training

    def action():
        run = load_run_config(config, overrides)
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


pipeline_app = typer.Typer(help="Compile and submit the kfp training pipeline.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
Image = Annotated[str | None, typer.Option(help="Component base image [default: $HLLM_IMAGE or the project's].")]
GpusPerNode = Annotated[int, typer.Option(help="GPUs the train step requests per node (0 = CPU).")]
EmbedGpus = Annotated[int, typer.Option(help="GPUs the embed-items step requests.")]


def _settings(image: str | None, gpus_per_node: int, embed_gpus: int):
    from pipelines.training import Settings

    return Settings(**({"image": image} if image else {}), gpus_per_node=gpus_per_node, embed_gpus=embed_gpus)


def _run_config_yaml(config: Path | None, overrides: list[str] | None) -> str:
    from importlib.resources import files

    from hllm.training.build import load_run_config

    return _guarded(lambda: load_run_config(config or files("hllm") / "configs" / "demo.yaml", overrides)).to_yaml()


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
    from pipelines.local import main_job
    from pipelines.progress import Reporter

    _guarded(lambda: GateThresholds.from_json(thresholds))  # fail now, not after training
    if policy not in POLICIES:
        console.print(f"[red]error:[/red] unknown policy '{policy}', expected one of {list(POLICIES)}")
        raise typer.Exit(EXIT_BAD_INPUT)
    started = time.perf_counter()
    run_config = _run_config_yaml(config, overrides)
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
        run_config=run_config,
        feast_home=str((feast_home or out_dir / "feast").resolve()),
        policy=policy,
        gate_thresholds=thresholds,
        model_name=model_name,
    )
    codes = {"registered": 0, "refused": EXIT_GATE_REFUSED, "rejected": EXIT_GATE_FAILED}
    raise typer.Exit(codes.get(outcome, EXIT_BAD_INPUT))


@app.command("serve")
def serve(
    model: Annotated[str, typer.Option(help="BentoML model tag [default: the latest registered].")] = "hllm:latest",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 3000,
    feast_home: Annotated[
        Path | None, typer.Option(help="Feast data [default: the one the model was trained with].")
    ] = None,
    request_log: Annotated[Path | None, typer.Option(help="JSONL request log for drift checks.")] = Path(
        "runs/requests.jsonl"
    ),
    index: Annotated[str, typer.Option(help="auto | exact | faiss")] = "auto",
) -> None:
    """Serve a registered model over HTTP (BentoML): recommend, similar_items, upsert_items, events, /metrics."""
    import bentoml

    try:
        saved = bentoml.models.get(model)
    except bentoml.exceptions.NotFound:
        store = os.environ.get("BENTOML_HOME", "~/bentoml")
        console.print(f"[red]error:[/red] no model '{model}' in the BentoML store ({store}); run `hllm run` first")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    try:  # fail here, with the cause, rather than in a server that retries its worker forever
        from hllm.predictor import Predictor

        Predictor.load(saved.path)
    except Exception as exc:
        console.print(f"[red]error:[/red] cannot load model '{saved.tag}' ({saved.path}): {escape(str(exc))}")
        raise typer.Exit(EXIT_BAD_INPUT) from None
    home = feast_home or saved.info.metadata.get("feast_home") or ""
    env = {**os.environ, "HLLM_MODEL": str(saved.tag), "HLLM_FEAST_HOME": str(home), "HLLM_INDEX": index}
    if request_log:
        env["HLLM_REQUEST_LOG"] = str(request_log.resolve())
    console.print(f"serving {saved.tag} on http://{host}:{port} (docs: /docs, health: /readyz, metrics: /metrics)")
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:HLLMService",
        "--host",
        host,
        "--port",
        str(port),
    ]
    os.execvpe(command[0], command, env)  # the server becomes this process: signals reach it (PID 1 in a pod)


drift_app = typer.Typer(help="Data drift checks and drift-triggered retraining.", no_args_is_help=True)
app.add_typer(drift_app, name="drift")


@drift_app.command("check")
def drift_check(
    reference: Annotated[Path, typer.Option(help="Reference window: the training dataset folder.")],
    current: Annotated[Path, typer.Option(help="Current window: a dataset folder or a request log (.jsonl).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where drift.html and drift.json go.")] = Path(
        "runs/drift"
    ),
    model: Annotated[str | None, typer.Option(help="BentoML model tag whose item vectors give text drift.")] = None,
    threshold: Annotated[float, typer.Option(help="Per-signal drift score threshold.")] = 0.1,
    min_drifted: Annotated[int, typer.Option(help="Signals that must drift to call the window drifted.")] = 2,
    retrain: Annotated[bool, typer.Option(help="Start retraining when drift is detected.")] = False,
    retrain_src: Annotated[Path | None, typer.Option(help="Data to retrain on [default: --current].")] = None,
    state: Annotated[Path, typer.Option(help="Trigger state (cooldown, in-flight run).")] = Path(
        "runs/retrain_state.json"
    ),
    cooldown_hours: Annotated[float, typer.Option(help="Minimum time between two retraining starts.")] = 6.0,
    host: Annotated[str | None, typer.Option(help="KFP endpoint: retrain on the cluster instead of locally.")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", help="Run config overrides for retraining.")] = None,
    fail_on_drift: Annotated[bool, typer.Option(help="Exit 4 when drift is detected (off for CronJobs).")] = True,
) -> None:
    """Compare the current window with the reference; exit 4 when drift is detected (after any retraining start)."""
    from hllm.drift import DriftConfig, RetrainTrigger, check_drift, interaction_events, request_events
    from hllm.monitoring import read_log

    def action():
        ref = _load_validated(reference)
        if current.suffix == ".jsonl":
            cur_events = request_events(read_log(current))
        else:
            cur_events = interaction_events(_load_validated(current).interactions)
        vectors = _item_vectors(model) if model else None
        config = DriftConfig(threshold=threshold, min_drifted=min_drifted)
        return check_drift(interaction_events(ref.interactions), cur_events, ref.items, out_dir, config, vectors)

    result = _guarded(action)
    summary = {"drifted": result.drifted, "signals": result.signals, "report": result.report_html}
    if retrain:
        src = retrain_src or current
        if src.suffix == ".jsonl":
            console.print("[red]error:[/red] --retrain needs --retrain-src DATA when --current is a request log")
            raise typer.Exit(EXIT_BAD_INPUT)
        trigger = RetrainTrigger(state, _launcher(src, host, overrides, state.parent), cooldown_hours * 3600)
        summary["retrain"] = trigger.maybe_retrain(result.drifted)
    out.print(json.dumps(summary, indent=2))
    if result.drifted and fail_on_drift:
        raise typer.Exit(EXIT_DRIFT)


def _item_vectors(tag: str) -> dict:
    import bentoml

    from hllm.predictor import Predictor

    try:
        saved = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ValueError(f"--model: no model '{tag}' in the BentoML store") from None
    predictor = Predictor.load(saved.path)
    return dict(zip(predictor.item_ids, predictor.raw_vectors[1:].numpy(), strict=True))


def _launcher(src: Path, host: str | None, overrides: list[str] | None, work: Path):
    from hllm.drift import KfpLauncher, LocalLauncher

    sets = [arg for item in overrides or [] for arg in ("--set", item)]
    if host is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        command = [sys.executable, "-m", "hllm.cli", "run", "--src", str(src.resolve()), *sets]
        command += ["--out", str((work / f"retrain-{stamp}").resolve())]
        return LocalLauncher(command, work / f"retrain-{stamp}.log")
    import kfp

    from pipelines.cluster import submit

    arguments = {"data_uri": str(src), "run_config": _run_config_yaml(None, overrides)}
    return KfpLauncher(kfp.Client(host=host), lambda client: submit(host, arguments, client=client))


deploy_app = typer.Typer(help="Render Kubernetes manifests for rollouts.", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")


@deploy_app.command("canary")
def deploy_canary(
    image: Annotated[str, typer.Option(help="The canary image, with an explicit tag or digest.")],
    weight: Annotated[int, typer.Option(help="Percent of traffic to the canary (0-100).")] = 10,
    model: Annotated[str | None, typer.Option(help="BentoML model tag the canary serves.")] = None,
    stable_model: Annotated[str | None, typer.Option(help="BentoML model tag the stable version serves.")] = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
) -> None:
    """Render the canary overlay (stable + canary Deployments, Istio traffic split), validated offline."""
    from hllm.rollout import render_canary

    text = _guarded(lambda: render_canary(image, weight, model=model, stable_model=stable_model))
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {output} (canary {image} at {weight}%); apply with: kubectl apply -f {output}")
    else:
        out.print(text, end="", highlight=False, markup=False)


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
    from pipelines.cluster import compile_pipeline

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
    from pipelines.cluster import submit

    arguments = {
        "data_uri": data_uri,
        "run_config": _run_config_yaml(config, overrides),
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


if __name__ == "__main__":  # pragma: no cover
    app()
