"""Generative InfoNCE of HLLM (HLLM.md "Training"), its statistics, and a guard against embedding collapse.

The user output at position i is scored against the item at position i+1 (the positive) and against one pool of
negatives shared by every position of every user on every rank. Scores are cosines times ``exp(s)``, with ``s`` a
learnable log-scale clamped to ``[0, ln 100]``. A negative whose cosine with the positive exceeds 0.99 is a likely
false negative and is masked. When item embeddings collapse, that filter masks nearly every negative and the loss
quietly stops meaning anything, so the number of surviving negatives is reported and :class:`CollapseDetector`
turns it into a clear stop signal.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

DEFAULT_TOP_K = 10


@dataclass
class InfoNCEOutput:
    """Loss and detached statistics of one step.

    ``stats`` keys: ``num_unmasked_negatives_mean`` / ``num_unmasked_negatives_min`` (negatives per row that
    survive the false-negative filter), ``negative_pool_size``, ``num_rows`` (positions scored),
    ``top1_accuracy`` / ``top{k}_accuracy`` (share of rows whose positive beats all but fewer than k unmasked
    negatives) and ``logit_scale`` (``exp`` of the clamped ``s`` actually used).
    """

    loss: torch.Tensor
    stats: dict[str, torch.Tensor]


def gather_negatives(negatives: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's negatives, keeping gradients (HLLM.md: "gathered across all ranks (with gradients)").

    ``torch.distributed.nn.functional.all_gather`` is the autograd-aware collective: the gradient of each gathered
    slice flows back to the rank that produced it (summed over ranks), on NCCL and gloo alike. torch 2.13 marks it
    deprecated in favour of a private functional API, so its FutureWarning is silenced. Every rank must pass the
    same shape. Without an initialised
    process group, or with a single rank, the input is returned as it is.

    Args:
        negatives: this rank's negative item vectors, ``(M, D)``.

    Returns:
        ``(world_size * M, D)``, rank 0's rows first.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        from torch.distributed.nn.functional import all_gather

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            gathered = all_gather(negatives)
        return torch.cat(gathered, dim=0)
    return negatives


def generative_infonce(
    user_outputs: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor,
    mask: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    logit_scale_min: float = 0.0,
    logit_scale_max: float = math.log(100),
    false_negative_threshold: float = 0.99,
    top_k: int = DEFAULT_TOP_K,
    gather: bool = True,
) -> InfoNCEOutput:
    """Sampled-softmax loss of next-item prediction with a shared negative pool.

    Args:
        user_outputs: User LLM outputs, ``(B, L, D)``; position i predicts ``positives[:, i]``.
        positives: the next item's vector at each position, ``(B, L, D)``.
        negatives: this rank's negative item vectors, ``(M, D)``, gathered across ranks when ``gather``.
        mask: ``(B, L)``, true where both the input and the target item are real; other positions are left out of
            the mean.
        logit_scale: the learnable log-scale ``s`` (a scalar); ``exp(clamp(s, min, max))`` multiplies the cosines.
        logit_scale_min: lower clamp of ``s``.
        logit_scale_max: upper clamp of ``s``.
        false_negative_threshold: negatives with cosine to the positive above this are masked (logit ``-inf``).
        top_k: besides top-1, the k of the reported top-k accuracy.
        gather: gather the negative pool across ranks (with gradients).

    Returns:
        The mean cross-entropy over masked-in positions and detached statistics (see :class:`InfoNCEOutput`).

    Raises:
        ValueError: on mismatched shapes or when ``mask`` selects no position.
    """
    if user_outputs.shape != positives.shape or user_outputs.shape[:2] != mask.shape:
        raise ValueError(
            f"user_outputs {tuple(user_outputs.shape)}, positives {tuple(positives.shape)} and mask "
            f"{tuple(mask.shape)} must agree as (B, L, D), (B, L, D), (B, L)"
        )
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if negatives.dim() != 2 or negatives.shape[-1] != user_outputs.shape[-1]:
        raise ValueError(f"negatives must be (M, {user_outputs.shape[-1]}), got {tuple(negatives.shape)}")
    valid = mask.bool()
    if not bool(valid.any()):
        raise ValueError("mask selects no position: every window in the batch is shorter than two items")

    pool = gather_negatives(negatives) if gather else negatives
    # Cosines in float32 whatever the training dtype: bf16 rounding matters near the 0.99 threshold.
    user = F.normalize(user_outputs[valid].float(), dim=-1)  # (R, D)
    pos = F.normalize(positives[valid].float(), dim=-1)  # (R, D)
    neg = F.normalize(pool.float(), dim=-1)  # (M, D)

    pos_cos = (user * pos).sum(dim=-1, keepdim=True)  # (R, 1)
    neg_cos = user @ neg.T  # (R, M)
    false_negative = (pos @ neg.T) > false_negative_threshold  # (R, M)

    # Clamp the value used, not only the stored parameter, so s above ln 100 behaves exactly like ln 100.
    scale = logit_scale.float().clamp(logit_scale_min, logit_scale_max).exp()
    logits = torch.cat([pos_cos, neg_cos], dim=-1) * scale  # (R, 1 + M)
    # Mask after scaling: -inf * scale would give a NaN gradient for the scale.
    logits = logits.masked_fill(F.pad(false_negative, (1, 0), value=False), float("-inf"))
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    loss = F.cross_entropy(logits, labels)

    with torch.no_grad():
        unmasked = (~false_negative).sum(dim=-1).float()  # (R,)
        # Rank of the positive: unmasked negatives scoring strictly higher (masked ones are -inf).
        rank = (logits[:, 1:] > logits[:, :1]).sum(dim=-1)  # (R,)
        stats = {
            "num_unmasked_negatives_mean": unmasked.mean(),
            "num_unmasked_negatives_min": unmasked.min(),
            "negative_pool_size": torch.tensor(float(neg.shape[0]), device=logits.device),
            "num_rows": torch.tensor(float(logits.shape[0]), device=logits.device),
            "top1_accuracy": (rank < 1).float().mean(),
            f"top{top_k}_accuracy": (rank < top_k).float().mean(),
            "logit_scale": scale.detach(),
        }
    return InfoNCEOutput(loss=loss, stats=stats)


class EmbeddingCollapseError(RuntimeError):
    """Item embeddings collapsed: the false-negative filter masks (almost) every negative."""


@dataclass
class CollapseDetector:
    """Flags embedding collapse from the per-step statistics of :func:`generative_infonce`.

    Collapse shows as the mean number of unmasked negatives per row falling towards zero: every negative looks
    like the positive (cosine > threshold), gets masked, and the loss no longer trains anything.

    Args:
        min_fraction: flag when the mean unmasked negatives per row is below this share of the pool.
        patience: consecutive low steps needed before flagging (1: the first one).

    Raises:
        ValueError: when ``min_fraction`` is not in (0, 1] or ``patience`` is below 1.
    """

    min_fraction: float = 0.5
    patience: int = 1
    low_steps: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_fraction <= 1.0:
            raise ValueError(f"min_fraction must be in (0, 1], got {self.min_fraction}")
        if self.patience < 1:
            raise ValueError(f"patience must be >= 1, got {self.patience}")

    def update(self, stats: Mapping[str, torch.Tensor | float]) -> str | None:
        """Record one step; return a message explaining the collapse once it is flagged, else ``None``."""
        mean = float(stats["num_unmasked_negatives_mean"])
        pool = float(stats["negative_pool_size"])
        self.low_steps = self.low_steps + 1 if mean < self.min_fraction * pool else 0
        if self.low_steps < self.patience:
            return None
        return (
            f"item embeddings have collapsed: only {mean:.1f} of {pool:.0f} negatives per row survive the "
            f"false-negative filter (below {self.min_fraction:.0%} of the pool for {self.low_steps} step(s)); "
            "the loss no longer trains anything. Lower the learning rate, check for duplicate item texts, or "
            "start from a pre-trained Item LLM."
        )

    def check(self, stats: Mapping[str, torch.Tensor | float]) -> None:
        """:meth:`update`, raising :class:`EmbeddingCollapseError` with the message when collapse is flagged."""
        message = self.update(stats)
        if message is not None:
            raise EmbeddingCollapseError(message)
