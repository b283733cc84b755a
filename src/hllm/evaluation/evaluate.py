"""Evaluate a trained model through the Predictor on the leave-one-out splits (HLLM's protocol).

Full ranking over the whole catalogue with the user's history masked, Recall/NDCG@{5,10,50,200}, for the
validation and test targets, plus the same metrics on the *cold* slice: targets that never occur in any
training sequence (items the model could only know from their text).
"""

from __future__ import annotations

import torch

from hllm.data.schema import DataError, Dataset
from hllm.data.splits import LeaveOneOut, leave_one_out
from hllm.evaluation.ranking import DEFAULT_KS, evaluate_ranking


def evaluate_split(predictor, split: LeaveOneOut, which: str, ks=DEFAULT_KS) -> dict[str, float]:
    """Metrics of ``predictor`` on the ``valid`` or ``test`` targets of ``split``."""
    frame = split.targets(which)
    histories = predictor.encode_histories(frame["history"].tolist())
    unknown = sorted({t for t in frame["target"] if t not in predictor.index})
    if unknown:
        raise DataError(f"{len(unknown)} target item(s) are not in the model's catalogue: {unknown[:5]}")
    targets = torch.tensor([predictor.index[t] for t in frame["target"]], dtype=torch.long)
    seen_in_training = {item for seq in split.users["train"] for item in seq}
    cold = torch.tensor([t not in seen_in_training for t in frame["target"]], dtype=torch.bool)
    users = predictor.user_vectors(histories)
    exclusions = [torch.tensor(sorted(set(h)), dtype=torch.long) for h in histories]
    return evaluate_ranking(
        users, predictor.scoring_vectors, targets, exclusions, exclude_all=[0], cold_targets=cold, ks=ks
    )


def evaluate_dataset(predictor, dataset: Dataset, splits: tuple[str, ...] = ("valid", "test")) -> dict[str, dict]:
    """``{"valid": metrics, "test": metrics}`` under leave-one-out."""
    split = leave_one_out(dataset.interactions)
    return {which: evaluate_split(predictor, split, which) for which in splits}
