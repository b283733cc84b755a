"""What ``hllm run`` shows: one line per step as it starts and ends (with its key figure, read from the artifacts
the step has just written, ``<run>/<task>/<output>``), a progress bar inside long steps on a terminal, the
failing step's last lines and a closing table. `pipelines.steplogs.StepLogs` tells the `Reporter` when steps
start and end. No kfp import: the formatting is plain functions, tested on fake run folders.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hllm_pipelines.steplogs import TAIL_LINES, tail

STEPS = ("validate-data", "sync-features", "embed-items", "train", "evaluate", "gate", "register", "deploy")


# ---------------------------------------------------------------------------------------------------------------
# Key figures: one number per step, read from the artifacts it wrote.


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def output_metadata(task_dir: Path, output: str) -> dict:
    """The metadata the step set on one output artifact (from kfp's ``executor_output.json``); {} if none."""
    try:
        return _json(task_dir / "executor_output.json")["artifacts"][output]["artifacts"][0].get("metadata") or {}
    except (OSError, ValueError, KeyError, IndexError):
        return {}


def metric_label(name: str) -> str:
    """``ndcg@10`` -> ``NDCG@10``, ``recall@10`` -> ``Recall@10``, ``cold/ndcg@10`` -> ``cold NDCG@10``."""
    prefix, _, base = name.rpartition("/")
    kind, at, k = base.partition("@")
    label = {"ndcg": "NDCG", "recall": "Recall", "mrr": "MRR", "hr": "HR"}.get(kind, kind) + at + k
    return f"{prefix} {label}" if prefix else label


def _int(value) -> str:
    return f"{int(value):,}"


def _validate(task_dir: Path) -> str:
    meta = output_metadata(task_dir, "dataset")
    if "interactions" not in meta:
        summary = task_dir / "report" / "summary.json"
        return "validation failed" if summary.is_file() and not _json(summary).get("passed", True) else ""
    counts = output_metadata(task_dir, "report").get("counts", {})
    rejected = sum(int(t.get("rejected", 0)) for t in counts.values() if isinstance(t, dict))
    figure = f"{_int(meta['interactions'])} rows accepted ({_int(meta['users'])} users, {_int(meta['items'])} items)"
    return figure + (f", {_int(rejected)} quarantined" if rejected else "")


def _sync(task_dir: Path) -> str:
    summary = _json(task_dir / "summary")
    mode = " (incremental)" if summary.get("incremental") else ""
    return f"{_int(summary['history_rows'])} history rows synced for {_int(summary['users'])} users{mode}"


def _embed(task_dir: Path) -> str:
    meta = output_metadata(task_dir, "vectors")
    dim = f" (dim {_int(meta['dim'])})" if "dim" in meta else ""
    return f"{_int(meta['items'])} items embedded{dim}"


def _train(task_dir: Path) -> str:
    result = _json(task_dir / "run" / "train_result.json")
    metric = _train_config(task_dir).get("select_metric", "ndcg@10")
    best = result["best_metrics"][metric]
    return f"best valid {metric_label(metric)} {best:.4f} (epoch {result['best_epoch']}, stopped: {result['stopped']})"


def _train_config(task_dir: Path) -> dict:
    path = task_dir / "run" / "train_config.json"
    return _json(path) if path.is_file() else {}


def _evaluate(task_dir: Path) -> str:
    scores = _json(task_dir / "scores")
    figure = f"test NDCG@10 {scores['test']['ndcg@10']:.4f}"
    popularity = scores.get("popularity_test", {}).get("ndcg@10")
    return figure + (f" (popularity {popularity:.4f})" if popularity is not None else "")


def _gate(task_dir: Path) -> str:
    return "passed" if _json(task_dir / "decision")["passed"] else "refused"


def _register(task_dir: Path) -> str:
    return str(_json(task_dir / "registration")["tag"])


def _deploy(task_dir: Path) -> str:
    rendered = task_dir / "manifests" / "rollout.yaml"
    return "Rollout rendered, nothing applied (local run)" if rendered.is_file() else "Rollout patched"


_FIGURES: dict[str, Callable[[Path], str]] = {
    "validate-data": _validate,
    "sync-features": _sync,
    "embed-items": _embed,
    "train": _train,
    "evaluate": _evaluate,
    "gate": _gate,
    "register": _register,
    "deploy": _deploy,
}


def key_figure(task: str, task_dir: str | Path) -> str:
    """The one figure worth a glance for a finished step ("" when its artifacts do not hold it); never raises."""
    reader = _FIGURES.get(task)
    if reader is None:
        return ""
    try:
        return reader(Path(task_dir))
    except Exception:  # a summary line must never fail the run
        return ""


# ---------------------------------------------------------------------------------------------------------------
# Lines.


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def step_line(index: int, total: int, task: str, status: str, seconds: float | None = None, figure: str = "") -> str:
    """``[4/7] train          done     1m02s  best valid NDCG@10 0.0712 (...)``: one step's start or end."""
    width = max(len(s) for s in STEPS)
    parts = [f"[{index}/{total}] {task:<{width}}  {status:<7}"]
    if seconds is not None:
        parts.append(f"{format_duration(seconds):>6}")
    if figure:
        parts.append(figure)
    return "  ".join(parts).rstrip()


def failure_lines(task: str, log_path: str | Path, seconds: float | None = None, n: int = TAIL_LINES) -> list[str]:
    """What a person needs when a step fails: which one, where its whole log is, and its last lines."""
    after = f" after {format_duration(seconds)}" if seconds is not None else ""
    lines = [f"step {task} failed{after}; its log: {log_path}"]
    last = tail(log_path, n)
    if last:
        lines.append(f"last {len(last)} lines:")
        lines += [f"  | {line}" for line in last]
    return lines


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    """The closing table as (label, value) rows: registered tag, gate reasons, metrics vs popularity, artifacts."""
    rows: list[tuple[str, str]] = [("registered", summary.get("registered") or "nothing (the gate refused)")]
    gate = summary.get("gate") or {}
    verdict = {True: "passed", False: "refused"}.get(gate.get("passed"), "not reached")
    reasons = gate.get("reasons") or []
    rows.append(("gate", f"{verdict}: {reasons[0]}" if reasons else verdict))
    rows += [("", reason) for reason in reasons[1:]]
    rows += [(label, value) for label, value in metric_rows(summary)]
    for label, key in (
        ("report", "report"),
        ("data docs", "data_docs"),
        ("model", "model"),
        ("rollout", "rollout"),
        ("run folder", "run"),
        ("step logs", "logs"),
        ("summary", "summary"),
    ):
        if summary.get(key):
            rows.append((label, str(summary[key])))
    return rows


_METRICS = ("recall@10", "ndcg@10")


def metric_rows(summary: dict) -> list[tuple[str, str]]:
    """Model vs popularity on the test split (and on its cold-item slice when the metrics include it)."""
    model, popularity = summary.get("test") or {}, summary.get("popularity_test") or {}
    if not model:
        return []
    head = "  ".join(f"{metric_label(m):>9}" for m in _METRICS)
    rows = [("metrics", f"{'':<22}{head}")]
    for name, values, prefix in (
        ("model, test", model, ""),
        ("popularity, test", popularity, ""),
        ("model, cold items", model, "cold/"),
        ("popularity, cold items", popularity, "cold/"),
    ):
        cells = [values.get(prefix + m) for m in _METRICS]
        if all(c is None for c in cells):
            continue
        count = values.get(prefix + "count")
        suffix = f"  ({_int(count)} targets)" if prefix and count is not None else ""
        text = "  ".join(f"{c:>9.4f}" if isinstance(c, int | float) else f"{'-':>9}" for c in cells)
        rows.append(("", f"{name:<22}{text}{suffix}"))
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The reporter.


@dataclass
class StepRecord:
    index: int
    started: float
    seconds: float | None = None
    ok: bool | None = None
    figure: str = ""


@dataclass
class Reporter:
    """Prints step lines, progress bars (a terminal only) and the closing table to ``stream``.

    ``run_dir()`` returns the folder of the run under way (``<pipeline_root>/<pipeline>-<time>``), or ``None``
    before kfp made it; step artifacts are read from ``run_dir()/<task>``.
    """

    stream: TextIO
    terminal: bool = False
    progress: bool = True
    total: int = len(STEPS)
    run_dir: Callable[[], Path | None] = lambda: None
    steps: dict[str, StepRecord] = field(default_factory=dict)
    _console: object = None
    _bar: object = None

    def __post_init__(self) -> None:
        if self.terminal:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False, soft_wrap=True)

    def line(self, text: str, style: str | None = None) -> None:
        if self._console is not None:
            self._console.print(text, style=style, markup=False)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def task_dir(self, task: str) -> Path | None:
        run = self.run_dir()
        return run / task if run is not None else None

    def started(self, task: str) -> None:
        record = StepRecord(len(self.steps) + 1, time.perf_counter())
        self.steps[task] = record
        self.line(step_line(record.index, self.total, task, "started"), "dim")
        if self.terminal and self.progress and task in _PROBES:
            self._bar = _ProgressBar(self._console, task, lambda: _PROBES[task](self, task))

    def finished(self, task: str, ok: bool) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        record = self.steps.setdefault(task, StepRecord(len(self.steps) + 1, time.perf_counter()))
        record.seconds, record.ok = time.perf_counter() - record.started, ok
        folder = self.task_dir(task)
        record.figure = key_figure(task, folder) if ok and folder is not None else ""
        status = "done" if ok else "FAILED"
        self.line(
            step_line(record.index, self.total, task, status, record.seconds, record.figure), None if ok else "red"
        )

    def skipped(self, reason: str) -> None:
        """A line for every step of the pipeline that never ran (e.g. register after a refusal)."""
        for task in STEPS:
            if task not in self.steps:
                self.steps[task] = StepRecord(len(self.steps) + 1, time.perf_counter(), ok=None)
                self.line(step_line(self.steps[task].index, self.total, task, "skipped", figure=reason), "dim")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def failure(self, task: str, log_path: Path) -> None:
        record = self.steps.get(task)
        for i, text in enumerate(failure_lines(task, log_path, record.seconds if record else None)):
            self.line(text, "red" if i == 0 else None)

    def table(self, summary: dict, title: str = "summary") -> None:
        rows = summary_rows(summary)
        if self._console is None:
            self.line(f"{title}:")
            for label, value in rows:
                self.line(f"  {label:<12} {value}".rstrip())
            return
        from rich.table import Table

        table = Table(title=title, show_header=False, title_justify="left", box=None, padding=(0, 1))
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for label, value in rows:
            style = "red" if value.startswith("FAIL") or value.startswith("refused") else None
            table.add_row(label, value, style=style)
        self._console.print(table)

    def steps_summary(self) -> dict:
        return {
            task: {"status": _status(r.ok), "seconds": round(r.seconds, 1) if r.seconds else None, "figure": r.figure}
            for task, r in self.steps.items()
        }


