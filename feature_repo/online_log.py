"""The shared online state of every replica: the user event log and the upserted-item catalogue log.

Two implementations of `hllm.eventlog.EventLog` + `hllm.catalogue.CatalogueLog`, chosen by the Feast online store:

- `SQLiteOnlineLog` (embedded default, several local processes): ``online_state.db`` in the Feast home, WAL,
  ``synchronous=FULL``; an append is one committed INSERT (arrival order = its AUTOINCREMENT key); the per-user
  materializer lock is an ``flock`` on one of 256 lock files (released by the kernel if its holder dies).
- `RedisOnlineLog` (production, the Feast online store's Redis): a sorted set per user scored by timestamp whose
  members start with a zero-padded per-user arrival number (ties sort in arrival order), appended atomically by
  one Lua script (INCR + ZADD); the lock is a Redis lock with a timeout (a killed holder's lock expires); the
  catalogue is a stream. Keys of one user share a hash tag, so the scheme also fits a Redis Cluster.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from hllm.catalogue import CatalogueEntry
from hllm.eventlog import History

LOCK_FILES = 256
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT NOT NULL,
    item_id TEXT NOT NULL, ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, ts, seq);
CREATE TABLE IF NOT EXISTS users (user_id TEXT PRIMARY KEY, base TEXT, stamp INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS catalogue (seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL,
    text TEXT NOT NULL, model TEXT NOT NULL, vector BLOB NOT NULL);
"""


def _history_json(history: History) -> str:
    return json.dumps({"item_ids": history.item_ids, "timestamps": history.timestamps, "length": history.length})


def _history(text: str | bytes) -> History:
    raw = json.loads(text)
    return History(list(raw["item_ids"]), [int(t) for t in raw["timestamps"]], int(raw["length"]))


