"""The one evaluation entry point gives the numbers of a direct `evaluate_ranking` call, cold slice included."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from hllm.data.splits import leave_one_out
from hllm.evaluation.baselines import popularity_metrics
from hllm.evaluation.evaluate import VectorScorer, evaluate
from hllm.evaluation.ranking import evaluate_ranking
from hllm.models.sasrec import SASRec, SASRecConfig
from hllm.predictor import Predictor
from hllm.training.data import EvalSet, ItemVocab, eval_set, left_pad


def _evalset(num_items: int = 40, users: int = 30) -> EvalSet:
    generator = torch.Generator().manual_seed(0)
    histories = [torch.randint(1, num_items + 1, (int(n),), generator=generator).tolist() for n in range(2, 2 + users)]
    targets = torch.randint(1, num_items + 1, (users,), generator=generator)
    cold = torch.arange(users) % 3 == 0  # 10 cold targets
    return EvalSet([f"u{i}" for i in range(users)], histories, targets, cold)


def test_evaluate_matches_evaluate_ranking_with_the_cold_slice() -> None:
    torch.manual_seed(0)
    items = torch.randn(41, 8)  # (N + 1, D)
    weights = torch.randn(8, 8)

    def users_of(histories: torch.Tensor) -> torch.Tensor:  # a deterministic function of the recent history
        return items[histories].sum(dim=1) @ weights

    evalset = _evalset()
    got = evaluate(VectorScorer(items, users_of, similarity="cosine"), evalset, max_len=5, batch_size=7)
    users = users_of(left_pad(evalset.histories, 5))
    want = evaluate_ranking(
        F.normalize(users, dim=-1),
        F.normalize(items, dim=-1),
        evalset.targets,
        evalset.exclusions(),
        exclude_all=[0],
        cold_targets=evalset.cold,
    )
    assert got.keys() == want.keys() and got["cold/count"] == 10 and got["count"] == 30
    for name, value in want.items():
        assert got[name] == pytest.approx(value, abs=1e-6), name
    # Without a cold mask there is no cold slice.
    unmarked = EvalSet(evalset.user_ids, evalset.histories, evalset.targets)
    plain = evaluate(VectorScorer(items, users_of, similarity="cosine"), unmarked, max_len=5)
    assert plain == {k: v for k, v in got.items() if not k.startswith("cold/")}


def test_a_predictor_and_its_model_score_alike() -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(num_items=40, hidden=16, num_layers=1, num_heads=1, dropout=0.0, max_seq_len=6))
    predictor = Predictor(model.eval(), [f"i{i}" for i in range(1, 41)], model.item_vectors(), max_len=6)
    evalset = _evalset()
    direct = evaluate_ranking(
        model.user_vectors(left_pad(evalset.histories, 6)).detach(),
        model.item_vectors().detach(),
        evalset.targets,
        evalset.exclusions(),
        exclude_all=[0],
        cold_targets=evalset.cold,
    )
    for got in (evaluate(predictor, evalset), evaluate(model, evalset)):
        for name, value in direct.items():
            assert got[name] == pytest.approx(value, abs=1e-6), name
    assert model.training is False


def test_eval_sets_mark_targets_unseen_in_training_as_cold() -> None:
    rows = [("a", ["x1", "x2", "x3", "x4"]), ("b", ["x1", "x2", "x5", "x6"]), ("c", ["x4", "x1", "x2", "x3"])]
    interactions = pd.DataFrame(
        [{"user_id": u, "item_id": item, "timestamp": t} for u, seq in rows for t, item in enumerate(seq)]
    )
    split = leave_one_out(interactions)  # train: a [x1 x2], b [x1 x2], c [x4 x1]
    vocab = ItemVocab(["<pad>", "x1", "x2", "x3", "x4", "x5", "x6"])
    test = eval_set(split, vocab, "test")  # targets x4 (seen in c's training), x6, x3
    assert test.cold.tolist() == [False, True, True]
    popularity = popularity_metrics(split, vocab, "test")
    assert popularity["cold/count"] == 2 and popularity["count"] == 3
