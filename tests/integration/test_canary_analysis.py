"""The canary AnalysisTemplate against a real Prometheus scraping real BentoML servers.

Three `bentoml serve` of the same tiny trained model on loopback, each scraped by Prometheus (1 s) under its own
``rollouts_pod_template_hash`` label, as Argo's canary pods would be:
- ``healthy``: the service as deployed;
- ``errors``: fault injection answers half the API calls 500;
- ``slow``: 2 s added to every call, and a stale feature store that knows 5 of the 120 users (most answers fall
  back to popularity).
After the same kind of traffic at each, `hllm.analysis.run_analysis` evaluates the committed template's exact
PromQL through Prometheus's HTTP API: the healthy server passes every metric; each faulty one fails the metrics
its fault breaks and only those. Thresholds are far from what each server shows (0 vs 1% errors, tens of ms vs a
0.5 s p99, 0 vs 20% fallbacks); every wait is a deadline, never a sleep-and-hope.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from processes import register_tiny_model, stop_group

from hllm.analysis import PrometheusAPI, load_template, run_analysis
from hllm.rollout import ANALYSIS_TEMPLATE
from hllm_feature_repo.store import sync

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "hllm-test"
FAULTS = {
    "healthy": {},
    "errors": {"HLLM_FAULT_ERROR_RATE": "0.5"},
    "slow": {"HLLM_FAULT_LATENCY_MS": "2000"},
}
REQUESTS = {"healthy": 200, "errors": 200, "slow": 60}
CLIENTS = {"healthy": 2, "errors": 2, "slow": 12}  # the slow server mostly sleeps: more clients, same CPU


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held together while chosen: bentoml binds with SO_REUSEPORT, so two
    servers given the same port would silently share it)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, response.read()


def _wait(check, what: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check()`` until it returns something truthy; fail naming ``what`` (and the log tail) at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            if value := check():
                return value
        except OSError:
            pass
        time.sleep(0.5)
    tail = log.read_text()[-3000:] if log and log.is_file() else ""
    pytest.fail(f"{what} not reached within {timeout:.0f} s\n{tail}")


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if not found:
        pytest.fail(
            "the Prometheus server is not installed: `apt-get install -y prometheus` (Debian/Ubuntu; "
            "`make test-integration` installs it), or put a `prometheus` binary (2.x) on PATH"
        )
    return found


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny trained HLLM in the BentoML store, a full Feast store and a stale one (5 users)."""
    root = tmp_path_factory.mktemp("canary")
    tag, dataset = register_tiny_model(root, "canary-analysis", seed=7)
    sync(dataset, root / "feast", history_length=50)
    users = sorted(dataset.interactions["user_id"].unique())
    stale = dataclasses.replace(
        dataset, interactions=dataset.interactions[dataset.interactions["user_id"].isin(users[:5])]
    )
    sync(stale, root / "feast-stale", history_length=50)
    return tag, root, users


def _own_home(home: Path) -> Path:
    """A BENTOML_HOME of its own over the shared model store: bentoml serve keeps its Prometheus multiprocess
    files in BENTOML_HOME (and wipes them at start), so servers sharing one would mix their metrics."""
    home.mkdir()
    (home / "models").symlink_to(Path(os.environ["BENTOML_HOME"]) / "models")
    return home


@pytest.fixture(scope="module")
def servers(model):
    tag, root, _ = model
    running = {}
    try:
        for (name, faults), port in zip(FAULTS.items(), _free_ports(len(FAULTS)), strict=True):
            log = root / f"{name}.server.txt"
            env = {**os.environ, "HLLM_MODEL": tag, "HLLM_FEAST_HOME": str(root / "feast"), **faults}
            env["BENTOML_HOME"] = str(_own_home(root / f"home-{name}"))
            if faults:
                env["HLLM_FAULT_INJECTION"] = "tests-only"
            if name == "slow":
                env["HLLM_FEAST_HOME"] = str(root / "feast-stale")
            command = [sys.executable, "-m", "bentoml", "serve", "hllm_serving.service:HLLMService"]
            proc = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=REPO,
                stdout=log.open("w"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            running[name] = (port, proc, log)
        for name, (port, proc, log) in running.items():
            _wait(lambda p=port: _get(f"http://127.0.0.1:{p}/readyz")[0] == 200, f"{name} ready", 300, proc, log)
        yield {name: port for name, (port, _, _) in running.items()}
    finally:
        for _, proc, _ in running.values():
            stop_group(proc)


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, servers, tmp_path_factory):
    root = tmp_path_factory.mktemp("prometheus")
    targets = [
        {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": NAMESPACE, "rollouts_pod_template_hash": name}}
        for name, port in servers.items()
    ]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{"job_name": "hllm", "metrics_path": "/metrics", "static_configs": targets}],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,), log = _free_ports(1), root / "prometheus.txt"
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _get(f"{url}/-/ready")[0] == 200, "Prometheus ready", 120, proc, log)
        yield PrometheusAPI(url)
    finally:
        stop_group(proc)


