"""The HLLM runner of the quality benchmark (same signature and result as the runners in `runners.py`).

HLLM in cached mode, the CPU recipe: the Item LLM (all-MiniLM-L6-v2, offline) is frozen and encodes the whole
catalogue once (mean pooling: its [ITEM] vector is untrained); a trainable projection maps the 384-dim text
vectors to the User LLM's width, an item-id vector is added on both sides (`item_id_in_target`), and a small
random-init causal User LLM (2-layer BERT run as a decoder) is trained with the generative InfoNCE loss.
The catalogue encoding time counts as training time. Negatives come from the items of the training split only.
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
HLLM_TRAIN.update(json.loads(os.environ.get("HLLM_TRAIN_OVERRIDES", "{}")))  # for experiments only


def run_hllm(dataset: Dataset, split: BenchSplit, vocab: ItemVocab, budget_minutes: float, out_dir: Path) -> dict:
    """Train HLLM (cached mode) under the budget; score the best-by-validation weights on valid and test."""
    from hllm.config import run_config_from_dict
    from hllm.models.recommender import load_recommender
    from hllm.training.build import build_task
    from hllm.training.trainer import train

    started = time.perf_counter()
    train_values = {"max_seq_len": MAX_SEQ_LEN, "max_minutes": budget_minutes, "eval_batch_size": 1024, **HLLM_TRAIN}
    run = run_config_from_dict({"train": train_values, "hllm": HLLM_MODEL})
    config = run.train
    torch.manual_seed(config.seed)  # model init follows the run's seed (default 0), like data order and negatives
    task = build_task(run, dataset, vocab)  # encodes the catalogue once with the frozen Item LLM
    encode_seconds = time.perf_counter() - started
    if budget_minutes:
        config.max_minutes = max(budget_minutes - encode_seconds / 60, 1.0)
    result = train(task, split.train, split.valid, config, out_dir, show_progress=False)
    best = load_recommender(out_dir / "model")
    valid, test = score(best, split, MAX_SEQ_LEN)
    trainable = sum(p.numel() for p in best.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in best.model.parameters())
    return {
        "metrics_valid": valid,
        "metrics_test": test,
        "train_seconds": time.perf_counter() - started,
        "params": total,
        "config": {
            "model": json.loads(json.dumps(HLLM_MODEL)),
            "train": dataclasses.asdict(config),
            "trainable_params": trainable,
            "item_llm": "all-MiniLM-L6-v2 (frozen, mean pooled, offline)",
            "encode_seconds": round(encode_seconds, 1),
            "optional_inputs": ["item-id embedding (inputs and targets)"],
            **{k: getattr(result, k) for k in ("best_epoch", "epochs_run", "steps", "stopped")},
        },
    }
