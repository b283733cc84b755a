"""Generative InfoNCE against a hand computation, its masks, its temperature clamp, and the collapse detector."""

from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp

from hllm.models.loss import CollapseDetector, EmbeddingCollapseError, gather_negatives, generative_infonce

LN100 = math.log(100)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _tiny_case():
    """1 user, 3 positions (the first is padding), 3 negatives; negative 1 is a false negative of position 2."""
    users = [[9.0, -9.0], [1.0, 0.2], [0.3, 1.0]]  # position 0 is padding: any values
    positives = [[5.0, 5.0], [2.0, 0.1], [-0.2, 1.0]]
    negatives = [[1.0, 1.0], [-0.21, 1.02], [0.5, -1.0]]  # cos(neg 1, positive 2) > 0.99
    return users, positives, negatives


def _expected_loss(users, positives, negatives, rows, scale, threshold=0.99):
    losses, unmasked, correct = [], [], []
    for i in rows:
        pos = scale * _cos(users[i], positives[i])
        negs = [scale * _cos(users[i], n) for n in negatives if _cos(positives[i], n) <= threshold]
        losses.append(-pos + math.log(math.exp(pos) + sum(math.exp(n) for n in negs)))
        unmasked.append(len(negs))
        correct.append(all(n <= pos for n in negs))
    return sum(losses) / len(losses), unmasked, correct


def _run(users, positives, negatives, s: float):
    logit_scale = torch.tensor(s, requires_grad=True)
    out = generative_infonce(
        torch.tensor([users]),
        torch.tensor([positives]),
        torch.tensor(negatives),
        torch.tensor([[False, True, True]]),
        logit_scale,
        top_k=2,
    )
    return out, logit_scale


def test_loss_matches_hand_computation() -> None:
    users, positives, negatives = _tiny_case()
    assert _cos(positives[2], negatives[1]) > 0.99 > _cos(positives[1], negatives[1])
    s = math.log(1 / 0.07)
    out, _ = _run(users, positives, negatives, s)
    expected, unmasked, correct = _expected_loss(users, positives, negatives, rows=[1, 2], scale=math.exp(s))
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert unmasked == [3, 2]
    assert out.stats["num_unmasked_negatives_mean"].item() == 2.5
    assert out.stats["num_unmasked_negatives_min"].item() == 2
    assert out.stats["negative_pool_size"].item() == 3
    assert out.stats["num_rows"].item() == 2
    assert out.stats["top1_accuracy"].item() == pytest.approx(sum(correct) / 2)
    assert out.stats["logit_scale"].item() == pytest.approx(1 / 0.07)


def test_padded_position_does_not_matter() -> None:
    users, positives, negatives = _tiny_case()
    base, _ = _run(users, positives, negatives, 2.0)
    users[0], positives[0] = [-100.0, 3.0], [0.0, 1.0]
    changed, _ = _run(users, positives, negatives, 2.0)
    assert changed.loss.item() == base.loss.item()


def test_scale_above_ln100_behaves_like_ln100() -> None:
    users, positives, negatives = _tiny_case()
    clamped, s_high = _run(users, positives, negatives, LN100 + 1.0)
    at_max, _ = _run(users, positives, negatives, LN100)
    expected, _, _ = _expected_loss(users, positives, negatives, rows=[1, 2], scale=100.0)
    assert clamped.loss.item() == pytest.approx(at_max.loss.item(), abs=0)
    assert clamped.loss.item() == pytest.approx(expected, rel=1e-5)
    assert clamped.stats["logit_scale"].item() == pytest.approx(100.0)
    clamped.loss.backward()
    assert s_high.grad is not None and s_high.grad.item() == 0.0  # outside the range: the clamp holds it
    below, s_low = _run(users, positives, negatives, -0.5)
    assert below.stats["logit_scale"].item() == pytest.approx(1.0)
    below.loss.backward()
    assert s_low.grad.item() == 0.0


def test_gradients_reach_users_positives_and_negatives_without_nan() -> None:
    users = torch.randn(2, 4, 8, requires_grad=True)
    positives = torch.randn(2, 4, 8, requires_grad=True)
    negatives = torch.randn(5, 8, requires_grad=True)
    negatives_with_duplicate = torch.cat([negatives, positives[0, 1:2]])  # an exact false negative
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    out = generative_infonce(users, positives, negatives_with_duplicate, mask, scale)
    out.loss.backward()
    for tensor in (users, positives, negatives, scale):
        assert torch.isfinite(tensor.grad).all()
    assert negatives.grad.abs().sum() > 0 and positives.grad.abs().sum() > 0 and scale.grad.abs() > 0
    assert users.grad[0, 0].abs().sum() == 0  # padded position gets no gradient
    assert out.stats["num_unmasked_negatives_min"].item() == 5


