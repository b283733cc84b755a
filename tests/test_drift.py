"""Drift: a deliberately shifted window is flagged, an unshifted one is not; the trigger's cooldown and dedupe."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hllm.data.synth import SynthConfig, generate
from hllm.drift import (
    DriftConfig,
    LocalLauncher,
    RetrainTrigger,
    check_drift,
    interaction_events,
    request_events,
)


@pytest.fixture(scope="module")
def demo():
    return generate(SynthConfig(seed=0))


def _halves(interactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    users = sorted(interactions["user_id"].unique())
    first = interactions["user_id"].isin(users[::2])
    return interactions[first], interactions[~first]


def _text(demo) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {i: rng.normal(size=8) for i in demo.items["item_id"]}


def test_unshifted_window_is_not_flagged(demo, tmp_path: Path) -> None:
    reference, current = _halves(demo.interactions)
    result = check_drift(
        interaction_events(reference), interaction_events(current), demo.items, tmp_path, text_vectors=_text(demo)
    )
    assert not result.drifted, result.signals
    assert (tmp_path / "drift.html").is_file() and json.loads((tmp_path / "drift.json").read_text())["drifted"] is False
    assert {"history_length", "item_popularity", "category", "text_pc0"} <= set(result.signals)


def test_shifted_window_is_flagged_with_reasons(demo, tmp_path: Path) -> None:
    reference, current = _halves(demo.interactions)
    # Shift: the current window only holds items of one category, for users with long histories.
    tags = demo.items.set_index("item_id")["tag"].str.split(",").str[0]
    one_category = set(tags[tags == tags.value_counts().index[0]].index)
    events = interaction_events(current)
    shifted = events[events["item_id"].isin(one_category)].copy()
    shifted["history_length"] += 40
    result = check_drift(interaction_events(reference), shifted, demo.items, tmp_path, text_vectors=_text(demo))
    assert result.drifted
    assert result.signals["history_length"]["drifted"] and result.signals["category"]["drifted"]
    assert any(r.startswith("history_length") for r in result.reasons)


def test_request_log_events_prefer_interaction_events() -> None:
    recommends = [
        {"kind": "recommend", "history": ["a", "b"], "history_length": 7},
        {"kind": "recommend", "history": []},
    ]
    assert request_events(recommends).to_dict("records") == [{"item_id": "b", "history_length": 7}]
    with_events = [*recommends, {"kind": "event", "item_id": "c", "history_length": 3}]
    assert request_events(with_events).to_dict("records") == [{"item_id": "c", "history_length": 2}]


def test_empty_window_is_an_error(demo, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="current window has no events"):
        check_drift(interaction_events(demo.interactions), request_events([]), demo.items, tmp_path)
    with pytest.raises(ValueError, match="threshold"):
        DriftConfig(threshold=0)


class _Launcher:
    def __init__(self) -> None:
        self.started, self.running = 0, False

    def start(self) -> dict:
        self.started += 1
        self.running = True
        return {"kind": "fake", "n": self.started}

    def is_running(self, handle: dict) -> bool:
        return self.running


def test_trigger_dedupes_in_flight_runs_and_honours_the_cooldown(tmp_path: Path) -> None:
    launcher = _Launcher()
    trigger = RetrainTrigger(tmp_path / "state.json", launcher, cooldown_s=3600)
    assert trigger.maybe_retrain(False, now=0)["started"] is False
    assert trigger.maybe_retrain(True, now=0)["started"] is True
    again = trigger.maybe_retrain(True, now=10)
    assert not again["started"] and "in flight" in again["reason"]
    launcher.running = False  # the run finished
    cooled = trigger.maybe_retrain(True, now=20)
    assert not cooled["started"] and "cooldown" in cooled["reason"]
    assert trigger.maybe_retrain(True, now=3601)["started"] is True and launcher.started == 2
    # A second trigger object (another CronJob invocation) sees the same state.
    other = RetrainTrigger(tmp_path / "state.json", launcher, cooldown_s=3600)
    assert other.maybe_retrain(True, now=3700)["started"] is False


def test_local_launcher_tracks_a_real_process(tmp_path: Path) -> None:
    launcher = LocalLauncher([sys.executable, "-c", "import time; time.sleep(3)"], tmp_path / "retrain.log")
    handle = launcher.start()
    assert launcher.is_running(handle)
    import time

    deadline = time.monotonic() + 20
    while launcher.is_running(handle) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not launcher.is_running(handle)


def test_each_check_is_one_run_of_one_project_whose_panels_are_added_once(demo, tmp_path: Path) -> None:
    from evidently.ui.workspace import Workspace
    from typer.testing import CliRunner

    from hllm.cli import app
    from hllm.data.schema import Dataset
    from hllm.drift import PROJECT, panel_title

    reference, current = _halves(demo.interactions)
    folders = [Dataset(part, demo.items).save_csv(tmp_path / name) for name, part in (("r", reference), ("c", current))]
    workspace = tmp_path / "ws"
    args = ["drift", "check", "--reference", str(folders[0]), "--current", str(folders[1]), "--out", str(tmp_path)]
    args += ["--workspace", str(workspace), "--no-fail-on-drift"]
    output = CliRunner().invoke(app, args)
    assert output.exit_code == 0, output.output
    assert f'"workspace": {json.dumps(str(workspace))}' in output.output
    ws = Workspace(str(workspace))
    projects = ws.list_projects()
    assert [p.name for p in projects] == [PROJECT]
    assert len(ws.list_runs(projects[0].id)) == 1
    dashboard = projects[0].dashboard.model()
    titles = [panel.title for panel in dashboard.panels]
    assert sorted(titles) == sorted(panel_title(s) for s in ("history_length", "item_popularity", "category"))
    # A second check, with the text signals too: one more run, and panels for the text signals only.
    check_drift(
        interaction_events(reference),
        interaction_events(current),
        demo.items,
        tmp_path / "text",
        text_vectors=_text(demo),
        workspace=workspace,
    )
    assert [p.name for p in ws.list_projects()] == [PROJECT]
    assert len(ws.list_runs(projects[0].id)) == 2
    dashboard = ws.get_project(projects[0].id).dashboard.model()
    titles = [panel.title for panel in dashboard.panels]
    assert len(titles) == len(set(titles)) == 3 + 4 and panel_title("text_pc3") in titles
    assert sorted(p for tab in dashboard.tabs for p in tab.panels) == sorted(p.id for p in dashboard.panels)


def test_retraining_gets_the_gate_thresholds_and_a_bad_one_fails_first(tmp_path: Path) -> None:
    import typer

    from hllm.cli.drift import _launcher

    gate = '{"max_regression": 0.5}'
    launcher = _launcher(tmp_path / "data", None, ["epochs=1"], tmp_path, gate)
    command = launcher.command
    assert command[command.index("--thresholds") + 1] == gate and command[command.index("--set") + 1] == "epochs=1"
    with pytest.raises(typer.Exit) as raised:  # after printing the unknown key
        _launcher(tmp_path / "data", None, None, tmp_path, '{"max_regresion": 0.5}')
    assert raised.value.exit_code == 2
