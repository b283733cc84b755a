"""Item text as HLLM.md describes it: prompt, then "field: value" for each non-empty field, truncated, right-padded."""

from __future__ import annotations

import math

import pytest
import torch

from hllm.models.configuration_hllm import DEFAULT_ITEM_PROMPT
from hllm.models.text import build_item_text, load_item_tokenizer, pad_item_tokens, tokenize_items


def test_text_is_prompt_then_non_empty_fields_in_order() -> None:
    item = {"item_id": "i1", "description": "A pen", "title": "Blue pen", "tag": "office", "price": "3"}
    assert build_item_text(item) == DEFAULT_ITEM_PROMPT + "title: Blue pentag: officedescription: A pen"
    assert (
        build_item_text(item, separator=" ") == DEFAULT_ITEM_PROMPT + "title: Blue pen tag: office description: A pen"
    )


@pytest.mark.parametrize("empty", [None, "", "   ", math.nan])
def test_empty_fields_are_skipped(empty) -> None:
    item = {"title": "Lamp", "tag": empty, "description": "Bright"}
    assert build_item_text(item, prompt="P: ", separator="|") == "P: title: Lamp|description: Bright"


def test_missing_field_and_custom_fields() -> None:
    assert build_item_text({"title": "Lamp"}, prompt="", fields=["title", "brand"]) == "title: Lamp"
    assert build_item_text({}, prompt="P") == "P"


def test_pandas_rows_work() -> None:
    pd = pytest.importorskip("pandas")
    row = pd.DataFrame([{"title": "Lamp", "tag": None, "description": "Bright"}]).iloc[0]
    assert build_item_text(row, prompt="") == "title: Lampdescription: Bright"


def test_pad_item_tokens_right_pads() -> None:
    batch = pad_item_tokens([[5, 6, 7], [8]], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"].dtype == torch.long
    with pytest.raises(ValueError, match="at least one item"):
        pad_item_tokens([])


def test_tokenize_items_truncates_to_the_budget(minilm_tokenizer, make_config) -> None:
    config = make_config(max_text_tokens=16)
    items = [{"title": "word " * 100, "description": "long"}, {"title": "Lamp"}]
    batch = tokenize_items(items, minilm_tokenizer, config)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"][0].sum() == 16  # truncated, special tokens kept
    assert batch["input_ids"][0, -1] == minilm_tokenizer.sep_token_id
    short = minilm_tokenizer(build_item_text(items[1], config.item_prompt, config.text_fields))["input_ids"]
    assert batch["input_ids"][1, : len(short)].tolist() == short
    assert batch["attention_mask"][1].sum() == len(short)


def test_load_item_tokenizer_needs_a_folder() -> None:
    with pytest.raises(ValueError, match="local checkpoint folder"):
        load_item_tokenizer("")
