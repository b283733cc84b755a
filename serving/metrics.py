"""The service's own Prometheus metrics, served on BentoML's ``/metrics`` beside its ``bentoml_service_*`` ones.

- ``hllm_recommendations_total{model, fallback}`` (counter): lists served; ``fallback="popularity"`` when the
  User LLM could not rank (no history), ``"none"`` otherwise.
- ``hllm_catalogue_items{model}`` (gauge): items the service can recommend now (grows with upserts).
- ``hllm_upserted_items_total{model, change}`` (counter): items upserted, ``change="added"`` or ``"updated"``.
- ``hllm_events_total{model}`` (counter): interaction events recorded.
- ``hllm_stage_duration_seconds{model, stage}`` (histogram): ``history_read`` (feature store), ``user_llm``,
  ``search``.

``model`` is the served BentoML model tag. The canary AnalysisTemplate (``manifests/base/analysistemplate.yaml``)
reads ``hllm_recommendations_total`` for its model-health metric.

``bentoml serve`` runs workers in prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` in the
worker's environment): the metrics are created in the worker, when the service starts, never at import time.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@functools.cache
def _families() -> dict:
    """The metric families, registered once per process (a second registration would be a duplicate)."""
    from prometheus_client import Counter, Gauge, Histogram

    return {
        "recommendations": Counter(
            "hllm_recommendations_total", "Recommendation lists served, by fallback kind", ["model", "fallback"]
        ),
        "catalogue": Gauge(
            "hllm_catalogue_items", "Items in the served catalogue", ["model"], multiprocess_mode="livemostrecent"
        ),
        "upserts": Counter("hllm_upserted_items_total", "Items upserted", ["model", "change"]),
        "events": Counter("hllm_events_total", "Interaction events recorded", ["model"]),
        "stages": Histogram(
            "hllm_stage_duration_seconds", "Time in each stage of a request", ["model", "stage"], buckets=STAGE_BUCKETS
        ),
    }


class ServiceMetrics:
    """The metrics of one served model (every sample carries its tag as the ``model`` label)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._m = _families()
        for fallback in ("none", "popularity"):  # both series exist from the start: ratios are 0, not empty
            self._m["recommendations"].labels(model, fallback)

    def recommended(self, fallback: str | None, lists: int = 1) -> None:
        self._m["recommendations"].labels(self.model, fallback or "none").inc(lists)

    def catalogue(self, items: int) -> None:
        self._m["catalogue"].labels(self.model).set(items)

    def upserted(self, added: int, updated: int, catalogue: int) -> None:
        self._m["upserts"].labels(self.model, "added").inc(added)
        self._m["upserts"].labels(self.model, "updated").inc(updated)
        self.catalogue(catalogue)

    def event(self) -> None:
        self._m["events"].labels(self.model).inc()

    def stage(self, name: str) -> AbstractContextManager:
        """``with metrics.stage("user_llm"): ...`` observes the block's duration."""
        return self._m["stages"].labels(self.model, name).time()
