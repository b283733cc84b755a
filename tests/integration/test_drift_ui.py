"""``hllm drift ui``: two drift checks logged to an Evidently workspace, served by Evidently's UI on loopback, and
the project's dashboard loaded in headless Chromium shows every signal's panel with both checks on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from processes import free_port, stop_group

from hllm.data.synth import SynthConfig, generate
from hllm.drift import check_drift, interaction_events, panel_title

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
# The two checks sit a day apart on the dashboard's time axis; noon, so no time zone moves them to another date.
WHEN = (datetime(2026, 11, 1, 12), datetime(2026, 11, 2, 12))


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is missing: `apt-get install -y chromium` (Debian), or run `make test-integration`")
    return found


def _browse(chromium: str, profile: Path, url: str, *args: str) -> str:
    """Headless Chromium on ``url`` after the page's scripts had 15 s of virtual time; returns stdout (the DOM)."""
    command = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    command += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    command += ["--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1250"]
    command += ["--virtual-time-budget=15000", "--hide-scrollbars", *args, url]
    env = {**os.environ, "TZ": "UTC"}
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, check=False).stdout


def _windows() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(items, reference, unshifted current, shifted current) event windows of the seeded demo data."""
    demo = generate(SynthConfig(seed=0))
    users = sorted(demo.interactions["user_id"].unique())
    first = demo.interactions["user_id"].isin(users[::2])
    reference, current = interaction_events(demo.interactions[first]), interaction_events(demo.interactions[~first])
    tags = demo.items.set_index("item_id")["tag"].str.split(",").str[0]
    one_category = set(tags[tags == tags.value_counts().index[0]].index)
    shifted = current[current["item_id"].isin(one_category)].copy()
    shifted["history_length"] += 40
    return demo.items, reference, current, shifted


def test_drift_ui_shows_each_signal_over_both_checks(tmp_path: Path) -> None:
    chromium = _chromium()
    items, reference, current, shifted = _windows()
    workspace = tmp_path / "workspace"
    results = [
        check_drift(reference, window, items, tmp_path / f"check{i}", workspace=workspace, timestamp=when)
        for i, (window, when) in enumerate(zip((current, shifted), WHEN, strict=True))
    ]
    assert [r.drifted for r in results] == [False, True]
    signals = [name for name in results[0].signals if "score" in results[0].signals[name]]

    port = free_port()
    command = [sys.executable, "-m", "hllm.cli", "drift", "ui", "--workspace", str(workspace), "--port", str(port)]
    log = tmp_path / "ui.txt"
    proc = subprocess.Popen(command, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        projects = None
        while projects is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/api/projects", timeout=5) as r:
                    projects = json.loads(r.read())
            except OSError:
                time.sleep(0.5)
        assert projects is not None, log.read_text()[-3000:]
        assert [p["name"] for p in projects] == ["hllm drift"]
        url = f"{base}/projects/{projects[0]['id']}"
        assert url in log.read_text()  # `hllm drift ui` prints the dashboard's address

        # The UI is a JS app: the DOM has the panels once its scripts fetched the dashboard and the points.
        wanted = [panel_title(s) for s in signals] + [f"{when:%Y-%m-%d}" for when in WHEN]
        dom, missing = "", wanted
        for attempt in range(3):
            dom = _browse(chromium, tmp_path / f"profile{attempt}", url, "--dump-dom")
            missing = [w for w in wanted if w not in dom]
            if not missing:
                break
        assert not missing, f"not on the dashboard page: {missing}\n{dom[-2000:]}"
        assert dom.count("MuiLineElement-root") >= len(signals)  # one drawn line per signal panel

        screenshot = tmp_path / "dashboard.png"
        _browse(chromium, tmp_path / "profile-shot", url, f"--screenshot={screenshot}")
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("HLLM_DRIFT_SCREENSHOT"):  # to refresh docs/drift-dashboard.png
            shutil.copyfile(screenshot, os.environ["HLLM_DRIFT_SCREENSHOT"])
    finally:
        stop_group(proc)
