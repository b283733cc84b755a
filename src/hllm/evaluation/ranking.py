"""Full-ranking evaluation: exact top-k retrieval, target ranks and Recall/NDCG@K.

The HLLM protocol (HLLM.md, "Evaluation protocol") ranks each user's held-out target against the whole
catalogue, with the items of the user's history masked, and reports Recall@K (= HR@K, one target) and
NDCG@K for K in {5, 10, 50, 200}. This module is the library's single implementation of that protocol.

A 1M-item catalogue times many users does not fit in memory as one score matrix, so every function works
on blocks of ``user_batch`` users by ``item_chunk`` items: memory is bounded by about
``user_batch * (item_chunk + user_batch + 2 * k)`` scores, never users x items.

Scores are dot products ``user_vectors @ item_vectors.T`` (pass L2-normalised vectors to rank by cosine).
They are computed in float32, or float64 when an input is float64, on the device of ``user_vectors``;
item chunks are moved there one at a time, so the catalogue may stay on the CPU while users are on a GPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Literal, TypeAlias

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (5, 10, 50, 200)
DEFAULT_USER_BATCH = 1024
DEFAULT_ITEM_CHUNK = 32768

# Per user, the item indices to mask: a 1-D LongTensor or a list of ints (may be empty).
Exclusions: TypeAlias = Sequence[Tensor | Sequence[int]]
# 1-D indices masked for every user, e.g. the padding row 0 of an ID model's embedding table.
GlobalExclusions: TypeAlias = Tensor | Sequence[int]
Ties = Literal["pessimistic", "optimistic"]


@torch.no_grad()
def topk_scores(
    user_vectors: Tensor,
    item_vectors: Tensor,
    k: int,
    exclude: Exclusions | None = None,
    *,
    exclude_all: GlobalExclusions | None = None,
    user_batch: int = DEFAULT_USER_BATCH,
    item_chunk: int = DEFAULT_ITEM_CHUNK,
) -> tuple[Tensor, Tensor]:
    """Exact top-k items per user by dot product, with per-user masks.

    Scores are computed ``item_chunk`` items at a time and merged into a running top-k, so the full
    users x items matrix is never built. Masked items are never returned: when fewer than ``k`` items
    remain unmasked for a user, the trailing entries have score ``-inf`` and index ``-1``. The order of
    items with exactly equal scores is unspecified.

    Args:
        user_vectors: (U, D) user representations.
        item_vectors: (N, D) item representations; row i is item index i.
        k: number of items to return, 1 <= k <= N.
        exclude: optional, one entry per user: the item indices to mask for that user (its history).
        exclude_all: optional item indices masked for every user (e.g. a padding row).
        user_batch: users scored per block.
        item_chunk: items scored per block.

    Returns:
        ``(scores, indices)``, both (U, k), sorted by descending score; on the device of ``user_vectors``.

    Raises:
        ValueError: on mismatched shapes, ``k`` out of range or an exclusion index outside [0, N).
    """
    num_users, num_items = _check_vectors(user_vectors, item_vectors, exclude, user_batch, item_chunk)
    if not 1 <= k <= num_items:
        raise ValueError(f"k ({k}) must be in [1, {num_items}] (the number of items)")
    device, dtype = user_vectors.device, _score_dtype(user_vectors, item_vectors)
    global_mask = _global_mask(exclude_all, num_items, device)
    out_scores = torch.empty((num_users, k), dtype=dtype, device=device)  # (U, k)
    out_indices = torch.empty((num_users, k), dtype=torch.long, device=device)  # (U, k)
    for start, stop, rows, cols in _user_batches(exclude, num_users, num_items, user_batch, device):
        users = user_vectors[start:stop].to(dtype)  # (b, D)
        best_scores = torch.full((stop - start, k), -math.inf, dtype=dtype, device=device)  # (b, k)
        best_indices = torch.full((stop - start, k), -1, dtype=torch.long, device=device)  # (b, k)
        for lo, scores, allowed, _ in _chunk_scores(users, item_vectors, rows, cols, global_mask, item_chunk):
            scores = scores.masked_fill(~allowed, -math.inf)  # (b, c)
            chunk_scores, chunk_pos = scores.topk(min(k, scores.shape[1]), dim=1)  # (b, min(k, c))
            merged_scores = torch.cat([best_scores, chunk_scores], dim=1)  # (b, k + min(k, c))
            merged_indices = torch.cat([best_indices, chunk_pos + lo], dim=1)
            best_scores, pos = merged_scores.topk(k, dim=1)  # (b, k)
            best_indices = merged_indices.gather(1, pos)
        # A -inf entry is a masked item (or the initial filler) that only made the list for lack of others.
        out_scores[start:stop] = best_scores
        out_indices[start:stop] = best_indices.masked_fill(best_scores == -math.inf, -1)
    return out_scores, out_indices


@torch.no_grad()
def target_ranks(
    user_vectors: Tensor,
    item_vectors: Tensor,
    targets: Tensor,
    exclude: Exclusions | None = None,
    *,
    exclude_all: GlobalExclusions | None = None,
    ties: Ties = "pessimistic",
    user_batch: int = DEFAULT_USER_BATCH,
    item_chunk: int = DEFAULT_ITEM_CHUNK,
) -> Tensor:
    """0-based rank of each user's target among the items not masked for that user.

    The rank is the number of unmasked items, other than the target, that beat the target:

    - ``ties="pessimistic"`` (default): an item beats the target when its score is >= the target's, so an
      item tied with the target is ranked ahead of it. A collapsed model (all items scoring alike) then
      gets the worst rank instead of a perfect one.
    - ``ties="optimistic"``: only a strictly higher score beats the target (tied items rank behind it).

    With continuous scores exact ties are rare and both give the same ranks. To make ties detectable,
    the target's score is computed in the same matrix product as the chunk it is compared with. A NaN
    target score always gets the worst rank; a NaN item score beats the target only under pessimistic ties.

    The target itself is never masked: if it is in ``exclude`` or ``exclude_all`` it is still ranked
    (against the unmasked items), so a target repeated from the history is not silently dropped.

    Args:
        user_vectors: (U, D) user representations.
        item_vectors: (N, D) item representations; row i is item index i.
        targets: (U,) target item index per user.
        exclude: optional, one entry per user: the item indices to mask for that user (its history).
        exclude_all: optional item indices masked for every user (e.g. a padding row).
        ties: how items scoring exactly like the target count, see above.
        user_batch: users scored per block.
        item_chunk: items scored per block.

    Returns:
        (U,) int64 ranks on the device of ``user_vectors``; 0 means the target scored first.

    Raises:
        ValueError: on mismatched shapes, an unknown ``ties`` or an index outside [0, N).
    """
    num_users, num_items = _check_vectors(user_vectors, item_vectors, exclude, user_batch, item_chunk)
    if ties not in ("pessimistic", "optimistic"):
        raise ValueError(f"ties must be 'pessimistic' or 'optimistic', got {ties!r}")
    if targets.shape != (num_users,):
        raise ValueError(f"targets must have shape ({num_users},) (one per user), got {tuple(targets.shape)}")
    if num_users and (int(targets.min()) < 0 or int(targets.max()) >= num_items):
        raise ValueError(f"targets must be item indices in [0, {num_items})")
    device, dtype = user_vectors.device, _score_dtype(user_vectors, item_vectors)
    global_mask = _global_mask(exclude_all, num_items, device)
    ranks = torch.empty(num_users, dtype=torch.long, device=device)  # (U,)
    for start, stop, rows, cols in _user_batches(exclude, num_users, num_items, user_batch, device):
        users = user_vectors[start:stop].to(dtype)  # (b, D)
        batch_targets = targets[start:stop].to(device)  # (b,)
        target_vectors = item_vectors[targets[start:stop].to(item_vectors.device)].to(device, dtype)  # (b, D)
        count = torch.zeros(stop - start, dtype=torch.long, device=device)  # (b,)
        chunks = _chunk_scores(users, item_vectors, rows, cols, global_mask, item_chunk, target_vectors)
        for lo, scores, allowed, target_scores in chunks:
            # The target is ranked against the other items, never against itself.
            local = batch_targets - lo  # (b,)
            inside = torch.nonzero((local >= 0) & (local < scores.shape[1])).squeeze(1)
            allowed[inside, local[inside]] = False
            threshold = target_scores.unsqueeze(1)  # (b, 1)
            beats = ~(scores < threshold) if ties == "pessimistic" else scores > threshold  # (b, c)
            beats |= torch.isnan(threshold)
            count += (beats & allowed).sum(dim=1)
        ranks[start:stop] = count
    return ranks


def metrics_from_ranks(ranks: Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Recall@K and NDCG@K averaged over users, for a single held-out target per user.

    With one target, Recall@K = HR@K = 1 if rank < K else 0, and NDCG@K = 1 / log2(rank + 2) if rank < K
    else 0 (the ideal DCG is 1).

    Args:
        ranks: (U,) 0-based target ranks, e.g. from :func:`target_ranks`.
        ks: the cut-offs K.

    Returns:
        ``{"recall@K": ..., "ndcg@K": ... for each K, "count": U}``; the averages are NaN when U is 0.

    Raises:
        ValueError: if a K is not a positive integer or a rank is negative.
    """
    if any(not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")
    ranks = ranks.detach().reshape(-1).to("cpu", torch.float64)  # (U,)
    if ranks.numel() and float(ranks.min()) < 0:
        raise ValueError("ranks must be >= 0")
    count = ranks.numel()
    gains = 1.0 / torch.log2(ranks + 2.0)  # (U,)
    metrics: dict[str, float] = {}
    for k in ks:
        hits = ranks < k  # (U,)
        metrics[f"recall@{k}"] = float(hits.double().mean()) if count else math.nan
        metrics[f"ndcg@{k}"] = float(torch.where(hits, gains, 0.0).mean()) if count else math.nan
    metrics["count"] = count
    return metrics


def evaluate_ranking(
    user_vectors: Tensor,
    item_vectors: Tensor,
    targets: Tensor,
    exclude: Exclusions | None = None,
    *,
    cold_targets: Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    exclude_all: GlobalExclusions | None = None,
    ties: Ties = "pessimistic",
    user_batch: int = DEFAULT_USER_BATCH,
    item_chunk: int = DEFAULT_ITEM_CHUNK,
) -> dict[str, float]:
    """Full-ranking Recall@K / NDCG@K for all users and, optionally, for the cold-start slice.

    Args:
        user_vectors: (U, D) user representations.
        item_vectors: (N, D) item representations of the whole catalogue.
        targets: (U,) target item index per user.
        exclude: optional, one entry per user: its history items, masked (the target never is).
        cold_targets: optional (U,) bool, True where the user's target is a cold-start item (e.g.
            ``~seen_in_training[targets]``); adds the same metrics over those users under ``cold/``.
        ks: the cut-offs K.
        exclude_all: optional item indices masked for every user (e.g. a padding row).
        ties: tie handling, see :func:`target_ranks`.
        user_batch: users scored per block.
        item_chunk: items scored per block.

    Returns:
        ``recall@K``, ``ndcg@K`` and ``count``, plus ``cold/recall@K``, ``cold/ndcg@K`` and ``cold/count``
        when ``cold_targets`` is given (NaN averages if no target is cold).

    Raises:
        ValueError: on mismatched shapes or out-of-range indices.
    """
    if cold_targets is not None and (cold_targets.dtype != torch.bool or cold_targets.shape != targets.shape):
        raise ValueError(
            f"cold_targets must be a bool tensor shaped like targets {tuple(targets.shape)}, "
            f"got {cold_targets.dtype} {tuple(cold_targets.shape)}"
        )
    ranks = target_ranks(
        user_vectors,
        item_vectors,
        targets,
        exclude,
        exclude_all=exclude_all,
        ties=ties,
        user_batch=user_batch,
        item_chunk=item_chunk,
    )
    metrics = metrics_from_ranks(ranks, ks)
    if cold_targets is not None:
        cold = metrics_from_ranks(ranks[cold_targets.to(ranks.device)], ks)
        metrics.update({f"cold/{name}": value for name, value in cold.items()})
    logger.debug("ranked %d targets: %s", ranks.numel(), metrics)
    return metrics


def _check_vectors(
    user_vectors: Tensor, item_vectors: Tensor, exclude: Exclusions | None, user_batch: int, item_chunk: int
) -> tuple[int, int]:
    """Validate shapes and block sizes; return (U, N)."""
    if user_vectors.dim() != 2 or item_vectors.dim() != 2:
        raise ValueError(
            "user_vectors and item_vectors must be 2-D, "
            f"got {tuple(user_vectors.shape)} and {tuple(item_vectors.shape)}"
        )
    if user_vectors.shape[1] != item_vectors.shape[1]:
        raise ValueError(
            f"user_vectors dim ({user_vectors.shape[1]}) differs from item_vectors dim ({item_vectors.shape[1]})"
        )
    if item_vectors.shape[0] == 0:
        raise ValueError("item_vectors is empty")
    if exclude is not None and len(exclude) != user_vectors.shape[0]:
        raise ValueError(f"exclude has {len(exclude)} entries for {user_vectors.shape[0]} users")
    if user_batch < 1 or item_chunk < 1:
        raise ValueError(f"user_batch ({user_batch}) and item_chunk ({item_chunk}) must be >= 1")
    return user_vectors.shape[0], item_vectors.shape[0]


def _score_dtype(user_vectors: Tensor, item_vectors: Tensor) -> torch.dtype:
    """float32, or float64 if an input is float64: bf16 scores would create spurious ties."""
    return torch.promote_types(torch.promote_types(user_vectors.dtype, item_vectors.dtype), torch.float32)


def _global_mask(exclude_all: GlobalExclusions | None, num_items: int, device: torch.device) -> Tensor | None:
    """(N,) bool, True for items masked for every user; None when there are none."""
    if exclude_all is None:
        return None
    indices = torch.as_tensor(exclude_all, dtype=torch.long, device="cpu").reshape(-1)
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= num_items):
        raise ValueError(f"exclude_all indices must be in [0, {num_items})")
    mask = torch.zeros(num_items, dtype=torch.bool)
    mask[indices] = True
    return mask.to(device)


