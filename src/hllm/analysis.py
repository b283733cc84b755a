"""The local evaluator of an Argo Rollouts AnalysisTemplate: the canary decision without a cluster.

On a cluster, the Argo Rollouts controller runs ``manifests/base/analysistemplate.yaml`` in the background of
every canary. Here the same file is read and run the way the controller runs an AnalysisRun: each metric's
Prometheus query (``{{args.x}}`` substituted) is sent to a Prometheus HTTP API (``/api/v1/query``) every
``interval``, ``count`` times; each measurement is Successful, Failed or Inconclusive by its ``successCondition``
and ``failureCondition`` (`hllm.conditions`), or Error when the query or the condition cannot be evaluated. A
metric is Failed once its failures exceed ``failureLimit`` (default 0), Inconclusive once its inconclusive
measurements exceed ``inconclusiveLimit`` (default 0), Error after more than ``consecutiveErrorLimit`` (default 4)
errors in a row (retried every 10 s), Successful at ``count``; the first metric that fails, errs or is
inconclusive ends the run, and the run's phase is the worst of its metrics' (Successful < Inconclusive < Error <
Failed).

The template is read for exactly those fields (plus ``initialDelay`` and the prometheus ``address``, which the
caller's Prometheus URL replaces); any other field is refused, so a template never means more than is evaluated.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hllm.conditions import Condition, ConditionError

PHASES = ("Successful", "Pending", "Inconclusive", "Error", "Failed")  # best to worst (Argo's IsWorse order)
METRIC_FIELDS = {
    "name",
    "interval",
    "initialDelay",
    "count",
    "failureLimit",
    "inconclusiveLimit",
    "consecutiveErrorLimit",
    "successCondition",
    "failureCondition",
    "provider",
}
PROMETHEUS_FIELDS = {"address", "query"}
ERROR_RETRY_SECONDS = 10.0  # Argo's DefaultErrorRetryInterval
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
_ARG = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
Query = Callable[[str], "float | list[float]"]


class AnalysisError(ValueError):
    """A template the local evaluator cannot run as written; the message names the metric and field."""


class QueryError(RuntimeError):
    """Prometheus could not answer a query (unreachable, bad PromQL, unsupported result type)."""


@dataclass(frozen=True)
class Metric:
    """One metric of a template, args substituted, conditions compiled."""

    name: str
    query: str
    interval: float | None  # seconds between measurements; None = measure once
    count: int
    initial_delay: float = 0.0
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = DEFAULT_CONSECUTIVE_ERROR_LIMIT
    success: Condition | None = None
    failure: Condition | None = None

    def judge(self, result: float | list[float]) -> str:
        """The phase of one measurement, as Argo's ``EvaluateResult``."""
        succeeded = self.success.evaluate(result) if self.success else None
        failed = self.failure.evaluate(result) if self.failure else None
        if succeeded is None and failed is None:
            return "Successful"
        if failed is None:
            failed = not succeeded
        if succeeded is None:
            succeeded = not failed
        return "Failed" if failed else "Successful" if succeeded else "Inconclusive"


@dataclass
class Measurement:
    phase: str
    value: str  # the query result, or "" for an error
    at: float  # seconds since the run started (the evaluator's clock)
    message: str = ""


@dataclass
class MetricResult:
    name: str
    phase: str = "Pending"
    measurements: list[Measurement] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    consecutive_errors: int = 0
    message: str = ""

    @property
    def completed(self) -> bool:
        return self.phase in ("Successful", "Failed", "Error", "Inconclusive")


@dataclass
class AnalysisRun:
    """What an AnalysisRun's status would say: the overall phase and each metric's."""

    phase: str
    metrics: dict[str, MetricResult]
    message: str = ""

    def summary(self) -> str:
        lines = [f"analysis {self.phase}" + (f": {self.message}" if self.message else "")]
        for result in self.metrics.values():
            values = ", ".join(m.value or m.phase for m in result.measurements[-3:])
            lines.append(f"  {result.name}: {result.phase} ({len(result.measurements)} measurements; last: {values})")
        return "\n".join(lines)


def parse_duration(text: str, where: str) -> float:
    """Seconds in an Argo duration string (``30s``, ``1m``, ``1m30s``, ``500ms``, ``1h``)."""
    if not isinstance(text, str) or not text or _DURATION.sub("", text) != "":
        raise AnalysisError(f"{where}: {text!r} is not a duration such as 30s, 1m or 1m30s")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[unit] for n, unit in _DURATION.findall(text))


