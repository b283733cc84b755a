"""Training and evaluation batches shared by every recommender (HLLM and the SASRec baseline).

Items are integer indices into an `ItemVocab` (0 is padding). Training samples follow HLLM.md: each user's
training sequence (all but the last two items) is cut into windows of ``max_len + 1`` items, taken from the
end so the most recent items are never dropped; a causal model predicts item ``i + 1`` at position ``i`` of a
window. Batches are LEFT padded (the User LLM's convention): the newest item is always the last column.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from hllm.data.schema import DataError
from hllm.data.splits import LeaveOneOut

PAD = 0


@dataclass
class ItemVocab:
    """Item id <-> index; index 0 is padding, catalogue items are 1..N in item-table order."""

    ids: list[str]

    def __post_init__(self) -> None:
        self.index = {item_id: i for i, item_id in enumerate(self.ids)}
        if len(self.index) != len(self.ids):
            raise DataError("duplicate item ids in the vocabulary", column="item_id")

    @classmethod
    def from_items(cls, items: pd.DataFrame) -> ItemVocab:
        return cls(["<pad>", *items["item_id"].astype(str).tolist()])

    @property
    def num_items(self) -> int:
        """Catalogue size (padding excluded)."""
        return len(self.ids) - 1

    def encode(self, item_ids: Sequence[str]) -> list[int]:
        """Indices of ``item_ids``; an id outside the catalogue is an error naming it."""
        try:
            return [self.index[i] for i in item_ids]
        except KeyError as exc:
            raise DataError(f"item {exc.args[0]!r} is not in the item table", column="item_id") from None


def windows(sequence: Sequence[int], max_len: int) -> list[list[int]]:
    """Cut one sequence into windows of at most ``max_len + 1`` items, newest first; drop windows of 1 item."""
    size = max_len + 1
    out = []
    end = len(sequence)
    while end > 1:
        start = max(0, end - size)
        out.append(list(sequence[start:end]))
        end = start
    return [w for w in out if len(w) >= 2]


def left_pad(rows: Sequence[Sequence[int]], length: int | None = None) -> torch.Tensor:
    """(B, L) LongTensor, rows right-aligned, padded with `PAD` on the left; rows longer than L keep the tail."""
    length = length or max(len(r) for r in rows)
    out = torch.zeros(len(rows), length, dtype=torch.long)
    for i, row in enumerate(rows):
        tail = list(row)[-length:]
        if tail:
            out[i, length - len(tail) :] = torch.tensor(tail, dtype=torch.long)
    return out


class TrainWindows(torch.utils.data.Dataset):
    """Training windows of every user (see module docstring)."""

    def __init__(self, sequences: Sequence[Sequence[int]], max_len: int) -> None:
        self.max_len = max_len
        self.samples = [w for seq in sequences for w in windows(seq, max_len)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> list[int]:
        return self.samples[i]

    @staticmethod
    def collate(batch: list[list[int]]) -> dict[str, torch.Tensor]:
        """``items`` (B, L+1) left padded; ``inputs`` = items[:, :-1], ``targets`` = items[:, 1:] (0 = ignore)."""
        items = left_pad(batch)
        return {"items": items, "inputs": items[:, :-1], "targets": items[:, 1:]}


class LengthBatches(torch.utils.data.Sampler):
    """Batches of windows of similar length carrying about the same number of targets.

    A random batch is padded to its longest window: on short-sequence data (Amazon: 9 items on average,
    windows up to 51) most of the compute is padding. Here each epoch shuffles the windows, sorts pools of
    ``pool_batches`` batches by length and cuts every pool into ``ceil(pool / batch_size)`` contiguous
    batches of about equal target count, then shuffles the batches. Equal target counts keep each target's
    weight in the mean loss the same across batches (batches of short windows would otherwise weigh their
    targets up to 50x more). The number of batches per epoch equals a plain ``DataLoader``'s when the pool
    size is a multiple of ``batch_size``.

    Args:
        lengths: items per window (targets = length - 1).
        batch_size: windows per batch on average.
        seed: base seed; ``set_epoch`` makes each epoch's order reproducible (and resumable).
        pool_batches: batches sorted together; larger pools mean less padding but less random batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0, pool_batches: int = 50) -> None:
        self.targets = np.asarray(lengths, dtype=np.int64) - 1
        self.batch_size, self.seed, self.pool = batch_size, seed, batch_size * pool_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.targets)
        full, rest = divmod(n, self.pool)
        return full * math.ceil(self.pool / self.batch_size) + math.ceil(rest / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(len(self.targets))
        batches: list[list[int]] = []
        for start in range(0, len(order), self.pool):
            pool = order[start : start + self.pool]
            pool = pool[np.argsort(self.targets[pool], kind="stable")]
            count = math.ceil(len(pool) / self.batch_size)
            cumulative = np.cumsum(self.targets[pool])  # (P,)
            cuts = np.searchsorted(cumulative, cumulative[-1] * np.arange(1, count) / count, side="right")
            # Every batch keeps at least one window: cut i lies in [i, P - (count - i)].
            cuts = np.clip(cuts, np.arange(1, count), len(pool) - count + np.arange(1, count))
            cuts = np.maximum.accumulate(np.maximum(cuts, np.arange(1, count)))
            batches += [part.tolist() for part in np.split(pool, cuts)]
        return iter([batches[i] for i in rng.permutation(len(batches))])


@dataclass
class EvalSet:
    """One evaluation split: per user, history indices (all of them, for masking), the target, and whether the
    target is cold (an item the model never saw in training; None when the split does not say)."""

    user_ids: list[str]
    histories: list[list[int]]
    targets: torch.Tensor  # (U,)
    cold: torch.Tensor | None = None  # (U,) bool

    def batches(self, batch_size: int, max_len: int) -> Iterator[tuple[slice, torch.Tensor]]:
        """(slice of users, (B, max_len) left-padded recent histories)."""
        for start in range(0, len(self.user_ids), batch_size):
            part = slice(start, min(start + batch_size, len(self.user_ids)))
            yield part, left_pad(self.histories[part], max_len)

    def exclusions(self) -> list[torch.Tensor]:
        """Per user, the items already in the history: masked in full ranking (HLLM protocol)."""
        return [torch.tensor(sorted(set(h)), dtype=torch.long) for h in self.histories]


def eval_set(split: LeaveOneOut, vocab: ItemVocab, which: str) -> EvalSet:
    """The ``valid`` or ``test`` targets of a leave-one-out split as an `EvalSet`.

    A target is cold when it occurs in no training sequence (an item the model can know only from its text).
    """
    frame = split.targets(which)
    seen_in_training = {item for seq in split.users["train"] for item in seq}
    return EvalSet(
        user_ids=frame["user_id"].tolist(),
        histories=[vocab.encode(h) for h in frame["history"]],
        targets=torch.tensor(vocab.encode(frame["target"].tolist()), dtype=torch.long),
        cold=torch.tensor([t not in seen_in_training for t in frame["target"]], dtype=torch.bool),
    )


def train_sequences(split: LeaveOneOut, vocab: ItemVocab) -> list[list[int]]:
    return [vocab.encode(seq) for seq in split.users["train"]]


def item_popularity(sequences: Sequence[Sequence[int]], num_items: int) -> np.ndarray:
    """(N + 1,) interaction counts per item index in the training sequences."""
    counts = np.zeros(num_items + 1, dtype=np.int64)
    for seq in sequences:
        np.add.at(counts, np.asarray(seq, dtype=np.int64), 1)
    return counts
