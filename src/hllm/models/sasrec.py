"""SASRec: the ID-based self-attentive sequential recommender HLLM is compared with.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. Items are rows of a learned embedding
table (index 0 = padding), summed with a learned position embedding and read by causal pre-LN transformer
blocks, as in the paper's eq. (4) ``x + Dropout(g(LayerNorm(x)))``; the output at position i predicts item
i+1. The output layer shares the input item embedding.

The strong variant trains with a softmax over the whole catalogue (:meth:`SASRec.full_softmax_loss`)
instead of the paper's one sampled negative with binary cross-entropy; this is the variant the HLLM README
and later studies (e.g. Klenitskiy & Vasilev, RecSys 2023) compare against. No training loop lives here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)

PADDING_INDEX = 0
CONFIG_FILE = "sasrec_config.json"


@dataclass
class SASRecConfig:
    """Architecture of :class:`SASRec`.

    Args:
        num_items: catalogue size; items are indices 1..num_items, 0 is padding. ``0`` until sized: a run config
            leaves it to the builder; building a `SASRec` needs it >= 1.
        hidden: embedding and model width.
        num_layers: transformer blocks.
        num_heads: attention heads; must divide ``hidden``.
        dropout: dropout on the embeddings, the attention weights, and the attention and FFN outputs.
        max_seq_len: longest input sequence (number of learned positions).
        ffn_hidden: inner width of the feed-forward layers; ``None`` means ``4 * hidden``.
        layer_norm_eps: epsilon of every LayerNorm.
        initializer_range: standard deviation of the normal init of embeddings and linear weights.
    """

    num_items: int = 0
    hidden: int = 64
    num_layers: int = 2
    num_heads: int = 2
    dropout: float = 0.2
    max_seq_len: int = 50
    ffn_hidden: int | None = None
    layer_norm_eps: float = 1e-8
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for name in ("num_items", "hidden", "num_layers", "num_heads", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "num_items" else 1):
                raise ValueError(f"SASRecConfig.{name} must be a positive integer, got {value!r}")
        if self.hidden % self.num_heads:
            raise ValueError(
                f"SASRecConfig.hidden ({self.hidden}) must be divisible by SASRecConfig.num_heads ({self.num_heads})"
            )
        if self.ffn_hidden is None:
            self.ffn_hidden = 4 * self.hidden
        if not isinstance(self.ffn_hidden, int) or self.ffn_hidden < 1:
            raise ValueError(f"SASRecConfig.ffn_hidden must be a positive integer or None, got {self.ffn_hidden!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"SASRecConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.layer_norm_eps > 0.0:
            raise ValueError(f"SASRecConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if not self.initializer_range > 0.0:
            raise ValueError(f"SASRecConfig.initializer_range must be > 0, got {self.initializer_range!r}")


class SASRecBlock(nn.Module):
    """Pre-LN transformer block: ``x + Dropout(Attn(LN(x)))`` then ``x + Dropout(FFN(LN(x)))``."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.attn_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.qkv = nn.Linear(config.hidden, 3 * config.hidden)
        self.attn_out = nn.Linear(config.hidden, config.hidden)
        self.ffn_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.ffn = nn.Sequential(
            nn.Linear(config.hidden, config.ffn_hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.ffn_hidden, config.hidden),
        )
        self.residual_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        """Apply the block.

        Args:
            x: (B, L, H) hidden states.
            attn_mask: (B, 1, L, L) bool, True where query i may attend to key j.

        Returns:
            (B, L, H) hidden states.
        """
        batch, length, hidden = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).split(hidden, dim=-1)  # 3 x (B, L, H)
        q, k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2) for t in (q, k, v))  # (B, h, L, H/h)
        dropout = self.dropout if self.training else 0.0
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)  # (B, h, L, H/h)
        attn = attn.transpose(1, 2).reshape(batch, length, hidden)  # (B, L, H)
        x = x + self.residual_dropout(self.attn_out(attn))
        return x + self.residual_dropout(self.ffn(self.ffn_norm(x)))


