"""An open-loop HTTP load generator at a fixed rate (asyncio, raw HTTP/1.1 keep-alive; no client library).

Request ``i`` is due at ``start + i / rate`` whatever happened to the earlier ones (what a population of
independent clients does; a closed loop such as wrk's slows down with the server and hides queueing). Its latency
is measured from that due time, so a generator that falls behind charges the delay to the server, never hides it.
``connections`` keep-alive connections are opened first and used in turn (the least recently used idle one:
a multi-worker server binds each connection to one worker when it accepts it, so reusing the same few would load
one worker and idle the others); when none is idle a new one is opened (up to ``max_connections``; beyond that a
request waits for one, still timed from its due time). Bodies are sent pre-encoded; the generator parses only the
status line, ``Content-Length`` and ``Retry-After``, so it costs far less CPU per request than the server does.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Outcome:
    """One request: its kind (the caller's label), number, due time, latency (s), status (0: no answer), body."""

    kind: str
    index: int  # the request's number: ``requests(index)`` sent it
    due: float
    latency: float
    status: int
    retry_after: str | None = None
    body: bytes = b""


@dataclass
class Request:
    kind: str
    path: str
    body: bytes
    keep_body: bool = False  # keep the answer's body in the Outcome (e.g. to check events afterwards)


def encode(host: str, port: int, request: Request) -> bytes:
    head = (
        f"POST {request.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(request.body)}\r\n\r\n"
    )
    return head.encode() + request.body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str | None, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, retry_after, chunked = 0, None, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "retry-after":
            retry_after = value.strip()
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if not chunked:
        return status, retry_after, await reader.readexactly(length)
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return status, retry_after, body
        body += chunk[:-2]


async def open_loop(
    host: str,
    port: int,
    requests: Sequence[Request] | Callable[[int], Request],
    rate: float,
    seconds: float,
    max_connections: int = 256,
    timeout: float = 30.0,
    connections: int = 32,
) -> tuple[list[Outcome], float]:
    """Send ``rate * seconds`` requests at a fixed rate; returns every outcome and the wall time taken."""
    total = int(rate * seconds)
    pick = requests if callable(requests) else (lambda i: requests[i % len(requests)])
    idle = collections.deque([await asyncio.open_connection(host, port) for _ in range(connections)])
    opened = connections
    slots = asyncio.Semaphore(max_connections)
    outcomes: list[Outcome] = []

    async def one(i: int, due: float) -> None:
        nonlocal opened
        request = pick(i)
        payload = encode(host, port, request)
        async with slots:
            conn = idle.popleft() if idle else None
            status, retry_after, body = 0, None, b""
            try:
                if conn is None:
                    opened += 1
                    conn = await asyncio.open_connection(host, port)
                reader, writer = conn
                writer.write(payload)
                status, retry_after, body = await asyncio.wait_for(_read_response(reader), timeout)
                idle.append(conn)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                if conn is not None:
                    conn[1].close()
            latency = time.perf_counter() - due
        outcomes.append(Outcome(request.kind, i, due, latency, status, retry_after, body if request.keep_body else b""))

    tasks = []
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - start
    for _, writer in idle:
        writer.close()
    return outcomes, wall


def summary(outcomes: Sequence[Outcome], wall: float, kinds: Sequence[str] | None = None) -> dict:
    """Offered and achieved rates, latency percentiles of 200s, and the count of every other status."""
    chosen = [o for o in outcomes if kinds is None or o.kind in kinds]
    ok = np.array([o.latency for o in chosen if o.status == 200]) * 1000
    statuses: dict[str, int] = {}
    for o in chosen:
        statuses[str(o.status)] = statuses.get(str(o.status), 0) + 1
    shed = [o for o in chosen if o.status == 503]
    return {
        "requests": len(chosen),
        "offered_rps": round(len(chosen) / wall, 1),
        "ok_rps": round(len(ok) / wall, 1),
        "statuses": statuses,
        "errors": len(chosen) - len(ok) - len(shed),
        "shed_503": len(shed),
        "shed_with_retry_after": sum(o.retry_after is not None for o in shed),
        **{f"p{q}_ms": round(float(np.percentile(ok, q)), 2) if len(ok) else None for q in (50, 90, 99)},
        "max_ms": round(float(ok.max()), 2) if len(ok) else None,
    }


@dataclass
class Closed:
    """Closed-loop outcome, for the cross-check against wrk at one point."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


async def closed_loop(host: str, port: int, requests: Sequence[Request], connections: int, seconds: float) -> dict:
    """``connections`` clients each sending its next request when the previous answer arrived (as wrk does)."""
    result = Closed()
    stop = time.perf_counter() + seconds

    async def client(offset: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        i = offset
        while time.perf_counter() < stop:
            started = time.perf_counter()
            writer.write(encode(host, port, requests[i % len(requests)]))
            status, _, _ = await _read_response(reader)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status == 200:
                result.latencies.append(time.perf_counter() - started)
            else:
                result.errors += 1
            i += connections
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(connections)))
    wall = time.perf_counter() - start
    ms = np.array(result.latencies) * 1000
    return {
        "requests": len(ms) + result.errors,
        "rps": round((len(ms) + result.errors) / wall, 1),
        "errors": result.errors,
        "statuses": {str(k): v for k, v in sorted(result.statuses.items())},
        **{f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 90, 99)},
    }
