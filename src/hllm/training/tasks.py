"""What the trainer needs from a recommender: a loss on a batch, the model for evaluation, and an export.

One DeepSpeed loop (`hllm.training.trainer`) trains every model through this protocol. A task is a thin
training adapter (batching, freezing); the model itself, through `hllm.models.recommender.Recommender`, gives
the item and user vectors that validation (`hllm.evaluation.evaluate.evaluate`) and the Predictor rank with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from torch import Tensor, nn

from hllm.models.recommender import ITEM_IDS_FILE, Recommender
from hllm.models.sasrec import SASRec, SASRecConfig


class RecTask(Protocol):
    """A trainable recommender over item indices 1..N (0 = padding)."""

    model: nn.Module
    name: str

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """Scalar loss of a training batch and a few statistics to log."""

    def recommender(self) -> Recommender:
        """The model with its current weights, as inference sees it (what validation ranks)."""

    def export(self, out_dir: Path) -> None:
        """Write the model's final weights (safetensors), config and catalogue ids to ``out_dir``."""


class SASRecTask:
    """The ID baseline: SASRec with full-softmax cross-entropy over the whole catalogue."""

    name = "sasrec"

    def __init__(self, config: SASRecConfig, item_ids: list[str] | None = None) -> None:
        self.model = SASRec(config)
        self.item_ids = item_ids  # index -> id, index 0 padding; written by `export` for the Predictor

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        hidden = self.model(batch["inputs"])  # (B, L, H)
        # A target whose input is padding (a window's first item in a left-padded batch) has no history:
        # its output is zero, so it would only add a constant log(N) to the mean and dilute the gradient.
        targets = batch["targets"].masked_fill(batch["inputs"] == 0, 0)  # (B, L), 0 = ignore
        return self.model.full_softmax_loss(hidden, targets), {}

    def recommender(self) -> SASRec:
        return self.model

    def export(self, out_dir: Path) -> None:
        self.model.save(out_dir)
        if self.item_ids is not None:
            (out_dir / ITEM_IDS_FILE).write_text(json.dumps(self.item_ids[1:]) + "\n")

    @classmethod
    def load(cls, out_dir: Path) -> SASRecTask:
        """A task around the model exported in ``out_dir`` (e.g. to train on from it)."""
        ids_file = out_dir / ITEM_IDS_FILE
        model = SASRec.load(out_dir)
        task = cls(model.config, ["<pad>", *json.loads(ids_file.read_text())] if ids_file.exists() else None)
        task.model = model
        return task
