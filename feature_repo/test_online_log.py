"""The shared event and catalogue logs: several processes appending at once lose nothing and keep the order."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import random
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from hllm.catalogue import CatalogueEntry, export_items, upserted_items
from hllm.eventlog import History, merge_window, record_event
from hllm_feature_repo.online_log import RedisOnlineLog, SQLiteOnlineLog

N = 8
USERS = [f"u{i}" for i in range(10)]
BASE = History(["b1", "b2", "b3"], [3, 5, 5], 7)  # "u0" already had 7 events (offline) before the log


def test_merge_window_keeps_time_order_ties_in_arrival_order_and_counts_all() -> None:
    logged = History(["x", "y", "z"], [4, 5, 9], 3)
    merged = merge_window(BASE, logged, 4)
    assert merged == History(["b2", "b3", "y", "z"], [5, 5, 5, 9], 10)  # base first at the tie (time 5)
    assert merge_window(None, logged, 10) == History(["x", "y", "z"], [4, 5, 9], 3)
    with pytest.raises(ValueError, match="n=0"):
        merge_window(None, logged, 0)


class FakeOnline:
    """A one-table online store that, like Feast's Redis store, skips a row not newer than the stored one."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS online (user_id TEXT PRIMARY KEY, row TEXT, stamp INTEGER)")

    def read(self, user_id: str) -> History:
        row = self.conn.execute("SELECT row FROM online WHERE user_id = ?", (user_id,)).fetchone()
        return History(**json.loads(row[0])) if row else History([], [], 0)

    def write(self, user_id: str, history: History, stamp: int) -> None:
        row = json.dumps({"item_ids": history.item_ids, "timestamps": history.timestamps, "length": history.length})
        self.conn.execute(
            "INSERT INTO online VALUES (?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET row = excluded.row, "
            "stamp = excluded.stamp WHERE excluded.stamp > online.stamp",
            (user_id, row, stamp),
        )


def _open(where: str):
    if where.startswith("redis:"):
        import redis

        return RedisOnlineLog(redis.Redis(host="127.0.0.1", port=int(where.split(":")[1])))
    return SQLiteOnlineLog(where)


def _worker(where: str, online: str, events: list, out: str) -> None:
    log, store = _open(where), FakeOnline(Path(online))
    done = []
    for user, item, ts in events:
        record_event(log, store.read, store.write, user, item, ts, N)
        done.append((user, item, ts))
    Path(out).write_text(json.dumps(done))


def _events(seed: int, count: int) -> list[tuple[str, str, int]]:
    rng = random.Random(seed)  # few distinct timestamps: many ties, which must keep arrival order
    return [(rng.choice(USERS), f"i{seed}-{j}", rng.randrange(0, 12)) for j in range(count)]


def _check_concurrent_appends(where: str, tmp_path: Path, processes: int = 4, per_process: int = 100) -> None:
    online = tmp_path / "online.db"
    FakeOnline(online).write("u0", BASE, 1)  # u0's offline history: the base of its log
    ctx = multiprocessing.get_context("fork")
    jobs = [
        ctx.Process(target=_worker, args=(where, str(online), _events(p, per_process), str(tmp_path / f"{p}.json")))
        for p in range(processes)
    ]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=300)
        assert job.exitcode == 0
    log, store = _open(where), FakeOnline(online)
    sent = [tuple(e) for p in range(processes) for e in json.loads((tmp_path / f"{p}.json").read_text())]
    assert len(sent) == processes * per_process
    for user in USERS:
        mine = [e for e in sent if e[0] == user]
        logged = log.window(user, 10_000)
        # Every event is there once; each process's own events keep their order among equal timestamps.
        assert sorted(logged.item_ids) == sorted(e[1] for e in mine) and logged.length == len(mine)
        assert logged.timestamps == sorted(logged.timestamps)
        position = {item: j for j, item in enumerate(logged.item_ids)}
        for p in range(processes):
            own = [e for e in mine if e[1].startswith(f"i{p}-")]
            for a, b in itertools.pairwise(own):  # a was sent (and answered) before b
                assert (position[a[1]] < position[b[1]]) == (a[2] <= b[2])
        # The online row is exactly the last N of base + log, with the exact total.
        base = BASE if user == "u0" else None
        assert store.read(user) == merge_window(base, logged, N)
        assert log.window(user, N) == History(logged.item_ids[-N:], logged.timestamps[-N:], len(mine))


def test_sqlite_log_keeps_every_event_of_concurrent_processes(tmp_path: Path) -> None:
    _check_concurrent_appends(str(tmp_path / "state.db"), tmp_path)


@pytest.fixture
def redis_server(tmp_path: Path):
    from redis_server import RedisServer

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (the integration tier installs it and always runs the Redis tests)")
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


def test_redis_log_keeps_every_event_of_concurrent_processes(redis_server, tmp_path: Path) -> None:
    _check_concurrent_appends(f"redis:{redis_server.port}", tmp_path)


def _entry(item_id: str, title: str, model: str = "m:1") -> CatalogueEntry:
    return CatalogueEntry(item_id, {"title": title, "tag": "", "description": ""}, model, np.full(4, len(title), "f4"))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_catalogue_log_reads_entries_in_order_from_a_cursor_and_exports_them(kind, request, tmp_path: Path) -> None:
    log = (
        _open(str(tmp_path / "state.db"))
        if kind == "sqlite"
        else _open(f"redis:{request.getfixturevalue('redis_server').port}")
    )
    log.add([_entry("a", "first"), _entry("b", "bee")])
    entries, cursor = log.since(None)
    assert [e.item_id for e in entries] == ["a", "b"] and entries[1].vector.tolist() == [3.0] * 4
    log.add([_entry("a", "again")])
    more, cursor2 = log.since(cursor)
    assert [(e.item_id, e.text["title"]) for e in more] == [("a", "again")]
    assert log.since(cursor2) == ([], cursor2)
    assert upserted_items(log).to_dict("list") == {
        "item_id": ["b", "a"],
        "title": ["bee", "again"],
        "tag": ["", ""],
        "description": ["", ""],
    }
    import pandas as pd

    known = pd.DataFrame({"item_id": ["a", "c"], "title": ["old", "sea"], "tag": "", "description": "", "extra": "x"})
    table = export_items(log, tmp_path / "export" / "items.csv", known)
    written = pd.read_csv(tmp_path / "export" / "items.csv", keep_default_na=False)
    assert written["item_id"].tolist() == ["c", "b", "a"] == table["item_id"].tolist()
    assert written["title"].tolist() == ["sea", "bee", "again"]


def test_a_materializer_that_died_is_repaired_by_the_next_event(tmp_path: Path) -> None:
    log, store = SQLiteOnlineLog(tmp_path / "state.db"), FakeOnline(tmp_path / "online.db")

    def crash(user_id, history, stamp) -> None:
        raise KeyboardInterrupt("killed while writing")

    record_event(log, store.read, store.write, "u", "a", 10, N)
    with pytest.raises(KeyboardInterrupt):
        record_event(log, store.read, crash, "u", "b", 5, N)  # appended, never materialized
    assert store.read("u") == History(["a"], [10], 1)
    record_event(log, store.read, store.write, "u", "c", 10, N)
    assert store.read("u") == History(["b", "a", "c"], [5, 10, 10], 3)
