"""Cached vs end_to_end: with the Item LLM frozen, both training paths give the same loss and gradients.

Cached mode feeds the model precomputed Item-LLM states of the catalogue; end_to_end feeds the tokens of each
step's items through the Item LLM. With the Item LLM frozen the two must be the same computation, so the cache
is a pure speed-up (HLLM.md "HLLM-1B_cache").
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from hllm.config import TrainConfig
from hllm.models.modeling_hllm import HLLM
from hllm.training.data import left_pad
from hllm.training.hllm_task import HLLMTask

MINILM_VOCAB = 30522  # the items are tokenized by the offline MiniLM tokenizer
WORDS = [
    "red",
    "blue",
    "green",
    "light",
    "heavy",
    "small",
    "large",
    "soft",
    "metal",
    "wooden",
    "paper",
    "glass",
    "fast",
    "quiet",
    "old",
    "new",
]


def _catalogue(n_items: int) -> pd.DataFrame:
    """Items with texts of different lengths (so their token rows are padded differently)."""
    rows = []
    for i in range(n_items):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(2 + i % 5)]
        rows.append({"item_id": f"i{i}", "title": " ".join(words), "tag": WORDS[i % len(WORDS)], "description": ""})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("pooling", "ids_in_target"), [("item_token", False), ("mean", True)])
def test_cached_and_end_to_end_give_the_same_loss_and_gradients(
    make_config, minilm_tokenizer, pooling: str, ids_in_target: bool
) -> None:
    items = _catalogue(12)
    item_ids = ["<pad>", *items["item_id"]]
    config = make_config(
        item="llama",
        user="bert",  # dropout off in the tiny BERT config; hidden sizes differ, so a projection exists
        item_hidden=32,
        user_hidden=48,
        item_pooling=pooling,
        use_item_id_embedding=ids_in_target,
        item_id_in_target=ids_in_target,
        num_item_ids=len(item_ids),
    )
    config.item_backbone_config["vocab_size"] = MINILM_VOCAB
    model = HLLM(config)
    train = TrainConfig(model="hllm", num_negatives=6, max_seq_len=6)
    cached = HLLMTask(model, minilm_tokenizer, items, item_ids, TrainConfig(**{**vars(train), "mode": "cached"}))
    # The same model, its Item LLM left frozen by the cached task: end_to_end now differs only in its inputs.
    end_to_end = HLLMTask(
        model, minilm_tokenizer, items, item_ids, TrainConfig(**{**vars(train), "mode": "end_to_end"})
    )
    assert end_to_end.item_states is None and end_to_end.tokens is not None
    model.train()
    batch = {"items": left_pad([[1, 2, 3], [4, 5, 6, 7, 8, 9], [2, 10, 11, 12], [3, 1]], 6)}  # (4, 6)

    results = []
    for task in (cached, end_to_end):
        model.zero_grad()
        torch.manual_seed(7)  # the same negatives for both paths
        loss, stats = task.loss(batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), stats, grads))

    (loss_c, stats_c, grads_c), (loss_e, stats_e, grads_e) = results
    assert torch.allclose(loss_c, loss_e, atol=1e-5), (float(loss_c), float(loss_e))
    assert stats_c["negative_pool_size"] == stats_e["negative_pool_size"] == 6
    assert set(grads_c) == set(grads_e)
    trained = {n.split(".")[0] for n in grads_c}
    assert {"user_llm", "item_llm", "logit_scale"} <= trained
    assert "item_llm.proj.weight" in grads_c and not any(n.startswith("item_llm.backbone") for n in grads_c)
    assert ("item_id_embedding.weight" in grads_c) == ids_in_target
    for name, grad in grads_c.items():
        assert grad.abs().sum() > 0, name
        assert torch.allclose(grad, grads_e[name], atol=1e-5, rtol=1e-4), name
