"""The Feast side of HLLM: open the store, sync the offline sources into it, read and push user histories.

Used by the ``sync_features`` component, the online service and the tests; the tables themselves come from
`hllm.features`. ``HLLM_FEAST_HOME`` is where the local registry, SQLite online store and Parquet sources live.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sqlite3
import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent
# Feast's SQLite online store shares one connection between threads: one write transaction at a time.
_SQLITE_WRITES = threading.Lock()
_VIEWS: dict[int, object] = {}  # id(store) -> the user_recent_items FeatureView, looked up once


@dataclass
class SyncResult:
    home: str
    history_rows: int
    users: int
    items: int
    materialized_from: str
    materialized_to: str
    incremental: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _definitions(home: Path):
    """A fresh import of features.py (its source paths depend on the environment at import time)."""
    os.environ["HLLM_FEAST_HOME"] = str(home)
    spec = importlib.util.spec_from_file_location("hllm_feast_features", REPO / "features.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def open_store(home: str | Path):
    """The FeatureStore of this repo with its local data under ``home`` (created if missing)."""
    from feast import FeatureStore

    home = Path(home).resolve()
    (home / "offline").mkdir(parents=True, exist_ok=True)
    os.environ["HLLM_FEAST_HOME"] = str(home)
    yaml_file = os.environ.get("FEAST_FS_YAML_FILE_PATH") or REPO / "feature_store.yaml"
    return FeatureStore(repo_path=str(REPO), fs_yaml_file=Path(yaml_file))


def sync(dataset, home: str | Path, history_length: int | None = None, snapshots: str = "every_event") -> SyncResult:
    """Write the offline sources of ``dataset``, ``apply`` the definitions and materialize into the online store.

    The first sync materializes from the data's earliest event; later ones are incremental from the last
    materialization, unless the new data reaches further back (a backfill), which is materialized from its start.
    """
    from hllm.features import write_feature_tables

    home = Path(home).resolve()
    store = open_store(home)
    defs = _definitions(home)
    n = history_length or defs.HISTORY_LENGTH
    tables = write_feature_tables(
        dataset, Path(os.environ.get("HLLM_FEAST_OFFLINE_URI") or home / "offline"), n, snapshots
    )
    objects = [
        getattr(defs, name)
        for name in (
            "user",
            "item",
            "interactions_source",
            "interactions_push",
            "items_source",
            "user_recent_items",
            "item_text",
            "hllm_v1",
            "hllm_items_v1",
        )
    ]
    store.apply(objects)
    end = datetime.now(timezone.utc)
    previous = store.get_feature_view("user_recent_items").most_recent_end_time
    earliest = tables.earliest.to_pydatetime()
    incremental = previous is not None and earliest.replace(tzinfo=timezone.utc) >= previous.replace(
        tzinfo=timezone.utc
    )
    if incremental:
        store.materialize_incremental(end_date=end)
        start = previous
    else:
        start = earliest
        store.materialize(start_date=start, end_date=end)
    return SyncResult(str(home), tables.history_rows, tables.users, tables.items, str(start), str(end), incremental)


def _view(store):
    """The ``user_recent_items`` FeatureView of ``store``, looked up in the registry once."""
    view = _VIEWS.get(id(store))
    if view is None:
        view = _VIEWS[id(store)] = store.get_feature_view("user_recent_items")
    return view


def _entity_key(user_id: str):
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user_id)])


def online_histories(store, user_ids: list[str]) -> list[dict]:
    """Per user, ``{"item_ids", "timestamps", "length"}``: the last N items oldest first and how many events the
    user has in all (empty lists and 0 for unknown users).

    The row of ``hllm_v1`` (all of ``user_recent_items``, ttl 0: never expires), read with the online store's own
    ``online_read``: one Redis round trip (a pipelined HMGET) or one SQLite query, without the 5-10 ms that
    ``get_online_features`` spends on registry lookups and response conversion (profiled).
    """
    rows = store._get_provider().online_read(
        config=store.config,
        table=_view(store),
        entity_keys=[_entity_key(u) for u in user_ids],
        requested_features=["recent_item_ids", "recent_timestamps", "history_length"],
    )
    out = []
    for _, values in rows:
        values = values or {}
        ids, times, length = (values.get(f) for f in ("recent_item_ids", "recent_timestamps", "history_length"))
        items = list(ids.string_list_val.val) if ids is not None and ids.HasField("string_list_val") else []
        stamps = (
            [int(t) for t in times.int64_list_val.val] if times is not None and times.HasField("int64_list_val") else []
        )
        total = int(length.int64_val) if length is not None and length.HasField("int64_val") else 0
        out.append({"item_ids": items, "timestamps": stamps, "length": total or len(items)})
    return out


def push_history(
    store, user_id: str, item_ids: list[str], timestamps: list[int], total_length: int, as_of_us: int | None = None
) -> None:
    """Write a user's recent history to the online store through the push source.

    ``as_of_us``: the row's event time in microseconds (default: its last event); Feast's Redis store skips a row
    that is not newer than the stored one, so the event log's materializer passes a growing version stamp.
    """
    import pandas as pd
    from feast.data_source import PushMode

    when = pd.Timestamp(as_of_us, unit="us", tz="UTC") if as_of_us is not None else None
    frame = pd.DataFrame(
        {
            "user_id": [user_id],
            "event_timestamp": [when if when is not None else pd.Timestamp(max(timestamps), unit="s", tz="UTC")],
            "recent_item_ids": [list(item_ids)],
            "recent_timestamps": [[int(t) for t in timestamps]],
            "history_length": [int(total_length)],
        }
    )
    store.push("interactions_push", frame, to=PushMode.ONLINE)


def write_history(
    store, user_id: str, item_ids: list[str], timestamps: list[int], total_length: int, as_of_us: int
) -> None:
    """`push_history` straight into the online store (the provider's ``online_write_batch``): the same row, without
    the push path's registry lookups and DataFrame conversion (40 ms of a 60 ms event, profiled)."""
    from datetime import timedelta

    from feast.protos.feast.types.Value_pb2 import Int64List, StringList, Value

    view = _view(store)
    key = _entity_key(user_id)
    values = {
        "recent_item_ids": Value(string_list_val=StringList(val=list(item_ids))),
        "recent_timestamps": Value(int64_list_val=Int64List(val=[int(t) for t in timestamps])),
        "history_length": Value(int64_val=int(total_length)),
    }
    when = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(as_of_us))
    store._get_provider().online_write_batch(store.config, view, [(key, values, when, None)], None)


