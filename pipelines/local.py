"""Run the training pipeline on this machine with kfp's local SubprocessRunner, then summarise what it made.

Every step runs as a subprocess of this Python environment (``use_venv=False``: nothing is pip-installed), so
the run needs the project installed, no Docker and no cluster. Artifacts land under ``<out>/pipeline_root``.
With a `Reporter`, kfp's output (its banners and every step's streamed logs) goes to ``<out>/logs/<task>.log``
instead of the terminal and the reporter prints one line per step (`pipelines.progress`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hllm_pipelines.progress import Reporter
from hllm_pipelines.steplogs import StepLogs
from hllm_pipelines.training import PIPELINE_NAME, Settings, build

logger = logging.getLogger(__name__)
LOGS = "logs"


@dataclass
class LocalRun:
    """Where a local run put things and what the gate decided."""

    run_dir: Path
    artifacts: dict[str, str] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)
    registered: str | None = None


class StepFailed(RuntimeError):
    """A step of a local run failed: ``task`` (None if kfp failed outside any step), its ``log``, the ``run_dir``."""

    def __init__(self, message: str, task: str | None, log: Path | None, run_dir: Path | None) -> None:
        super().__init__(message)
        self.task, self.log, self.run_dir = task, log, run_dir


def run_local(
    out_dir: str | Path, *, reporter: Reporter | None = None, echo: TextIO | None = None, pipeline=None, **arguments
) -> LocalRun:
    """Run the pipeline with ``arguments`` (its parameters) under ``out_dir``; returns the run's `LocalRun`.

    ``reporter``: file kfp's output into ``out_dir/logs/<task>.log`` (and copy it to ``echo`` when given) and
    tell the reporter when each step starts and ends. Without one, kfp prints to this process's stdout as usual.
    ``pipeline``: another kfp pipeline function to run the same way [default: the training pipeline].

    Raises:
        StepFailed: a step failed (it names the step and its log); artifacts written so far stay under ``out_dir``.
    """
    from kfp import local

    out = Path(out_dir).resolve()
    root = out / "pipeline_root"
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())

    def run_dir() -> Path | None:
        new = [p for p in root.iterdir() if p.is_dir() and p not in before]
        return max(new, key=lambda p: p.stat().st_mtime) if new else None

    logs = None
    if reporter is not None:
        reporter.run_dir = run_dir
        logs = StepLogs(out / LOGS, on_start=reporter.started, on_end=reporter.finished, echo=echo)
    try:
        with _into(logs):
            local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
            (pipeline or build(Settings(cluster=False)))(**arguments)
    except RuntimeError as exc:
        text = _plain(str(exc))
        task = logs.failed if logs is not None else None
        if task is None and (named := re.search(r"Inner task failed: '([^']+)'", text)):
            task = named.group(1)
        log = logs.log_path(task) if logs is not None else None
        raise StepFailed(text, task, log, run_dir()) from None
    finally:
        if reporter is not None:
            reporter.close()
        if logs is not None:
            logs.close()
    new = run_dir()
    if new is None:
        raise StepFailed(f"the local run left no run folder under {root}", None, None, None)
    return summarise(new)


def main_job(
    out_dir: str | Path, reporter: Reporter, *, echo: TextIO | None = None, started: float | None = None, **arguments
) -> str:
    """``hllm run``: the pipeline with step lines, then ``OUT/summary.json`` and the closing table (or the failure).

    Returns the outcome: ``"registered"``, ``"refused"`` (by the promotion gate), ``"rejected"`` (the validation
    gate rejected the data) or ``"failed"`` (a step failed otherwise). ``started``: when the job began
    (``time.perf_counter()``), for the elapsed time [default: now].
    """
    started = time.perf_counter() if started is None else started
    try:
        result = run_local(out_dir, reporter=reporter, echo=echo, **arguments)
    except StepFailed as exc:
        return _report_failure(reporter, exc)
    if not result.registered:
        reporter.skipped("(the gate refused the model)")
    elapsed = round(time.perf_counter() - started, 1)
    facts = summary(
        result,
        out_dir,
        elapsed_s=elapsed,
        feast_online_store=arguments.get("feast_home"),
        steps=reporter.steps_summary(),
    )
    (Path(out_dir) / "summary.json").write_text(json.dumps(facts, indent=2) + "\n")
    outcome = "registered" if result.registered else "refused"
    reporter.table(facts, title=f"hllm run: {outcome} in {elapsed:.0f}s")
    return outcome


def _report_failure(reporter: Reporter, exc: StepFailed) -> str:
    """The failing step, its log and last lines; "rejected" when the validation gate rejected the data."""
    if exc.task and exc.log:
        reporter.failure(exc.task, exc.log)
    else:
        reporter.line(f"error: {exc}", "red")
    verdict = exc.run_dir / "validate-data" / "report" / "summary.json" if exc.run_dir else None
    read = verdict is not None and exc.task == "validate-data" and verdict.is_file()
    if read and not json.loads(verdict.read_text()).get("passed", True):  # read the data, then rejected it
        reporter.line(f"data docs: {verdict.parent / 'data_docs' / 'index.html'}")
        return "rejected"
    if exc.run_dir is not None:
        reporter.line(f"artifacts so far: {exc.run_dir}")
    return "failed"


@contextlib.contextmanager
def _into(stream: StepLogs | None):
    """Send this process's stdout, stderr and log records to ``stream`` (kfp swaps root handlers per task too)."""
    if stream is None:
        yield
        return
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root.handlers[:] = [handler]
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        sys.stdout.flush()
        root.handlers[:] = handlers
        root.setLevel(level)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def summarise(run_dir: Path) -> LocalRun:
    """Collect the artifacts of one local run folder (``<pipeline_root>/<pipeline>-<timestamp>``)."""
    run = LocalRun(run_dir)
    for task in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        for artifact in sorted(task.iterdir()):
            if artifact.name != "executor_output.json":
                run.artifacts[f"{task.name}.{artifact.name}"] = str(artifact)
    scores = run_dir / "evaluate" / "scores"
    if scores.is_file():
        run.metrics = json.loads(scores.read_text())
    decision = run_dir / "gate" / "decision"
    if decision.is_file():
        run.gate = json.loads(decision.read_text())
    registration = run_dir / "register" / "registration"
    run.registered = json.loads(registration.read_text())["tag"] if registration.is_file() else None
    return run


