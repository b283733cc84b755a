"""Admission control (serving/admission.py): beyond the limit an API request is shed at once with the contract's
503 (Error body, Retry-After) and never reaches the API; health endpoints are never shed; the count recovers."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from hllm_serving.admission import Admission


class Held:
    """An ASGI app that answers 200 once released, counting the requests that reached it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.reached = 0

    async def __call__(self, scope, receive, send):
        self.reached += 1
        if scope["path"] != "/readyz":
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})


def test_requests_beyond_the_limit_are_shed_with_retry_after_and_the_rest_served() -> None:
    async def scenario():
        app = Held()
        admission = Admission(app, limit=2, retry_after=3)
        transport = httpx.ASGITransport(app=admission)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            held = [asyncio.create_task(client.post("/recommend", json={"history": ["a"]})) for _ in range(2)]
            while app.reached < 2:
                await asyncio.sleep(0)
            shed = await client.post("/events", json={"user_id": "u", "item_id": "a"})
            ready = await client.get("/readyz")
            also_ready = await client.post("/readyz")  # not an API path: never shed
            app.release.set()
            served = await asyncio.gather(*held)
            after = await client.post("/recommend", json={"history": ["a"]})
        return admission, app, shed, ready, also_ready, served, after

    admission, app, shed, ready, also_ready, served, after = asyncio.run(scenario())
    assert shed.status_code == 503 and shed.headers["retry-after"] == "3"
    assert "overloaded" in json.loads(shed.content)["error"]
    assert app.reached == 5  # 2 held + 2 health + 1 after: the shed request never reached the API
    assert ready.status_code == also_ready.status_code == 200
    assert [r.status_code for r in served] == [200, 200] and after.status_code == 200
    assert admission.in_flight == 0 and admission.shed == 1


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="limit 0"):
        Admission(Held(), limit=0)
