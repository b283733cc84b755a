"""Slow tier: a short real HLLM run on Amazon Office 2014 must beat popularity (run with -m slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import shared_dataset

from hllm.data.readers import read_raw
from hllm.data.splits import leave_one_out
from hllm.data.validation import require_pass, validate_tables
from hllm.evaluation.baselines import popularity_metrics
from hllm.evaluation.evaluate import evaluate_split
from hllm.predictor import Predictor
from hllm.training.build import load_run_config, run_training
from hllm.training.data import ItemVocab

LLAMA_2x384 = (
    '{"model_type": "llama", "hidden_size": 384, "num_hidden_layers": 2, "num_attention_heads": 6, '
    '"num_key_value_heads": 6, "intermediate_size": 1536, "vocab_size": 32, "max_position_embeddings": 128}'
)


@pytest.mark.slow
def test_short_office_run_beats_popularity(tmp_path: Path) -> None:
    dataset = require_pass(validate_tables(read_raw(shared_dataset("amazon-office-2014"))))
    overrides = [
        "epochs=2",
        "batch_size=128",
        "lr=1e-3",
        "select_metric=ndcg@10",
        "max_minutes=8",
        "hllm.item_pooling=mean",  # cached mode: the frozen [ITEM] vector never trains
        'hllm.item_prompt=""',
        'hllm.text_separator=" "',
        "hllm.max_text_tokens=48",
        "hllm.use_item_id_embedding=true",
        "hllm.item_id_in_target=true",
        f"hllm.user_backbone_config={LLAMA_2x384}",
    ]
    run_training(dataset, load_run_config(None, overrides), tmp_path, progress=False)
    split = leave_one_out(dataset.interactions)
    hllm = evaluate_split(Predictor.load(tmp_path / "model"), split, "test")
    popularity = popularity_metrics(split, ItemVocab.from_items(dataset.items), "test")
    assert hllm["recall@10"] > 3 * popularity["recall@10"]
    assert hllm["ndcg@10"] > popularity["ndcg@10"]
