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
import torch.nn.functional as F
from torch import nn


def _additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean ``(..., Tq, Tk)`` attention permissions as an additive mask (0 allowed, dtype min otherwise)."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


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
        position (tests/models/test_item_layers.py), at a fraction of the cost. The text's keys and values come
        from ``text`` alone, so when ``text`` needs no gradient (cached bottom states) none is computed for it.

        Args:
            text: ``(N, T, H)`` the layer's input at the text positions (right-padded; what lies at or after
                ``slot_pos`` is ignored).
            text_mask: ``(N, T)``, 1 on real text tokens (``slot_pos`` of them per row).
            slot_in: ``(N, H)`` the layer's input at the slot.
            slot_pos: ``(N,)`` the slot's position, right after the last real token.
        """
        layer = self.layers[index]
        allowed = F.pad(text_mask.bool(), (0, 1), value=True)[:, None, None, :]  # (N, 1, 1, T+1): the slot last
        mask = _additive(allowed, text.dtype)
        if self.family == "llama":
            return self._llama_slot(layer, text, mask, slot_in, slot_pos)
        return self._bert_slot(layer, text, mask, slot_in[:, None])

    @staticmethod
    def _bert_slot(layer: nn.Module, text: torch.Tensor, mask: torch.Tensor, query_in: torch.Tensor) -> torch.Tensor:
        attention = layer.attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size

        def split(x: torch.Tensor) -> torch.Tensor:  # (N, t, H) -> (N, heads, t, d)
            return x.view(x.shape[0], x.shape[1], heads, size).transpose(1, 2)

        q = split(attention.query(query_in))  # (N, heads, 1, d)
        k = torch.cat([split(attention.key(text)), split(attention.key(query_in))], dim=2)  # (N, heads, T+1, d)
        v = torch.cat([split(attention.value(text)), split(attention.value(query_in))], dim=2)
        dropout = attention.dropout.p if attention.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=attention.scaling)
        context = context.transpose(1, 2).reshape(query_in.shape)  # (N, 1, H)
        attended = layer.attention.output(context, query_in)  # dense, dropout, LN(. + residual)
        return layer.output(layer.intermediate(attended), attended)[:, 0]  # (N, H)

    def _llama_slot(
        self, layer: nn.Module, text: torch.Tensor, mask: torch.Tensor, slot_in: torch.Tensor, slot_pos: torch.Tensor
    ) -> torch.Tensor:
        from transformers.models.llama.modeling_llama import repeat_kv, rotate_half

        attention = layer.self_attn
        n, size = text.shape[0], attention.head_dim
        normed = layer.input_layernorm(text)  # (N, T, H)
        normed_slot = layer.input_layernorm(slot_in)[:, None]  # (N, 1, H)

        def heads(x: torch.Tensor, proj: nn.Module) -> torch.Tensor:  # (N, t, H) -> (N, heads, t, d)
            return proj(x).view(n, x.shape[1], -1, size).transpose(1, 2)

        def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # cos, sin: (B, t, d)
            return x * cos[:, None] + rotate_half(x) * sin[:, None]

        cos, sin = self._rotary(text)  # (1, T, d): text positions 0..T-1
        slot_cos, slot_sin = self.backbone.rotary_emb(text, position_ids=slot_pos[:, None])  # (N, 1, d)
        q = rope(heads(normed_slot, attention.q_proj), slot_cos, slot_sin)  # (N, heads, 1, d)
        k = torch.cat(
            [
                rope(heads(normed, attention.k_proj), cos, sin),
                rope(heads(normed_slot, attention.k_proj), slot_cos, slot_sin),
            ],
            dim=2,
        )  # (N, kv, T+1, d)
        v = torch.cat([heads(normed, attention.v_proj), heads(normed_slot, attention.v_proj)], dim=2)
        groups = attention.num_key_value_groups
        dropout = attention.attention_dropout if attention.training else 0.0
        context = F.scaled_dot_product_attention(
            q, repeat_kv(k, groups), repeat_kv(v, groups), attn_mask=mask, dropout_p=dropout, scale=attention.scaling
        )  # (N, heads, 1, d)
        out = slot_in + attention.o_proj(context.transpose(1, 2).reshape(n, -1))  # (N, H)
        return out + layer.mlp(layer.post_attention_layernorm(out))
