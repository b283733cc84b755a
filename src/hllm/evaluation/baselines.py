"""Reference rankers that need no training, scored by the same full-ranking code as the models."""

from __future__ import annotations

import torch

from hllm.data.splits import LeaveOneOut
from hllm.evaluation.ranking import DEFAULT_KS, evaluate_ranking
from hllm.training.data import ItemVocab, eval_set, item_popularity, train_sequences


def popularity_metrics(split: LeaveOneOut, vocab: ItemVocab, which: str = "test", ks=DEFAULT_KS) -> dict[str, float]:
    """Rank every item by its count in the training sequences (history masked, like every model).

    Includes the cold slice (``cold/...``): targets that occur in no training sequence, as for the models.
    """
    counts = item_popularity(train_sequences(split, vocab), vocab.num_items)
    evalset = eval_set(split, vocab, which)
    items = torch.tensor(counts, dtype=torch.float32).unsqueeze(1)  # (N + 1, 1): score = count
    users = torch.ones(len(evalset.user_ids), 1)
    cold = torch.from_numpy(counts)[evalset.targets] == 0  # never in a training sequence
    return evaluate_ranking(
        users, items, evalset.targets, evalset.exclusions(), exclude_all=[0], cold_targets=cold, ks=ks
    )
