"""HLLMConfig: defaults from HLLM.md, save/load round trip, ValueErrors that name the bad values."""

from __future__ import annotations

import math

import pytest
from transformers import AutoConfig, BertConfig

from hllm.models.configuration_hllm import DEFAULT_ITEM_PROMPT, HLLMConfig


def test_defaults_follow_the_paper() -> None:
    config = HLLMConfig(item_backbone="/some/dir", user_backbone="/some/dir")
    assert config.model_type == "hllm"
    assert config.item_prompt == DEFAULT_ITEM_PROMPT == "Compress the following sentence into embedding: "
    assert config.text_fields == ["title", "tag", "description"]
    assert config.max_text_tokens == 256
    assert config.max_seq_len == 50
    assert config.item_pooling == "item_token"
    assert config.user_is_decoder is True
    assert config.use_item_id_embedding is False and config.use_timestamp_embedding is False
    assert config.logit_scale_init == pytest.approx(math.log(1 / 0.07))
    assert (config.logit_scale_min, config.logit_scale_max) == (0.0, pytest.approx(math.log(100)))
    assert config.false_negative_threshold == 0.99


def test_save_and_load_round_trip(tmp_path, make_config) -> None:
    config = make_config(item="llama", user="bert", text_fields=("title", "description"), item_pooling="mean")
    config.save_pretrained(tmp_path)
    loaded = HLLMConfig.from_pretrained(tmp_path)
    for key in ("item_backbone_config", "user_backbone_config", "text_fields", "item_pooling", "max_text_tokens"):
        assert getattr(loaded, key) == getattr(config, key), key
    assert loaded.text_fields == ["title", "description"]
    assert isinstance(AutoConfig.for_model(**loaded.user_backbone_config), BertConfig)


def test_backbone_config_objects_become_dicts() -> None:
    config = HLLMConfig(item_backbone_config=BertConfig(hidden_size=32), user_backbone="/x")
    assert isinstance(config.item_backbone_config, dict)
    assert config.item_backbone_config["model_type"] == "bert"
    assert config.item_backbone_config["hidden_size"] == 32


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"item_backbone": "", "item_backbone_config": None}, "item_backbone"),
        ({"user_backbone_config": {"hidden_size": 32}}, "user_backbone_config"),
        ({"item_pooling": "max"}, "item_pooling"),
        ({"max_text_tokens": 0}, "max_text_tokens"),
        ({"max_seq_len": 2.5}, "max_seq_len"),
        ({"text_fields": []}, "text_fields"),
        ({"text_fields": ["title", "title"]}, "text_fields"),
        ({"num_item_ids": -1}, "num_item_ids"),
        ({"use_timestamp_embedding": True, "num_timestamp_buckets": 1}, "num_timestamp_buckets"),
        ({"logit_scale_init": 5.0}, "logit_scale_init"),
        ({"logit_scale_min": -1.0}, "logit_scale_min"),
        ({"logit_scale_max": "big"}, "logit_scale_max"),
        ({"false_negative_threshold": 1.5}, "false_negative_threshold"),
        ({"user_is_decoder": "yes"}, "user_is_decoder"),
        ({"item_prompt": None}, "item_prompt"),
        ({"text_separator": 1}, "text_separator"),
    ],
)
def test_invalid_values_raise_value_error_naming_them(overrides, named) -> None:
    kwargs = {"item_backbone": "/x", "user_backbone": "/x", **overrides}
    with pytest.raises(ValueError, match=named):
        HLLMConfig(**kwargs)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ValueError) as info:
        HLLMConfig(item_backbone="/x", user_backbone="/x", item_pooling="max", max_seq_len=0)
    assert "item_pooling" in str(info.value) and "max_seq_len" in str(info.value)


def test_an_id_table_needs_its_size_when_the_model_is_built(make_config) -> None:
    from hllm.models.modeling_hllm import HLLM

    config = make_config(use_item_id_embedding=True)  # a run config leaves the size to the builder
    assert config.num_item_ids == 0
    with pytest.raises(ValueError, match="num_item_ids >= 1"):
        HLLM(config)


def test_unknown_keyword_is_not_a_setting_of_the_run() -> None:
    # PretrainedConfig keeps unknown keywords as attributes; the run config checks keys against the signature.
    from hllm.config import hllm_keys

    assert "num_negatives" not in hllm_keys() and "item_pooling" in hllm_keys()
    assert "max_seq_len" not in hllm_keys()  # it is train.max_seq_len
