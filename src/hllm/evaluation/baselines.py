"""Reference rankers that need no training, scored by the same entry point as the models."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hllm.data.splits import LeaveOneOut
from hllm.evaluation.evaluate import VectorScorer, evaluate
from hllm.evaluation.ranking import DEFAULT_KS
from hllm.training.data import ItemVocab, eval_set, item_popularity, train_sequences


def popularity_scorer(sequences: Sequence[Sequence[int]], num_items: int) -> VectorScorer:
    """Every user gets the same list: items by their count in the training ``sequences`` (history masked)."""
    counts = torch.as_tensor(item_popularity(sequences, num_items), dtype=torch.float32)
    return VectorScorer(counts.unsqueeze(1), lambda histories: torch.ones(histories.shape[0], 1))  # score = count


def popularity_metrics(split: LeaveOneOut, vocab: ItemVocab, which: str = "test", ks=DEFAULT_KS) -> dict[str, float]:
    """Metrics of the popularity ranking on the ``valid`` or ``test`` targets of ``split``, cold slice included."""
    scorer = popularity_scorer(train_sequences(split, vocab), vocab.num_items)
    return evaluate(scorer, eval_set(split, vocab, which), max_len=1, ks=ks)
