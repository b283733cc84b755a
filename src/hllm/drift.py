"""Data drift between a reference window (training data) and a current window (new interactions or served
requests), with Evidently 0.7, and the retraining trigger that acts on it.

Each window is a table of events (one per interaction or per served request with a history) with the signals:

- ``history_length``: how many items the user had before this event;
- ``item_popularity``: log(1 + count in the reference window) of the event's item (0 for items new since);
- ``category``: the first entry of the item's ``tag`` list (``(none)`` when empty);
- ``text_pc0..`` : the item's text vector projected on the reference's first principal components
  (text-embedding drift as per-component drift; Evidently's EmbeddingsDrift took ~50 s per report here).

A signal drifts when Evidently's drift score (normalised Wasserstein distance for numbers, Jensen-Shannon for
categories) reaches ``threshold``; the window drifts when at least ``min_drifted`` signals do.

Every check is also a run (snapshot) in an Evidently workspace project (``PROJECT``), whose dashboard plots each
signal's drift score per check; ``hllm drift ui`` serves it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)
NUMERIC = ("history_length", "item_popularity")
PROJECT = "hllm drift"  # the Evidently workspace project every check is logged to


@dataclass
class DriftConfig:
    threshold: float = 0.1
    min_drifted: int = 2
    text_components: int = 4
    max_rows: int = 20_000  # each window is sampled down to this many events (seeded)

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold={self.threshold} must be in (0, 1)")
        if self.min_drifted < 1 or self.max_rows < 10:
            raise ValueError(f"min_drifted={self.min_drifted} must be >= 1 and max_rows={self.max_rows} >= 10")


@dataclass
class DriftResult:
    drifted: bool
    signals: dict[str, dict]
    reference_rows: int
    current_rows: int
    config: dict
    report_html: str = ""
    reasons: list[str] = field(default_factory=list)
    workspace: str = ""  # the Evidently workspace folder this check was logged to, and its snapshot id there
    snapshot_id: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def interaction_events(interactions: pd.DataFrame) -> pd.DataFrame:
    """``item_id`` and ``history_length`` (events the user had before) for every interaction, in time order."""
    ordered = interactions.sort_values(["user_id", "timestamp"], kind="stable")
    return pd.DataFrame(
        {"item_id": ordered["item_id"].to_numpy(), "history_length": ordered.groupby("user_id").cumcount().to_numpy()}
    )


def request_events(records: Iterable[dict]) -> pd.DataFrame:
    """Events of a request log (`hllm.monitoring`): interaction events when the log has any (each is one real
    interaction), else recommend calls with a history (its last item, the user's total history length)."""
    records = list(records)
    events = [r for r in records if r.get("kind") == "event" and "history_length" in r]
    if events:
        rows = [(r["item_id"], int(r["history_length"]) - 1) for r in events]  # events before this one
    else:
        rows = [
            (r["history"][-1], int(r.get("history_length", len(r["history"]))))
            for r in records
            if r.get("kind") == "recommend" and r.get("history")
        ]
    return pd.DataFrame(rows, columns=["item_id", "history_length"])


def _signals(
    events: pd.DataFrame,
    items: pd.DataFrame,
    counts: Counter,
    text: dict[str, np.ndarray] | None,
    basis: tuple[np.ndarray, np.ndarray] | None,
) -> pd.DataFrame:
    tags = items.set_index("item_id")["tag"].to_dict() if "tag" in items else {}
    frame = pd.DataFrame(
        {
            "history_length": events["history_length"].astype(float).to_numpy(),
            "item_popularity": [math.log1p(counts.get(i, 0)) for i in events["item_id"]],
            "category": [(tags.get(i) or "").split(",")[0].strip() or "(none)" for i in events["item_id"]],
        }
    )
    if text is not None and basis is not None:
        mean, components = basis
        known = [text.get(i) for i in events["item_id"]]
        dim = len(mean)
        matrix = (
            np.stack([v if v is not None else np.full(dim, np.nan) for v in known]) if known else np.zeros((0, dim))
        )
        projected = (matrix - mean) @ components.T
        for c in range(components.shape[0]):
            frame[f"text_pc{c}"] = projected[:, c]
    return frame


def _pca(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    mean = vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
    return mean, vt[:k]


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    items: pd.DataFrame,
    out_dir: str | Path,
    config: DriftConfig | None = None,
    text_vectors: dict[str, np.ndarray] | None = None,
    workspace: str | Path | None = None,
    timestamp: datetime | None = None,
) -> DriftResult:
    """Compare two event windows (`interaction_events` / `request_events`); write ``drift.html`` and ``drift.json``
    and add the check as a run of the ``PROJECT`` project in the Evidently workspace ``workspace``
    [default: ``out_dir/workspace``], at ``timestamp`` (the current window's time on the dashboard) [default: now].

    Raises:
        ValueError: an empty window (nothing to compare).
    """
    from evidently import DataDefinition, Report
    from evidently import Dataset as EvDataset
    from evidently.metrics import ValueDrift

    config = config or DriftConfig()
    for name, window in (("reference", reference), ("current", current)):
        if window.empty:
            raise ValueError(f"the {name} window has no events to compare")
    reference = reference.sample(min(len(reference), config.max_rows), random_state=0)
    current = current.sample(min(len(current), config.max_rows), random_state=0)
    counts = Counter(reference["item_id"])
    basis = None
    if text_vectors:
        ref_vectors = np.stack([text_vectors[i] for i in reference["item_id"].unique() if i in text_vectors])
        basis = _pca(ref_vectors, min(config.text_components, ref_vectors.shape[1]))
    ref = _signals(reference, items, counts, text_vectors, basis)
    cur = _signals(current, items, counts, text_vectors, basis)
    numeric = [c for c in ref.columns if c != "category"]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=["category"])
    metrics = [ValueDrift(column=c, method="wasserstein", threshold=config.threshold) for c in numeric]
    metrics.append(ValueDrift(column="category", method="jensenshannon", threshold=config.threshold))
    # Items without a text vector (new since the model) have NaN text signals only: fill them with the reference
    # mean there (0 after centring) rather than dropping the row from every other signal.
    text_columns = [c for c in ref.columns if c.startswith("text_pc")]
    snapshot = Report(metrics).run(
        current_data=EvDataset.from_pandas(cur.fillna(dict.fromkeys(text_columns, 0.0)), data_definition=definition),
        reference_data=EvDataset.from_pandas(ref.fillna(dict.fromkeys(text_columns, 0.0)), data_definition=definition),
        timestamp=timestamp,
    )
    signals = {}
    for metric in snapshot.dict()["metrics"]:
        column, score = metric["config"]["column"], float(metric["value"])
        signals[column] = {"score": round(score, 4), "drifted": score >= config.threshold}
    if text_columns:
        signals["text_unknown_items"] = {"share": round(float(cur[text_columns[0]].isna().mean()), 4)}
    drifted = [name for name, s in signals.items() if s.get("drifted")]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(out / "drift.html"))
    workspace = Path(workspace) if workspace is not None else out / "workspace"
    snapshot_id = log_to_workspace(
        snapshot, workspace, {c: "wasserstein" for c in numeric} | {"category": "jensenshannon"}
    )
    result = DriftResult(
        drifted=len(drifted) >= config.min_drifted,
        signals=signals,
        reference_rows=len(ref),
        current_rows=len(cur),
        config=asdict(config),
        report_html=str(out / "drift.html"),
        reasons=[f"{n}: score {signals[n]['score']} >= {config.threshold}" for n in drifted],
        workspace=str(workspace),
        snapshot_id=snapshot_id,
    )
    (out / "drift.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    logger.info(
        "drift %s: %d of %d signals drifted", "DETECTED" if result.drifted else "none", len(drifted), len(signals)
    )
    return result