class SQLiteOnlineLog:
    """Event and catalogue logs in one SQLite file (several processes on one machine)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock_dir = self.path.parent / "online_locks"
        self.lock_dir.mkdir(exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        """One connection per thread and process (a forked child must not reuse its parent's)."""
        if getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a committed append survives a power loss, not just a crash
            self._local.conn, self._local.pid = conn, os.getpid()
        return self._local.conn

    def append(self, user_id: str, item_id: str, timestamp: int) -> int:
        cur = self._conn().execute(
            "INSERT INTO events (user_id, item_id, ts) VALUES (?, ?, ?)", (user_id, item_id, int(timestamp))
        )
        return int(cur.lastrowid)

    def window(self, user_id: str, n: int) -> History:
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for the window and the count
        try:
            rows = conn.execute(
                "SELECT item_id, ts FROM events WHERE user_id = ? ORDER BY ts DESC, seq DESC LIMIT ?", (user_id, n)
            ).fetchall()
            (count,) = conn.execute("SELECT COUNT(*) FROM events WHERE user_id = ?", (user_id,)).fetchone()
        finally:
            conn.execute("COMMIT")
        rows.reverse()
        return History([r[0] for r in rows], [int(r[1]) for r in rows], int(count))

    def base(self, user_id: str) -> History | None:
        row = self._conn().execute("SELECT base FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return _history(row[0]) if row and row[0] is not None else None

    def set_base(self, user_id: str, base: History) -> None:
        self._conn().execute(
            "INSERT INTO users (user_id, base) VALUES (?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET base = excluded.base WHERE users.base IS NULL",
            (user_id, _history_json(base)),
        )

    @contextmanager
    def lock(self, user_id: str) -> Iterator[None]:
        bucket = zlib.crc32(user_id.encode()) % LOCK_FILES
        with open(self.lock_dir / f"{bucket:03d}.lock", "a+b") as handle:  # a fresh open file: threads block too
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def next_stamp(self, user_id: str, floor_us: int) -> int:
        (stamp,) = (
            self._conn()
            .execute(
                "INSERT INTO users (user_id, stamp) VALUES (?, ?) ON CONFLICT (user_id) "
                "DO UPDATE SET stamp = max(users.stamp + 1, excluded.stamp) RETURNING stamp",
                (user_id, int(floor_us)),
            )
            .fetchone()
        )
        return int(stamp)

    def add(self, entries: Sequence[CatalogueEntry]) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO catalogue (item_id, text, model, vector) VALUES (?, ?, ?, ?)",
                [(e.item_id, json.dumps(e.text), e.model, np.asarray(e.vector, np.float32).tobytes()) for e in entries],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def since(self, cursor: int | None) -> tuple[list[CatalogueEntry], int]:
        rows = (
            self._conn()
            .execute(
                "SELECT seq, item_id, text, model, vector FROM catalogue WHERE seq > ? ORDER BY seq", (cursor or 0,)
            )
            .fetchall()
        )
        entries = [CatalogueEntry(r[1], json.loads(r[2]), r[3], np.frombuffer(r[4], np.float32)) for r in rows]
        return entries, (rows[-1][0] if rows else cursor or 0)


# KEYS[1]: the user's arrival counter, KEYS[2]: the user's sorted set; ARGV: timestamp, item id.
_APPEND = """
local seq = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], ARGV[1], string.format('%020d', seq) .. ':' .. ARGV[2])
return seq
"""


class RedisOnlineLog:
    """Event and catalogue logs in Redis (any number of replicas and machines)."""

    def __init__(self, client, prefix: str = "hllm:", lock_timeout: float = 10.0) -> None:
        self.client, self.prefix, self.lock_timeout = client, prefix, lock_timeout
        self._append = client.register_script(_APPEND)
        self.stream = f"{prefix}catalogue"

    def _key(self, user_id: str, kind: str) -> str:
        return f"{self.prefix}{{{user_id}}}:{kind}"

    def append(self, user_id: str, item_id: str, timestamp: int) -> int:
        keys = [self._key(user_id, "seq"), self._key(user_id, "events")]
        return int(self._append(keys=keys, args=[int(timestamp), item_id]))

    def window(self, user_id: str, n: int) -> History:
        with self.client.pipeline(transaction=True) as pipe:  # MULTI/EXEC: window and count of one moment
            pipe.zrevrange(self._key(user_id, "events"), 0, n - 1, withscores=True)
            pipe.zcard(self._key(user_id, "events"))
            rows, count = pipe.execute()
        rows.reverse()
        items = [member.decode().split(":", 1)[1] for member, _ in rows]
        return History(items, [int(score) for _, score in rows], int(count))

    def base(self, user_id: str) -> History | None:
        raw = self.client.get(self._key(user_id, "base"))
        return _history(raw) if raw is not None else None

    def set_base(self, user_id: str, base: History) -> None:
        self.client.set(self._key(user_id, "base"), _history_json(base), nx=True)

    @contextmanager
    def lock(self, user_id: str) -> Iterator[None]:
        # Expires after lock_timeout if its holder dies; a materialization takes milliseconds.
        with self.client.lock(self._key(user_id, "lock"), timeout=self.lock_timeout, sleep=0.002, blocking_timeout=60):
            yield

    def next_stamp(self, user_id: str, floor_us: int) -> int:
        key = self._key(user_id, "stamp")  # under the user's lock: a plain read then write
        stamp = max(int(self.client.get(key) or 0) + 1, int(floor_us))
        self.client.set(key, stamp)
        return stamp

    def add(self, entries: Sequence[CatalogueEntry]) -> None:
        with self.client.pipeline(transaction=True) as pipe:
            for e in entries:
                fields = {"item_id": e.item_id, "text": json.dumps(e.text), "model": e.model}
                pipe.xadd(self.stream, {**fields, "vector": np.asarray(e.vector, np.float32).tobytes()})
            pipe.execute()

    def since(self, cursor: str | None) -> tuple[list[CatalogueEntry], str | None]:
        entries = []
        start = f"({cursor}" if cursor else "-"
        while True:
            rows = self.client.xrange(self.stream, min=start, max="+", count=1000)
            for entry_id, f in rows:
                text = json.loads(f[b"text"])
                vector = np.frombuffer(f[b"vector"], np.float32)
                entries.append(CatalogueEntry(f[b"item_id"].decode(), text, f[b"model"].decode(), vector))
                cursor = entry_id.decode()
            if len(rows) < 1000:
                return entries, cursor
            start = f"({cursor}"