def online_log(store):
    """The shared event and catalogue log beside the store's online data (`hllm_feature_repo.online_log`): a SQLite
    file next to the SQLite online store, or the online store's own Redis."""
    from hllm_feature_repo.online_log import RedisOnlineLog, SQLiteOnlineLog

    config = store.config.online_store
    if config.type == "redis":
        import redis
        from feast.infra.online_stores.redis import RedisOnlineStore

        nodes, options = RedisOnlineStore._parse_connection_string(config.connection_string)
        return RedisOnlineLog(redis.Redis(host=nodes[0]["host"], port=int(nodes[0]["port"]), **options))
    if config.type == "sqlite":
        online = Path(config.path).resolve()
        conn = sqlite3.connect(online, timeout=60)  # WAL (the file keeps it): readers never wait on a writer
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()
        return SQLiteOnlineLog(online.parent / "online_state.db")
    raise ValueError(f"online store type '{config.type}' has no shared event log: use sqlite or redis")


def record_event(store, log, user_id: str, item_id: str, timestamp: int, n: int):
    """Append one event to the shared log and materialize the user's last ``n`` into the online store
    (`hllm.eventlog.record_event`); returns the user's new `hllm.eventlog.History`."""
    from hllm.eventlog import History
    from hllm.eventlog import record_event as record

    def read(user: str) -> History:
        row = online_histories(store, [user])[0]
        return History(row["item_ids"], row["timestamps"], row["length"])

    def write(user: str, history: History, stamp_us: int) -> None:
        with _SQLITE_WRITES if store.config.online_store.type == "sqlite" else contextlib.nullcontext():
            write_history(store, user, history.item_ids, history.timestamps, history.length, stamp_us)

    return record(log, read, write, user_id, item_id, timestamp, n)
