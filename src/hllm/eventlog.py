"""User events shared by every replica: an append-only log is the truth, the online history is computed from it.

Several server processes (replicas, stable + canary) append events for the same user at once. A read-append-write
of the online history would lose events (two writers read the same history, the second write drops the first's
event), so each event is instead appended atomically to a log in a shared store (`hllm_feature_repo.online_log`:
SQLite locally, Redis in production), and the user's online row (last ``n`` items in timestamp order, ties in
arrival order, and the total count) is recomputed from the whole log under a cross-process per-user lock. The
row never depends on what was materialized before, so a materializer that crashed half-way is repaired by the
user's next event. A user whose history came from the offline store (the batch sync) before their first logged
event keeps it: the first event snapshots that row as the user's *base*, which precedes every logged event.

This module is store-agnostic: a log is any object with the methods of `EventLog`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class History:
    """A user's recent items (oldest first, at most ``n``), their unix timestamps and the total event count."""

    item_ids: list[str]
    timestamps: list[int]
    length: int


class EventLog(Protocol):
    """What the materializer needs from a shared store (every method safe across processes)."""

    def append(self, user_id: str, item_id: str, timestamp: int) -> int:
        """Durably append one event; returns its arrival sequence number (strictly increasing)."""

    def window(self, user_id: str, n: int) -> History:
        """The user's last ``n`` logged events by (timestamp, arrival) and how many there are in all."""

    def base(self, user_id: str) -> History | None:
        """The user's history before their first logged event (None until set)."""

    def set_base(self, user_id: str, base: History) -> None:
        """Set the base unless one is set already (first writer wins)."""

    def lock(self, user_id: str) -> AbstractContextManager:
        """A lock held by one materializer of ``user_id`` at a time, across processes."""

    def next_stamp(self, user_id: str, floor_us: int) -> int:
        """Under the user's lock: a version stamp (microseconds) above ``floor_us`` and every earlier stamp."""


def merge_window(base: History | None, logged: History, n: int) -> History:
    """The last ``n`` events of ``base`` followed (in arrival order) by ``logged``, in timestamp order.

    Ties in time keep arrival order: base events first, then logged events in the order they arrived. Both
    inputs are sorted; only their last ``n`` are needed, since every earlier event sorts before them.
    """
    if n < 1:
        raise ValueError(f"history length n={n} must be >= 1")
    base = base or History([], [], 0)
    rows = [(t, 0, j, i) for j, (i, t) in enumerate(zip(base.item_ids, base.timestamps, strict=True))]
    rows += [(t, 1, j, i) for j, (i, t) in enumerate(zip(logged.item_ids, logged.timestamps, strict=True))]
    rows = sorted(rows)[-n:]
    return History([r[3] for r in rows], [int(r[0]) for r in rows], base.length + logged.length)


def materialize(log: EventLog, write: Callable[[str, History, int], None], user_id: str, n: int) -> History:
    """Recompute the user's online history from the log and write it with ``write(user_id, history, stamp_us)``.

    The lock makes every write follow the log: a materializer that took the lock later read a log that holds
    every event a previous one saw. ``stamp_us`` grows with every write of the user (stores such as Feast's
    Redis skip a row not newer than the stored one) and is at least now and past the base's last event.
    """
    with log.lock(user_id):
        history = merge_window(log.base(user_id), log.window(user_id, n), n)
        floor = max([time.time_ns() // 1000, *(t * 1_000_000 for t in history.timestamps[-1:])])
        write(user_id, history, log.next_stamp(user_id, floor))
    return history


def record_event(
    log: EventLog,
    read: Callable[[str], History],
    write: Callable[[str, History, int], None],
    user_id: str,
    item_id: str,
    timestamp: int,
    n: int,
) -> History:
    """Append one event durably, then materialize the user's online history; returns that history.

    ``read(user_id)`` is the user's current online row: read once, before their first logged event, as the base.
    """
    if log.base(user_id) is None:
        # Set before the first append, so no row read here can already include a logged event: a materializer
        # runs only after its own append, hence after some base was set.
        log.set_base(user_id, read(user_id))
    log.append(user_id, item_id, int(timestamp))
    return materialize(log, write, user_id, n)
