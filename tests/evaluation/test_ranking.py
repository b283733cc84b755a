"""Full-ranking evaluation: hand-computed metrics, masks, ties, and chunked == dense on random data."""

from __future__ import annotations

import math

import pytest
import torch

from hllm.evaluation import evaluate_ranking, metrics_from_ranks, target_ranks, topk_scores


def _dense_reference(
    users: torch.Tensor, items: torch.Tensor, exclude: list[list[int]], targets: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Plain users x items score matrix with -inf at masked items, and strictly-higher target ranks."""
    scores = users.double() @ items.double().T  # (U, N)
    masked = torch.zeros_like(scores, dtype=torch.bool)
    for row, history in enumerate(exclude):
        masked[row, history] = True
    ranks = None
    if targets is not None:
        target_scores = scores.gather(1, targets[:, None])  # (U, 1)
        others = ~masked
        others[torch.arange(len(targets)), targets] = False
        ranks = ((scores > target_scores) & others).sum(1)
    return scores.masked_fill(masked, -math.inf), ranks


def _random_case(seed: int, num_users: int = 37, num_items: int = 103, dim: int = 8):
    generator = torch.Generator().manual_seed(seed)
    users = torch.randn(num_users, dim, generator=generator, dtype=torch.float64)
    items = torch.randn(num_items, dim, generator=generator, dtype=torch.float64)
    exclude = [
        torch.randperm(num_items, generator=generator)[: int(torch.randint(0, 30, (1,), generator=generator))].tolist()
        for _ in range(num_users)
    ]
    targets = torch.randint(0, num_items, (num_users,), generator=generator)
    return users, items, exclude, targets


def test_metrics_match_hand_computed_values():
    metrics = metrics_from_ranks(torch.tensor([0, 3, 9, 60, 250]), ks=(5, 10, 50, 200))
    assert metrics["count"] == 5
    assert metrics["recall@5"] == pytest.approx(2 / 5)
    assert metrics["ndcg@5"] == pytest.approx((1 / math.log2(2) + 1 / math.log2(5)) / 5)
    assert metrics["recall@10"] == pytest.approx(3 / 5)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(11)) / 5)
    assert metrics["recall@50"] == pytest.approx(3 / 5)
    assert metrics["ndcg@50"] == pytest.approx(metrics["ndcg@10"])
    assert metrics["recall@200"] == pytest.approx(4 / 5)
    assert metrics["ndcg@200"] == pytest.approx((1 + 1 / math.log2(5) + 1 / math.log2(11) + 1 / math.log2(62)) / 5)


def test_metrics_boundary_rank_equal_to_k_is_a_miss():
    metrics = metrics_from_ranks(torch.tensor([4, 5]), ks=(5,))
    assert metrics["recall@5"] == pytest.approx(0.5)
    assert metrics["ndcg@5"] == pytest.approx(1 / math.log2(6) / 2)


def test_metrics_of_no_users_are_nan_with_zero_count():
    metrics = metrics_from_ranks(torch.zeros(0, dtype=torch.long), ks=(5,))
    assert metrics["count"] == 0
    assert math.isnan(metrics["recall@5"]) and math.isnan(metrics["ndcg@5"])


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="ks"):
        metrics_from_ranks(torch.tensor([0]), ks=(0,))
    with pytest.raises(ValueError, match="ranks"):
        metrics_from_ranks(torch.tensor([-1]))


def test_exclusion_skips_a_masked_item_that_would_rank_first():
    # Scores for the single user: item i scores items[i, 0]; item 2 is best, the target (item 1) second.
    users = torch.tensor([[1.0, 0.0]])
    items = torch.tensor([[0.1, 0.0], [0.8, 0.0], [0.9, 0.0], [0.5, 0.0], [0.7, 0.0]])
    targets = torch.tensor([1])
    assert target_ranks(users, items, targets).tolist() == [1]
    assert target_ranks(users, items, targets, [[2]]).tolist() == [0]
    assert target_ranks(users, items, targets, [torch.tensor([2, 4])]).tolist() == [0]

    _, unmasked = topk_scores(users, items, 3)
    assert unmasked.tolist() == [[2, 1, 4]]
    scores, masked = topk_scores(users, items, 3, [[2]])
    assert masked.tolist() == [[1, 4, 3]]
    assert scores[0].tolist() == pytest.approx([0.8, 0.7, 0.5])


def test_exclude_all_masks_an_item_for_every_user():
    users = torch.tensor([[1.0], [2.0]])
    items = torch.tensor([[5.0], [1.0], [2.0], [3.0]])  # item 0 would always be first
    _, indices = topk_scores(users, items, 2, exclude_all=[0])
    assert indices.tolist() == [[3, 2], [3, 2]]
    assert target_ranks(users, items, torch.tensor([3, 2]), exclude_all=torch.tensor([0])).tolist() == [0, 1]


def test_target_in_its_own_history_is_still_ranked():
    users = torch.tensor([[1.0]])
    items = torch.tensor([[3.0], [2.0], [1.0]])
    # Target 1 is also in the history: it is ranked, against item 2 only (item 0 is masked).
    assert target_ranks(users, items, torch.tensor([1]), [[0, 1]]).tolist() == [0]
    assert target_ranks(users, items, torch.tensor([2]), [[0, 2]]).tolist() == [1]


@pytest.mark.parametrize("item_chunk", [1, 3, 7, 10, 16, 102, 103, 500])
@pytest.mark.parametrize("user_batch", [1, 5, 64])
def test_chunked_equals_dense(item_chunk: int, user_batch: int):
    users, items, exclude, targets = _random_case(seed=item_chunk * 100 + user_batch)
    dense_scores, dense_ranks = _dense_reference(users, items, exclude, targets)
    k = 10
    ref_scores, ref_indices = dense_scores.topk(k, dim=1)

    scores, indices = topk_scores(users, items, k, exclude, user_batch=user_batch, item_chunk=item_chunk)
    assert torch.equal(indices, ref_indices)
    torch.testing.assert_close(scores, ref_scores)

    for ties in ("pessimistic", "optimistic"):  # random float64 scores have no exact ties
        ranks = target_ranks(users, items, targets, exclude, ties=ties, user_batch=user_batch, item_chunk=item_chunk)
        assert torch.equal(ranks, dense_ranks)


def test_chunked_float32_matches_dense():
    users, items, exclude, targets = _random_case(seed=7, num_users=50, num_items=997, dim=16)
    _, dense_ranks = _dense_reference(users, items, exclude, targets)
    ranks = target_ranks(users.float(), items.float(), targets, exclude, user_batch=8, item_chunk=100)
    # float32 rounding may swap near-equal scores; ranks move by at most one position here.
    assert (ranks - dense_ranks).abs().max() <= 1
    assert (ranks == dense_ranks).float().mean() > 0.95


def test_topk_never_returns_excluded_items():
    num_items = 40
    generator = torch.Generator().manual_seed(3)
    users = torch.randn(20, 4, generator=generator)
    items = torch.randn(num_items, 4, generator=generator)
    # Heavy masks, including users left with fewer than k candidates.
    exclude = [torch.randperm(num_items, generator=generator)[: num_items - 2 * (u % 10)] for u in range(20)]
    k = 12
    scores, indices = topk_scores(users, items, k, exclude, exclude_all=[5], user_batch=3, item_chunk=7)
    for user, history in enumerate(exclude):
        returned = indices[user][indices[user] >= 0].tolist()
        available = num_items - len(set(history.tolist()) | {5})
        assert len(returned) == min(k, available)
        assert not set(returned) & (set(history.tolist()) | {5})
        assert len(set(returned)) == len(returned)
        assert torch.isinf(scores[user][indices[user] < 0]).all()
        assert torch.all(scores[user][:-1] >= scores[user][1:])


def test_ties_pessimistic_and_optimistic():
    # Collapsed item embeddings: every item scores the same for every user.
    users = torch.randn(4, 8)
    items = torch.randn(1, 8).repeat(30, 1)
    targets = torch.tensor([0, 7, 15, 29])
    exclude = [[], [1, 2], [], [0, 1, 2, 3]]
    for item_chunk in (4, 30):
        pessimistic = target_ranks(users, items, targets, exclude, item_chunk=item_chunk)
        optimistic = target_ranks(users, items, targets, exclude, ties="optimistic", item_chunk=item_chunk)
        assert pessimistic.tolist() == [29, 27, 29, 25]  # every other unmasked item counted ahead
        assert optimistic.tolist() == [0, 0, 0, 0]


def test_nan_target_score_gets_the_worst_rank():
    users = torch.tensor([[1.0], [1.0]])
    items = torch.tensor([[1.0], [float("nan")], [2.0], [3.0]])
    targets, exclude = torch.tensor([1, 3]), [[0], []]
    # User 0's target is NaN: worst rank either way. User 1's NaN item beats its target only when pessimistic.
    assert target_ranks(users, items, targets, exclude, ties="pessimistic").tolist() == [2, 1]
    assert target_ranks(users, items, targets, exclude, ties="optimistic").tolist() == [2, 0]


def test_evaluate_ranking_cold_slice_uses_only_cold_targets():
    users = torch.tensor([[1.0]] * 4)
    items = torch.tensor([[float(v)] for v in range(10, 0, -1)])  # item i has rank i
    targets = torch.tensor([0, 2, 6, 9])
    cold = torch.tensor([False, True, False, True])
    metrics = evaluate_ranking(users, items, targets, cold_targets=cold, ks=(5,))
    assert metrics["count"] == 4
    assert metrics["recall@5"] == pytest.approx(2 / 4)
    assert metrics["ndcg@5"] == pytest.approx((1 + 1 / math.log2(4)) / 4)
    assert metrics["cold/count"] == 2
    assert metrics["cold/recall@5"] == pytest.approx(1 / 2)
    assert metrics["cold/ndcg@5"] == pytest.approx((1 / math.log2(4)) / 2)
    assert "cold/count" not in evaluate_ranking(users, items, targets, ks=(5,))


def test_evaluate_ranking_with_history_masks():
    users = torch.tensor([[1.0]] * 2)
    items = torch.tensor([[float(v)] for v in range(10, 0, -1)])  # item i has rank i
    metrics = evaluate_ranking(users, items, torch.tensor([6, 6]), [list(range(6)), []], ks=(5,), item_chunk=3)
    assert metrics["recall@5"] == pytest.approx(1 / 2)  # ranks [0, 6]
    assert metrics["ndcg@5"] == pytest.approx(1 / 2)


def test_input_validation():
    users, items = torch.randn(3, 4), torch.randn(5, 4)
    targets = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="k"):
        topk_scores(users, items, 6)
    with pytest.raises(ValueError, match="dim"):
        topk_scores(users, torch.randn(5, 3), 2)
    with pytest.raises(ValueError, match="exclude"):
        topk_scores(users, items, 2, [[0], [1]])
    with pytest.raises(ValueError, match="exclude"):
        target_ranks(users, items, targets, [[0], [5], []])
    with pytest.raises(ValueError, match="exclude_all"):
        target_ranks(users, items, targets, exclude_all=[-1])
    with pytest.raises(ValueError, match="targets"):
        target_ranks(users, items, torch.tensor([0, 1, 5]))
    with pytest.raises(ValueError, match="ties"):
        target_ranks(users, items, targets, ties="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cold_targets"):
        evaluate_ranking(users, items, targets, cold_targets=torch.tensor([1, 0, 1]))
