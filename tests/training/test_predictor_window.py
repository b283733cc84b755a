"""The history length travels with the model: a model built with ``max_seq_len=12`` is evaluated and served
reading exactly the last 12 items of any longer history (SASRec and HLLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_hllm_training import _backbone

from hllm.config import run_config_from_dict
from hllm.data.synth import SynthConfig, generate
from hllm.evaluation.evaluate import evaluate_dataset
from hllm.predictor import Predictor
from hllm.training.build import build_task
from hllm.training.data import ItemVocab

WINDOW = 12
SECTIONS = {
    "sasrec": {"train": {"model": "sasrec"}, "sasrec": {"hidden": 16, "num_layers": 1, "num_heads": 1}},
    "hllm": {
        "train": {"model": "hllm", "mode": "cached"},
        "hllm": {
            "item_pooling": "mean",
            "item_backbone_config": _backbone("llama"),
            "user_backbone_config": _backbone("llama"),
            "max_text_tokens": 16,
            "use_item_id_embedding": True,
            "item_id_in_target": True,
        },
    },
}


@pytest.fixture(scope="module")
def dataset():
    # Histories up to 25 items: longer than the window.
    return generate(SynthConfig(n_users=30, n_items=48, n_topics=4, min_seq_len=16, max_seq_len=25, seed=2))


@pytest.fixture(scope="module", params=sorted(SECTIONS))
def model_dir(request, dataset, tmp_path_factory) -> Path:
    """A randomly initialised model with ``max_seq_len=12``, exported as training exports its best weights."""
    sections = SECTIONS[request.param]
    run = run_config_from_dict({**sections, "train": {**sections["train"], "max_seq_len": WINDOW}})
    torch.manual_seed(0)
    task = build_task(run, dataset, ItemVocab.from_items(dataset.items))
    out = tmp_path_factory.mktemp(request.param) / "model"
    task.export(out)
    return out


def test_the_saved_model_carries_its_history_length(model_dir: Path) -> None:
    name = "sasrec_config.json" if (model_dir / "sasrec_config.json").is_file() else "config.json"
    assert json.loads((model_dir / name).read_text())["max_seq_len"] == WINDOW
    assert Predictor.load(model_dir).max_len == WINDOW


def test_exactly_the_last_window_items_are_read(model_dir: Path) -> None:
    predictor = Predictor.load(model_dir)
    history = predictor.item_ids[:20]  # (20,) ids, longer than the window
    spare = predictor.item_ids[30]  # in no history below before it is swapped in
    reads = []
    model_user_vectors = predictor.model.user_vectors
    predictor.model.user_vectors = lambda h, v: reads.append(h.clone()) or model_user_vectors(h, v)

    def scores(items: list[str]) -> torch.Tensor:
        return torch.tensor([s for _, s in predictor.recommend([items], k=10, exclude_seen=False)[0]])

    base = scores(history)
    assert reads[-1].shape == (1, WINDOW)
    assert reads[-1][0].tolist() == [predictor.index[i] for i in history[-WINDOW:]]
    outside = [*history[: -WINDOW - 1], spare, *history[-WINDOW:]]  # the 13th item from the end changed
    inside = [*history[:-WINDOW], spare, *history[-WINDOW + 1 :]]  # the 12th item from the end changed
    assert torch.equal(scores(outside), base)
    assert not torch.allclose(scores(inside), base)


def test_evaluates_and_recommends_with_long_histories(model_dir: Path, dataset) -> None:
    predictor = Predictor.load(model_dir)
    metrics = evaluate_dataset(predictor, dataset)
    assert metrics["test"]["count"] == dataset.num_users and 0.0 <= metrics["test"]["ndcg@10"] <= 1.0
    history = dataset.interactions[dataset.interactions["user_id"] == dataset.interactions["user_id"].iloc[0]]
    items = history["item_id"].tolist()
    assert len(items) > WINDOW
    (recs,) = predictor.recommend([items], k=5)
    assert len(recs) == 5 and not {i for i, _ in recs} & set(items)  # the whole history is excluded, not the window