def _recommend(port: int, user: str) -> int:
    body = json.dumps({"user_id": user, "k": 5}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/recommend", data=body, headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _drive(port: int, users: list[str], requests: int, clients: int) -> list[int]:
    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(lambda i: _recommend(port, users[i % len(users)]), range(requests)))


def _scraped(prometheus, metric: str, server: str, at_least: int) -> bool:
    """Whether Prometheus holds a /recommend ``metric`` of ``server`` that reached ``at_least``."""
    selector = f'namespace="{NAMESPACE}", rollouts_pod_template_hash="{server}", endpoint="/recommend"'
    found = prometheus(f"sum({metric}{{{selector}}})")
    return bool(found) and found[0] >= at_least


@pytest.fixture(scope="module")
def traffic(model, servers, prometheus):
    """The same traffic pattern at each server (known users, bounded counts), then wait until Prometheus has it.

    One request first, scraped before the rest: every series then has a sample in Prometheus before the measured
    traffic, so rate() sees all of it (what a counter did before its first sample is invisible to rate()).
    """
    _, _, users = model
    histogram = "bentoml_service_request_duration_seconds_count"
    for name, port in servers.items():
        _recommend(port, users[-1])
        _wait(lambda n=name: _scraped(prometheus, histogram, n, 1), f"{name}: first request scraped", 120)
    with ThreadPoolExecutor(1) as background:
        slow = background.submit(_drive, servers["slow"], users, REQUESTS["slow"], CLIENTS["slow"])
        statuses = {name: _drive(servers[name], users, REQUESTS[name], CLIENTS[name]) for name in ("healthy", "errors")}
        statuses["slow"] = slow.result()
    counter = "bentoml_service_request_total"
    for name, sent in REQUESTS.items():
        _wait(lambda n=name, s=sent: _scraped(prometheus, counter, n, s + 1), f"{name}: all requests scraped", 120)
    return statuses


def test_traffic_reached_the_servers_as_their_faults_say(traffic) -> None:
    assert set(traffic["healthy"]) == {200} and set(traffic["slow"]) == {200}
    assert traffic["errors"].count(500) == REQUESTS["errors"] // 2 and traffic["errors"].count(200) == 100


@pytest.mark.parametrize(
    ("server", "failed"),
    [("healthy", set()), ("errors", {"error-ratio"}), ("slow", {"recommend-p99-seconds", "fallback-ratio"})],
)
def test_the_analysis_template_judges_each_server_on_real_prometheus(traffic, prometheus, server, failed) -> None:
    template = load_template(ANALYSIS_TEMPLATE)
    waits: list[float] = []
    run = run_analysis(template, {"namespace": NAMESPACE, "canary-hash": server}, prometheus, sleep=waits.append)
    print(f"{server}: {run.summary()}")  # the measured values, shown with -s or -rP
    assert {name for name, result in run.metrics.items() if result.phase == "Failed"} == failed, run.summary()
    assert run.phase == ("Failed" if failed else "Successful"), run.summary()
    passed = set(run.metrics) - failed
    assert all(run.metrics[name].phase == "Successful" for name in passed), run.summary()
    for result in run.metrics.values():  # every measurement was a real answer, not an error or a NaN
        assert all(m.phase in ("Successful", "Failed") for m in result.measurements), run.summary()
    if not failed:
        assert all(len(r.measurements) == 20 for r in run.metrics.values()) and sum(waits) == 19 * 60


def test_service_metrics_reach_prometheus_with_the_model_tag(model, traffic, prometheus) -> None:
    tag, _, _ = model
    selector = f'namespace="{NAMESPACE}", rollouts_pod_template_hash="healthy", model="{tag}"'
    assert prometheus(f"hllm_catalogue_items{{{selector}}}") == [80.0]
    ranked = prometheus(f'hllm_recommendations_total{{{selector}, fallback="none"}}')
    assert ranked == [float(REQUESTS["healthy"] + 1)]  # with the first request
    for stage in ("history_read", "user_llm", "search"):
        assert prometheus(f'hllm_stage_duration_seconds_count{{{selector}, stage="{stage}"}}')[0] >= REQUESTS["healthy"]
    stale = f'namespace="{NAMESPACE}", rollouts_pod_template_hash="slow", fallback="popularity"'
    assert prometheus(f"hllm_recommendations_total{{{stale}}}")[0] > REQUESTS["slow"] / 2
