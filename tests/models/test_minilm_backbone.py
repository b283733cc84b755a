"""The one test with real weights: all-MiniLM-L6-v2 from the installed package, loaded offline."""

from __future__ import annotations

import socket

import pytest
import torch
from safetensors import safe_open

from hllm.models.configuration_hllm import HLLMConfig
from hllm.models.modeling_hllm import HLLM
from hllm.models.text import tokenize_items


def _no_network(*args, **kwargs):
    raise AssertionError("the test tried to open a network connection")


def test_minilm_item_llm_encodes_items_offline(monkeypatch, minilm_path, minilm_tokenizer, make_backbone) -> None:
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    user = {**make_backbone("bert", hidden=384), "num_attention_heads": 6}
    config = HLLMConfig(item_backbone=minilm_path, user_backbone_config=user, max_text_tokens=64)
    model = HLLM(config).eval()

    # HLLM's own initialisation must leave the pre-trained weights alone.
    with safe_open(f"{minilm_path}/model.safetensors", framework="pt") as weights:
        backbone = model.item_llm.backbone.state_dict()
        for key in ("embeddings.word_embeddings.weight", "encoder.layer.5.output.dense.weight"):
            assert torch.equal(backbone[key], weights.get_tensor(key)), key
    assert config.item_backbone_config["model_type"] == "bert"

    items = [
        {"title": "Blue pen", "tag": "office", "description": "A smooth ballpoint pen"},
        {"title": "Desk lamp", "tag": "", "description": "Bright LED light for reading"},
    ]
    batch = tokenize_items(items, minilm_tokenizer, config)
    with torch.no_grad():
        vectors = model.encode_items(batch["input_ids"], batch["attention_mask"])
    assert vectors.shape == (2, 384)
    assert torch.isfinite(vectors).all()
    assert torch.cosine_similarity(vectors[0], vectors[1], dim=0) < 0.999  # different texts, different vectors
    with pytest.raises(AssertionError, match="network"):
        socket.create_connection(("127.0.0.1", 9))  # the guard is really in place
