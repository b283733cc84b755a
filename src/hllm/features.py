"""Feature tables for the feature store: each user's recent items and each item's text, as plain DataFrames.

The feature store (Feast, in ``feature_repo/``) serves these tables; this module only computes them, so the
library stays free of Feast. A user-history row holds the user's last ``n`` item ids and their timestamps, oldest
first, *as of* ``event_timestamp``:

- ``snapshots="every_event"`` writes one row after every interaction: point-in-time correct for historical
  retrieval (training data as of any past time), about ``len(interactions) * n`` ids in size;
- ``snapshots="latest"`` writes one row per user (its whole recent history): what the online store needs, and
  the choice for very large datasets.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hllm.data.schema import ITEM_TEXT_FIELDS, Dataset

logger = logging.getLogger(__name__)
USER_HISTORY_FILE = "user_history.parquet"
ITEM_TEXT_FILE = "item_text.parquet"
SNAPSHOT_MODES = ("every_event", "latest")


@dataclass(frozen=True)
class FeatureTables:
    """Where `write_feature_tables` put the offline sources, and what they hold."""

    user_history: Path
    item_text: Path
    users: int
    history_rows: int
    items: int
    earliest: pd.Timestamp
    latest: pd.Timestamp


def user_history_table(interactions: pd.DataFrame, n: int, snapshots: str = "every_event") -> pd.DataFrame:
    """Per user, the last ``n`` items and timestamps (oldest first) after each event or at the latest one.

    Ties in time keep the source order (the order `user_sequences` uses for training); events of a user at the
    same second share one snapshot, taken after all of them.

    Returns:
        ``user_id``, ``event_timestamp`` (UTC datetime), ``recent_item_ids`` (list of str),
        ``recent_timestamps`` (list of int, unix seconds), ``history_length`` (int, before truncation).
    """
    if n < 1:
        raise ValueError(f"history length n={n} must be >= 1")
    if snapshots not in SNAPSHOT_MODES:
        raise ValueError(f"snapshots='{snapshots}' must be one of {list(SNAPSHOT_MODES)}")
    ordered = interactions.reset_index(drop=True)
    ordered = ordered.iloc[np.lexsort((np.arange(len(ordered)), ordered["timestamp"].to_numpy()))]
    rows: list[tuple] = []
    for user, group in ordered.groupby("user_id", sort=True):
        items = group["item_id"].tolist()
        times = group["timestamp"].astype("int64").tolist()
        ends = range(1, len(items) + 1) if snapshots == "every_event" else [len(items)]
        for end in ends:
            start = max(0, end - n)
            rows.append((user, times[end - 1], items[start:end], times[start:end], end))
    table = pd.DataFrame(
        rows, columns=["user_id", "timestamp", "recent_item_ids", "recent_timestamps", "history_length"]
    )
    # Events at the same second: one snapshot, after all of them. The store keeps one row per (user, time) and
    # would otherwise pick either of them (found in the Feast test: a tie at the end lost the last item).
    table = table.drop_duplicates(["user_id", "timestamp"], keep="last").reset_index(drop=True)
    table["event_timestamp"] = pd.to_datetime(table.pop("timestamp"), unit="s", utc=True)
    table["history_length"] = table["history_length"].astype("int64")
    return table[["user_id", "event_timestamp", "recent_item_ids", "recent_timestamps", "history_length"]]


def item_text_table(items: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """``item_id``, the text fields and ``event_timestamp`` (``as_of``: when this catalogue was known)."""
    table = items.loc[:, ["item_id", *ITEM_TEXT_FIELDS]].copy()
    table["event_timestamp"] = as_of
    return table


def write_feature_tables(dataset: Dataset, out_dir: str | Path, n: int, snapshots: str = "every_event"):
    """Write the user-history and item-text offline sources as Parquet under ``out_dir``.

    Files are replaced atomically (written beside, then renamed), so a reader never sees half a table.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    history = user_history_table(dataset.interactions, n, snapshots)
    latest = history["event_timestamp"].max()
    text = item_text_table(dataset.items, latest)
    for frame, name in ((history, USER_HISTORY_FILE), (text, ITEM_TEXT_FILE)):
        tmp = out / f".{name}.tmp"
        frame.to_parquet(tmp, index=False)
        tmp.replace(out / name)
    logger.info("feature tables: %d history rows for %d users, %d items", len(history), dataset.num_users, len(text))
    return FeatureTables(
        user_history=out / USER_HISTORY_FILE,
        item_text=out / ITEM_TEXT_FILE,
        users=dataset.num_users,
        history_rows=len(history),
        items=len(text),
        earliest=history["event_timestamp"].min(),
        latest=latest,
    )


def append_event(history: list[str], times: list[int], item_id: str, timestamp: int, n: int) -> tuple[list, list]:
    """A user's recent history after one more event (kept in time order, last ``n``): for pushed events."""
    rows = [*zip(times, range(len(times)), history, strict=True), (timestamp, len(times), item_id)]
    merged = sorted(rows, key=lambda row: (row[0], row[1]))[-n:]
    return [row[2] for row in merged], [int(row[0]) for row in merged]