def test_shape_and_mask_errors() -> None:
    scale = torch.tensor(1.0)
    with pytest.raises(ValueError, match="must agree"):
        generative_infonce(torch.randn(1, 3, 4), torch.randn(1, 2, 4), torch.randn(2, 4), torch.ones(1, 3), scale)
    with pytest.raises(ValueError, match="negatives"):
        generative_infonce(torch.randn(1, 3, 4), torch.randn(1, 3, 4), torch.randn(2, 5), torch.ones(1, 3), scale)
    with pytest.raises(ValueError, match="no position"):
        generative_infonce(torch.randn(1, 3, 4), torch.randn(1, 3, 4), torch.randn(2, 4), torch.zeros(1, 3), scale)


def test_gather_is_identity_without_a_process_group() -> None:
    negatives = torch.randn(3, 4)
    assert gather_negatives(negatives) is negatives


def _gather_worker(rank: int, world_size: int, folder: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world_size)
    try:
        data = torch.load(f"{folder}/data.pt")
        negatives = data["negatives"][rank].clone().requires_grad_(True)
        out = generative_infonce(
            data["users"][rank], data["positives"][rank], negatives, data["mask"][rank], data["scale"]
        )
        out.loss.backward()
        torch.save({"grad": negatives.grad, "pool": out.stats["negative_pool_size"]}, f"{folder}/rank{rank}.pt")
        dist.barrier()  # no rank tears gloo down while another still talks to it
    finally:
        dist.destroy_process_group()


def test_negatives_are_gathered_across_ranks_with_gradients(tmp_path) -> None:
    world_size = 2
    data = {
        "users": torch.randn(world_size, 2, 3, 8),
        "positives": torch.randn(world_size, 2, 3, 8),
        "negatives": torch.randn(world_size, 4, 8),
        "mask": torch.ones(world_size, 2, 3, dtype=torch.bool),
        "scale": torch.tensor(2.0),
    }
    torch.save(data, tmp_path / "data.pt")
    mp.spawn(_gather_worker, args=(world_size, str(tmp_path)), nprocs=world_size, join=True)

    # Reference: one process, the pooled negatives, the sum of both ranks' losses.
    pool = data["negatives"].reshape(-1, 8).clone().requires_grad_(True)
    total = sum(
        generative_infonce(data["users"][r], data["positives"][r], pool, data["mask"][r], data["scale"]).loss
        for r in range(world_size)
    )
    total.backward()
    for rank in range(world_size):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        assert result["pool"].item() == world_size * 4
        torch.testing.assert_close(result["grad"], pool.grad[rank * 4 : (rank + 1) * 4], rtol=1e-5, atol=1e-7)


def test_collapse_detector_flags_a_filtered_out_pool() -> None:
    detector = CollapseDetector(min_fraction=0.5, patience=2)
    healthy = {"num_unmasked_negatives_mean": torch.tensor(510.0), "negative_pool_size": torch.tensor(512.0)}
    collapsed = {"num_unmasked_negatives_mean": torch.tensor(3.0), "negative_pool_size": torch.tensor(512.0)}
    assert detector.update(healthy) is None
    assert detector.update(collapsed) is None  # patience 2: one low step is not enough
    assert detector.update(healthy) is None  # and a healthy step resets the count
    assert detector.update(collapsed) is None
    message = detector.update(collapsed)
    assert message is not None and "collapsed" in message and "3.0 of 512" in message
    with pytest.raises(EmbeddingCollapseError, match="collapsed"):
        CollapseDetector(min_fraction=0.1).check(collapsed)


def test_collapse_detector_on_real_stats_of_identical_items() -> None:
    vector = torch.randn(8)
    out = generative_infonce(
        torch.randn(1, 3, 8), vector.expand(1, 3, 8), vector.expand(16, 8), torch.ones(1, 3), torch.tensor(2.0)
    )
    assert out.stats["num_unmasked_negatives_mean"].item() == 0
    assert torch.isfinite(out.loss) and out.loss.item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(EmbeddingCollapseError):
        CollapseDetector().check(out.stats)


@pytest.mark.parametrize("kwargs", [{"min_fraction": 0.0}, {"min_fraction": 1.5}, {"patience": 0}])
def test_collapse_detector_validates(kwargs) -> None:
    with pytest.raises(ValueError):
        CollapseDetector(**kwargs)