def load_template(path: str | Path) -> dict[str, Any]:
    """An AnalysisTemplate YAML file, validated against the vendored CRD schema."""
    from hllm.manifests import validate_manifest

    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("kind") not in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
        raise AnalysisError(f"{path}: not an AnalysisTemplate")
    validate_manifest(doc, str(path))
    return doc


def _args(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    declared = {a["name"]: a for a in template["spec"].get("args", [])}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise AnalysisError(f"args {unknown} are not declared by the template (declared: {sorted(declared)})")
    values = {}
    for name, arg in declared.items():
        if name in given:
            values[name] = str(given[name])
        elif "value" in arg:
            values[name] = str(arg["value"])
        else:
            raise AnalysisError(f"arg {name!r} has no value: give it (the controller would resolve its valueFrom)")
    return values


def _substitute(text: str, args: Mapping[str, str], where: str) -> str:
    def value(match: re.Match) -> str:
        if match.group(1) not in args:
            raise AnalysisError(f"{where}: unknown placeholder {match.group(0)} (args: {sorted(args)})")
        return args[match.group(1)]

    return _ARG.sub(value, text)


def _integer(raw: Any, where: str, args: Mapping[str, str]) -> int:
    text = _substitute(raw, args, where) if isinstance(raw, str) else raw
    try:
        number = int(text)
    except (TypeError, ValueError):
        raise AnalysisError(f"{where}: {raw!r} is not an integer") from None
    if number < 0:
        raise AnalysisError(f"{where}: {number} must be >= 0")
    return number


def resolve_metrics(template: Mapping[str, Any], args: Mapping[str, str]) -> list[Metric]:
    """The template's metrics with ``args`` substituted; `AnalysisError` for anything the evaluator would ignore."""
    spec = template.get("spec") or {}
    extra = sorted(set(spec) - {"args", "metrics"})
    if extra:
        raise AnalysisError(f"spec fields {extra} are not supported by the local evaluator")
    values = _args(template, args)
    metrics = []
    for index, raw in enumerate(spec.get("metrics") or []):
        name = raw.get("name", f"metrics[{index}]")
        where = f"metric {name!r}"
        unsupported = sorted(set(raw) - METRIC_FIELDS)
        providers = sorted((raw.get("provider") or {}).keys())
        if unsupported:
            raise AnalysisError(f"{where}: fields {unsupported} are not supported by the local evaluator")
        if providers != ["prometheus"]:
            raise AnalysisError(f"{where}: provider {providers} is not supported (only prometheus)")
        prometheus = raw["provider"]["prometheus"]
        if sorted(set(prometheus) - PROMETHEUS_FIELDS) or not prometheus.get("query"):
            raise AnalysisError(f"{where}: prometheus needs a query and supports only {sorted(PROMETHEUS_FIELDS)}")
        interval = parse_duration(raw["interval"], f"{where} interval") if "interval" in raw else None
        count = _integer(raw["count"], f"{where} count", values) if "count" in raw else 0
        if count == 0 and interval is not None:
            raise AnalysisError(f"{where}: an interval without a count runs until the rollout ends; give a count")
        if count > 1 and interval is None:
            raise AnalysisError(f"{where}: count {count} needs an interval")
        try:
            success, failure = (
                Condition(_substitute(raw[key], values, f"{where} {key}")) if key in raw else None
                for key in ("successCondition", "failureCondition")
            )
        except ConditionError as exc:
            raise AnalysisError(f"{where}: {exc}") from None
        metrics.append(
            Metric(
                name=name,
                query=_substitute(prometheus["query"], values, f"{where} query"),
                interval=interval,
                count=max(count, 1),
                initial_delay=parse_duration(raw["initialDelay"], f"{where} initialDelay")
                if "initialDelay" in raw
                else 0,
                failure_limit=_integer(raw.get("failureLimit", 0), f"{where} failureLimit", values),
                inconclusive_limit=_integer(raw.get("inconclusiveLimit", 0), f"{where} inconclusiveLimit", values),
                consecutive_error_limit=_integer(
                    raw.get("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERROR_LIMIT),
                    f"{where} consecutiveErrorLimit",
                    values,
                ),
                success=success,
                failure=failure,
            )
        )
    if not metrics:
        raise AnalysisError("the template has no metrics")
    return metrics


class PrometheusAPI:
    """``query(promql)``: an instant query; a vector gives its sample values (``list[float]``), a scalar a float."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def __call__(self, promql: str) -> float | list[float]:
        request = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # Prometheus answers bad PromQL with 400 and a JSON error
            detail = exc.read().decode(errors="replace")[:500]
            raise QueryError(f"Prometheus at {self.url} answered {exc.code}: {detail}") from None
        except (OSError, ValueError) as exc:
            raise QueryError(f"Prometheus at {self.url} unreachable or unreadable: {exc}") from None
        if body.get("status") != "success":
            raise QueryError(f"Prometheus error: {body.get('error', body)}")
        try:
            kind, result = body["data"]["resultType"], body["data"]["result"]
            if kind == "vector":
                return [float(sample["value"][1]) for sample in result]
            if kind == "scalar":
                return float(result[1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise QueryError(f"unreadable Prometheus answer {str(body)[:300]}: {exc!r}") from None
        raise QueryError(f"unsupported result type {kind!r} (only vector and scalar, as Argo)")


def _format(result: float | list[float]) -> str:
    return json.dumps(result) if not isinstance(result, float) or math.isfinite(result) else str(result)


def _measure(metric: Metric, query: Query, at: float) -> Measurement:
    try:
        result = query(metric.query)
    except QueryError as exc:
        return Measurement("Error", "", at, str(exc))
    try:
        return Measurement(metric.judge(result), _format(result), at)
    except ConditionError as exc:
        return Measurement("Error", _format(result), at, str(exc))


def _assess(metric: Metric, result: MetricResult) -> tuple[str, str]:
    """A metric's phase after its latest measurement, as Argo's ``assessMetricStatus`` (later checks win)."""
    phase, message = "Pending", ""
    if result.counts["Failed"] > metric.failure_limit:
        phase, message = "Failed", f"failed ({result.counts['Failed']}) > failureLimit ({metric.failure_limit})"
    if result.counts["Inconclusive"] > metric.inconclusive_limit:
        phase = "Inconclusive"
        message = f"inconclusive ({result.counts['Inconclusive']}) > inconclusiveLimit ({metric.inconclusive_limit})"
    if result.consecutive_errors > metric.consecutive_error_limit:
        phase = "Error"
        message = f"consecutive errors ({result.consecutive_errors}) > limit ({metric.consecutive_error_limit})"
    if phase == "Pending" and sum(result.counts[p] for p in ("Successful", "Failed", "Inconclusive")) >= metric.count:
        phase = "Successful"
    return phase, message


def run_analysis(
    template: Mapping[str, Any],
    args: Mapping[str, str],
    query: Query,
    *,
    sleep: Callable[[float], None] | None = None,
) -> AnalysisRun:
    """Run ``template`` with ``args`` against ``query`` (e.g. `PrometheusAPI`) until it completes.

    The evaluator keeps its own clock: it advances by each wait it asks of ``sleep`` (tests pass a sleep that
    waits less, to run a 20-minute analysis in seconds; the measurements are the same).
    """
    sleep = sleep or time.sleep
    metrics = resolve_metrics(template, args)
    results = {m.name: MetricResult(m.name) for m in metrics}
    due = {m.name: m.initial_delay for m in metrics}
    now = 0.0
    while True:
        open_metrics = [m for m in metrics if not results[m.name].completed]
        ending = any(r.phase in ("Failed", "Error", "Inconclusive") for r in results.values())
        if ending or not open_metrics:
            break
        next_at = min(due[m.name] for m in open_metrics)
        if next_at > now:
            sleep(next_at - now)
            now = next_at
        for metric in (m for m in open_metrics if due[m.name] <= now):
            result = results[metric.name]
            measurement = _measure(metric, query, now)
            result.measurements.append(measurement)
            result.counts[measurement.phase] += 1
            result.consecutive_errors = result.consecutive_errors + 1 if measurement.phase == "Error" else 0
            wait = ERROR_RETRY_SECONDS if measurement.phase == "Error" else metric.interval
            due[metric.name] = now + wait if wait is not None else math.inf
            phase, message = _assess(metric, result)
            result.phase, result.message = phase, message or measurement.message
    for result in results.values():  # a run that ends early: metrics measured without trouble count as passed
        if not result.completed and result.measurements:
            result.phase = "Successful"
    phases = [r.phase for r in results.values()]
    worst = max(phases, key=PHASES.index)
    messages = [f"{r.name}: {r.message}" for r in results.values() if r.phase == worst and r.message]
    return AnalysisRun(worst if worst != "Pending" else "Successful", results, "; ".join(messages))
