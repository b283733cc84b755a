"""The service's own Prometheus metrics and the test-only fault injection, without a server.

A real `bentoml serve` exposing both on /metrics: tests/integration/test_canary_analysis.py.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import nullcontext

import pytest
from prometheus_client import REGISTRY

from hllm_serving.faults import FaultInjection, Faults
from hllm_serving.metrics import ServiceMetrics

GUARD = {"HLLM_FAULT_INJECTION": "tests-only"}


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_carry_the_model_tag_and_count_what_happened() -> None:
    metrics = ServiceMetrics("hllm:unit1")
    assert _sample("hllm_recommendations_total", model="hllm:unit1", fallback="popularity") == 0  # exists at start
    assert REGISTRY.get_sample_value("hllm_recommendations_total", {"model": "hllm:unit1", "fallback": "none"}) == 0
    metrics.recommended(None)
    metrics.recommended("popularity")
    metrics.recommended(None, lists=3)
    metrics.upserted(added=2, updated=1, catalogue=82)
    metrics.event()
    with metrics.stage("user_llm"):
        pass
    assert _sample("hllm_recommendations_total", model="hllm:unit1", fallback="none") == 4
    assert _sample("hllm_recommendations_total", model="hllm:unit1", fallback="popularity") == 1
    assert _sample("hllm_upserted_items_total", model="hllm:unit1", change="added") == 2
    assert _sample("hllm_upserted_items_total", model="hllm:unit1", change="updated") == 1
    assert _sample("hllm_catalogue_items", model="hllm:unit1") == 82
    assert _sample("hllm_events_total", model="hllm:unit1") == 1
    assert _sample("hllm_stage_duration_seconds_count", model="hllm:unit1", stage="user_llm") == 1
    ServiceMetrics("hllm:unit2").event()  # a second model in the same process: its own series, no clash
    assert (
        _sample("hllm_events_total", model="hllm:unit2") == 1 and _sample("hllm_events_total", model="hllm:unit1") == 1
    )


def test_predictor_stages_are_timed_through_its_hook() -> None:
    import torch

    from hllm.predictor import Predictor

    class Task:  # the smallest RecTask the predictor ranks with: the user vector is the last item's vector
        similarity = "dot"
        model = torch.nn.Identity()

        def user_vectors(self, padded, vectors):
            return vectors[padded[:, -1]]

    predictor = Predictor(Task(), ["a", "b", "c"], torch.eye(4)[:, :3].contiguous() + 0.0, max_len=4)
    seen = []

    def timer(stage: str):
        seen.append(stage)
        return nullcontext()

    predictor.stage_timer = timer
    assert len(predictor.recommend([["a"]], k=2)[0]) == 2
    assert seen == ["user_llm", "search"]


def test_no_fault_variables_means_no_faults() -> None:
    assert not Faults.from_env({}).enabled
    assert not Faults.from_env({"HLLM_FAULT_ERROR_RATE": ""}).enabled


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"HLLM_FAULT_ERROR_RATE": "0.5"}, "HLLM_FAULT_ERROR_RATE set without HLLM_FAULT_INJECTION=tests-only"),
        ({"HLLM_FAULT_LATENCY_MS": "100", "HLLM_FAULT_INJECTION": "yes"}, "HLLM_FAULT_LATENCY_MS set without"),
        ({**GUARD, "HLLM_FAULT_ERROR_RATE": "half"}, "not numbers"),
        ({**GUARD, "HLLM_FAULT_ERROR_RATE": "1.5"}, r"\[0, 1\]"),
    ],
)
def test_faults_cannot_be_enabled_by_accident(env: dict, match: str) -> None:
    with pytest.raises(RuntimeError, match=match):
        Faults.from_env(env)


def test_enabled_faults_are_announced_loudly(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        faults = Faults.from_env({**GUARD, "HLLM_FAULT_ERROR_RATE": "0.5", "HLLM_FAULT_LATENCY_MS": "1000"})
    assert faults == Faults(0.5, 1000.0)
    assert "FAULT INJECTION ENABLED" in caplog.text and "50%" in caplog.text and "+1000 ms" in caplog.text


@pytest.mark.parametrize(("rate", "failures"), [(0.0, 0), (0.5, 50), (0.1, 10), (0.33, 33), (1.0, 100)])
def test_the_error_share_is_exact(rate: float, failures: int) -> None:
    assert sum(Faults(error_rate=rate).fails(i) for i in range(100)) == failures


def _call(middleware, method: str) -> int:
    sent = []

    async def send(message):
        sent.append(message)

    asyncio.run(middleware({"type": "http", "method": method, "path": "/recommend"}, None, send))
    return sent[0]["status"]


def test_fault_middleware_fails_api_calls_only_and_adds_latency(monkeypatch) -> None:
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    slept = []

    async def sleep(seconds):
        slept.append(seconds)

    monkeypatch.setattr("hllm_serving.faults.asyncio.sleep", sleep)
    middleware = FaultInjection(app, Faults(error_rate=0.5, latency_ms=250))
    assert [_call(middleware, "POST") for _ in range(4)] == [200, 500, 200, 500]
    assert _call(middleware, "GET") == 200  # health, metrics, docs: untouched
    assert slept == [0.25] * 4
    assert [_call(FaultInjection(app, Faults()), "POST") for _ in range(3)] == [200, 200, 200]