def _status(ok: bool | None) -> str:
    return {True: "done", False: "failed"}.get(ok, "skipped")


# ---------------------------------------------------------------------------------------------------------------
# Progress inside long steps (a terminal only): polled from the files the step writes as it goes.


def _train_progress(reporter: Reporter, task: str) -> tuple[int | None, int | None, str]:
    folder = reporter.task_dir(task)
    if folder is None:
        return None, None, "starting"
    total = _train_config(folder).get("epochs")
    metrics = folder / "run" / "metrics.jsonl"
    epoch, best = 0, None
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            epoch = max(epoch, int(record.get("epoch", 0)))
            if record.get("split") == "valid" and "ndcg@10" in record:
                best = max(best or 0.0, record["ndcg@10"])
    note = f"epoch {epoch}/{total}" if total else f"epoch {epoch}"
    if best is not None:
        note += f", best valid NDCG@10 {best:.4f}"
    return max(epoch - 1, 0), total, note


def _embed_progress(reporter: Reporter, task: str) -> tuple[int | None, int | None, str]:
    folder = reporter.task_dir("validate-data")
    items = output_metadata(folder, "dataset").get("items") if folder else None
    return None, None, f"embedding {_int(items)} items" if items else "embedding items"


_PROBES = {"train": _train_progress, "embed-items": _embed_progress}


class _ProgressBar:
    """A transient rich progress bar for one step, refreshed from ``probe() -> (done, total, note)``."""

    def __init__(self, console, task: str, probe: Callable[[], tuple[int | None, int | None, str]]) -> None:
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.probe = probe
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn(f"{task:<13}"),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            redirect_stdout=False,  # sys.stdout is kfp's stream here, not the terminal
            redirect_stderr=False,
        )
        self.bar = self.progress.add_task("", total=None)
        self.done = threading.Event()
        self.progress.start()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.done.wait(0.5):
            try:
                done, total, note = self.probe()
            except Exception:  # a half-written file: try again next time
                continue
            self.progress.update(self.bar, completed=done or 0, total=total, description=note)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=2)
        self.progress.stop()
