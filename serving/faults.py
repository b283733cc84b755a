"""Fault injection for tests of the canary analysis: a deliberately broken service, never a production setting.

``HLLM_FAULT_ERROR_RATE`` (0-1: that share of API calls answered 500, deterministically every 1/rate-th call) and
``HLLM_FAULT_LATENCY_MS`` (added to every API call) are honoured only together with
``HLLM_FAULT_INJECTION=tests-only``; a fault variable without it stops the service at start, so a stray variable
can neither degrade a deployment silently nor be silently ignored. When enabled, the service logs a warning at start.
Faults apply to API calls (POST) only, inside BentoML's metrics middleware, so ``bentoml_service_request_*``
count the injected 500s and the added latency like real ones.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)
GUARD, GUARD_VALUE = "HLLM_FAULT_INJECTION", "tests-only"
ERROR_RATE, LATENCY_MS = "HLLM_FAULT_ERROR_RATE", "HLLM_FAULT_LATENCY_MS"


@dataclass(frozen=True)
class Faults:
    error_rate: float = 0.0
    latency_ms: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.error_rate > 0 or self.latency_ms > 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Faults:
        """The faults the environment asks for; `RuntimeError` for a fault variable without the guard or a bad value."""
        asked = {name: environ[name] for name in (ERROR_RATE, LATENCY_MS) if environ.get(name, "") != ""}
        if not asked:
            return cls()
        if environ.get(GUARD) != GUARD_VALUE:
            raise RuntimeError(
                f"{', '.join(asked)} set without {GUARD}={GUARD_VALUE}: fault injection is for tests only; "
                "unset it (this service refuses to start rather than serve deliberate errors by accident)"
            )
        try:
            faults = cls(float(asked.get(ERROR_RATE, 0)), float(asked.get(LATENCY_MS, 0)))
        except ValueError:
            raise RuntimeError(f"fault injection: {asked} are not numbers") from None
        if not 0 <= faults.error_rate <= 1 or not 0 <= faults.latency_ms <= 60_000:
            raise RuntimeError(f"fault injection: {ERROR_RATE} must be in [0, 1] and {LATENCY_MS} in [0, 60000]")
        logger.warning(
            "FAULT INJECTION ENABLED (%s=%s): %.0f%% of API calls fail with 500, +%.0f ms each. Tests only.",
            GUARD,
            GUARD_VALUE,
            100 * faults.error_rate,
            faults.latency_ms,
        )
        return faults

    def fails(self, call: int) -> bool:
        """Whether API call number ``call`` (0-based) fails: exactly ``error_rate`` of any prefix, rounded down."""
        return math.floor((call + 1) * self.error_rate) > math.floor(call * self.error_rate)


class FaultInjection:
    """ASGI middleware applying `Faults` to API calls; a pass-through when none are enabled."""

    def __init__(self, app, faults: Faults) -> None:
        self.app, self.faults, self.calls = app, faults, 0

    async def __call__(self, scope, receive, send):
        if not self.faults.enabled or scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        call, self.calls = self.calls, self.calls + 1  # one event loop: no lock needed
        if self.faults.latency_ms:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        if self.faults.fails(call):
            body = f'{{"error": "injected fault ({ERROR_RATE})"}}'.encode()
            await send(
                {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"application/json")]}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
