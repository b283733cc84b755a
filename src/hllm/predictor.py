"""The one Predictor: load a trained model folder -> item vectors -> user vector -> top-k, history excluded.

Batch evaluation (`hllm evaluate`), the HTTP service and the tests all rank through this class, so a model is
scored the same way everywhere. It wraps the model's `RecTask` (the code the trainer validated with) and the
catalogue: item ids and their vectors, which can grow at run time (`add_items`: new items from their text).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from hllm.data.schema import DataError
from hllm.evaluation.ranking import topk_scores
from hllm.training.data import PAD, ItemVocab, left_pad

logger = logging.getLogger(__name__)


def load_task(model_dir: str | Path, items: pd.DataFrame | None = None):
    """The `RecTask` stored in ``model_dir`` (an ``export`` of the trainer), ready for inference."""
    folder = Path(model_dir)
    if (folder / "sasrec_config.json").is_file():
        from hllm.training.tasks import SASRecTask

        return SASRecTask.load(folder)
    if (folder / "config.json").is_file():
        from hllm.training.hllm_task import load_hllm_task

        return load_hllm_task(folder, items)
    raise DataError("not a model folder: expected config.json (HLLM) or sasrec_config.json (SASRec)", path=folder)


class Predictor:
    """Rank a catalogue for user histories with a trained model.

    Args:
        task: the model, as a `RecTask`.
        item_ids: catalogue ids; ``item_ids[i]`` is the item of row ``i + 1`` of ``item_vectors``.
        item_vectors: (N + 1, D) raw item vectors, row 0 padding.
        max_len: most recent history items the user model reads.
    """

    def __init__(self, task, item_ids: Sequence[str], item_vectors: Tensor, max_len: int = 50) -> None:
        if len(item_ids) + 1 != len(item_vectors):
            raise ValueError(f"{len(item_ids)} item ids for {len(item_vectors) - 1} item vectors")
        self.task = task
        self.item_ids = list(item_ids)
        self.index = ItemVocab(["<pad>", *self.item_ids]).index  # id -> row of item_vectors
        self.max_len = max_len
        self._set_vectors(item_vectors)

    def _set_vectors(self, vectors: Tensor) -> None:
        self.raw_vectors = vectors.float()
        self.scoring_vectors = (
            F.normalize(self.raw_vectors, dim=-1) if self.task.similarity == "cosine" else self.raw_vectors
        )

    @classmethod
    def load(cls, model_dir: str | Path, items: pd.DataFrame | None = None, max_len: int = 50) -> Predictor:
        """Load ``model_dir``; HLLM item vectors come from its ``item_vectors.safetensors`` or from ``items``."""
        folder = Path(model_dir)
        task = load_task(folder, items)
        ids_file = folder / "item_ids.json"
        if not ids_file.is_file():
            raise DataError("missing item_ids.json: the catalogue of this model is unknown", path=folder)
        item_ids = json.loads(ids_file.read_text())
        return cls(task, item_ids, task.item_vectors(), max_len=max_len)

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        """Item ids -> indices; ids outside the catalogue are named in the error."""
        unknown = sorted({i for h in histories for i in h if i not in self.index})
        if unknown:
            raise DataError(f"{len(unknown)} unknown item id(s) in history: {unknown[:5]}", column="item_id")
        return [[self.index[i] for i in h] for h in histories]

    @torch.no_grad()
    def user_vectors(self, histories: Sequence[Sequence[int]], batch_size: int = 256) -> Tensor:
        """(U, D) scoring-space user vectors for histories of item indices (most recent ``max_len`` used)."""
        self.task.model.eval()
        out = []
        for start in range(0, len(histories), batch_size):
            padded = left_pad(histories[start : start + batch_size] or [[PAD]], self.max_len)
            out.append(self.task.user_vectors(padded, self.raw_vectors).float())
        users = torch.cat(out)
        return F.normalize(users, dim=-1) if self.task.similarity == "cosine" else users

    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = True
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item id, score) per history, best first; seen items excluded unless told otherwise."""
        if not 1 <= k <= len(self.item_ids):
            raise ValueError(f"k={k} must be in [1, {len(self.item_ids)}] (the catalogue size)")
        indices = self.encode_histories(histories)
        users = self.user_vectors(indices)
        exclude = [sorted(set(h)) for h in indices] if exclude_seen else None
        scores, top = topk_scores(users, self.scoring_vectors, k, exclude, exclude_all=[PAD])
        return [
            [(self.item_ids[int(i) - 1], float(s)) for s, i in zip(row_s, row_i, strict=True) if int(i) > 0]
            for row_s, row_i in zip(scores, top, strict=True)
        ]
