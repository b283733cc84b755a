"""The Feast side of HLLM: open the store, sync the offline sources into it, read and push user histories.

Used by the ``sync_features`` component, the online service and the tests; the tables themselves come from
`hllm.features`. ``HLLM_FEAST_HOME`` is where the local registry, SQLite online store and Parquet sources live.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent


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


def online_histories(store, user_ids: list[str]) -> list[dict]:
    """Per user, ``{"item_ids", "timestamps", "length"}``: the last N items oldest first and how many events the
    user has in all (empty lists and 0 for unknown users)."""
    service = store.get_feature_service("hllm_v1")
    rows = store.get_online_features(features=service, entity_rows=[{"user_id": u} for u in user_ids]).to_dict()
    out = []
    for ids, times, length in zip(
        rows["recent_item_ids"], rows["recent_timestamps"], rows["history_length"], strict=True
    ):
        items = list(ids or [])
        out.append(
            {"item_ids": items, "timestamps": [int(t) for t in (times or [])], "length": int(length or len(items))}
        )
    return out


def push_history(store, user_id: str, item_ids: list[str], timestamps: list[int], total_length: int) -> None:
    """Write a user's updated recent history to the online store through the push source."""
    import pandas as pd
    from feast.data_source import PushMode

    frame = pd.DataFrame(
        {
            "user_id": [user_id],
            "event_timestamp": [pd.Timestamp(max(timestamps), unit="s", tz="UTC")],
            "recent_item_ids": [list(item_ids)],
            "recent_timestamps": [[int(t) for t in timestamps]],
            "history_length": [int(total_length)],
        }
    )
    store.push("interactions_push", frame, to=PushMode.ONLINE)
