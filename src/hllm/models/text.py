"""Item text for the Item LLM: render an item's fields into one string, tokenize, right-pad a batch.

HLLM.md "Model": the text is the prompt followed by ``title: ...``, ``tag: ...``, ``description: ...`` for each
non-empty field, truncated to the token budget. By default the pieces are concatenated with no separator, as the
released code does (``text_str += f"{key}: {value}"`` in bytedance/HLLM ``REC/data/dataset/trainset.py``);
``HLLMConfig.text_separator`` changes that. The ``[ITEM]`` slot is not a token:
:class:`~hllm.models.modeling_hllm.ItemLLM` appends it after the last real token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from hllm.models.configuration_hllm import DEFAULT_ITEM_PROMPT, DEFAULT_TEXT_FIELDS, HLLMConfig


def _is_missing(value: Any) -> bool:
    """None, NaN and pandas' NA count as an absent field."""
    if value is None:
        return True
    try:
        return bool(value != value)  # only NaN is unequal to itself
    except TypeError:  # pd.NA refuses to be a bool
        return True


def build_item_text(
    item: Mapping[str, Any],
    prompt: str = DEFAULT_ITEM_PROMPT,
    fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
    separator: str = "",
) -> str:
    """Render one item as the Item LLM reads it.

    Args:
        item: the item's fields (a dict, or a pandas row: anything with ``.get``).
        prompt: text that comes first.
        fields: field names to render, in order; missing, NaN or blank values are skipped.
        separator: put between the rendered fields (not after the prompt).

    Returns:
        ``prompt`` followed by ``"{field}: {value}"`` for every non-empty field.
    """
    parts: list[str] = []
    for name in fields:
        value = item.get(name)
        if _is_missing(value):
            continue
        text = str(value).strip()
        if text:
            parts.append(f"{name}: {text}")
    return prompt + separator.join(parts)


def tokenize_item_texts(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_text_tokens: int
) -> list[list[int]]:
    """Token ids of each text (special tokens included), truncated to ``max_text_tokens``."""
    encoded = tokenizer(list(texts), truncation=True, max_length=max_text_tokens, add_special_tokens=True)
    return [list(ids) for ids in encoded["input_ids"]]


def pad_item_tokens(token_ids: Sequence[Sequence[int]], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad token id lists into a batch.

    Right padding is what :class:`~hllm.models.modeling_hllm.ItemLLM` expects: the ``[ITEM]`` slot goes at
    index ``len_i`` of each row.

    Args:
        token_ids: one list of ids per item.
        pad_token_id: id written into padded slots (they are masked, so any valid id works).

    Returns:
        ``input_ids`` and ``attention_mask``, both ``(N, T)`` int64 with ``T`` the longest list.

    Raises:
        ValueError: when ``token_ids`` is empty.
    """
    if len(token_ids) == 0:
        raise ValueError("pad_item_tokens needs at least one item, got none")
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_token_id, dtype=torch.long)  # (N, T)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)  # (N, T)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def tokenize_items(
    items: Sequence[Mapping[str, Any]], tokenizer: PreTrainedTokenizerBase, config: HLLMConfig
) -> dict[str, torch.Tensor]:
    """Items to a right-padded Item LLM batch, using the prompt, fields and token budget of ``config``.

    Args:
        items: one mapping (dict or pandas row) per item.
        tokenizer: the Item LLM's tokenizer.
        config: supplies ``item_prompt``, ``text_fields``, ``text_separator`` and ``max_text_tokens``.

    Returns:
        ``input_ids`` and ``attention_mask``, both ``(N, T)`` int64, ``T <= config.max_text_tokens``.
    """
    texts = [build_item_text(item, config.item_prompt, config.text_fields, config.text_separator) for item in items]
    token_ids = tokenize_item_texts(texts, tokenizer, config.max_text_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pad_item_tokens(token_ids, pad_id)


def load_item_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """The tokenizer stored in a local checkpoint folder or named backbone (never downloads).

    Raises:
        ValueError: when ``path`` is empty (a backbone built from a config dict has no tokenizer of its own).
    """
    from hllm.models.backbones import resolve_backbone

    if not path:
        raise ValueError("load_item_tokenizer needs a local checkpoint folder, got an empty path")
    folder, extra = resolve_backbone(path)  # a named backbone ("smollm2") reads its tokenizer from its GGUF file
    return AutoTokenizer.from_pretrained(folder, local_files_only=True, **extra)
