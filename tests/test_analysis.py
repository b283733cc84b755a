"""The local AnalysisTemplate evaluator: conditions, Argo's measurement/limit semantics, args, refusals.

The template under test is the committed one (manifests/base/analysistemplate.yaml): Prometheus is replaced by a
function answering each metric's query; the real-Prometheus run is tests/integration/test_canary_analysis.py.
"""

from __future__ import annotations

import copy
import io
import json
import math

import pytest

from hllm.analysis import (
    AnalysisError,
    PrometheusAPI,
    QueryError,
    load_template,
    parse_duration,
    resolve_metrics,
    run_analysis,
)
from hllm.conditions import Condition, ConditionError
from hllm.rollout import ANALYSIS_TEMPLATE

ARGS = {"namespace": "shop", "canary-hash": "6d4f9c7b8"}
HEALTHY = {"error-ratio": 0.0, "recommend-p99-seconds": 0.04, "fallback-ratio": 0.05}


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template(ANALYSIS_TEMPLATE)


class FakePrometheus:
    """Answers each metric's query from a per-metric list of results (the last one repeats); records queries."""

    def __init__(self, template: dict, answers: dict) -> None:
        self.by_query = {m.query: m.name for m in resolve_metrics(template, ARGS)}
        self.answers = {name: list(v) if isinstance(v, list) else [[v]] for name, v in answers.items()}
        self.asked: list[str] = []

    def __call__(self, promql: str):
        name = self.by_query[promql]
        self.asked.append(name)
        answers = self.answers[name]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _run(template: dict, answers: dict):
    waits: list[float] = []
    fake = FakePrometheus(template, {**{k: v for k, v in HEALTHY.items()}, **answers})
    return run_analysis(template, ARGS, fake, sleep=waits.append), fake, waits


def test_healthy_canary_passes_every_metric_after_count_measurements(template) -> None:
    run, _, waits = _run(template, {})
    assert run.phase == "Successful"
    for metric in template["spec"]["metrics"]:
        result = run.metrics[metric["name"]]
        assert result.phase == "Successful" and len(result.measurements) == metric["count"]
        assert {m.phase for m in result.measurements} == {"Successful"}
    assert sum(waits) == pytest.approx(60 * (template["spec"]["metrics"][0]["count"] - 1))  # interval 1m


def test_args_are_substituted_into_every_query(template) -> None:
    for metric in resolve_metrics(template, ARGS):
        assert 'rollouts_pod_template_hash="6d4f9c7b8"' in metric.query and 'namespace="shop"' in metric.query
        assert "{{" not in metric.query


@pytest.mark.parametrize(
    ("metric", "bad"),
    [("error-ratio", 0.5), ("recommend-p99-seconds", 1.2), ("fallback-ratio", 0.9)],
)
def test_a_breach_fails_its_metric_and_ends_the_run(template, metric: str, bad: float) -> None:
    run, _, _ = _run(template, {metric: bad})
    assert run.phase == "Failed" and run.metrics[metric].phase == "Failed"
    assert len(run.metrics[metric].measurements) == 2  # failureLimit 1: the second failure decides
    assert "failureLimit" in run.message
    others = [r for name, r in run.metrics.items() if name != metric]
    assert all(r.phase == "Successful" and len(r.measurements) == 2 for r in others)  # stopped early, not failed


def test_one_failed_measurement_is_tolerated(template) -> None:
    run, _, _ = _run(template, {"error-ratio": [[0.3], [0.0]]})
    assert run.phase == "Successful"
    assert [m.phase for m in run.metrics["error-ratio"].measurements[:2]] == ["Failed", "Successful"]


def test_no_traffic_is_inconclusive_not_a_pass(template) -> None:
    run, _, _ = _run(template, {"error-ratio": [[math.nan]]})
    assert run.phase == "Inconclusive" and run.metrics["error-ratio"].phase == "Inconclusive"
    assert len(run.metrics["error-ratio"].measurements) == 3  # inconclusiveLimit 2


def test_unknown_target_errors_after_consecutive_errors_retried_every_10s(template) -> None:
    run, _, _ = _run(template, {"fallback-ratio": [[]]})  # empty vector: result[0] cannot be read
    result = run.metrics["fallback-ratio"]
    assert run.phase == "Error" and result.phase == "Error"
    assert [m.phase for m in result.measurements] == ["Error"] * 5  # consecutiveErrorLimit 4 (default)
    assert [m.at for m in result.measurements] == [0, 10, 20, 30, 40]
    assert "out of range" in result.measurements[0].message


def test_errors_then_a_measurement_reset_the_consecutive_count(template) -> None:
    down = QueryError("connection refused")
    run, _, _ = _run(template, {"error-ratio": [down, down, down, [0.0]]})
    assert run.phase == "Successful"
    assert [m.phase for m in run.metrics["error-ratio"].measurements[:4]] == ["Error"] * 3 + ["Successful"]