class SASRec(nn.Module):
    """Causal transformer over item-ID sequences; shared input/output item embedding.

    Implements `hllm.models.recommender.Recommender` (the Predictor's interface): scores are dot products.

    Args:
        config: the architecture.
    """

    similarity = "dot"

    def __init__(self, config: SASRecConfig) -> None:
        if config.num_items < 1:
            raise ValueError(f"SASRecConfig.num_items must be >= 1 to build a model, got {config.num_items}")
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.num_items + 1, config.hidden, padding_idx=PADDING_INDEX)
        self.position_embedding = nn.Embedding(config.max_seq_len, config.hidden)
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(SASRecBlock(config) for _ in range(config.num_layers))
        # Pre-LN blocks leave the residual stream unnormalised; the paper's final LayerNorm fixes its scale.
        self.final_norm = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) weights, zero biases, unit LayerNorms, zero padding row (RecBole)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, item_seq: Tensor) -> Tensor:
        """Encode left-padded item sequences.

        Positions are right-aligned: the last column always gets position ``max_seq_len - 1``, so a shorter
        input (L < max_seq_len) sees the same positions as the end of a full-length one.

        Args:
            item_seq: (B, L) int64 item indices, left-padded with 0, L <= max_seq_len.

        Returns:
            (B, L, H) hidden states; the output at position i summarises items 0..i and predicts item i+1.
            Outputs at padding positions are zeros.
        """
        if item_seq.dim() != 2:
            raise ValueError(f"item_seq must be (B, L), got shape {tuple(item_seq.shape)}")
        length = item_seq.shape[1]
        if length > self.config.max_seq_len:
            raise ValueError(f"item_seq length {length} exceeds SASRecConfig.max_seq_len ({self.config.max_seq_len})")
        is_item = item_seq != PADDING_INDEX  # (B, L)
        positions = torch.arange(self.config.max_seq_len - length, self.config.max_seq_len, device=item_seq.device)
        x = self.item_embedding(item_seq) + self.position_embedding(positions)  # (B, L, H)
        x = self.embedding_dropout(x)
        attn_mask = self._attention_mask(is_item)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.final_norm(x) * is_item.unsqueeze(-1)  # (B, L, H)

    @staticmethod
    def _attention_mask(is_item: Tensor) -> Tensor:
        """(B, 1, L, L) bool: query i attends to real keys j <= i, and always to itself.

        Masking padding keys keeps padding out of real positions; letting every query see itself keeps
        padding queries (whose keys would all be masked) from producing NaN softmaxes that would leak.
        """
        length = is_item.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=is_item.device).tril()  # (L, L)
        diagonal = torch.eye(length, dtype=torch.bool, device=is_item.device)  # (L, L)
        return ((causal & is_item[:, None, :]) | diagonal).unsqueeze(1)  # (B, 1, L, L)

    def full_softmax_loss(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Cross-entropy of the next item against the whole catalogue (padding row excluded).

        Logits are ``hidden @ item_embedding[1:].T``, computed only at positions with a target; their
        memory is (number of targets) x num_items, which the trainer must size its batches for.

        Args:
            hidden: (B, L, H) output of :meth:`forward`.
            targets: (B, L) int64 next-item indices; 0 marks a position to ignore.

        Returns:
            Scalar mean loss over the non-ignored positions (0, still differentiable, if there are none).
        """
        if targets.shape != hidden.shape[:2]:
            raise ValueError(f"targets shape {tuple(targets.shape)} must match hidden {tuple(hidden.shape[:2])}")
        keep = targets != PADDING_INDEX  # (B, L)
        selected = hidden[keep]  # (M, H)
        if selected.shape[0] == 0:
            return hidden.sum() * 0.0
        logits = selected @ self.item_embedding.weight[1:].T  # (M, num_items); column j is item j + 1
        return F.cross_entropy(logits, targets[keep] - 1)

    def user_vectors(self, item_seq: Tensor, item_vectors: Tensor | None = None) -> Tensor:
        """User representations for ranking: the output at the last (most recent) position.

        Args:
            item_seq: (B, L) int64 item indices, left-padded with 0.
            item_vectors: unused (the item table is the model's own); part of `hllm.models.Recommender`.

        Returns:
            (B, H), to be scored against :meth:`item_vectors` by dot product.
        """
        return self.forward(item_seq)[:, -1]

    def item_vectors(self) -> Tensor:
        """The shared item embedding table, (num_items + 1, H); row 0 is padding and must be masked."""
        return self.item_embedding.weight

    @property
    def max_seq_len(self) -> int:
        return self.config.max_seq_len

    def encode_texts(self, items) -> Tensor:
        raise ValueError("this model has no Item LLM (an ID model): items cannot be embedded from text")

    def id_vectors(self, rows: Tensor) -> Tensor:
        """Rows of the item table (an ID model's item vector is its id vector)."""
        return self.item_embedding.weight[rows]

    def save(self, folder: str | Path) -> None:
        """``model.safetensors`` and ``sasrec_config.json`` in ``folder``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"))
        (folder / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> SASRec:
        """The model saved by :meth:`save`, in eval mode."""
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls(SASRecConfig(**json.loads((folder / CONFIG_FILE).read_text())))
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return model.eval()

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
