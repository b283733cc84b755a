"""``hllm drift check`` / ``hllm drift ui``: Evidently drift checks, their dashboard, drift-triggered retraining."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from hllm.cli.common import EXIT_BAD_INPUT, EXIT_DRIFT, _guarded, _load_validated, app, console, out
from hllm.cli.pipeline import _pipeline_arguments

drift_app = typer.Typer(help="Data drift checks and drift-triggered retraining.", no_args_is_help=True)
app.add_typer(drift_app, name="drift")


@drift_app.command("check")
def drift_check(
    reference: Annotated[Path, typer.Option(help="Reference window: the training dataset folder.")],
    current: Annotated[Path, typer.Option(help="Current window: a dataset folder or a request log (.jsonl).")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Where drift.html and drift.json go.")] = Path(
        "runs/drift"
    ),
    workspace: Annotated[
        Path | None, typer.Option(help="Evidently workspace the check is logged to [default: OUT/workspace].")
    ] = None,
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
    thresholds: Annotated[str, typer.Option(help="Gate thresholds (JSON, see hllm.gating) for retraining.")] = "{}",
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
        reference_events = interaction_events(ref.interactions)
        return check_drift(reference_events, cur_events, ref.items, out_dir, config, vectors, workspace)

    result = _guarded(action)
    summary = {"drifted": result.drifted, "signals": result.signals, "report": result.report_html}
    summary["workspace"] = result.workspace
    if retrain:
        src = retrain_src or current
        if src.suffix == ".jsonl":
            console.print("[red]error:[/red] --retrain needs --retrain-src DATA when --current is a request log")
            raise typer.Exit(EXIT_BAD_INPUT)
        launcher = _launcher(src, host, overrides, state.parent, thresholds)
        trigger = RetrainTrigger(state, launcher, cooldown_hours * 3600)
        summary["retrain"] = trigger.maybe_retrain(result.drifted)
    out.print(json.dumps(summary, indent=2), soft_wrap=True, markup=False, highlight=False)  # JSON, unwrapped
    if result.drifted and fail_on_drift:
        raise typer.Exit(EXIT_DRIFT)


@drift_app.command("ui")
def drift_ui(
    workspace: Annotated[Path, typer.Option(help="Evidently workspace of `hllm drift check`.")] = Path(
        "runs/drift/workspace"
    ),
    host: Annotated[str, typer.Option(help="Interface to listen on (the UI has no login: keep it loopback).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Serve Evidently's UI over the drift workspace: each signal's drift score per check (runs in the foreground)."""
    from hllm.drift import PROJECT

    if not workspace.is_dir():
        console.print(f"[red]error:[/red] --workspace: no folder {workspace}; run `hllm drift check` first")
        raise typer.Exit(EXIT_BAD_INPUT)
    from evidently.ui.workspace import Workspace

    projects = Workspace(str(workspace)).search_project(PROJECT)
    path = f"/projects/{projects[0].id}" if projects else ""
    console.print(f"drift dashboard on http://{host}:{port}{path} (workspace {workspace})")
    command = [sys.executable, "-m", "evidently.cli", "ui", "--workspace", str(workspace)]
    command += ["--host", host, "--port", str(port)]
    env = {**os.environ, "DO_NOT_TRACK": "1"}  # Evidently's usage telemetry stays off
    os.execvpe(command[0], command, env)  # the server becomes this process: Ctrl-C and signals reach it


def _item_vectors(tag: str) -> dict:
    import bentoml

    from hllm.predictor import Predictor

    try:
        saved = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ValueError(f"--model: no model '{tag}' in the BentoML store") from None
    predictor = Predictor.load(saved.path)
    return dict(zip(predictor.item_ids, predictor.raw_vectors[1:].numpy(), strict=True))


def _launcher(src: Path, host: str | None, overrides: list[str] | None, work: Path, thresholds: str = "{}"):
    from hllm.drift import KfpLauncher, LocalLauncher
    from hllm.gating import GateThresholds

    _guarded(lambda: GateThresholds.from_json(thresholds))  # a bad --thresholds fails here, not in the run

    sets = [arg for item in overrides or [] for arg in ("--set", item)]
    if host is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        command = [sys.executable, "-m", "hllm.cli", "run", "--src", str(src.resolve()), *sets]
        command += ["--thresholds", thresholds]
        command += ["--out", str((work / f"retrain-{stamp}").resolve())]
        return LocalLauncher(command, work / f"retrain-{stamp}.log")
    import kfp

    from hllm_pipelines.cluster import submit

    arguments = {"data_uri": str(src), **_pipeline_arguments(None, overrides), "gate_thresholds": thresholds}
    return KfpLauncher(kfp.Client(host=host), lambda client: submit(host, arguments, client=client))
