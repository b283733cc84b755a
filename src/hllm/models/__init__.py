"""HLLM model core: config, item text, Item/User LLMs, the generative InfoNCE loss and the inference interface.

Names are imported lazily so that ``import hllm.models.<module>`` (e.g. the SASRec baseline) does not pay for
transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "HLLMConfig": "configuration_hllm",
    "CollapseDetector": "loss",
    "EmbeddingCollapseError": "loss",
    "InfoNCEOutput": "loss",
    "generative_infonce": "loss",
    "HLLM": "modeling_hllm",
    "HLLMOutput": "modeling_hllm",
    "ItemLLM": "modeling_hllm",
    "UserLLM": "modeling_hllm",
    "default_backbone_path": "modeling_hllm",
    "HLLMRecommender": "recommender",
    "Recommender": "recommender",
    "catalogue_states": "recommender",
    "encode_item_states": "recommender",
    "load_recommender": "recommender",
    "build_item_text": "text",
    "load_item_tokenizer": "text",
    "pad_item_tokens": "text",
    "tokenize_items": "text",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
