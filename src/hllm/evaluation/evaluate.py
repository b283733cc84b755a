"""The one evaluation entry point: a model (or a Predictor) + an evaluation set -> full-ranking metrics.

HLLM's protocol (HLLM.md "Evaluation protocol"): every user's target is ranked against the whole catalogue with
the user's history masked (the target never is) and the padding row never ranked; Recall/NDCG@{5,10,50,200},
plus the same metrics on the *cold* slice (targets the model never saw in training) when the evaluation set
marks it. Trainer validation, ``hllm evaluate``, the gate, the popularity baseline and the quality benchmark all
score through :func:`evaluate`, which wraps `hllm.evaluation.ranking.evaluate_ranking`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hllm.data.schema import DataError, Dataset
from hllm.data.splits import LeaveOneOut, leave_one_out
from hllm.evaluation.ranking import DEFAULT_KS, evaluate_ranking
from hllm.training.data import EvalSet, ItemVocab, eval_set

EVAL_BATCH = 1024


class Scorer(Protocol):
    """What evaluation needs of a model (a subset of `hllm.models.recommender.Recommender`)."""

    similarity: str  # "dot" or "cosine"

    def item_vectors(self) -> Tensor:
        """(N + 1, D) vectors of every item; row 0 is padding."""

    def user_vectors(self, histories: Tensor, item_vectors: Tensor) -> Tensor:
        """(B, D) query vectors of left-padded (B, L) histories."""


@dataclass
class VectorScorer:
    """A fixed item table and a function of the history: baselines that need no model (popularity, text)."""

    items: Tensor  # (N + 1, D), row 0 padding
    user_fn: Callable[[Tensor], Tensor]  # (B, L) left-padded histories -> (B, D)
    similarity: str = "dot"

    def item_vectors(self) -> Tensor:
        return self.items

    def user_vectors(self, histories: Tensor, item_vectors: Tensor) -> Tensor:
        return self.user_fn(histories)


def evaluate(
    model,
    evalset: EvalSet,
    *,
    max_len: int | None = None,
    batch_size: int = EVAL_BATCH,
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Full-ranking metrics of ``model`` on ``evalset``, with the cold slice when ``evalset.cold`` is set.

    Args:
        model: a `Scorer` (a `Recommender`, a training task's ``recommender()``, a `VectorScorer`) or a
            `hllm.predictor.Predictor` (scored with its current catalogue, upserted items included).
        evalset: histories, targets and the cold mask, in the model's item indices.
        max_len: most recent history items read; default: the Predictor's, else ``model.max_seq_len``.
        batch_size: users per forward pass.
        ks: the cut-offs K.

    Returns:
        ``recall@K``, ``ndcg@K``, ``count`` and, when ``evalset.cold`` is set, the same under ``cold/``.
    """
    from hllm.predictor import Predictor

    item_vectors = None
    if isinstance(model, Predictor):
        max_len = max_len or model.max_len
        model, item_vectors = model.model, model.raw_vectors
    if max_len is None:
        max_len = model.max_seq_len
    module = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    was_training = isinstance(module, nn.Module) and module.training
    if isinstance(module, nn.Module):
        module.eval()
    try:
        with torch.no_grad():
            items = (model.item_vectors() if item_vectors is None else item_vectors).float()  # (N + 1, D)
            users = [model.user_vectors(h, items).float() for _, h in evalset.batches(batch_size, max_len)]
            users = torch.cat(users) if users else torch.zeros(0, items.shape[1])  # (U, D)
    finally:
        if was_training:
            module.train()
    if model.similarity == "cosine":
        users, items = F.normalize(users, dim=-1), F.normalize(items, dim=-1)
    return evaluate_ranking(
        users, items, evalset.targets, evalset.exclusions(), exclude_all=[0], cold_targets=evalset.cold, ks=ks
    )


def predictor_eval_set(predictor, split: LeaveOneOut, which: str) -> EvalSet:
    """The ``valid`` or ``test`` targets of ``split`` in the Predictor's item indices (its whole catalogue)."""
    frame = split.targets(which)
    unknown = sorted({t for t in frame["target"] if t not in predictor.index})
    if unknown:
        raise DataError(f"{len(unknown)} target item(s) are not in the model's catalogue: {unknown[:5]}")
    predictor.encode_histories(frame["history"].tolist())  # names unknown history items
    return eval_set(split, ItemVocab(["<pad>", *predictor.item_ids]), which)


def evaluate_split(predictor, split: LeaveOneOut, which: str, ks=DEFAULT_KS) -> dict[str, float]:
    """Metrics of ``predictor`` on the ``valid`` or ``test`` targets of ``split``, cold slice included."""
    return evaluate(predictor, predictor_eval_set(predictor, split, which), ks=ks)


def evaluate_dataset(predictor, dataset: Dataset, splits: tuple[str, ...] = ("valid", "test")) -> dict[str, dict]:
    """``{"valid": metrics, "test": metrics}`` under leave-one-out."""
    split = leave_one_out(dataset.interactions)
    return {which: evaluate_split(predictor, split, which) for which in splits}
