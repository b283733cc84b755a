"""The closed loop on one machine: drift -> retraining -> gate -> register -> canary analysis -> promote or reject.

1. A stable model (tiny HLLM trained on the reference window) is the champion of a throwaway BentoML store.
2. `hllm drift check --retrain` on a shifted window detects drift and starts the real local pipeline (`hllm run`,
   tiny model): its gate compares the candidate with that champion, passes, and `register` stores the candidate.
3. Each scenario (on its own copy of that store): the stable model and the candidate served side by side (two
   `bentoml serve`), scraped by a real Prometheus under the labels Argo gives stable and canary pods, bounded
   loopback traffic at both, then `hllm deploy analyze --candidate` runs the committed AnalysisTemplate (its
   queries, conditions, count and limits; only the interval is 1 s instead of 1 min) and records the outcome:
   - healthy candidate: Successful, the champion label moves to it, the stable server is restarted on the
     champion and answers with the candidate's tag;
   - candidate with the fault switch (half its answers 500): Failed on error ratio, the champion keeps its label,
     the candidate is marked rejected and its server stopped; the stable server still answers.
What Argo's controller would do with the servers (restart the stable, stop the canary) the test does itself.
This process's bentoml keeps the store it opened first, so every store operation runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import live
import pandas as pd
import pytest
import yaml
from testdata import drift_windows, tiny_run_config, tiny_run_overrides
from typer.testing import CliRunner

from hllm.analysis import PrometheusAPI
from hllm.cli import app
from hllm.drift import LocalLauncher
from hllm.rollout import ANALYSIS_TEMPLATE

pytestmark = pytest.mark.integration
NAMESPACE = "hllm-loop"
# The gate as the pipeline runs it, with thresholds a 1-epoch tiny model meets: no lift over popularity asked
# (on the shifted window popularity is strong), and the candidate may be at most 90% worse than the champion.
GATE = json.dumps({"min_lift_over_popularity": 0.0, "max_regression": 0.9})
FAULT = {"HLLM_FAULT_ERROR_RATE": "0.5"}
REQUESTS, CLIENTS, WARMUP = 120, 2, 5
STAGES = (  # the stage label of every model named hllm, by tag
    "import bentoml, json; "
    "print(json.dumps({str(m.tag): m.info.labels.get('stage') for m in bentoml.models.list('hllm')}))"
)


def _env(store: Path) -> dict[str, str]:
    """This environment on the BentoML store ``store``, less MASTER_PORT: an earlier in-process training (another
    test's) set it and still holds that port, which a training child would then fail to bind."""
    env = {k: v for k, v in os.environ.items() if k != "MASTER_PORT"}
    return {**env, "BENTOML_HOME": str(store)}


def _in_store(store: Path, code: str):
    """Run Python ``code`` against the BentoML store ``store``; the JSON its last line prints."""
    env = _env(store)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Retrained:
    store: Path
    stable: str
    candidate: str
    feast: Path
    users: list[str]
    drift_exit: int
    summary: dict


@pytest.fixture(scope="module")
def retrained(tmp_path_factory) -> Retrained:
    root = tmp_path_factory.mktemp("loop")
    store = root / "store"
    reference, shifted = drift_windows(root)
    # The model trained before the shift (the reference window is the demo dataset), registered and promoted. In a
    # subprocess: training sets MASTER_PORT and holds that port, which the retraining run must not inherit.
    code = f"""
import bentoml, json, shutil
from pathlib import Path
from hllm.data.synth import SynthConfig, generate
from hllm.training.build import load_run_config, run_training
from hllm_serving.registry import promote
config = load_run_config(text={tiny_run_config(epochs=1)!r})
run_training(generate(SynthConfig(seed=0)), config, Path({str(root / "stable")!r}), progress=False)
with bentoml.models.create("hllm", labels={{"stage": "candidate"}}) as saved:
    shutil.copytree({str(root / "stable" / "model")!r}, saved.path, dirs_exist_ok=True)
print(json.dumps(promote(str(saved.tag))))
"""
    stable, previous = _in_store(store, code)
    assert previous is None
    state = root / "trigger" / "state.json"
    args = ["drift", "check", "--reference", str(reference), "--current", str(shifted), "--out", str(root / "drift")]
    args += ["--retrain", "--state", str(state), "--thresholds", GATE]
    args += [a for o in tiny_run_overrides(epochs=1) for a in ("--set", o)]
    with pytest.MonkeyPatch.context() as env:
        env.setenv("BENTOML_HOME", str(store))  # the retraining run (a child process) registers there
        env.delenv("MASTER_PORT", raising=False)  # set by any earlier in-process training, whose port stays taken
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 4, result.output  # drift detected
    handle = json.loads(state.read_text())["in_flight"]
    launcher = LocalLauncher([], handle["log"])
    deadline = time.monotonic() + 1500
    while launcher.is_running(handle) and time.monotonic() < deadline:
        time.sleep(2)
    assert not launcher.is_running(handle), "the retraining run did not finish within 25 minutes"
    summaries = sorted((root / "trigger").glob("retrain-*/summary.json"))
    assert summaries, Path(handle["log"]).read_text()[-3000:]
    summary = json.loads(summaries[0].read_text())
    assert summary["registered"], (
        f"nothing registered: {summary.get('gate')}\n{Path(handle['log']).read_text()[-3000:]}"
    )
    users = sorted(pd.read_csv(shifted / "interactions.csv", dtype={"user_id": str})["user_id"].unique())
    feast = summaries[0].parent / "feast"
    return Retrained(store, stable, summary["registered"], feast, users, result.exit_code, summary)


def test_drift_starts_a_retraining_whose_candidate_passes_the_gate(retrained: Retrained) -> None:
    assert retrained.drift_exit == 4
    gate = retrained.summary["gate"]
    assert gate["passed"] is True, gate
    # the gate compared the candidate with the labelled champion (re-scored on the shifted window), not nothing
    assert gate["reasons"][0].startswith("champion: champion re-scored"), gate["reasons"]
    assert any(r.startswith("pass: ndcg@10") and "champion" in r for r in gate["reasons"]), gate["reasons"]
    assert retrained.candidate != retrained.stable
    assert _in_store(retrained.store, STAGES) == {retrained.stable: "champion", retrained.candidate: "candidate"}
    assert retrained.feast.is_dir()


def _template_every_second(folder: Path) -> Path:
    """The committed AnalysisTemplate with each metric measured every second instead of every minute."""
    template = yaml.safe_load(ANALYSIS_TEMPLATE.read_text())
    for metric in template["spec"]["metrics"]:
        assert metric["interval"] == "1m", metric["name"]  # the only field changed
        metric["interval"] = "1s"
    path = folder / "analysistemplate.yaml"
    path.write_text(yaml.safe_dump(template, sort_keys=False))
    return path


def _model_tag(server: live.Server, user: str) -> str:
    status, body = live.recommend(server.port, user)
    assert status == 200, (status, body)
    return body["model"]


@pytest.mark.parametrize("faulty", [False, True], ids=["healthy-candidate", "faulty-candidate"])
def test_canary_analysis_promotes_or_rejects_the_candidate(retrained: Retrained, tmp_path: Path, faulty) -> None:
    store = tmp_path / "store"
    shutil.copytree(retrained.store, store, symlinks=True)  # each scenario starts from the same labels
    serving = {"HLLM_FEAST_HOME": str(retrained.feast)}
    users = retrained.users
    ports = dict(zip(("stable", "canary"), live.free_ports(2), strict=True))
    running: dict[str, live.Server] = {}
    prometheus = None
    try:
        running["stable"] = live.start_server(
            "stable",
            ports["stable"],
            live.own_home(tmp_path / "home-stable", store),
            {**serving, "HLLM_MODEL": retrained.stable},
        )
        running["canary"] = live.start_server(
            "canary",
            ports["canary"],
            live.own_home(tmp_path / "home-canary", store),
            {**serving, "HLLM_MODEL": retrained.candidate},
            FAULT if faulty else None,
        )
        for server in running.values():
            server.wait_ready()
        assert _model_tag(running["stable"], users[0]) == retrained.stable
        for server in running.values():  # warm-up, before Prometheus: rate() never sees it
            live.drive(server.port, users, WARMUP, 1)
        binary = live.prometheus_binary()
        prometheus = live.start_prometheus(binary, tmp_path / "prometheus", ports, NAMESPACE)
        api = PrometheusAPI(prometheus.url)
        counter = "bentoml_service_request_total"
        for name in running:  # every series has a sample before the measured traffic
            live.wait(lambda n=name: live.scraped(api, counter, NAMESPACE, n, 1), f"{name}: first scrape", 180)

        # live traffic at both (bounded, loopback), then wait until Prometheus has all of it
        statuses = {name: live.drive(server.port, users, REQUESTS, CLIENTS) for name, server in running.items()}
        for name in running:
            at_least = REQUESTS + WARMUP + (1 if name == "stable" else 0)
            live.wait(lambda n=name, a=at_least: live.scraped(api, counter, NAMESPACE, n, a), f"{name} scraped", 180)
        assert set(statuses["stable"]) == {200}
        if faulty:
            assert set(statuses["canary"]) == {200, 500} and statuses["canary"].count(500) == REQUESTS // 2
        else:
            assert set(statuses["canary"]) == {200}

        # the local evaluator runs the AnalysisTemplate against this Prometheus and records the outcome
        run_json = tmp_path / "analysis.json"
        command = [sys.executable, "-m", "hllm.cli", "deploy", "analyze", "--prometheus", prometheus.url]
        command += ["--arg", f"namespace={NAMESPACE}", "--arg", "canary-hash=canary"]
        command += ["--template", str(_template_every_second(tmp_path)), "--candidate", retrained.candidate]
        command += ["--out", str(run_json)]
        done = subprocess.run(command, env=_env(store), capture_output=True, text=True, timeout=600)
        said = " ".join((done.stdout + done.stderr).split())  # the run on stdout, the outcome on stderr
        run = json.loads(run_json.read_text())
        phases = {name: metric["phase"] for name, metric in run["metrics"].items()}
        stages = _in_store(store, STAGES)
        print(said)  # the measured values, shown with -s or -rP

        if not faulty:
            assert done.returncode == 0, done.stdout + done.stderr[-3000:]
            assert phases == dict.fromkeys(("error-ratio", "recommend-p99-seconds", "fallback-ratio"), "Successful")
            assert all(len(metric["measurements"]) == 20 for metric in run["metrics"].values())
            assert stages == {retrained.stable: "retired", retrained.candidate: "champion"}
            assert f"champion: {retrained.candidate} (promoted; was {retrained.stable})" in said
            # Argo's last step: the stable pods now run the champion
            champion = next(tag for tag, stage in stages.items() if stage == "champion")
            live.stop(running["stable"].proc)
            home = tmp_path / "home-stable-2"
            running["stable"] = live.start_server(
                "stable-2", ports["stable"], live.own_home(home, store), {**serving, "HLLM_MODEL": champion}
            )
            running["stable"].wait_ready()
            assert _model_tag(running["stable"], users[1]) == retrained.candidate
            catalogue = f'hllm_catalogue_items{{rollouts_pod_template_hash="stable", model="{retrained.candidate}"}}'
            live.wait(lambda: api(catalogue), "the restarted stable's metrics in Prometheus", 180)
        else:
            assert done.returncode == 5, done.stdout + done.stderr[-3000:]
            assert run["phase"] == "Failed" and phases["error-ratio"] == "Failed", phases
            assert stages == {retrained.stable: "champion", retrained.candidate: "rejected"}
            assert f"rejected: {retrained.candidate}; champion stays {retrained.stable}" in said
            # Argo aborts: the canary pods go, the stable ones keep serving the champion
            live.stop(running["canary"].proc)
            assert running["canary"].proc.poll() is not None
            with pytest.raises(OSError):
                live.get(f"{running['canary'].url}/readyz", timeout=5)
            assert _model_tag(running["stable"], users[1]) == retrained.stable
    finally:
        if prometheus is not None:
            live.stop(prometheus.proc)
        for server in running.values():
            live.stop(server.proc)
