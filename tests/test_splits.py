"""Leave-one-out and temporal-cut splits."""

from __future__ import annotations

import pandas as pd
import pytest

from hllm.data.schema import DataError
from hllm.data.splits import cut_at_quantile, leave_one_out, temporal_cut, user_sequences


def _frame(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def test_ties_keep_file_order_and_later_timestamps_sort_after() -> None:
    frame = _frame([("u1", "c", 5), ("u1", "a", 1), ("u1", "b", 5), ("u1", "d", 5), ("u2", "x", 1), ("u1", "e", 2)])
    sequences = user_sequences(frame)
    assert sequences["u1"] == ["a", "e", "c", "b", "d"]
    assert list(sequences.index) == ["u1", "u2"]


def test_leave_one_out_targets() -> None:
    frame = _frame([("u1", f"i{t}", t) for t in range(5)] + [("u2", "a", 1), ("u2", "b", 2), ("u2", "c", 3)])
    split = leave_one_out(frame)
    row = split.users.set_index("user_id").loc["u1"]
    assert (row["train"], row["valid"], row["test"]) == (["i0", "i1", "i2"], "i3", "i4")
    valid, test = split.targets("valid"), split.targets("test")
    assert valid.loc[1, "history"] == ["a"] and valid.loc[1, "target"] == "b"
    assert test.loc[0, "history"] == ["i0", "i1", "i2", "i3"] and test.loc[0, "target"] == "i4"
    assert split.train_sequences()["u2"] == ["a"]
    with pytest.raises(ValueError, match="'train'"):
        split.targets("train")


def test_leave_one_out_refuses_short_users() -> None:
    with pytest.raises(DataError, match="1 user\\(s\\) have fewer than 3") as info:
        leave_one_out(_frame([("u1", "a", 1), ("u1", "b", 2), ("u2", "a", 1), ("u2", "b", 2), ("u2", "c", 3)]))
    assert "user_id='u1' has 2" in str(info.value)


def test_temporal_cut_cold_items_and_events() -> None:
    rows = [("u1", "a", 1), ("u1", "b", 2), ("u1", "n", 10), ("u1", "a2", 11), ("u2", "a", 3), ("u2", "b", 12)]
    frame = _frame([*rows, ("u3", "n", 15)])  # u3 has no history before the cut: nothing to predict from
    cut = temporal_cut(frame, 10)
    assert cut.cold_items == {"n", "a2"}
    assert len(cut.train) == 3
    assert cut.events.to_dict("records") == [
        {"user_id": "u1", "history": ["a", "b"], "target": "n", "cold": True},
        {"user_id": "u2", "history": ["a"], "target": "b", "cold": False},
    ]
    every = temporal_cut(frame, 10, first_event_only=False).events
    assert every.loc[1].to_dict() == {"user_id": "u1", "history": ["a", "b", "n"], "target": "a2", "cold": True}


def test_cut_at_quantile() -> None:
    frame = _frame([("u", str(i), i) for i in range(100)])
    assert cut_at_quantile(frame, 0.9) == 89
    with pytest.raises(ValueError, match=r"quantile=1\.0"):
        cut_at_quantile(frame, 1.0)
