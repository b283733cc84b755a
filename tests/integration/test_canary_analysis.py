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
import shutil
from concurrent.futures import ThreadPoolExecutor

import bentoml
import live
import pytest
from testdata import tiny_run_config

from hllm.analysis import PrometheusAPI, load_template, run_analysis
from hllm.data.synth import SynthConfig, generate
from hllm.rollout import ANALYSIS_TEMPLATE
from hllm.training.build import load_run_config, run_training
from hllm_feature_repo.store import sync

pytestmark = pytest.mark.integration
NAMESPACE = "hllm-test"
FAULTS = {
    "healthy": {},
    "errors": {"HLLM_FAULT_ERROR_RATE": "0.5"},
    "slow": {"HLLM_FAULT_LATENCY_MS": "2000"},
}
REQUESTS = {"healthy": 200, "errors": 200, "slow": 60}
CLIENTS = {"healthy": 2, "errors": 2, "slow": 12}  # the slow server mostly sleeps: more clients, same CPU


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    return live.prometheus_binary()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny trained HLLM in the BentoML store, a full Feast store and a stale one (5 users)."""
    root = tmp_path_factory.mktemp("canary")
    dataset = generate(SynthConfig(seed=7, n_users=120, n_items=80))
    run_training(dataset, load_run_config(text=tiny_run_config(epochs=1)), root / "run", progress=False)
    with bentoml.models.create("canary-analysis") as saved:
        shutil.copytree(root / "run" / "model", saved.path, dirs_exist_ok=True)
    sync(dataset, root / "feast", history_length=50)
    users = sorted(dataset.interactions["user_id"].unique())
    stale = dataclasses.replace(
        dataset, interactions=dataset.interactions[dataset.interactions["user_id"].isin(users[:5])]
    )
    sync(stale, root / "feast-stale", history_length=50)
    return str(saved.tag), root, users


@pytest.fixture(scope="module")
def servers(model):
    tag, root, _ = model
    running = []
    try:
        for (name, faults), port in zip(FAULTS.items(), live.free_ports(len(FAULTS)), strict=True):
            feast = root / ("feast-stale" if name == "slow" else "feast")
            env = {"HLLM_MODEL": tag, "HLLM_FEAST_HOME": str(feast)}
            running.append(live.start_server(name, port, live.own_home(root / f"home-{name}"), env, faults))
        for server in running:
            server.wait_ready()
        yield {server.name: server.port for server in running}
    finally:
        for server in running:
            live.stop(server.proc)


@pytest.fixture(scope="module")
def prometheus(prometheus_binary, servers, tmp_path_factory):
    started = live.start_prometheus(prometheus_binary, tmp_path_factory.mktemp("prometheus"), servers, NAMESPACE)
    try:
        yield PrometheusAPI(started.url)
    finally:
        live.stop(started.proc)


def _scraped(prometheus, metric: str, server: str, at_least: int) -> bool:
    return live.scraped(prometheus, metric, NAMESPACE, server, at_least)


@pytest.fixture(scope="module")
def traffic(model, servers, prometheus):
    """The same traffic pattern at each server (known users, bounded counts), then wait until Prometheus has it.

    One request first, scraped before the rest: every series then has a sample in Prometheus before the measured
    traffic, so rate() sees all of it (what a counter did before its first sample is invisible to rate()).
    """
    _, _, users = model
    histogram = "bentoml_service_request_duration_seconds_count"
    for name, port in servers.items():
        live.recommend(port, users[-1])
        live.wait(lambda n=name: _scraped(prometheus, histogram, n, 1), f"{name}: first request scraped", 120)
    with ThreadPoolExecutor(1) as background:
        slow = background.submit(live.drive, servers["slow"], users, REQUESTS["slow"], CLIENTS["slow"])
        statuses = {
            name: live.drive(servers[name], users, REQUESTS[name], CLIENTS[name]) for name in ("healthy", "errors")
        }
        statuses["slow"] = slow.result()
    counter = "bentoml_service_request_total"
    for name, sent in REQUESTS.items():
        live.wait(lambda n=name, s=sent: _scraped(prometheus, counter, n, s + 1), f"{name}: all requests scraped", 120)
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
