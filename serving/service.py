"""The HLLM online service (BentoML 1.4): a thin adapter over `hllm.predictor.Predictor` and the Feast store.

Environment: ``HLLM_MODEL`` (BentoML model tag, default ``hllm:latest``), ``HLLM_FEAST_HOME`` (Feast data, for
histories by user id and for events; optional), ``HLLM_REQUEST_LOG`` (JSONL request log for drift monitoring;
optional), ``HLLM_INDEX`` (``auto`` | ``exact`` | ``faiss``), ``HLLM_MAX_BODY_BYTES`` (default 1 MiB),
``HLLM_TORCH_THREADS`` (default 1), ``HLLM_WORKERS`` (worker processes, default 1), ``HLLM_MAX_IN_FLIGHT``
(API requests one worker holds before it sheds with 503 + ``Retry-After``, default 8; `admission`),
``HLLM_USER_LLM`` (``fast`` | ``eager``: `hllm.models.fast_user`, default fast), ``HLLM_ACCESS_LOG`` and
``HLLM_TRACING`` (``1``: BentoML's per-request access log / OpenTelemetry spans; default off). Replicas share
state through the store (`hllm_feature_repo.online_log`): events are appended to a shared log and materialized
into Feast; upserts go to a shared catalogue every replica polls (``HLLM_CATALOGUE_POLL_S``, default 0.5 s).
Health: BentoML's ``/livez`` and ``/readyz``; metrics: ``/metrics`` (Prometheus: BentoML's and ours, see `metrics`);
OpenAPI: ``/docs.json``. ``HLLM_FAULT_*``: test-only fault injection (`faults`), refused without its guard.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import bentoml
from bentoml.exceptions import InvalidArgument, NotFound
from pydantic import BaseModel, Field, StrictBool

from hllm_serving.admission import Admission
from hllm_serving.contract import (
    Conflict,
    Contract,
    EventResponse,
    RecommendResponse,
    SimilarResponse,
    UpsertResponse,
    unavailable,
)
from hllm_serving.faults import FaultInjection, Faults

MAX_K = 1000
MAX_HISTORY = 1000
MAX_TIMESTAMP = 253402300799  # 9999-12-31T23:59:59Z
# Numbers and flags are strict (no "5" or true for an int, no "yes" for a bool): what the schema calls invalid is.
K = Annotated[int, Field(strict=True, ge=1, le=MAX_K, description="How many items to return (at most the catalogue).")]
History = Annotated[list[str], Field(max_length=MAX_HISTORY, description="Item ids, oldest first.")]
Timestamp = Annotated[int, Field(strict=True, ge=0, le=MAX_TIMESTAMP, description="Unix seconds; default now.")]


class Item(BaseModel):
    item_id: Annotated[str, Field(min_length=1, max_length=256)]
    title: str = ""
    tag: str = ""
    description: str = ""


class BodyLimit:
    """ASGI middleware: 413 for a request body over the limit, before it reaches the API."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length")
            if length is not None and int(length) > self.max_bytes:
                body = f'{{"error": "request body over {self.max_bytes} bytes"}}'.encode()
                await send(
                    {"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


# Worker processes (HLLM_WORKERS, `serving.workers`): each one runs requests one at a time on one torch/faiss
# thread; state is shared through the store and the memory-mapped index, so one per core uses them all.
# BentoML's access log (a log line per request) and OpenTelemetry spans (no exporter is configured) cost ~15% of
# a request's event-loop time (py-spy, docs/serving.md "Throughput"): both on only when asked for.
@bentoml.service(
    name="hllm",
    traffic={"timeout": 30},
    workers=int(os.environ.get("HLLM_WORKERS", "1")),
    logging={"access": {"enabled": os.environ.get("HLLM_ACCESS_LOG", "0") == "1"}},
    tracing={"excluded_urls": [] if os.environ.get("HLLM_TRACING", "0") == "1" else ["/"]},
)
class HLLMService:
    def __init__(self) -> None:
        import torch

        from hllm.monitoring import RequestLog
        from hllm.predictor import Predictor
        from hllm_serving.metrics import ServiceMetrics

        tag = os.environ.get("HLLM_MODEL", "hllm:latest")
        try:
            self.model_ref = bentoml.models.get(tag)
            self.predictor = Predictor.load(
                self.model_ref.path,
                index_kind=os.environ.get("HLLM_INDEX", "auto"),
                user_llm=os.environ.get("HLLM_USER_LLM", "fast"),
            )
        except Exception as exc:  # any failure to load is fatal: say which model and why, then stop
            raise RuntimeError(f"cannot load model '{tag}' from the BentoML store: {exc}") from exc
        self.metrics = ServiceMetrics(str(self.model_ref.tag))
        self.predictor.stage_timer = self.metrics.stage  # User LLM and search latency histograms
        self.metrics.catalogue(len(self.predictor.item_ids))
        # A worker runs one request at a time (BentoML's sync-API thread limit is 1): one torch/faiss thread per
        # worker, one worker per core (HLLM_TORCH_THREADS overrides); set after loading (an HNSW build uses all).
        threads = int(os.environ.get("HLLM_TORCH_THREADS", "1"))
        torch.set_num_threads(threads)
        import faiss

        faiss.omp_set_num_threads(threads)
        from hllm.catalogue import SharedCatalogue

        home = os.environ.get("HLLM_FEAST_HOME")
        self.store = self.online_log = None
        if home:
            from hllm_feature_repo.store import online_log, open_store

            self.store = open_store(home)
            self.online_log = online_log(self.store)
        # Upserts of every replica, replayed now (they survive restarts) and polled from then on.
        self.catalogue = SharedCatalogue(self.predictor, self.online_log, str(self.model_ref.tag))
        self.catalogue.catch_up()
        self.catalogue.start(float(os.environ.get("HLLM_CATALOGUE_POLL_S", "0.5")))
        self.log = RequestLog(os.environ.get("HLLM_REQUEST_LOG"))

    def _history(self, user_id: str) -> tuple[list[str], int]:
        """The user's recent items (oldest first) and their total number of events."""
        from hllm_feature_repo.store import online_histories

        with self.metrics.stage("history_read"):
            found = online_histories(self.store, [user_id])[0]
        return found["item_ids"], found["length"]

    @bentoml.api
    def recommend(
        self, user_id: str | None = None, history: History | None = None, k: K = 10, exclude_seen: StrictBool = True
    ) -> RecommendResponse:
        """Top-k items for a user (history from the feature store) or for a given history, oldest item first."""
        if (user_id is None) == (history is None):
            raise InvalidArgument("give exactly one of user_id or history")
        if history is None and self.store is None:  # a Response passes through BentoML as it is
            return unavailable("no feature store configured (HLLM_FEAST_HOME): send history")
        items, total = (list(history), len(history)) if history is not None else self._history(user_id)
        self._check_known(items, "history" if history is not None else f"user '{user_id}' history")
        k = min(k, len(self.predictor.item_ids))
        if not items:
            ranked, fallback = [(i, None) for i in self.predictor.popular_items(k)], "popularity"
        else:
            ranked, fallback = self.predictor.recommend([items], k, exclude_seen)[0], None
        self.metrics.recommended(fallback)
        self.log.write(
            "recommend",
            user_id=user_id,
            history=items[-self.predictor.max_len :],
            history_length=total,
            items=[i for i, _ in ranked],
            fallback=fallback,
        )
        return RecommendResponse(
            items=[{"item_id": i, "score": s} for i, s in ranked], fallback=fallback, model=str(self.model_ref.tag)
        )

    def _check_known(self, ids: list[str], field: str) -> None:
        """404 naming the first id in ``ids`` (the request's ``field``) that is not in the catalogue."""
        for j, item_id in enumerate(ids):
            if item_id not in self.predictor.index:
                raise NotFound(f"{field}[{j}]: unknown item id '{item_id}'")

    @bentoml.api(batchable=True, max_batch_size=64, max_latency_ms=200)
    def recommend_batch(
        self,
        histories: Annotated[
            list[Annotated[list[str], Field(min_length=1, max_length=MAX_HISTORY)]], Field(min_length=1)
        ],
    ) -> list[list[str]]:
        """Adaptive-batching variant of ``recommend`` (top 10, seen items excluded): concurrent calls are merged
        into one User-LLM pass.

        Each call sends a list of histories (usually one); unknown ids fail the whole merged batch, so clients
        should send known ids (the catalogue is ``/recommend``'s to validate).
        """
        for j, history in enumerate(histories):
            self._check_known(history, f"histories[{j}]")
        ranked = self.predictor.recommend(histories, min(10, len(self.predictor.item_ids)))
        self.metrics.recommended(None, len(ranked))
        return [[item for item, _ in row] for row in ranked]

    @bentoml.api
    def similar_items(self, item_id: str | None = None, text: Item | None = None, k: K = 10) -> SimilarResponse:
        """Items nearest to a catalogue item, or to an item described by its text (need not be in the catalogue)."""
        if (item_id is None) == (text is None):
            raise InvalidArgument("give exactly one of item_id or text")
        if item_id is not None and item_id not in self.predictor.index:
            raise NotFound(f"item_id: unknown item id '{item_id}'")
        k = min(k, len(self.predictor.item_ids))
        found = self.predictor.similar_items(k, item_id=item_id, text=text.model_dump() if text else None)
        return SimilarResponse(items=[{"item_id": i, "score": s} for i, s in found])

    @bentoml.api
    def upsert_items(self, items: Annotated[list[Item], Field(min_length=1, max_length=1000)]) -> UpsertResponse:
        """Embed items from their text and make them recommendable now (new ids added, known ids re-embedded)."""
        first: dict[str, int] = {}
        for j, item in enumerate(items):
            if first.setdefault(item.item_id, j) != j:
                raise Conflict(f"items[{j}].item_id: '{item.item_id}' is also items[{first[item.item_id]}]'s")
        try:
            added, updated = self.catalogue.upsert([item.model_dump() for item in items])
        except ValueError as exc:  # a model that cannot take items by their text
            raise Conflict(str(exc)) from None
        self.metrics.upserted(added, updated, len(self.predictor.item_ids))
        return UpsertResponse(added=added, updated=updated, catalogue=len(self.predictor.item_ids))

    @bentoml.api
    def events(
        self, user_id: Annotated[str, Field(min_length=1)], item_id: str, timestamp: Timestamp | None = None
    ) -> EventResponse:
        """Record that ``user_id`` interacted with ``item_id``: appended to the shared event log (durable before the
        answer), the user's history in the online store recomputed from it; seen by the next call on any replica."""
        from hllm_feature_repo.store import record_event

        if item_id not in self.predictor.index and not (self.catalogue.catch_up() and item_id in self.predictor.index):
            raise NotFound(f"item_id: unknown item id '{item_id}' (upsert it first)")
        if self.store is None:
            return unavailable("no feature store configured (HLLM_FEAST_HOME)")
        when = int(timestamp if timestamp is not None else time.time())
        total = record_event(self.store, self.online_log, user_id, item_id, when, n=self.predictor.max_len).length
        self.log.write("event", user_id=user_id, item_id=item_id, timestamp=when, history_length=total)
        self.metrics.event()
        return EventResponse(user_id=user_id, history_length=total)


# Outermost of ours: a shed request costs no body read, no validation and no store access.
HLLMService.add_asgi_middleware(Admission, limit=int(os.environ.get("HLLM_MAX_IN_FLIGHT", "8")))
HLLMService.add_asgi_middleware(Contract)
HLLMService.add_asgi_middleware(BodyLimit, max_bytes=int(os.environ.get("HLLM_MAX_BODY_BYTES", str(1 << 20))))
HLLMService.add_asgi_middleware(FaultInjection, faults=Faults.from_env())