SUMMARY_METRICS = ("recall@10", "ndcg@10", "recall@200")


def summary(run: LocalRun, out_dir: str | Path, **extra) -> dict:
    """``OUT/summary.json``: artifacts, gate, registered tag, test metrics vs popularity, the reports to open.

    ``extra`` (e.g. ``elapsed_s``, ``feast_online_store``, ``steps``) is merged in.
    """
    out = Path(out_dir).resolve()
    docs_site = run.run_dir / "validate-data" / "report" / "data_docs" / "index.html"
    result = {
        "run": str(run.run_dir),
        "artifacts": run.artifacts,
        "gate": {"passed": run.gate.get("passed"), "reasons": run.gate.get("reasons")},
        "registered": run.registered,
        # what a person opens: the evaluation report and the data docs (HTML), the model, one log per step
        "report": run.artifacts.get("evaluate.report.html"),
        "data_docs": str(docs_site) if docs_site.is_file() else run.artifacts.get("validate-data.data_docs.html"),
        "model": run.artifacts.get("train.model"),
        "rollout": _rendered_rollout(run.artifacts.get("deploy.manifests")),
        "logs": str(out / LOGS),
        "summary": str(out / "summary.json"),
        **extra,
    }
    for name in ("test", "popularity_test"):
        if name in run.metrics:
            values = run.metrics[name]
            keys = [*SUMMARY_METRICS, *(f"cold/{m}" for m in (*SUMMARY_METRICS, "count"))]
            result[name] = {k: _round(values[k]) for k in keys if k in values}
    return result


def _round(value):
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value


def latest_run(pipeline_root: Path) -> Path | None:
    runs = sorted((p for p in pipeline_root.glob(f"{PIPELINE_NAME}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def _rendered_rollout(manifests: str | None) -> str | None:
    """The Rollout a local run's deploy step rendered (what `kubectl apply` would take), if it did."""
    path = Path(manifests) / "rollout.yaml" if manifests else None
    return str(path) if path is not None and path.is_file() else None
