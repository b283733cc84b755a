"""The Item LLM's transformer run layer by layer, so that its bottom layers can be cached and only the top ones run.

`partial` training (HLLM.md "Training" lists frozen, cached and trainable Item LLMs; this is the CPU middle
ground) freezes the bottom layers and trains the top ``k``. The bottom layers then read the item's text alone
(their states are computed once per catalogue item and cached) and the learnable ``[ITEM]`` vector joins as an
extra position at the input of the first trainable layer (`HLLMConfig.item_token_layers`): with a frozen bottom
it could not be learned through those layers anyway. Serving runs the same split on fresh text
(`ItemLLM.pooled`), so an item's vector does not depend on whether its bottom states came from the cache.

With ``item_token`` pooling only the slot's output of the LAST layer is read: `LayerStack.slot_layer` computes
keys and values over all positions but attention and MLP for the slot alone (a fast path with a plain reference,
the full layer, checked equal in tests/models/test_item_layers.py).

Two families are supported, by their module layout: BERT-type encoders (``embeddings`` + ``encoder.layer``,
bidirectional, post-LN, no final norm) and Llama-type decoders (``embed_tokens`` + ``layers`` + ``norm`` +
``rotary_emb``: Llama, Qwen2, SmolLM2; causal, pre-RMSNorm).
"""

from __future__ import annotations

import torch
from torch import nn


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean ``(..., Tq, Tk)`` attention permissions as an additive mask (0 allowed, dtype min otherwise)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


def _slot_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_slot: torch.Tensor,
    v_slot: torch.Tensor,
    segment: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """Attention of one query per item over its own packed text tokens and the slot itself (varlen, no padding).

    Args:
        q: ``(N, kv, g, d)`` the slot's query per item (``g`` query heads per key/value head).
        k, v: ``(R, kv, d)`` keys and values of the real text tokens of all items, packed.
        k_slot, v_slot: ``(N, kv, d)`` the slot's own key and value.
        segment: ``(R,)`` the item (row of ``q``) of each packed token.
        scale: the softmax scale.

    Returns:
        ``(N, kv, g, d)``. Item texts are right-padded to the longest of the step (Office titles: median 29 of
        64 tokens): packing skips the padding, as the released code's varlen attention does.
    """
    scores = (k[:, :, None] * q[segment]).sum(-1) * scale  # (R, kv, g)
    slot_scores = (k_slot[:, :, None] * q).sum(-1) * scale  # (N, kv, g)
    index = segment[:, None, None].expand_as(scores)
    top = slot_scores.detach().scatter_reduce(0, index, scores.detach(), reduce="amax")  # per-item max, (N, kv, g)
    weights, slot_weights = torch.exp(scores - top[segment]), torch.exp(slot_scores - top)
    total = slot_weights.index_add(0, segment, weights)  # (N, kv, g)
    context = (slot_weights[..., None] * v_slot[:, :, None]).index_add(
        0, segment, weights[..., None] * v[:, :, None]
    )  # (N, kv, g, d)
    return context / total[..., None]


