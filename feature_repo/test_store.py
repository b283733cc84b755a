"""Feast on a real SQLite online store: apply, materialize, online reads and pushes keep histories in order."""

from __future__ import annotations

import pandas as pd
import pytest

from hllm.data.schema import Dataset
from hllm.features import append_event
from hllm_feature_repo.store import online_histories, open_store, push_history, sync

ITEMS = pd.DataFrame({"item_id": [f"i{i}" for i in range(8)], "title": "t", "tag": "", "description": ""})


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    # long: 7 events (> N = 4, and one tie in time); short: 2 events; nobody: no events at all.
    rows = [("long", f"i{i}", 100 + 10 * i) for i in range(6)] + [("long", "i7", 150)]
    rows += [("short", "i3", 500), ("short", "i1", 400)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    home = tmp_path_factory.mktemp("feast")
    result = sync(Dataset(interactions, ITEMS), home, history_length=4)
    assert result.history_rows == 8 and not result.incremental  # one snapshot for the two events at 150
    return open_store(home)


def test_histories_are_the_last_n_in_time_order(store) -> None:
    long, short, nobody = online_histories(store, ["long", "short", "nobody"])
    assert long == {"item_ids": ["i3", "i4", "i5", "i7"], "timestamps": [130, 140, 150, 150], "length": 7}
    assert short == {"item_ids": ["i1", "i3"], "timestamps": [400, 500], "length": 2}
    assert nobody == {"item_ids": [], "timestamps": [], "length": 0}


def test_item_text_is_served(store) -> None:
    rows = store.get_online_features(
        features=store.get_feature_service("hllm_items_v1"), entity_rows=[{"item_id": "i2"}]
    )
    assert rows.to_dict()["title"] == ["t"]


def test_a_pushed_event_is_read_back(store) -> None:
    (current,) = online_histories(store, ["short"])
    items, times = append_event(current["item_ids"], current["timestamps"], "i6", 600, n=4)
    push_history(store, "short", items, times, total_length=3)
    (after,) = online_histories(store, ["short"])
    assert after == {"item_ids": ["i1", "i3", "i6"], "timestamps": [400, 500, 600], "length": 3}


def test_point_in_time_history_for_training(store) -> None:
    entities = pd.DataFrame({"user_id": ["long"], "event_timestamp": [pd.Timestamp(125, unit="s", tz="UTC")]})
    frame = store.get_historical_features(entity_df=entities, features=["user_recent_items:recent_item_ids"]).to_df()
    assert list(frame["recent_item_ids"].iloc[0]) == ["i0", "i1", "i2"]


def test_record_event_materializes_base_and_log_into_the_online_row(store) -> None:
    from hllm_feature_repo.store import online_log, record_event

    log = online_log(store)
    assert type(log).__name__ == "SQLiteOnlineLog"
    history = record_event(store, log, "long", "i6", 145, n=4)  # offline base: i3 i4 i5 i7 (130..150), 7 events
    assert online_histories(store, ["long"])[0] == {
        "item_ids": ["i4", "i6", "i5", "i7"],
        "timestamps": [140, 145, 150, 150],
        "length": 8,
    }
    assert history.length == 8
    record_event(store, log, "fresh", "i1", 10, n=4)
    assert online_histories(store, ["fresh"])[0] == {"item_ids": ["i1"], "timestamps": [10], "length": 1}
