"""The one Predictor: load a trained model folder -> item vectors -> user vector -> top-k, history excluded.

Batch evaluation (`hllm evaluate`), the HTTP service and the tests all rank through this class, so a model is
scored the same way everywhere. It holds the model, as the small inference interface
`hllm.models.recommender.Recommender` (HLLM or SASRec, never a training task), and the catalogue: item ids and
their vectors, which can grow at run time (`upsert_items`: new items from their text).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from hllm.data.schema import DataError
from hllm.index import open_index
from hllm.models.recommender import ITEM_IDS_FILE, Recommender, load_recommender
from hllm.training.data import PAD, ItemVocab, left_pad

logger = logging.getLogger(__name__)
POPULAR_FILE = "popular_items.json"  # training-popularity order, the fallback for users without history


def _untimed(stage: str) -> AbstractContextManager:
    return nullcontext()


class Predictor:
    """Rank a catalogue for user histories with a trained model.

    Args:
        model: the trained model (`Recommender`).
        item_ids: catalogue ids; ``item_ids[i]`` is the item of row ``i + 1`` of ``item_vectors``.
        item_vectors: (N + 1, D) raw item vectors, row 0 padding.
        max_len: most recent history items the user model reads; `load` takes it from the saved model.
        popular: item ids by training popularity, most popular first (fallback for empty histories).
        index_kind: ``exact``, ``ivf``, ``hnsw``, ``faiss`` or ``auto`` (by catalogue size; see `hllm.index`).
        index_dir: a model folder whose stored item index (``item_index/``) is read instead of building one.
    """

    # `recommend` runs its stages inside ``with stage_timer("user_llm")`` / ``("search")``: the service sets a
    # timer that feeds its latency histograms; by default nothing is measured.
    stage_timer: Callable[[str], AbstractContextManager] = staticmethod(_untimed)

    def __init__(
        self,
        model: Recommender,
        item_ids: Sequence[str],
        item_vectors: Tensor,
        max_len: int,
        popular: Sequence[str] | None = None,
        index_kind: str = "exact",
        index_dir: str | Path | None = None,
    ) -> None:
        if len(item_ids) + 1 != len(item_vectors):
            raise ValueError(f"{len(item_ids)} item ids for {len(item_vectors) - 1} item vectors")
        self.model = model
        self.item_ids = list(item_ids)
        self.index = ItemVocab(["<pad>", *self.item_ids]).index  # id -> row of item_vectors
        self.max_len = max_len
        self.popular = [i for i in (popular or []) if i in self.index]
        self.index_kind = index_kind
        self._upsert_lock = threading.Lock()
        self._set_vectors(item_vectors, index_dir)

    def _scoring(self, raw: Tensor) -> Tensor:
        return F.normalize(raw.float(), dim=-1) if self.model.similarity == "cosine" else raw.float()

    def _set_vectors(self, vectors: Tensor, index_dir: str | Path | None = None) -> None:
        self.raw_vectors = vectors.detach().float()
        self.scoring_vectors = self._scoring(self.raw_vectors)
        self.ann = open_index(self.scoring_vectors, self.index_kind, index_dir)

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        items: pd.DataFrame | None = None,
        index_kind: str = "exact",
        user_llm: str = "eager",
    ) -> Predictor:
        """Load ``model_dir``; HLLM item vectors come from its ``item_text_states.safetensors`` or from ``items``;
        its stored item index (`hllm.index.write_index`) is memory-mapped unless ``index_kind`` asks for another.
        ``user_llm``: ``eager`` (the transformers module, the reference) or ``fast``
        (`hllm.models.fast_user`, for serving: used when the backbone allows it and its outputs match).

        The history length is the one the model was trained with (its config's ``max_seq_len``).
        """
        folder = Path(model_dir)
        if not (folder / "config.json").is_file() and not (folder / "sasrec_config.json").is_file():
            raise DataError(
                "not a model folder: expected config.json (HLLM) or sasrec_config.json (SASRec)", path=folder
            )
        ids_file = folder / ITEM_IDS_FILE
        if not ids_file.is_file():
            raise DataError(f"missing {ITEM_IDS_FILE}: the catalogue of this model is unknown", path=folder)
        if user_llm not in ("eager", "fast"):
            raise ValueError(f"user_llm={user_llm!r} must be eager or fast")
        model = load_recommender(folder, items)
        if user_llm == "fast" and hasattr(model, "use_fast_user_llm"):
            model.use_fast_user_llm()
        item_ids = json.loads(ids_file.read_text())
        popular_file = folder / POPULAR_FILE
        popular = json.loads(popular_file.read_text()) if popular_file.is_file() else None
        with torch.no_grad():
            vectors = model.item_vectors()
        return cls(
            model,
            item_ids,
            vectors,
            max_len=model.max_seq_len,
            popular=popular,
            index_kind=index_kind,
            index_dir=folder,
        )

    def encode_histories(self, histories: Sequence[Sequence[str]]) -> list[list[int]]:
        """Item ids -> indices; ids outside the catalogue are named in the error."""
        unknown = sorted({i for h in histories for i in h if i not in self.index})
        if unknown:
            raise DataError(f"{len(unknown)} unknown item id(s) in history: {unknown[:5]}", column="item_id")
        return [[self.index[i] for i in h] for h in histories]

    @torch.no_grad()
    def user_vectors(self, histories: Sequence[Sequence[int]], batch_size: int = 256) -> Tensor:
        """(U, D) scoring-space user vectors for histories of item indices (most recent ``max_len`` used)."""
        out = []
        for start in range(0, len(histories), batch_size):
            padded = left_pad(histories[start : start + batch_size] or [[PAD]], self.max_len)
            out.append(self.model.user_vectors(padded, self.raw_vectors).float())
        users = torch.cat(out)
        return F.normalize(users, dim=-1) if self.model.similarity == "cosine" else users

    def recommend(
        self, histories: Sequence[Sequence[str]], k: int = 10, exclude_seen: bool = True
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item id, score) per history, best first; seen items excluded unless told otherwise."""
        if not 1 <= k <= len(self.item_ids):
            raise ValueError(f"k={k} must be in [1, {len(self.item_ids)}] (the catalogue size)")
        indices = self.encode_histories(histories)
        with self.stage_timer("user_llm"):
            users = self.user_vectors(indices)
        exclude = [sorted(set(h)) for h in indices] if exclude_seen else None
        with self.stage_timer("search"):
            scores, top = self.ann.search(users, k, exclude, user_queries=True)
        return self._pairs(scores, top)

    def _pairs(self, scores: Tensor, top: Tensor) -> list[list[tuple[str, float]]]:
        return [
            [(self.item_ids[int(i) - 1], float(s)) for s, i in zip(row_s, row_i, strict=True) if int(i) > 0]
            for row_s, row_i in zip(scores, top, strict=True)
        ]

    def popular_items(self, k: int, exclude: Sequence[str] = ()) -> list[str]:
        """The ``k`` most popular training items not in ``exclude`` (the fallback for users with no history)."""
        banned = set(exclude)
        return [i for i in self.popular if i not in banned][:k]

    def similar_items(self, k: int, item_id: str | None = None, text: Mapping | None = None) -> list[tuple[str, float]]:
        """Items nearest to a catalogue item (itself excluded) or to an item described by its text fields."""
        if (item_id is None) == (text is None):
            raise ValueError("give exactly one of item_id or text")
        if item_id is not None:
            if item_id not in self.index:
                raise DataError(f"unknown item id '{item_id}'", column="item_id")
            row = self.index[item_id]
            query, exclude = self.scoring_vectors[row : row + 1], [[row]]
        else:
            query, exclude = self._scoring(self.encode_texts([text])), None
        scores, top = self.ann.search(query, k, exclude)
        return self._pairs(scores, top)[0]

    def encode_texts(self, items: Sequence[Mapping]) -> Tensor:
        """(M, D) raw vectors of items from their text alone (no id vector: the Item LLM + projection)."""
        return self.model.encode_texts(items)

    def upsert_items(self, items: Sequence[Mapping]) -> tuple[int, int]:
        """Embed ``items`` (``item_id`` + text fields) from their text; add new ids, replace known ones.

        New items are recommendable at once (cold start). A known item keeps its learned id vector and gets the
        text part of its new text. Returns ``(added, updated)``.
        """
        self.check_upsert()
        ids = [str(item["item_id"]) for item in items]
        if len(set(ids)) != len(ids):
            raise DataError("duplicate item_id in one upsert", column="item_id")
        return self.set_text_vectors(ids, self.encode_texts(items))

    def check_upsert(self) -> None:
        """Raise ValueError if this model cannot take items by their text."""
        config = getattr(self.model, "config", None)
        if getattr(config, "use_item_id_embedding", False) and not config.item_id_in_target:
            raise ValueError("upsert needs item_id_in_target (or no id embedding): new items have no input id")

    def set_text_vectors(self, ids: Sequence[str], text: Tensor) -> tuple[int, int]:
        """Add or replace items from their (M, D) text vectors (`encode_texts`; stored ones from a shared
        catalogue need no re-embedding); ``ids`` distinct. Returns ``(added, updated)``."""
        self.check_upsert()
        ids = [str(i) for i in ids]
        with self._upsert_lock:  # one upsert at a time; readers see the old or the new catalogue, whole
            known = [j for j, i in enumerate(ids) if i in self.index]
            fresh = [j for j, i in enumerate(ids) if i not in self.index]
            old_rows = len(self.raw_vectors)
            raw = self.raw_vectors.clone()
            if known:
                rows = torch.tensor([self.index[ids[j]] for j in known])
                raw[rows] = text[known] + self.model.id_vectors(rows).float()
            if fresh:
                raw = torch.cat([raw, text[fresh]])
            # Vectors and index first (rows beyond item_ids are never returned), then the ids that name them.
            self.raw_vectors = raw
            self.scoring_vectors = self._scoring(raw)
            # New and replaced rows go to the index's side table: never a rebuild (see `hllm.index`).
            self.ann.extend(self.scoring_vectors, old_rows, replaced=[int(r) for r in rows] if known else [])
            for j in fresh:
                self.item_ids.append(ids[j])
                self.index[ids[j]] = len(self.item_ids)
        return len(fresh), len(known)
