"""Evaluation splits: leave-one-out (HLLM's protocol) and a global temporal cut for cold-start evaluation.

Users' sequences are ordered by timestamp with a *stable* sort, so interactions that share a timestamp keep
their order in the source file (Amazon data has many same-day ties; file order is the true order there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hllm.data.schema import DataError


def user_sequences(interactions: pd.DataFrame) -> pd.Series:
    """Each user's item ids in chronological order (ties in file order), indexed by ``user_id``.

    Users appear in order of first appearance in the file.
    """
    order = np.arange(len(interactions))
    frame = interactions.assign(_order=order)
    frame = frame.sort_values(["timestamp", "_order"], kind="stable")
    first_seen = pd.unique(interactions["user_id"])
    sequences = frame.groupby("user_id", sort=False)["item_id"].agg(list)
    return sequences.reindex(first_seen)


@dataclass
class LeaveOneOut:
    """Leave-one-out split, one row per user.

    Attributes:
        users: ``user_id``, ``train`` (list: all but the last two items), ``valid`` (second-to-last item) and
            ``test`` (last item). Validation history = ``train``; test history = ``train + [valid]``.
    """

    users: pd.DataFrame

    def train_sequences(self) -> pd.Series:
        return self.users.set_index("user_id")["train"]

    def targets(self, split: str) -> pd.DataFrame:
        """``user_id``, ``history`` (list) and ``target`` for ``split`` in {"valid", "test"}."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        history = self.users["train"]
        if split == "test":
            history = [[*h, v] for h, v in zip(self.users["train"], self.users["valid"], strict=False)]
        return pd.DataFrame({"user_id": self.users["user_id"], "history": list(history), "target": self.users[split]})


def leave_one_out(interactions: pd.DataFrame, min_interactions: int = 3) -> LeaveOneOut:
    """Split every user's sequence: last item -> test, second-to-last -> validation, the rest -> train.

    Raises:
        DataError: a user has fewer than ``min_interactions`` (>= 3) interactions; the gate should have
            rejected them, so this names the users instead of silently dropping them.
    """
    sequences = user_sequences(interactions)
    lengths = sequences.map(len)
    short = lengths[lengths < max(min_interactions, 3)]
    if len(short):
        examples = [f"user_id={u!r} has {n}" for u, n in short.head(5).items()]
        raise DataError(
            f"{len(short)} user(s) have fewer than {max(min_interactions, 3)} interactions; "
            "leave-one-out needs train, validation and test items (run the validation gate first)",
            column="user_id",
            examples=examples,
        )
    users = pd.DataFrame(
        {
            "user_id": sequences.index.astype(str),
            "train": [s[:-2] for s in sequences],
            "valid": [s[-2] for s in sequences],
            "test": [s[-1] for s in sequences],
        }
    )
    return LeaveOneOut(users)


@dataclass
class TemporalCut:
    """A global cut in time.

    Attributes:
        cut: the cut timestamp; interactions at or after it are evaluation events.
        train: interactions strictly before ``cut``.
        events: interactions at or after ``cut`` whose user has history before it, as ``user_id``,
            ``history`` (the user's items before the event, chronological), ``target`` and ``cold``.
        cold_items: items whose first interaction is at or after ``cut``.
    """

    cut: int
    train: pd.DataFrame
    events: pd.DataFrame
    cold_items: set[str]


def cut_at_quantile(interactions: pd.DataFrame, quantile: float) -> int:
    """The timestamp below which ``quantile`` of the interactions lie."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile={quantile} must be in (0, 1)")
    return int(np.quantile(interactions["timestamp"].to_numpy(), quantile))


def temporal_cut(interactions: pd.DataFrame, cut: int, *, first_event_only: bool = True) -> TemporalCut:
    """Split at a global time ``cut`` for cold-start evaluation.

    Args:
        interactions: canonical interactions.
        cut: unix timestamp; events at or after it are held out.
        first_event_only: evaluate each user's first event after the cut only (the usual next-item protocol);
            otherwise every event after the cut, each with all of the user's earlier items as history.
    """
    order = np.arange(len(interactions))
    frame = interactions.assign(_order=order).sort_values(["timestamp", "_order"], kind="stable")
    first_seen = frame.groupby("item_id", sort=False)["timestamp"].min()
    cold_items = set(first_seen.index[first_seen >= cut])
    before = frame["timestamp"] < cut
    train = frame.loc[before].sort_values("_order").drop(columns="_order").reset_index(drop=True)
    histories = frame.loc[before].groupby("user_id", sort=False)["item_id"].agg(list)
    rows = []
    for user_id, group in frame.loc[~before].groupby("user_id", sort=False):
        history = list(histories.get(user_id, []))
        if not history:
            continue  # a user new after the cut has nothing to predict from
        for item_id in group["item_id"]:
            rows.append((user_id, list(history), item_id, item_id in cold_items))
            if first_event_only:
                break
            history.append(item_id)
    events = pd.DataFrame(rows, columns=["user_id", "history", "target", "cold"])
    return TemporalCut(cut=int(cut), train=train, events=events, cold_items=cold_items)
