"""Tiny random-init backbones (hidden 32, 2 layers) and the local MiniLM tokenizer; nothing downloads.

The offline environment variables are set by ``tests/conftest.py``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from collections.abc import Callable
from typing import Any

import pytest
import torch

from hllm.models.configuration_hllm import HLLMConfig

TINY_VOCAB = 2048  # small on purpose: embedding tables dominate the cost of the tiny models


def tiny_backbone(model_type: str, hidden: int = 32, vocab: int = TINY_VOCAB) -> dict[str, Any]:
    """An HF config dict for a 2-layer, 4-head model of the given family, dropout off."""
    common = {
        "model_type": model_type,
        "hidden_size": hidden,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 2 * hidden,
        "vocab_size": vocab,
        "max_position_embeddings": 320,
    }
    if model_type == "bert":
        return {**common, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    if model_type in ("llama", "qwen2"):
        return {**common, "num_key_value_heads": 2}
    raise ValueError(f"no tiny config for {model_type!r}")


def tiny_config(item: str = "llama", user: str = "llama", **overrides: Any) -> HLLMConfig:
    """An HLLMConfig with tiny random-init backbones of the given families."""
    item_hidden = overrides.pop("item_hidden", 32)
    user_hidden = overrides.pop("user_hidden", 32)
    return HLLMConfig(
        item_backbone_config=tiny_backbone(item, item_hidden),
        user_backbone_config=tiny_backbone(user, user_hidden),
        max_text_tokens=overrides.pop("max_text_tokens", 24),
        max_seq_len=overrides.pop("max_seq_len", 6),
        **overrides,
    )


@pytest.fixture
def make_config() -> Callable[..., HLLMConfig]:
    return tiny_config


@pytest.fixture
def make_backbone() -> Callable[..., dict[str, Any]]:
    return tiny_backbone


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed every test; one intra-op thread, since tiny models only lose from threading on a busy CI box."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    from hllm.models.modeling_hllm import default_backbone_path

    return default_backbone_path()


@pytest.fixture(scope="session")
def minilm_tokenizer(minilm_path: str):
    from hllm.models.text import load_item_tokenizer

    return load_item_tokenizer(minilm_path)
