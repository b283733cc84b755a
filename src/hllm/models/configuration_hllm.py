"""HLLM architecture config: two backbones (Item LLM, User LLM) plus the few numbers the model and loss need.

A ``PretrainedConfig`` so that ``HLLM.save_pretrained``/``from_pretrained`` round-trip it (STYLE.md rule 5).
Each backbone is named either by a local checkpoint folder (``item_backbone``) or by an HF config dict
(``item_backbone_config``). When the dict is set it wins and the backbone is built from it with random weights;
``HLLM`` fills the dict in after loading a checkpoint folder, so a saved HLLM rebuilds its architecture without the
original folder and takes every weight from its own ``model.safetensors``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from transformers import PretrainedConfig

DEFAULT_ITEM_PROMPT = "Compress the following sentence into embedding: "
DEFAULT_TEXT_FIELDS: tuple[str, ...] = ("title", "tag", "description")
ITEM_POOLINGS: tuple[str, ...] = ("item_token", "mean")
# HLLM.md "Training": s starts at ln(1/0.07) and is clamped to [0, ln 100].
DEFAULT_LOGIT_SCALE_INIT = math.log(1 / 0.07)
DEFAULT_LOGIT_SCALE_MAX = math.log(100)
_FLOAT_FIELDS = ("logit_scale_init", "logit_scale_min", "logit_scale_max", "false_negative_threshold")


def _as_config_dict(value: Any) -> Any:
    """A backbone config as a plain dict: HF config objects are converted, anything else is left for validation."""
    if value is None or (isinstance(value, Mapping) and not value):
        return None
    if isinstance(value, PretrainedConfig):
        return value.to_diff_dict()
    return dict(value) if isinstance(value, Mapping) else value


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class HLLMConfig(PretrainedConfig):
    """Configuration of an :class:`~hllm.models.modeling_hllm.HLLM` model.

    Args:
        item_backbone: local folder of a pre-trained HF checkpoint for the Item LLM, or ``""`` when
            ``item_backbone_config`` describes it.
        user_backbone: the same for the User LLM.
        item_backbone_config: an HF config as a dict (with ``model_type``), e.g. ``LlamaConfig(...).to_dict()``;
            when set the Item LLM is built from it with random weights.
        user_backbone_config: the same for the User LLM.
        item_prompt: text put before every item's fields (HLLM.md "Model").
        text_fields: item fields rendered as ``"{field}: {value}"`` after the prompt, in this order.
        text_separator: string put between the rendered fields. ``""`` (default) is what the released code does
            (``text_str += f"{key}: {value}"``); note that it glues a value to the next field name, which a
            WordPiece tokenizer then splits oddly (``"scifidescription"``), so ``" "`` may suit BERT backbones.
        max_text_tokens: token budget of an item's text; the ``[ITEM]`` slot comes on top (paper: 256).
        max_seq_len: number of history items the User LLM reads (a training window is ``max_seq_len + 1`` items).
        item_pooling: ``"item_token"`` (the paper's learnable ``[ITEM]`` slot) or ``"mean"`` (the ablation: mean of
            the last hidden states over the text tokens).
        item_token_layers: where the ``[ITEM]`` slot joins the Item LLM. ``0`` (the paper): at the input
            embeddings, through every layer. ``k > 0``: at the input of the top ``k`` layers; the layers below read
            the item's text alone (``partial`` training caches their states, `hllm.models.item_layers`). With
            ``mean`` pooling the split changes nothing in the result. A run config derives it from
            ``train.partial_layers``.
        user_is_decoder: set ``is_decoder=True`` on a user backbone config that has the flag (BERT-type encoders),
            which makes it attend causally. Decoder LMs (Llama, Qwen2) are causal whatever this says. ``False`` is
            only for backbones that are causal by construction: an encoder left bidirectional would see item i+1.
        use_item_id_embedding: add a learnable item-id embedding to each item vector fed to the User LLM.
        num_item_ids: rows of that table (ids are ``0 .. num_item_ids - 1``). ``0`` until sized: a run config leaves
            it to the builder (catalogue size + 1); building an `HLLM` with the table needs it >= 1.
        item_id_in_target: also add the item-id embedding to the item vector the User LLM's output is scored
            against (positives, negatives, ranking), not only to its inputs: the item representation becomes
            text vector + id vector. Items never trained keep a near-zero id vector, so cold items are ranked by
            their text. Needs ``use_item_id_embedding``.
        use_timestamp_embedding: add a learnable embedding of the time gap to the previous item of the sequence.
        num_timestamp_buckets: rows of that table. Bucket 0 means "no previous item" (first item, padding);
            bucket ``1 + floor(log2(1 + gap_seconds))`` otherwise, clamped to ``num_timestamp_buckets - 1``
            (32 buckets reach gaps of about 34 years).
        logit_scale_init: initial value of the learnable log-scale ``s`` (scale ``exp(s)``); default ln(1/0.07).
        logit_scale_min: lower clamp of ``s`` (default 0).
        logit_scale_max: upper clamp of ``s`` (default ln 100).
        false_negative_threshold: a negative whose cosine with the positive exceeds this is masked (0.99).
        **kwargs: passed to ``PretrainedConfig``.

    Raises:
        ValueError: naming the offending values.
    """

    model_type = "hllm"
    # It cannot be built without a backbone: transformers < 5.23 would otherwise call HLLMConfig() in save_pretrained.
    has_no_defaults_at_init = True

    def __init__(
        self,
        item_backbone: str = "",
        user_backbone: str = "",
        item_backbone_config: dict[str, Any] | None = None,
        user_backbone_config: dict[str, Any] | None = None,
        item_prompt: str = DEFAULT_ITEM_PROMPT,
        text_fields: Sequence[str] = DEFAULT_TEXT_FIELDS,
        text_separator: str = "",
        max_text_tokens: int = 256,
        max_seq_len: int = 50,
        item_pooling: str = "item_token",
        item_token_layers: int = 0,
        user_is_decoder: bool = True,
        use_item_id_embedding: bool = False,
        num_item_ids: int = 0,
        item_id_in_target: bool = False,
        use_timestamp_embedding: bool = False,
        num_timestamp_buckets: int = 32,
        logit_scale_init: float = DEFAULT_LOGIT_SCALE_INIT,
        logit_scale_min: float = 0.0,
        logit_scale_max: float = DEFAULT_LOGIT_SCALE_MAX,
        false_negative_threshold: float = 0.99,
        **kwargs: Any,
    ) -> None:
        self.item_backbone = item_backbone
        self.user_backbone = user_backbone
        self.item_backbone_config = _as_config_dict(item_backbone_config)
        self.user_backbone_config = _as_config_dict(user_backbone_config)
        self.item_prompt = item_prompt
        self.text_fields = list(text_fields) if isinstance(text_fields, (list, tuple)) else text_fields
        self.text_separator = text_separator
        self.max_text_tokens = max_text_tokens
        self.max_seq_len = max_seq_len
        self.item_pooling = item_pooling
        self.item_token_layers = item_token_layers
        self.user_is_decoder = user_is_decoder
        self.use_item_id_embedding = use_item_id_embedding
        self.num_item_ids = num_item_ids
        self.item_id_in_target = item_id_in_target
        self.use_timestamp_embedding = use_timestamp_embedding
        self.num_timestamp_buckets = num_timestamp_buckets
        self.logit_scale_init = logit_scale_init
        self.logit_scale_min = logit_scale_min
        self.logit_scale_max = logit_scale_max
        self.false_negative_threshold = false_negative_threshold
        self._validate()
        for name in _FLOAT_FIELDS:
            setattr(self, name, float(getattr(self, name)))
        super().__init__(**kwargs)

    def _validate(self) -> None:
        """Check every field; one ``ValueError`` lists all the problems found."""
        errors: list[str] = []
        for role in ("item", "user"):
            path = getattr(self, f"{role}_backbone")
            cfg = getattr(self, f"{role}_backbone_config")
            if not isinstance(path, str):
                errors.append(f"{role}_backbone must be a folder path string, got {path!r}")
            if cfg is not None and not (isinstance(cfg, dict) and isinstance(cfg.get("model_type"), str)):
                errors.append(f"{role}_backbone_config must be a dict with a 'model_type' string, got {cfg!r:.80}")
            if not path and cfg is None:
                errors.append(f"set {role}_backbone (a local checkpoint folder) or {role}_backbone_config (a dict)")
        for name in ("item_prompt", "text_separator"):
            if not isinstance(getattr(self, name), str):
                errors.append(f"{name} must be a string, got {getattr(self, name)!r}")
        fields = self.text_fields
        if not isinstance(fields, list) or not fields or not all(isinstance(f, str) and f for f in fields):
            errors.append(f"text_fields must be a non-empty list of field names, got {fields!r}")
        elif len(set(fields)) != len(fields):
            errors.append(f"text_fields has duplicates: {fields!r}")
        for name in ("max_text_tokens", "max_seq_len", "num_timestamp_buckets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors.append(f"{name} must be a positive integer, got {value!r}")
        layers = self.item_token_layers
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            errors.append(f"item_token_layers must be a non-negative integer, got {layers!r}")
        if self.item_pooling not in ITEM_POOLINGS:
            errors.append(f"item_pooling must be one of {ITEM_POOLINGS}, got {self.item_pooling!r}")
        for name in ("user_is_decoder", "use_item_id_embedding", "item_id_in_target", "use_timestamp_embedding"):
            if not isinstance(getattr(self, name), bool):
                errors.append(f"{name} must be a bool, got {getattr(self, name)!r}")
        ids = self.num_item_ids
        if isinstance(ids, bool) or not isinstance(ids, int) or ids < 0:
            errors.append(f"num_item_ids must be a non-negative integer, got {ids!r}")
        if self.item_id_in_target is True and not self.use_item_id_embedding:
            errors.append("item_id_in_target=True needs use_item_id_embedding=True")
        buckets = self.num_timestamp_buckets
        if self.use_timestamp_embedding and isinstance(buckets, int) and buckets < 2:
            errors.append(f"num_timestamp_buckets must be >= 2, got {self.num_timestamp_buckets}")
        bad_floats = [n for n in _FLOAT_FIELDS if not _is_real(getattr(self, n))]
        if bad_floats:
            errors.extend(f"{n} must be a number, got {getattr(self, n)!r}" for n in bad_floats)
            raise ValueError("invalid HLLMConfig: " + "; ".join(errors))
        lo, init, hi = self.logit_scale_min, self.logit_scale_init, self.logit_scale_max
        if not (all(math.isfinite(v) for v in (lo, init, hi)) and 0.0 <= lo <= init <= hi):
            errors.append(
                "need 0 <= logit_scale_min <= logit_scale_init <= logit_scale_max (all finite), got "
                f"logit_scale_min={lo}, logit_scale_init={init}, logit_scale_max={hi}"
            )
        if not -1.0 < self.false_negative_threshold <= 1.0:
            errors.append(f"false_negative_threshold must be in (-1, 1], got {self.false_negative_threshold}")
        if errors:
            raise ValueError("invalid HLLMConfig: " + "; ".join(errors))
