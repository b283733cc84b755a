"""What the trainer needs from a recommender: a loss on a batch, user and item vectors, and an export.

One DeepSpeed loop (`hllm.training.trainer`) trains every model through this protocol; evaluation and the
Predictor use ``user_vectors``/``item_vectors`` so that all models are ranked by the same code.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor, nn

from hllm.models.sasrec import SASRec, SASRecConfig


class RecTask(Protocol):
    """A trainable recommender over item indices 1..N (0 = padding)."""

    model: nn.Module
    name: str
    similarity: str  # "dot" or "cosine": how user vectors score item vectors

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss of a training batch and a few statistics to log."""

    def item_vectors(self) -> Tensor:
        """(N + 1, D) vectors of every item (inputs of the user model and ranking targets); row 0 is padding."""

    def user_vectors(self, histories: Tensor, item_vectors: Tensor) -> Tensor:
        """(B, D) next-item query vectors from left-padded (B, L) histories and the `item_vectors` table."""

    def export(self, out_dir: Path) -> None:
        """Write the model's final weights (safetensors) and config to ``out_dir``."""


class SASRecTask:
    """The ID baseline: SASRec with full-softmax cross-entropy over the whole catalogue."""

    name = "sasrec"
    similarity = "dot"

    def __init__(self, config: SASRecConfig, item_ids: list[str] | None = None) -> None:
        self.model = SASRec(config)
        self.item_ids = item_ids  # index -> id, index 0 padding; written by `export` for the Predictor

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        hidden = self.model(batch["inputs"])  # (B, L, H)
        # A target whose input is padding (a window's first item in a left-padded batch) has no history:
        # its output is zero, so it would only add a constant log(N) to the mean and dilute the gradient.
        targets = batch["targets"].masked_fill(batch["inputs"] == 0, 0)  # (B, L), 0 = ignore
        return self.model.full_softmax_loss(hidden, targets), {}

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        return self.model.item_vectors().float()

    @torch.no_grad()
    def user_vectors(self, histories: Tensor, item_vectors: Tensor) -> Tensor:
        return self.model.user_vectors(histories).float()

    def export(self, out_dir: Path) -> None:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().float().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(out_dir / "model.safetensors"))
        (out_dir / "sasrec_config.json").write_text(json.dumps(asdict(self.model.config), indent=2) + "\n")
        if self.item_ids is not None:
            (out_dir / "item_ids.json").write_text(json.dumps(self.item_ids[1:]) + "\n")

    @classmethod
    def load(cls, out_dir: Path) -> SASRecTask:
        from safetensors.torch import load_file

        config = SASRecConfig(**json.loads((out_dir / "sasrec_config.json").read_text()))
        ids_file = out_dir / "item_ids.json"
        task = cls(config, ["<pad>", *json.loads(ids_file.read_text())] if ids_file.exists() else None)
        task.model.load_state_dict(load_file(str(out_dir / "model.safetensors")))
        task.model.eval()
        return task
