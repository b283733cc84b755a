"""Run the training pipeline on this machine with kfp's local SubprocessRunner, then summarise what it made.

Every step runs as a subprocess of this Python environment (``use_venv=False``: nothing is pip-installed), so
the run needs the project installed, no Docker and no cluster. Artifacts land under ``<out>/pipeline_root``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from hllm_pipelines.training import PIPELINE_NAME, Settings, build

logger = logging.getLogger(__name__)


@dataclass
class LocalRun:
    """Where a local run put things and what the gate decided."""

    run_dir: Path
    artifacts: dict[str, str] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)
    registered: str | None = None


def run_local(out_dir: str | Path, **arguments) -> LocalRun:
    """Run the pipeline with ``arguments`` (its parameters) under ``out_dir``; returns the run's summary.

    Raises:
        RuntimeError: a step failed (the message names it); artifacts written so far stay under ``out_dir``.
    """
    from kfp import local

    root = Path(out_dir).resolve() / "pipeline_root"
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    pipeline = build(Settings(cluster=False))
    try:
        pipeline(**arguments)
    finally:
        new = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new:
        raise RuntimeError(f"the local run left no run folder under {root}")
    return summarise(new[-1])


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


def latest_run(pipeline_root: Path) -> Path | None:
    runs = sorted((p for p in pipeline_root.glob(f"{PIPELINE_NAME}-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None