def log_to_workspace(snapshot, workspace: str | Path, methods: dict[str, str]) -> str:
    """Add a drift check's Evidently ``snapshot`` as a run of the ``PROJECT`` project in the workspace folder
    (both created on first use) and give the dashboard one line panel per signal in ``methods`` (signal -> drift
    method) that it lacks; returns the snapshot id. Panels are matched by title, so repeated checks add none."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel
    from evidently.ui.workspace import Workspace

    ws = Workspace(str(workspace))
    found = ws.search_project(PROJECT)
    project = found[0] if found else ws.create_project(PROJECT, description="hllm drift checks: score per signal")
    titles = {panel.title for panel in project.dashboard.model().panels}
    for signal, method in methods.items():
        title = panel_title(signal)
        if title not in titles:
            metric = PanelMetric(legend=f"{method} score", metric="ValueDrift", metric_labels={"column": signal})
            project.dashboard.add_panel(line_plot_panel(title=title, values=[metric], size="half"))
    return str(ws.add_run(project.id, snapshot).id)


def panel_title(signal: str) -> str:
    """The title of ``signal``'s drift-score panel on the workspace dashboard."""
    return f"Drift score: {signal}"


class RetrainTrigger:
    """Start retraining on drift at most once per ``cooldown_s``, and never while a started run is in flight.

    State (last start and the in-flight run's handle) lives in a small JSON file, so separate invocations (a
    CronJob, a shell loop) share it. ``launcher`` starts a run and tells whether one is still running.
    """

    def __init__(self, state_path: str | Path, launcher, cooldown_s: float = 6 * 3600) -> None:
        self.state_path = Path(state_path)
        self.launcher = launcher
        self.cooldown_s = cooldown_s

    def _state(self) -> dict:
        return json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}

    def maybe_retrain(self, drifted: bool, now: float | None = None) -> dict:
        """Start a run if ``drifted`` and allowed; returns ``{"started": bool, "reason": str, ...}``."""
        now = time.time() if now is None else now
        state = self._state()
        if not drifted:
            return {"started": False, "reason": "no drift"}
        handle = state.get("in_flight")
        if handle and self.launcher.is_running(handle):
            return {"started": False, "reason": f"a retraining run is in flight: {handle}"}
        last = state.get("last_started_at")
        if last is not None and now - last < self.cooldown_s:
            left = self.cooldown_s - (now - last)
            return {"started": False, "reason": f"cooldown: {left / 60:.0f} min left of {self.cooldown_s / 60:.0f}"}
        handle = self.launcher.start()
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"last_started_at": now, "in_flight": handle}, indent=2))
        tmp.replace(self.state_path)
        return {"started": True, "reason": "drift detected", "run": handle}


