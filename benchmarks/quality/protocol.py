"""The two evaluation splits of the quality benchmark and the code that scores a model on them.

A `BenchSplit` is what every model runner receives: training sequences (item indices), a validation set for
model selection and a test set, each an `EvalSet` (history masked, full ranking over the catalogue). Models are
scored by `score`, i.e. by the library's one evaluation entry point `hllm.evaluation.evaluate.evaluate`.

- ``loo``: HLLM.md leave-one-out. Train = all but the last two items; valid target = second-to-last item
  (history = train); test target = last item (history = train + valid item).
- ``cold``: a global temporal cut. Training data = interactions before the cut; the test target is each user's
  first event at or after the cut, with all of the user's pre-cut items as history; cold items are those first
  seen at or after the cut. For model selection the pre-cut data is itself split leave-one-out: validation
  target = the user's last pre-cut item, train = the pre-cut items before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import torch

from hllm.data.schema import Dataset
from hllm.data.splits import LeaveOneOut, cut_at_quantile, leave_one_out, temporal_cut, user_sequences
from hllm.evaluation.evaluate import evaluate
from hllm.training.data import EvalSet, ItemVocab, eval_set, train_sequences

KS = (5, 10, 50, 200)


@dataclass
class BenchSplit:
    """One evaluation split, vocabulary-encoded.

    Attributes:
        name: ``loo`` or ``cold``.
        train: per user, training item indices in chronological order (what a model may learn from).
        valid: validation targets (model selection only).
        test: test targets; ``test.cold`` marks the targets that are cold items.
        info: counts and settings worth reporting.
    """

    name: str
    train: list[list[int]]
    valid: EvalSet
    test: EvalSet
    info: dict = field(default_factory=dict)


def loo_split(dataset: Dataset, vocab: ItemVocab) -> tuple[BenchSplit, LeaveOneOut]:
    """The leave-one-out split of HLLM.md (and the `LeaveOneOut` it came from)."""
    split = leave_one_out(dataset.interactions)
    bench = BenchSplit(
        name="loo",
        train=train_sequences(split, vocab),
        valid=eval_set(split, vocab, "valid"),
        test=eval_set(split, vocab, "test"),
        info={"users": len(split.users), "items": vocab.num_items},
    )
    return bench, split


def parse_cut(dataset: Dataset, cut: str | None, quantile: float) -> int:
    """A unix timestamp from ``YYYY-MM-DD``, from digits, or (``cut`` None) the ``quantile`` of timestamps."""
    if cut is None:
        return cut_at_quantile(dataset.interactions, quantile)
    if cut.isdigit():
        return int(cut)
    return int(pd.Timestamp(cut, tz="UTC").timestamp())


def cold_split(dataset: Dataset, vocab: ItemVocab, cut: int) -> BenchSplit:
    """The temporal-cut split: see the module docstring."""
    tc = temporal_cut(dataset.interactions, cut, first_event_only=True)
    pre = user_sequences(tc.train)  # user_id -> pre-cut items, chronological
    train, valid_hist, valid_target = [], [], []
    for items in pre:
        encoded = vocab.encode(items)
        if len(encoded) >= 2:
            train.append(encoded[:-1])
            valid_hist.append(encoded[:-1])
            valid_target.append(encoded[-1])
        else:
            train.append(encoded)
    valid = EvalSet(
        user_ids=[str(u) for u, items in pre.items() if len(items) >= 2],
        histories=valid_hist,
        targets=torch.tensor(valid_target, dtype=torch.long),
    )
    events = tc.events
    cold = torch.tensor(events["cold"].to_numpy(dtype=bool))
    test = EvalSet(
        user_ids=events["user_id"].astype(str).tolist(),
        histories=[vocab.encode(h) for h in events["history"]],
        targets=torch.tensor(vocab.encode(events["target"].tolist()), dtype=torch.long),
        cold=cold,
    )
    info = {
        "cut": int(cut),
        "cut_date": pd.Timestamp(int(cut), unit="s", tz="UTC").strftime("%Y-%m-%d"),
        "train_interactions": len(tc.train),
        "cold_items": len(tc.cold_items),
        "test_users": len(events),
        "test_cold_targets": int(cold.sum()),
        "valid_users": len(valid.user_ids),
    }
    return BenchSplit(name="cold", train=train, valid=valid, test=test, info=info)


def score(model, split: BenchSplit, max_len: int, batch_size: int = 1024) -> tuple[dict, dict]:
    """Valid and test metrics (``cold/...`` too where the test set marks cold targets) of ``model``.

    Args:
        model: anything `hllm.evaluation.evaluate.evaluate` scores: a trained model (`Recommender`), a task's
            ``recommender()``, or a `VectorScorer` (item table + function of the history) for the baselines.
        split: the split to score.
        max_len: most recent history items fed to the model.
        batch_size: users per forward pass.
    """
    valid = evaluate(model, split.valid, max_len=max_len, batch_size=batch_size, ks=KS)
    test = evaluate(model, split.test, max_len=max_len, batch_size=batch_size, ks=KS)
    return valid, test