def _user_batches(
    exclude: Exclusions | None, num_users: int, num_items: int, user_batch: int, device: torch.device
) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """Yield ``(start, stop, rows, cols)``: a user block and its masked (row in block, item) pairs.

    The pairs are sorted by item so that each item chunk's pairs are one contiguous slice.
    """
    for start in range(0, num_users, user_batch):
        stop = min(start + user_batch, num_users)
        rows: list[Tensor] = []
        cols: list[Tensor] = []
        for row, items in enumerate(exclude[start:stop] if exclude is not None else []):
            indices = torch.as_tensor(items, dtype=torch.long, device="cpu").reshape(-1)
            rows.append(torch.full_like(indices, row))
            cols.append(indices)
        row_t = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)  # (E,)
        col_t = torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)  # (E,)
        if col_t.numel() and (int(col_t.min()) < 0 or int(col_t.max()) >= num_items):
            raise ValueError(f"exclude indices must be in [0, {num_items}) (users {start}..{stop - 1})")
        order = torch.argsort(col_t, stable=True)
        yield start, stop, row_t[order].to(device), col_t[order].to(device)


def _chunk_scores(
    users: Tensor,
    item_vectors: Tensor,
    rows: Tensor,
    cols: Tensor,
    global_mask: Tensor | None,
    item_chunk: int,
    extra_vectors: Tensor | None = None,
) -> Iterator[tuple[int, Tensor, Tensor, Tensor | None]]:
    """Yield ``(lo, scores (b, c), allowed (b, c) bool, extra_scores (b,) or None)`` per item chunk.

    ``extra_vectors`` (b, D), one per user, are scored in the same matrix product as every chunk, so that
    their scores round exactly like the chunk's (matching ties are then exact ties).
    """
    num_items = item_vectors.shape[0]
    starts = list(range(0, num_items, item_chunk))
    bounds = torch.searchsorted(cols, torch.tensor([*starts, num_items], device=cols.device)).tolist()
    for j, lo in enumerate(starts):
        hi = min(lo + item_chunk, num_items)
        chunk = item_vectors[lo:hi].to(users.device, users.dtype)  # (c, D)
        extra_scores = None
        if extra_vectors is not None:
            chunk = torch.cat([chunk, extra_vectors.to(users.device, users.dtype)])  # (c + b, D)
        scores = users @ chunk.T  # (b, c) or (b, c + b)
        if extra_vectors is not None:
            extra_scores = scores[:, hi - lo :].diagonal()  # (b,)
            scores = scores[:, : hi - lo]  # (b, c)
        allowed = torch.ones_like(scores, dtype=torch.bool)  # (b, c)
        if global_mask is not None:
            allowed &= ~global_mask[lo:hi]
        allowed[rows[bounds[j] : bounds[j + 1]], cols[bounds[j] : bounds[j + 1]] - lo] = False
        yield lo, scores, allowed, extra_scores
