"""The feature tables Feast serves: recent histories in time order, last N, one row per event or per user."""

from __future__ import annotations

import pandas as pd
import pytest

from hllm.features import append_event, user_history_table


def _interactions(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_history_is_chronological_and_truncated_to_the_last_n() -> None:
    # Source order is not time order; a tie in time keeps the source order.
    frame = _interactions([("u", "c", 30), ("u", "a", 10), ("u", "b", 20), ("u", "d", 30), ("v", "x", 5)])
    table = user_history_table(frame, n=3, snapshots="latest").set_index("user_id")
    assert table.loc["u", "recent_item_ids"] == ["b", "c", "d"]
    assert table.loc["u", "recent_timestamps"] == [20, 30, 30]
    assert table.loc["u", "history_length"] == 4
    assert table.loc["v", "recent_item_ids"] == ["x"]
    assert table.loc["u", "event_timestamp"] == pd.Timestamp(30, unit="s", tz="UTC")


def test_events_at_the_same_second_share_one_snapshot_after_all_of_them() -> None:
    frame = _interactions([("u", "a", 10), ("u", "b", 20), ("u", "c", 20)])
    table = user_history_table(frame, n=5, snapshots="every_event")
    assert table["recent_item_ids"].tolist() == [["a"], ["a", "b", "c"]]


def test_every_event_snapshots_are_point_in_time() -> None:
    frame = _interactions([("u", "a", 10), ("u", "b", 20), ("u", "c", 30)])
    table = user_history_table(frame, n=2, snapshots="every_event")
    assert table["recent_item_ids"].tolist() == [["a"], ["a", "b"], ["b", "c"]]
    assert table["event_timestamp"].tolist() == [pd.Timestamp(t, unit="s", tz="UTC") for t in (10, 20, 30)]


@pytest.mark.parametrize(("n", "snapshots"), [(0, "latest"), (5, "sometimes")])
def test_bad_arguments_are_named(n: int, snapshots: str) -> None:
    with pytest.raises(ValueError, match=r"n=0|snapshots='sometimes'"):
        user_history_table(_interactions([("u", "a", 1)]), n=n, snapshots=snapshots)


def test_append_event_keeps_time_order_and_length() -> None:
    items, times = append_event(["a", "b"], [10, 20], "late", 15, n=3)
    assert items == ["a", "late", "b"] and times == [10, 15, 20]
    items, times = append_event(items, times, "new", 40, n=3)
    assert items == ["late", "b", "new"] and times == [15, 20, 40]
