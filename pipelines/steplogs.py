"""kfp's local-runner output filed per step: ``<logs>/<task>.log``, plus a call back when a task starts and ends.

kfp's local runner writes everything it produces to the ``sys.stdout`` of the process that runs the pipeline: its
own banners ("Executing task 'train'", "Task 'train' finished with status SUCCESS", the outputs of each task) and
each step's streamed stdout and stderr (the executor's JSON, Great Expectations, Feast, DeepSpeed and BentoML
logs). `StepLogs` takes that stream's place during a run (`pipelines.local.run_local`) and splits it at the
banners; lines outside any task go to ``pipeline.log``. No kfp import: tested on text in kfp 2.17's format and
on a real two-step local run (``pipelines/test_progress.py``).
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

PIPELINE_LOG = "pipeline.log"
TAIL_LINES = 10

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# kfp's banners are log records "HH:MM:SS.mmm - LEVEL - message" at the start of a line; a step's own output is
# indented by kfp, so it never matches.
_BANNER = r"^\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - "
_START = re.compile(_BANNER + r"Executing task '([^']+)'")
_END = re.compile(_BANNER + r"Task '([^']+)' finished with status (\w+)")
_PIPELINE_END = re.compile(_BANNER + r"Pipeline '([^']+)' finished with status (\w+)")
_STREAM_INDENT = "    "  # kfp indents every streamed line of a step by four spaces
# kfp's own framing lines in a step log: not worth showing as a step's last lines.
_FRAMING = re.compile(r"^(-{20,}$|\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - )")


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


@dataclass(frozen=True)
class StepEvent:
    """A banner of kfp's local runner: ``kind`` is ``"start"``, ``"end"`` (with kfp's status name) or
    ``"pipeline-end"`` (``task`` is then the pipeline's name)."""

    kind: str
    task: str
    status: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"


def parse_event(line: str) -> StepEvent | None:
    """The task start or end announced by one line of kfp's output, or ``None`` for any other line."""
    text = strip_ansi(line)
    if match := _START.match(text):
        return StepEvent("start", match.group(1))
    if match := _END.match(text):
        return StepEvent("end", match.group(1), match.group(2))
    if match := _PIPELINE_END.match(text):
        return StepEvent("pipeline-end", match.group(1), match.group(2))
    return None


class StepLogs(io.TextIOBase):
    """A text stream that files kfp's output into one log per task and reports task starts and ends.

    Args:
        log_dir: where ``<task>.log`` and ``pipeline.log`` go (created; earlier ``*.log`` files are removed, so the
            folder holds one run).
        on_start: ``on_start(task)`` when kfp starts a task.
        on_end: ``on_end(task, ok)`` when it finishes (the task's artifacts are written by then).
        echo: also copy every line, unchanged, to this stream (``--verbose``).
    """

    def __init__(
        self,
        log_dir: str | Path,
        on_start: Callable[[str], None] = lambda task: None,
        on_end: Callable[[str, bool], None] = lambda task, ok: None,
        echo: TextIO | None = None,
    ) -> None:
        super().__init__()
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for old in self.log_dir.glob("*.log"):
            old.unlink()
        self.on_start, self.on_end, self.echo = on_start, on_end, echo
        self.task: str | None = None  # the task whose log receives lines (until the next task starts)
        self.failed: str | None = None  # the first task that finished with a status other than SUCCESS
        self._streaming = False  # inside a task's streamed output (kfp indents it)
        self._buffer = ""
        self._lock = threading.Lock()
        self._file = self._open(PIPELINE_LOG)

    def log_path(self, task: str | None) -> Path:
        return self.log_dir / (f"{task}.log" if task else PIPELINE_LOG)

    def _open(self, name: str):
        return (self.log_dir / name).open("a", encoding="utf-8", errors="replace")

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"

    def write(self, text: str) -> int:
        with self._lock:
            if self._file.closed:  # a late write after the run: nothing to file it under
                return len(text)
            if self.echo is not None:
                self.echo.write(text)
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self.echo is not None:
                self.echo.flush()
            if not self._file.closed:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._buffer:
                self._line(self._buffer)
                self._buffer = ""
            if not self._file.closed:
                self._file.close()
        super().close()

    def _line(self, raw: str) -> None:
        line = strip_ansi(raw).rstrip("\r")
        event = parse_event(line)
        if event is not None and event.kind in ("start", "pipeline-end"):
            self._file.close()
            self.task = event.task if event.kind == "start" else None
            self._streaming = False
            self._file = self._open(f"{event.task}.log" if self.task else PIPELINE_LOG)
        elif self._streaming and line.startswith(_STREAM_INDENT):
            line = line[len(_STREAM_INDENT) :]
        if "Streamed logs:" in line and self.task:
            self._streaming = True
        self._file.write(line + "\n")
        if event is None:
            return
        self._file.flush()
        if event.kind == "start":
            self.on_start(event.task)
        elif event.kind == "end":
            self._streaming = False
            if not event.ok and self.failed is None:
                self.failed = event.task
            self.on_end(event.task, event.ok)


def tail(log_path: str | Path, n: int = TAIL_LINES) -> list[str]:
    """The last ``n`` lines a step printed (kfp's banners and blank lines left out); [] for a missing log."""
    path = Path(log_path)
    if not path.is_file():
        return []
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return [line for line in lines if not _FRAMING.match(line)][-n:]
