"""A serving-time forward of a BERT-type causal User LLM in plain torch ops: the same weights, the same outputs.

The transformers module costs ~2-5 ms per request for a 2x128 model on one thread, nearly all of it Python
(module calls, mask building, config lookups): the arithmetic is ~20 MFLOP. `FastBertUser` reads the module's
weights (the same tensors; only q, k and v are concatenated once, at start) and computes only what ranking
needs:

- the batch is trimmed to its longest history (left padding beyond it is dropped: a history of 7 items costs 7
  positions, not ``max_seq_len``; position ids count real items only, so outputs are unchanged);
- the last layer computes its query, attention output and feed-forward at the last position only (the one
  `user_vectors` reads); keys and values still come from every position.

`HLLMRecommender` uses it for `recommend` when the backbone is a supported BERT (`FastBertUser.supports`) and
`check` finds its outputs equal to the module's (``atol``); otherwise, or with ``HLLM_USER_LLM=eager``, the
transformers module is the reference path. Both are tested for parity (tests/models/test_fast_user.py).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)


class FastBertUser:
    """Last-position outputs of a causal BERT User LLM (`hllm.models.modeling_hllm.UserLLM`) for left-padded inputs."""

    def __init__(self, backbone) -> None:
        config = backbone.config
        self.heads = int(config.num_attention_heads)
        self.eps = float(config.layer_norm_eps)
        emb = backbone.embeddings
        self.positions = emb.position_embeddings.weight
        self.token_type = emb.token_type_embeddings.weight[0]
        self.emb_norm = (emb.LayerNorm.weight, emb.LayerNorm.bias)
        self.layers = []
        for layer in backbone.encoder.layer:
            attention = layer.attention
            self.layers.append(
                {
                    # q, k, v as one (3H, H) product: one matmul instead of three
                    "qkv_w": torch.cat(
                        [attention.self.query.weight, attention.self.key.weight, attention.self.value.weight]
                    ),
                    "qkv_b": torch.cat([attention.self.query.bias, attention.self.key.bias, attention.self.value.bias]),
                    "out": (attention.output.dense.weight, attention.output.dense.bias),
                    "out_norm": (attention.output.LayerNorm.weight, attention.output.LayerNorm.bias),
                    "up": (layer.intermediate.dense.weight, layer.intermediate.dense.bias),
                    "act": layer.intermediate.intermediate_act_fn,
                    "down": (layer.output.dense.weight, layer.output.dense.bias),
                    "down_norm": (layer.output.LayerNorm.weight, layer.output.LayerNorm.bias),
                }
            )

    @staticmethod
    def supports(backbone) -> bool:
        """A causal BERT with absolute positions, read in eval mode (no dropout): what `FastBertUser` computes."""
        config = getattr(backbone, "config", None)
        return (
            getattr(config, "model_type", None) == "bert"
            and bool(getattr(config, "is_decoder", False))
            and getattr(config, "position_embedding_type", "absolute") == "absolute"
            and not backbone.training
        )

    @torch.no_grad()
    def last(self, inputs_embeds: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, H) outputs at the last position for ``inputs_embeds`` (B, L, H) left-padded by ``attention_mask``."""
        lengths = attention_mask.sum(dim=1)
        width = max(int(lengths.max()), 1)
        x = inputs_embeds[:, -width:].float()
        mask = attention_mask[:, -width:].bool()
        batch, length, hidden = x.shape
        position_ids = (mask.long().cumsum(dim=-1) - 1).clamp(min=0)
        x = x + self.token_type + F.embedding(position_ids, self.positions)
        x = F.layer_norm(x, (hidden,), *self.emb_norm, self.eps)
        allowed = None
        if not bool(mask.all()):  # causal and not onto padding; a padded row may see itself (never NaN)
            causal = torch.ones(length, length, dtype=torch.bool).tril()
            allowed = (causal & mask[:, None, :]) | torch.eye(length, dtype=torch.bool)
            allowed = allowed[:, None]
        head = hidden // self.heads
        for j, layer in enumerate(self.layers):
            last = j == len(self.layers) - 1
            qkv = F.linear(x, layer["qkv_w"], layer["qkv_b"]).view(batch, length, 3, self.heads, head)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, L, head)
            rows = x
            if last:  # only the last position's output is read: its query, residual and feed-forward
                q, rows = q[:, :, -1:], x[:, -1:]
                step_mask = allowed[:, :, -1:] if allowed is not None else None
                attended = F.scaled_dot_product_attention(q, k, v, attn_mask=step_mask)
            elif allowed is not None:
                attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
            else:
                attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            attended = attended.transpose(1, 2).reshape(batch, rows.shape[1], hidden)
            h = F.layer_norm(F.linear(attended, *layer["out"]) + rows, (hidden,), *layer["out_norm"], self.eps)
            up = layer["act"](F.linear(h, *layer["up"]))
            x = F.layer_norm(F.linear(up, *layer["down"]) + h, (hidden,), *layer["down_norm"], self.eps)
        return x[:, -1]


def check(fast: FastBertUser, reference, hidden: int, max_len: int, atol: float = 1e-4, seed: int = 0) -> float:
    """Largest difference between `FastBertUser.last` and the module ``reference(inputs, mask)[:, -1]`` on random
    left-padded inputs of every shape serving sends (one row of each length, a mixed batch); raises
    AssertionError above ``atol``."""
    generator = torch.Generator().manual_seed(seed)
    lengths = sorted({1, 2, max_len // 2, max_len - 1, max_len} - {0})
    worst = 0.0
    inputs = torch.randn(len(lengths), max_len, hidden, generator=generator)
    mask = torch.zeros(len(lengths), max_len, dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, max_len - n :] = 1
    inputs = inputs * mask[..., None]
    with torch.no_grad():
        expected = reference(inputs, mask)[:, -1].float()
        for row in range(len(lengths)):  # one request's shape: a single history
            single = fast.last(inputs[row : row + 1], mask[row : row + 1])
            worst = max(worst, float((single - expected[row : row + 1]).abs().max()))
        worst = max(worst, float((fast.last(inputs, mask) - expected).abs().max()))  # a batch of all lengths
    if not worst <= atol:
        raise AssertionError(f"fast User LLM differs from the transformers module by {worst:.2e} (> {atol})")
    return worst