class LayerStack:
    """One backbone seen as embeddings -> layers[0..L) -> final norm, any slice of the layers runnable alone.

    Args:
        backbone: a BERT-type or Llama-type ``AutoModel``.

    Raises:
        ValueError: for other layouts (name the model type).
    """

    def __init__(self, backbone: nn.Module) -> None:
        self.backbone = backbone
        if hasattr(backbone, "embeddings") and hasattr(getattr(backbone, "encoder", None), "layer"):
            self.family, self.layers = "bert", backbone.encoder.layer
        elif all(hasattr(backbone, name) for name in ("embed_tokens", "layers", "norm", "rotary_emb")):
            self.family, self.layers = "llama", backbone.layers
        else:
            model_type = getattr(getattr(backbone, "config", None), "model_type", type(backbone).__name__)
            raise ValueError(
                f"item_token_layers > 0 needs a BERT-type or Llama-type Item LLM, got {model_type!r}: "
                "set hllm.item_token_layers=0 (the [ITEM] slot at the input) or use another backbone"
            )

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``(N, T)`` token ids to the first layer's input ``(N, T, H)`` (BERT: word + position + type, LN)."""
        if self.family == "bert":
            return self.backbone.embeddings(input_ids=input_ids)
        return self.backbone.embed_tokens(input_ids)

    def _mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """``(N, T)`` key padding mask to the ``(N, 1, T, T)`` additive mask of the family (causal for Llama)."""
        keys = attention_mask.bool()[:, None, None, :]  # (N, 1, 1, T)
        if self.family == "llama":
            width = attention_mask.shape[1]
            causal = torch.ones(width, width, dtype=torch.bool, device=attention_mask.device).tril()
            keys = keys & causal  # (N, 1, T, T)
        else:
            keys = keys.expand(-1, 1, attention_mask.shape[1], -1)
        return _additive(keys, dtype)

    def _rotary(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary cos/sin for positions 0..T-1 (right padding: the model's default position ids)."""
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]  # (1, T)
        return self.backbone.rotary_emb(hidden, position_ids=positions)

    def run(self, hidden: torch.Tensor, attention_mask: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """Layers ``[start, end)`` on ``(N, T, H)`` states of right-padded rows (``attention_mask`` ``(N, T)``)."""
        if start >= end:
            return hidden
        mask = self._mask(attention_mask, hidden.dtype)
        if self.family == "bert":
            for layer in self.layers[start:end]:
                hidden = layer(hidden, mask)
            return hidden
        rotary = self._rotary(hidden)
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]
        for layer in self.layers[start:end]:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary, position_ids=positions)
        return hidden

    def finish(self, hidden: torch.Tensor) -> torch.Tensor:
        """The final norm after the last layer (Llama: RMSNorm; BERT has none)."""
        return self.backbone.norm(hidden) if self.family == "llama" else hidden

    def slot_layer(
        self, index: int, text: torch.Tensor, text_mask: torch.Tensor, slot_in: torch.Tensor, slot_pos: torch.Tensor
    ) -> torch.Tensor:
        """Output of layer ``index`` at the ``[ITEM]`` slot only, ``(N, H)``: keys/values of all, the rest for one.

        Equal to running the full layer on the text with the slot at position ``slot_pos`` and reading that
        position (tests/models/test_item_layers.py; in eval mode: attention-probability dropout is not applied
        here), at a fraction of the cost: the text is packed (no padding) and, when ``text`` needs no gradient
        (cached bottom states), none is computed for it.

        Args:
            text: ``(N, T, H)`` the layer's input at the text positions (right-padded; what lies at or after
                ``slot_pos`` is ignored).
            text_mask: ``(N, T)``, 1 on real text tokens (``slot_pos`` of them per row).
            slot_in: ``(N, H)`` the layer's input at the slot.
            slot_pos: ``(N,)`` the slot's position, right after the last real token.
        """
        layer = self.layers[index]
        real = text_mask.bool()  # (N, T)
        segment, position = real.nonzero(as_tuple=True)  # (R,) item and position of each real token
        packed = text[real]  # (R, H)
        if self.family == "llama":
            return self._llama_slot(layer, packed, segment, position, slot_in, slot_pos)
        return self._bert_slot(layer, packed, segment, slot_in)

    @staticmethod
    def _bert_slot(
        layer: nn.Module, packed: torch.Tensor, segment: torch.Tensor, slot_in: torch.Tensor
    ) -> torch.Tensor:
        attention = layer.attention.self
        heads, size, n = attention.num_attention_heads, attention.attention_head_size, slot_in.shape[0]
        q = attention.query(slot_in).view(n, heads, 1, size)
        k, v = attention.key(packed).view(-1, heads, size), attention.value(packed).view(-1, heads, size)
        k_slot, v_slot = attention.key(slot_in).view(n, heads, size), attention.value(slot_in).view(n, heads, size)
        context = _slot_attention(q, k, v, k_slot, v_slot, segment, attention.scaling).reshape(n, 1, -1)
        attended = layer.attention.output(context, slot_in[:, None])  # dense, dropout, LN(. + residual)
        return layer.output(layer.intermediate(attended), attended)[:, 0]  # (N, H)

    def _llama_slot(
        self,
        layer: nn.Module,
        packed: torch.Tensor,
        segment: torch.Tensor,
        position: torch.Tensor,
        slot_in: torch.Tensor,
        slot_pos: torch.Tensor,
    ) -> torch.Tensor:
        from transformers.models.llama.modeling_llama import rotate_half

        attention = layer.self_attn
        n, size = slot_in.shape[0], attention.head_dim
        kv = attention.config.num_key_value_heads
        normed, normed_slot = layer.input_layernorm(packed), layer.input_layernorm(slot_in)  # (R, H), (N, H)

        def rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:  # x (B, heads, d), positions (B,)
            cos, sin = self.backbone.rotary_emb(x, position_ids=positions[None])  # (1, B, d)
            return x * cos[0, :, None] + rotate_half(x) * sin[0, :, None]

        q = rope(attention.q_proj(normed_slot).view(n, -1, size), slot_pos).view(n, kv, -1, size)  # (N, kv, g, d)
        k = rope(attention.k_proj(normed).view(-1, kv, size), position)  # (R, kv, d)
        k_slot = rope(attention.k_proj(normed_slot).view(n, kv, size), slot_pos)
        v, v_slot = attention.v_proj(normed).view(-1, kv, size), attention.v_proj(normed_slot).view(n, kv, size)
        context = _slot_attention(q, k, v, k_slot, v_slot, segment, attention.scaling)  # (N, kv, g, d)
        out = slot_in + attention.o_proj(context.reshape(n, -1))  # (N, H)
        return out + layer.mlp(layer.post_attention_layernorm(out))