@pytest.mark.parametrize(
    ("given", "match"),
    [({"namespace": "shop"}, "'canary-hash' has no value"), ({**ARGS, "extra": "1"}, "not declared")],
)
def test_args_must_match_the_template(template, given: dict, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        resolve_metrics(template, given)


def _edited(template: dict, edit) -> dict:
    changed = copy.deepcopy(template)
    edit(changed["spec"]["metrics"][0])
    return changed


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda m: m.update(consecutiveSuccessLimit=3), "consecutiveSuccessLimit"),
        (lambda m: m["provider"].update(web={"url": "x"}), "only prometheus"),
        (lambda m: m["provider"]["prometheus"].update(timeout=5), "supports only"),
        (lambda m: m.update(successCondition="result[0] < 1 ? true : false"), "unsupported character '\\?'"),
        (lambda m: m.update(failureCondition="__import__(result)"), "unsupported name '__import__'"),
        (lambda m: m.update(interval="1 minute"), "not a duration"),
        (lambda m: m.pop("count"), "give a count"),
        (lambda m: m.update(failureLimit="{{args.nope}}"), "unknown placeholder"),
    ],
)
def test_what_the_evaluator_does_not_support_is_refused(template, edit, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        resolve_metrics(_edited(template, edit), ARGS)


def test_spec_level_extras_are_refused(template) -> None:
    changed = copy.deepcopy(template)
    changed["spec"]["dryRun"] = [{"metricName": "*"}]
    with pytest.raises(AnalysisError, match="dryRun"):
        resolve_metrics(changed, ARGS)


@pytest.mark.parametrize(
    ("condition", "result", "expected"),
    [
        ("result[0] <= 0.01", [0.01], True),
        ("result[0] <= 0.01", [0.0100001], False),
        ("result[0] > 0.01", [math.nan], False),
        ("result[0] <= 0.01", [math.nan], False),
        ("isNaN(result[0]) || result[0] < 0.3", [math.nan], True),
        ("isNaN(result[0]) || result[0] < 0.3", [0.4], False),
        ("len(result) == 2 && result[1] >= 2e-1", [0.0, 0.2], True),
        ("not (result[0] > 1) and !isInf(result[0])", [0.5], True),
        ("result[0] * 100 - 1 < 4 / 2", [0.02], True),
        ("result >= 0.5 or false", 0.7, True),
        ("-result[0] == -1", [1.0], True),
        ("true == !false", [], True),
    ],
)
def test_conditions_evaluate_like_argo(condition: str, result, expected: bool) -> None:
    assert Condition(condition).evaluate(result) is expected


@pytest.mark.parametrize(
    ("condition", "result", "match"),
    [
        ("result[0] < 1", [], "out of range"),
        ("result[0] < 1", 0.5, "cannot index"),
        ("result[0]", [1.0], "not true or false"),
        ("result[0] && true", [1.0], "needs true or false"),
        ("isNaN(result)", [1.0], "needs a number"),
    ],
)
def test_conditions_that_cannot_be_evaluated_raise(condition: str, result, match: str) -> None:
    with pytest.raises(ConditionError, match=match):
        Condition(condition).evaluate(result)


@pytest.mark.parametrize(
    "text",
    [
        "result[0] = 1",
        'result[0] == "1"',
        "result.value > 1",
        "asInt(result[0]) > 1",
        "(result[0] > 1",
        "result[0] >",
        "",
    ],
)
def test_conditions_outside_the_subset_are_rejected_when_compiled(text: str) -> None:
    with pytest.raises(ConditionError):
        Condition(text)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("1m", 60), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]}},
            [0.25],
        ),
        (
            {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}},
            None,
        ),
        ({"status": "success", "data": {"resultType": "vector", "result": []}}, []),
        ({"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}, 3.0),
    ],
)
def test_prometheus_answers_become_argo_results(monkeypatch, body: dict, expected) -> None:
    seen = []

    def urlopen(url, timeout):
        seen.append(url)
        return io.BytesIO(json.dumps(body).encode())

    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    result = PrometheusAPI("http://prom:9090/")("sum(up)")
    assert seen == ["http://prom:9090/api/v1/query?query=sum%28up%29"]
    if expected is None:
        assert math.isnan(result[0])
    else:
        assert result == expected


def test_prometheus_matrix_and_errors_are_query_errors(monkeypatch) -> None:
    body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    monkeypatch.setattr("urllib.request.urlopen", lambda url, timeout: io.BytesIO(json.dumps(body).encode()))
    with pytest.raises(QueryError, match="matrix"):
        PrometheusAPI("http://prom:9090")("x[1m]")
    monkeypatch.undo()
    with pytest.raises(QueryError, match="unreachable"):
        PrometheusAPI("http://127.0.0.1:9", timeout=2)("up")


@pytest.mark.parametrize(("value", "code", "phase"), [(0.0, 0, "Successful"), (0.9, 5, "Failed")])
def test_deploy_analyze_cli_runs_the_committed_template(monkeypatch, tmp_path, value, code, phase) -> None:
    from typer.testing import CliRunner

    from hllm.cli import app

    monkeypatch.setattr("hllm.analysis.PrometheusAPI.__call__", lambda self, promql: [value])
    monkeypatch.setattr("hllm.analysis.time.sleep", lambda seconds: None)
    args = ["--arg", "namespace=shop", "--arg", "canary-hash=abc", "--out", str(tmp_path / "run.json")]
    result = CliRunner().invoke(app, ["deploy", "analyze", "--prometheus", "http://prom:9090", *args])
    assert result.exit_code == code, result.output
    assert f"analysis {phase}" in result.output and json.loads((tmp_path / "run.json").read_text())["phase"] == phase
    result = CliRunner().invoke(app, ["deploy", "analyze", "--prometheus", "http://p", "--arg", "canary-hash"])
    assert result.exit_code == 2 and "name=value" in result.output
