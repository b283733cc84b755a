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
        self, index: int, hidden: torch.Tensor, attention_mask: torch.Tensor, slot: torch.Tensor
    ) -> torch.Tensor:
        """Output of layer ``index`` at one position per row, ``(N, H)``: keys/values of all, the rest for one.

        Equal to ``run(hidden, attention_mask, index, index + 1)[arange(N), slot]`` at a fraction of the cost.

        Args:
            hidden: ``(N, T, H)`` the layer's input.
            attention_mask: ``(N, T)``, 1 on attended positions (the slot included).
            slot: ``(N,)`` the position read in each row.
        """
        layer = self.layers[index]
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        keys = attention_mask.bool()[:, None, None, :]  # (N, 1, 1, T): the slot's query sees every real position
        if self.family == "llama":
            keys = keys & (torch.arange(hidden.shape[1], device=hidden.device) <= slot[:, None])[:, None, None, :]
            return self._llama_slot(layer, hidden, _additive(keys, hidden.dtype), slot, rows)
        return self._bert_slot(layer, hidden, _additive(keys, hidden.dtype), hidden[rows, slot][:, None])

    @staticmethod
    def _bert_slot(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, query_in: torch.Tensor) -> torch.Tensor:
        attention = layer.attention.self
        heads, size = attention.num_attention_heads, attention.attention_head_size

        def split(x: torch.Tensor) -> torch.Tensor:  # (N, t, H) -> (N, heads, t, d)
            return x.view(x.shape[0], x.shape[1], heads, size).transpose(1, 2)

        q, k, v = split(attention.query(query_in)), split(attention.key(hidden)), split(attention.value(hidden))
        dropout = attention.dropout.p if attention.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=attention.scaling)
        context = context.transpose(1, 2).reshape(query_in.shape)  # (N, 1, H)
        attended = layer.attention.output(context, query_in)  # dense, dropout, LN(. + residual)
        return layer.output(layer.intermediate(attended), attended)[:, 0]  # (N, H)

    def _llama_slot(
        self, layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, slot: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

        attention = layer.self_attn
        normed = layer.input_layernorm(hidden)  # (N, T, H)
        query_in = normed[rows, slot][:, None]  # (N, 1, H)
        size = attention.head_dim
        n = hidden.shape[0]
        q = attention.q_proj(query_in).view(n, 1, -1, size).transpose(1, 2)  # (N, heads, 1, d)
        k = attention.k_proj(normed).view(n, hidden.shape[1], -1, size).transpose(1, 2)  # (N, kv, T, d)
        v = attention.v_proj(normed).view(n, hidden.shape[1], -1, size).transpose(1, 2)
        cos, sin = self._rotary(hidden)  # (1, T, d)
        _, k = apply_rotary_pos_emb(k, k, cos, sin)
        q, _ = apply_rotary_pos_emb(q, q, cos[0, slot][:, None], sin[0, slot][:, None])
        groups = attention.num_key_value_groups
        dropout = attention.attention_dropout if attention.training else 0.0
        context = F.scaled_dot_product_attention(
            q, repeat_kv(k, groups), repeat_kv(v, groups), attn_mask=mask, dropout_p=dropout, scale=attention.scaling
        )  # (N, heads, 1, d)
        out = hidden[rows, slot] + attention.o_proj(context.transpose(1, 2).reshape(n, -1))  # (N, H)
        return out + layer.mlp(layer.post_attention_layernorm(out))
