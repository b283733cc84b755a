"""Why cold items miss the top of HLLM's list: split each score into its text part and its id part.

    .venv/bin/python benchmarks/quality/cold_diagnosis.py --data ../shared/data/amazon-office-2014 \
        --model runs/quality-office-cold-zero/d03-s1/cold/hllm/model --out DIR [--split loo]

A diagnosis of an HLLM model trained by ``run.py`` (``--work`` keeps it), scored on the split it was trained on.
An item's vector is its projected text vector plus its id vector (zero for an item no training sequence holds);
the user's vector is the model's as trained. On the ``cold`` split it reports, over the users whose target is a
cold item: how many of their top 10 are cold items; the mean id part ``u . id`` of the warm items in their top 10
against the mean text part there and at the cold target (under cosine scoring both parts are divided by the item
vector's norm). On either split: the metrics as trained and when every target is scored by its text part alone
(``text_targets``; histories still read text + id): a counterfactual read on the test split, never a recipe
chosen by it. Writes ``diagnosis-<split>.json`` to ``--out`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from protocol import score
from run import load_splits

from hllm.models.recommender import load_recommender
from hllm.training.data import left_pad


def score_parts(model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N + 1, D) item vectors as trained, their id parts and their text parts (item = text + id)."""
    items = model.item_vectors()
    ids = model.id_vectors(torch.arange(len(items)))
    return items, ids, items - ids


class TextTargets:
    """The model with every target scored by its text part only; histories read as trained (text + id)."""

    def __init__(self, model) -> None:
        self.model, self.max_seq_len, self.similarity = model, model.max_seq_len, model.similarity
        self.full, _, self.text = score_parts(model)

    def item_vectors(self) -> torch.Tensor:
        return self.text

    def user_vectors(self, histories: torch.Tensor, item_vectors: torch.Tensor) -> torch.Tensor:
        return self.model.user_vectors(histories, self.full)


def cold_users_report(model, test) -> dict:
    """Where the cold-item targets' users rank what: see the module docstring."""
    items, ids, text = score_parts(model)
    trained = ids.abs().sum(dim=1) > 0
    norms = {
        "warm_items": items[1:][trained[1:]].norm(dim=-1).mean().item(),
        "untrained_items": items[1:][~trained[1:]].norm(dim=-1).mean().item(),
        "warm_items_text_part": text[1:][trained[1:]].norm(dim=-1).mean().item(),
    }
    trained[0] = True  # padding: never ranked
    cold_users = torch.nonzero(test.cold).flatten().tolist()
    histories = [test.histories[i] for i in cold_users]
    users = model.user_vectors(left_pad(histories, model.max_seq_len), items)
    if model.similarity == "cosine":  # the score is the cosine: the id vector also changes the item's norm
        users = torch.nn.functional.normalize(users, dim=-1)
        scale = items.norm(dim=-1).clamp_min(1e-12)[:, None]
        items, ids, text = items / scale, ids / scale, text / scale
    scores = users @ items.T
    scores[:, 0] = -torch.inf
    for row, history in enumerate(histories):
        scores[row, history] = -torch.inf  # the whole history masked, as in the evaluation
    top = scores.topk(10, dim=1).indices
    rows = torch.arange(len(cold_users))
    targets = test.targets[cold_users]
    id_part, text_part = users @ ids.T, users @ text.T
    warm_top = trained[top]
    return {
        "cold_target_users": len(cold_users),
        "similarity": model.similarity,
        "item_vector_norm_mean": norms,
        "cold_items_in_their_top10_mean": float((~warm_top).sum(dim=1).float().mean()),
        "top10_warm_items": {
            "id_part_mean": float(id_part[rows[:, None], top][warm_top].mean()),
            "text_part_mean": float(text_part[rows[:, None], top][warm_top].mean()),
        },
        "cold_target": {
            "text_part_mean": float(text_part[rows, targets].mean()),
            "rank_mean": float((scores > scores[rows, targets][:, None]).sum(dim=1).float().mean() + 1),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by run.py --work")
    parser.add_argument("--split", choices=("cold", "loo"), default="cold", help="the split the model was trained on")
    parser.add_argument("--cut", default=None, help="default: the dataset's cut in run.py (DEFAULT_CUTS)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    split = load_splits(args.data, [args.split], args.cut)[2][args.split]
    model = load_recommender(args.model)
    diagnosis = {"model": str(args.model), "split": args.split}
    if args.split == "cold":
        diagnosis.update(cold_users_report(model, split.test))
    for name, scorer in (("as_trained", model), ("text_targets", TextTargets(model))):
        valid, test = score(scorer, split, model.max_seq_len)
        diagnosis[name] = {"valid": valid, "test": test}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"diagnosis-{args.split}.json").write_text(json.dumps(diagnosis, indent=2) + "\n")
    print(json.dumps(diagnosis, indent=2))


if __name__ == "__main__":
    main()
