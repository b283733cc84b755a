"""HLLM as a `RecTask`: batching and freezing for the three training modes over one `hllm.models.HLLM`.

The model owns its item representation and its loss in every mode (`HLLM.forward`, `HLLM.item_vectors_from_states`);
this adapter only decides what the model is fed and what trains:

- ``cached``: the Item LLM is frozen and the whole catalogue is encoded once (`encode_item_states`); each step
  feeds the cached backbone states of its items, so only the User LLM (and the projection, id vectors, scale)
  runs (the serving recipe; HLLM.md "HLLM-1B_cache"). The sensible CPU default.
- ``end_to_end``: both LLMs train; each step feeds the tokens of its distinct items (histories, targets and the
  negative pool), encoded once through the Item LLM, so gradients reach it through inputs, positives and
  negatives (the paper).
- ``partial``: only the top ``partial_layers`` Item-LLM layers, the ``[ITEM]`` vector, the final norm and the
  projection train. The frozen bottom layers read each item's text alone, so their states of the whole catalogue
  are computed once (`ItemLLM.lower_states`, like ``cached`` caches the whole backbone's output) and each step
  runs only the top layers on its distinct items (`ItemLLM.pooled_from_lower`); ``[ITEM]`` joins at the input of
  the first trainable layer (``hllm.item_token_layers``, derived from ``partial_layers``). Serving computes the
  same split from text (`ItemLLM.pooled`), so vectors agree with training's. With ``item_refresh_every`` k > 1
  the Item LLM trains on every k-th step only; the steps between read the items' states as last computed (no
  gradient to the Item LLM, like ``cached``), so the User LLM gets k times more steps for the same time.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from hllm.config import TrainConfig
from hllm.models.loss import CollapseDetector
from hllm.models.modeling_hllm import HLLM
from hllm.models.recommender import (
    ENCODE_BATCH,
    ITEM_IDS_FILE,
    HLLMRecommender,
    catalogue_states,
    length_batches,
)
from hllm.models.text import tokenize_items

logger = logging.getLogger(__name__)


def catalogue_tokens(items: pd.DataFrame, tokenizer, model: HLLM) -> dict[str, Tensor]:
    """Tokens of every catalogue item; row 0 (padding) holds the bare prompt and is never scored."""
    rows = [{}, *items.to_dict("records")]
    return tokenize_items(rows, tokenizer, model.config)


def _trainable_layers(model: HLLM, mode: str, partial_layers: int) -> None:
    """Freeze what ``mode`` keeps fixed (HLLM.md "Training": frozen, cached and both-trainable variants)."""
    item_llm = model.item_llm
    if mode == "end_to_end":
        return
    for param in item_llm.backbone.parameters():
        param.requires_grad_(False)
    if item_llm.item_token is not None:
        item_llm.item_token.requires_grad_(mode == "partial")
    # The projection between the two LLMs (present when their sizes differ) is a head, not the Item LLM: it
    # trains in every mode; in cached mode it is applied to the cached backbone states.
    if mode == "partial":
        layers = _layer_list(item_llm.backbone)
        for layer in layers[len(layers) - partial_layers :]:
            layer.requires_grad_(True)
        for name, param in item_llm.named_parameters():
            if not name.startswith("backbone.") or "norm" in name.split(".")[1]:
                param.requires_grad_(True)  # [ITEM] vector, projection and the final norm


def _layer_list(backbone: torch.nn.Module) -> torch.nn.ModuleList:
    for path in ("layers", "encoder.layer", "h", "decoder.layers"):
        module = backbone
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__} for partial training")


class HLLMTask:
    """Training adapter of an `HLLM` (see the module docstring for the modes).

    Args:
        model: the HLLM to train.
        tokenizer: its Item-LLM tokenizer.
        items: the catalogue in row order (row i + 1 = ``items.iloc[i]``), with its text fields.
        item_ids: row -> item id, row 0 padding.
        config: supplies ``mode``, ``partial_layers``, ``num_negatives``, ``item_id_dropout``.
        item_states: precomputed (N + 1, H) `catalogue_states` for cached mode (else they are encoded here).
    """

    name = "hllm"

    def __init__(
        self,
        model: HLLM,
        tokenizer,
        items: pd.DataFrame,
        item_ids: list[str],
        config: TrainConfig,
        item_states: Tensor | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.items = items
        self.item_ids = item_ids
        self.config = config
        self.num_items = len(item_ids) - 1
        self.collapse = CollapseDetector(min_fraction=config.collapse_fraction, patience=3)
        _trainable_layers(model, config.mode, config.partial_layers)
        self.item_states: Tensor | None = None  # cached mode: (N + 1, H), fixed for the whole run
        self.tokens: dict[str, Tensor] | None = None  # other modes: (N + 1, T) tokens of the catalogue
        self.lower: Tensor | None = None  # partial mode: (N + 1, T, H) frozen bottom-layer states
        self.stale: Tensor | None = None  # partial mode, item_refresh_every > 1: last computed item states
        self.steps = 0
        if config.mode == "cached":
            self.item_states = item_states if item_states is not None else self._encode_catalogue()
        else:
            self.tokens = catalogue_tokens(items, tokenizer, model)
        if config.mode == "partial":
            if model.item_llm.token_layers != config.partial_layers:
                raise ValueError(
                    f"partial mode with partial_layers={config.partial_layers} needs a model built with "
                    f"item_token_layers={config.partial_layers}, got {model.item_llm.token_layers}"
                )
            self.lower = self._lower_states()
            if config.item_refresh_every > 1:
                self.stale = self._top_states()  # (N + 1, H), refreshed row by row on Item-LLM steps

    def _encode_catalogue(self) -> Tensor:
        if self.lower is not None:  # partial: the top layers over the cached bottom states (= ItemLLM.pooled)
            return self._top_states()
        return catalogue_states(self.model, self.tokenizer, self.items.to_dict("records"))

    @torch.no_grad()
    def _lower_states(self) -> Tensor:
        """(N + 1, T, H) float32 frozen bottom-layer states of the catalogue, in eval mode, once per run."""
        started = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        ids, mask = self.tokens["input_ids"], self.tokens["attention_mask"]
        lower = torch.zeros(*ids.shape, self.model.item_llm.hidden_size)  # (N + 1, T, H)
        for rows, width in length_batches(mask, ENCODE_BATCH):
            lower[rows, :width] = self.model.item_llm.lower_states(ids[rows, :width], mask[rows, :width]).float()
        self.model.train(was_training)
        logger.info(
            "cached the bottom %d Item-LLM layers for %d items %s in %.1f s",
            self.model.item_llm.split_layer,
            len(ids) - 1,
            tuple(lower.shape),
            time.perf_counter() - started,
        )
        return lower

    @torch.no_grad()
    def _top_states(self) -> Tensor:
        """(N + 1, H) item states of the whole catalogue from the cache, in eval mode (row 0: zeros)."""
        was_training = self.model.training
        self.model.eval()
        mask = self.tokens["attention_mask"]
        chunks = [torch.zeros(1, self.model.item_llm.hidden_size)]
        for start in range(1, len(mask), ENCODE_BATCH):
            rows = slice(start, start + ENCODE_BATCH)
            width = int(mask[rows].sum(dim=1).max())
            part = self.model.item_llm.pooled_from_lower(self.lower[rows, :width], mask[rows, :width])
            chunks.append(part.float())
        self.model.train(was_training)
        return torch.cat(chunks)

    def set_training_items(self, items: Tensor) -> None:
        """Draw negatives from these item indices only: the items of the training data; zero the others' id vectors.

        An item that never occurs in training would otherwise only ever be a negative, and its id vector would
        learn to push it down: exactly the cold items the text should make recommendable. Its id vector gets no
        gradient at all, so it would keep its random initialisation: it is set to zero instead (and stays zero
        under AdamW), which is what an item added after training gets at serving (`HLLMRecommender.id_vectors`)
        and what `item_id_dropout` trains the model to score: text alone.
        """
        self.negative_items = items[items > 0]
        table = self.model.item_id_embedding
        if table is not None:
            untrained = torch.ones(table.num_embeddings, dtype=torch.bool)
            untrained[self.negative_items[self.negative_items < table.num_embeddings]] = False
            with torch.no_grad():
                table.weight[untrained.to(table.weight.device)] = 0.0

    def _negatives(self) -> Tensor:
        # Uniformly sampled item ids (HLLM.md "Negatives"); index 0 is padding and never drawn.
        pool = getattr(self, "negative_items", None)
        if pool is None or len(pool) == 0:
            return torch.randint(1, self.num_items + 1, (self.config.num_negatives,))
        return pool[torch.randint(0, len(pool), (self.config.num_negatives,))]

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        items = batch["items"]  # (B, L+1), left padded
        negatives = self._negatives()  # (M,)
        # Every distinct item of the step once: its cached states, or its tokens through the Item LLM.
        distinct, inverse = torch.unique(torch.cat([items.flatten(), negatives]), return_inverse=True)
        if self.item_states is not None:
            inputs = {"item_states": self.item_states[distinct]}  # (N', H)
        elif self.lower is not None:
            inputs = {"item_states": self._partial_states(distinct)}  # (N', H)
        else:
            mask = self.tokens["attention_mask"][distinct]
            width = int(mask.sum(dim=1).max())
            inputs = {"input_ids": self.tokens["input_ids"][distinct, :width], "attention_mask": mask[:, :width]}
        # The catalogue stays on the CPU; the step's slice goes to the model's device (a GPU under DeepSpeed).
        device = self.model.device
        inputs = {name: value.to(device) for name, value in inputs.items()}
        inverse, distinct = inverse.to(device), distinct.to(device)
        output = self.model(
            **inputs,
            seq_index=inverse[: items.numel()].view(items.shape),
            seq_mask=(items != 0).long().to(device),
            neg_index=inverse[items.numel() :],
            item_ids=distinct,
            item_id_dropout=self.config.item_id_dropout,
        )
        self.collapse.check(output.stats)
        return output.loss, {k: float(v) for k, v in output.stats.items()}

    def _partial_states(self, distinct: Tensor) -> Tensor:
        """Item states of a partial-mode step: through the top layers (with gradient) on every
        ``item_refresh_every``-th step, else the last states computed for these items (no Item-LLM gradient)."""
        trains_item_llm = self.steps % self.config.item_refresh_every == 0
        self.steps += 1
        if not trains_item_llm:
            return self.stale[distinct]
        mask = self.tokens["attention_mask"][distinct]
        width = int(mask.sum(dim=1).max())
        states = self.model.item_llm.pooled_from_lower(self.lower[distinct, :width], mask[:, :width])  # (N', H)
        if self.stale is not None:
            self.stale[distinct] = states.detach().float()
        return states

    def after_step(self) -> None:
        self.model.clamp_logit_scale_()

    def recommender(self) -> HLLMRecommender:
        """The model with the catalogue's states (cached, or encoded now with the current Item LLM)."""
        states = self.item_states if self.item_states is not None else self._encode_catalogue()
        return HLLMRecommender(self.model, states, self.tokenizer)

    def export(self, out_dir: Path) -> None:
        """The model folder (`HLLMRecommender.save`), the catalogue ids and the training mode."""
        self.recommender().save(out_dir)
        (out_dir / ITEM_IDS_FILE).write_text(json.dumps(self.item_ids[1:]) + "\n")
        (out_dir / "train_mode.json").write_text(json.dumps({"mode": self.config.mode}) + "\n")