class LocalLauncher:
    """Retrain on this machine: ``hllm run`` (the local pipeline) as a detached background process."""

    def __init__(self, command: list[str], log_path: str | Path) -> None:
        self.command = command
        self.log_path = Path(log_path)

    def start(self) -> dict:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a") as log:
            proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        logger.info("started retraining (pid %d): %s", proc.pid, " ".join(self.command))
        return {"kind": "local", "pid": proc.pid, "log": str(self.log_path)}

    def is_running(self, handle: dict) -> bool:
        pid = handle.get("pid")
        if not pid:
            return False
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        stat = Path(f"/proc/{pid}/stat")
        if stat.is_file() and stat.read_text().split(") ")[-1].startswith("Z"):
            os.waitpid(pid, os.WNOHANG)  # our own finished child: reap it
            return False
        return True


class KfpLauncher:
    """Retrain on Kubeflow: submit the training pipeline with ``submit`` (``pipelines.cluster.submit``)."""

    RUNNING = frozenset({"PENDING", "RUNNING", "PAUSED", "CANCELING"})

    def __init__(self, client, submit) -> None:
        self.client, self.submit = client, submit

    def start(self) -> dict:
        return {"kind": "kfp", **self.submit(self.client)}

    def is_running(self, handle: dict) -> bool:
        run = self.client.get_run(handle["run_id"])
        return str(getattr(run, "state", "")).upper() in self.RUNNING
