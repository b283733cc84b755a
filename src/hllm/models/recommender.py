"""What serving and evaluation need of a trained model, and HLLM's implementation of it.

`Recommender` is the small inference interface the Predictor (and evaluation) depends on; `HLLMRecommender`
(an HLLM + its tokenizer + the catalogue's Item-LLM states) and `hllm.models.sasrec.SASRec` implement it.
`encode_item_states` is the one catalogue encoder: training's cache, ``hllm embed-items``, the embed step and
upserts all encode item text through it.

Artifact names say what they hold:

- ``item_text_states.safetensors``: ``(N + 1, H)`` Item-LLM backbone states before the projection (row 0
  padding); in an exported HLLM folder and in the embed step's output (what cached training reads).
- ``item_embeddings.parquet`` (`hllm.embedding`): the item vectors after the projection, as the User LLM reads
  them and its outputs are scored against.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

if TYPE_CHECKING:
    import pandas as pd

    from hllm.models.modeling_hllm import HLLM

logger = logging.getLogger(__name__)

ITEM_TEXT_STATES_FILE = "item_text_states.safetensors"
LEGACY_STATES_FILE = "item_vectors.safetensors"  # the same states, as models exported before the rename hold them
ITEM_IDS_FILE = "item_ids.json"
ENCODE_BATCH = 128


class Recommender(Protocol):
    """A trained next-item model over catalogue rows 1..N (row 0 = padding), ready for inference."""

    similarity: str  # "dot" or "cosine": how user vectors score item vectors

    @property
    def max_seq_len(self) -> int:
        """Most recent history items the model was built to read."""

    def item_vectors(self) -> Tensor:
        """(N + 1, D) vectors of every catalogue item (inputs of the user model and ranking targets)."""

    def user_vectors(self, histories: Tensor, item_vectors: Tensor) -> Tensor:
        """(B, D) next-item query vectors from left-padded (B, L) histories and an (N' + 1, D) item table."""

    def encode_texts(self, items: Sequence[Mapping]) -> Tensor:
        """(M, D) text part of the item vectors of ``items`` (their text fields); ValueError for ID-only models."""

    def id_vectors(self, rows: Tensor) -> Tensor:
        """(M, D) learned-id part of the item vectors of catalogue ``rows`` (zeros where there is none)."""


@torch.no_grad()
def encode_item_states(
    model: HLLM,
    tokenizer,
    items: Sequence[Mapping],
    *,
    batch_size: int = ENCODE_BATCH,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Item-LLM backbone states (before the projection) of ``items``, in eval mode, ``batch_size`` at a time.

    Items are encoded in batches of similar token length (each trimmed to its longest row), so little padding is
    computed; the result is in the order of ``items``.

    Args:
        model: supplies the Item LLM and the text settings (prompt, fields, separator, token budget).
        tokenizer: the Item LLM's tokenizer.
        items: one mapping (dict or pandas row) per item with its text fields.
        batch_size: items per forward pass.
        progress: ``progress(items_done, items_total)`` after each batch.

    Returns:
        ``(M, H)`` float32.
    """
    from hllm.models.text import tokenize_items

    if tokenizer is None:
        raise ValueError("this model has no tokenizer: item texts cannot be encoded")
    if len(items) == 0:
        return torch.zeros(0, model.item_llm.hidden_size)
    was_training = model.training
    model.eval()
    tokens = tokenize_items(items, tokenizer, model.config)  # (M, T) right-padded
    states = torch.zeros(len(items), model.item_llm.hidden_size)
    done = 0
    for rows, width in length_batches(tokens["attention_mask"], batch_size):
        ids, mask = tokens["input_ids"][rows, :width], tokens["attention_mask"][rows, :width]
        states[rows] = model.item_llm.pooled(ids.to(model.device), mask.to(model.device)).float().cpu()  # (b, H)
        done += len(rows)
        if progress is not None:
            progress(done, len(items))
    model.train(was_training)
    return states


def length_batches(attention_mask: Tensor, batch_size: int):
    """``(rows, width)`` batches over the rows of a right-padded ``attention_mask``, in order of token length:
    each batch's rows have similar lengths, so cutting them to ``width`` (their longest) leaves little padding."""
    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        yield rows, int(lengths[rows].max())


def catalogue_states(model: HLLM, tokenizer, items: Sequence[Mapping], **kwargs) -> Tensor:
    """(N + 1, H) `encode_item_states` of a catalogue with a zero padding row 0 (catalogue rows are 1..N)."""
    states = encode_item_states(model, tokenizer, items, **kwargs)
    return torch.cat([torch.zeros(1, states.shape[1]), states])


class HLLMRecommender:
    """An HLLM ready to rank its catalogue: the model, its Item-LLM tokenizer and the catalogue's states.

    Args:
        model: the trained HLLM.
        item_states: (N + 1, H) `catalogue_states` of the catalogue (row 0 padding), or None for a model used
            only to encode new texts.
        tokenizer: the Item LLM's tokenizer (None: texts cannot be encoded).
    """

    similarity = "cosine"  # the loss's metric

    def __init__(self, model: HLLM, item_states: Tensor | None, tokenizer=None) -> None:
        self.model = model
        self.item_states = item_states
        self.tokenizer = tokenizer
        self.fast_user = None  # a `FastBertUser` once `use_fast_user_llm` found it equal to the module

    def use_fast_user_llm(self) -> bool:
        """Rank with `hllm.models.fast_user.FastBertUser` when the User LLM is a supported BERT and its outputs
        equal the module's (`hllm.models.fast_user.check`); otherwise keep the transformers module (logged)."""
        from hllm.models.fast_user import FastBertUser, check

        backbone = self.model.user_llm.backbone
        if not FastBertUser.supports(backbone) or self.model.timestamp_embedding is not None:
            logger.info("User LLM: the transformers module (no fast path for this backbone or config)")
            return False
        fast = FastBertUser(backbone)
        try:
            worst = check(fast, self.model.user_llm, self.model.user_llm.hidden_size, self.max_seq_len)
        except AssertionError as exc:
            logger.warning("User LLM: keeping the transformers module: %s", exc)
            return False
        self.fast_user = fast
        logger.info("User LLM: fast path (largest difference from the module %.1e)", worst)
        return True

    @property
    def config(self):
        return self.model.config

    @property
    def max_seq_len(self) -> int:
        return int(self.model.config.max_seq_len)

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        if self.item_states is None:
            raise ValueError("no catalogue states: load the model with its item_text_states or an items table")
        device = self.model.device  # results come back to the CPU wherever the model runs
        rows = torch.arange(len(self.item_states), device=device)
        return self.model.item_vectors_from_states(self.item_states.to(device), rows).float().cpu()

    @torch.no_grad()
    def user_vectors(self, histories: Tensor, item_vectors: Tensor) -> Tensor:
        # forward_user adds the input id vectors itself (only when they are not already in the item vectors).
        histories, item_vectors = histories.to(self.model.device), item_vectors.to(self.model.device)
        mask = (histories != 0).long()
        if self.fast_user is not None:
            inputs = self.model.user_inputs(item_vectors[histories], mask, item_ids=histories)
            return self.fast_user.last(inputs, mask).float().cpu()
        outputs = self.model.forward_user(item_vectors[histories], mask, item_ids=histories)
        return outputs[:, -1].float().cpu()  # (B, D): the last position predicts the next item

    @torch.no_grad()
    def encode_texts(self, items: Sequence[Mapping]) -> Tensor:
        states = encode_item_states(self.model, self.tokenizer, list(items))
        return self.model.item_llm.proj(states.to(self.model.device, self.model.dtype)).float().cpu()

    @torch.no_grad()
    def id_vectors(self, rows: Tensor) -> Tensor:
        table = self.model.item_id_embedding
        out = torch.zeros(len(rows), self.model.embedding_dim)
        if table is None or not self.model.config.item_id_in_target:
            return out
        inside = (rows >= 0) & (rows < table.num_embeddings)  # rows beyond the table have no learned id
        out[inside] = table(rows[inside].to(table.weight.device)).float().cpu()
        return out

    def save(self, folder: str | Path) -> None:
        """``save_pretrained`` (safetensors + config), the tokenizer and ``item_text_states.safetensors``."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder), safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(folder))
        if self.item_states is not None:
            save_file({"states": self.item_states.float().contiguous()}, str(folder / ITEM_TEXT_STATES_FILE))

    @classmethod
    def load(cls, folder: str | Path, items: pd.DataFrame | None = None) -> HLLMRecommender:
        """An exported HLLM; catalogue states from its ``item_text_states.safetensors``, else encoded from ``items``."""
        from safetensors.torch import load_file

        from hllm.models.modeling_hllm import HLLM
        from hllm.models.text import load_item_tokenizer

        folder = Path(folder)
        model = HLLM.from_pretrained(str(folder)).eval()
        tokenizer = load_item_tokenizer(str(folder)) if (folder / "tokenizer_config.json").is_file() else None
        states_file = folder / ITEM_TEXT_STATES_FILE
        if states_file.is_file():
            states = load_file(str(states_file))["states"]
        elif (folder / LEGACY_STATES_FILE).is_file():  # e.g. a champion registered before the rename
            states = load_file(str(folder / LEGACY_STATES_FILE))["vectors"]
        elif items is not None and tokenizer is not None:
            item_ids = json.loads((folder / ITEM_IDS_FILE).read_text())
            order = items.set_index(items["item_id"].astype(str)).loc[item_ids].reset_index(drop=True)
            states = catalogue_states(model, tokenizer, order.to_dict("records"))
        else:
            raise ValueError(f"{folder}: no {ITEM_TEXT_STATES_FILE} and no items table to compute item vectors from")
        return cls(model, states, tokenizer)


def load_recommender(folder: str | Path, items: pd.DataFrame | None = None) -> Recommender:
    """The model exported in ``folder`` (HLLM: ``config.json``; SASRec: ``sasrec_config.json``), in eval mode.

    Raises:
        ValueError: when ``folder`` holds neither.
    """
    folder = Path(folder)
    if (folder / "sasrec_config.json").is_file():
        from hllm.models.sasrec import SASRec

        return SASRec.load(folder)
    if (folder / "config.json").is_file():
        return HLLMRecommender.load(folder, items)
    raise ValueError(f"{folder}: not a model folder: expected config.json (HLLM) or sasrec_config.json (SASRec)")
