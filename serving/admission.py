"""Admission control: a bound on the API requests one worker holds at once; beyond it, 503 with ``Retry-After``.

Without it an overloaded worker queues every request it accepts: latency grows until clients time out, and
all of them are served late rather than most of them on time. With it, a request that arrives while ``limit``
are in flight on this worker is answered at once with the contract's 503 (`contract.unavailable`: the Error body
and ``Retry-After``), before its body is read: nothing of it has happened (an event is not appended), so the
client may retry it safely. Health, metrics and the docs are never shed.
"""

from __future__ import annotations

from hllm_serving.contract import unavailable

API_PATHS = frozenset({"/recommend", "/recommend_batch", "/similar_items", "/upsert_items", "/events"})


class Admission:
    """ASGI middleware: at most ``limit`` API requests in flight in this worker (one event loop: no lock needed)."""

    def __init__(self, app, limit: int, retry_after: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"admission limit {limit} must be >= 1")
        self.app, self.limit, self.retry_after = app, limit, retry_after
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in API_PATHS:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            self.shed += 1
            answer = unavailable(
                f"overloaded: {self.limit} requests in progress on this worker; retry later", self.retry_after
            )
            return await answer(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
