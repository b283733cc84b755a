"""HLLM as a `RecTask`: the three training modes over one `hllm.models.HLLM`.

- ``cached``: the Item LLM is frozen and the whole catalogue is encoded once; each step runs only the User LLM
  over cached item vectors (the serving recipe; HLLM.md "HLLM-1B_cache"). The sensible CPU default.
- ``end_to_end``: both LLMs train; each step encodes its distinct items (histories, targets and the negative
  pool) once through the Item LLM, so gradients reach it through inputs, positives and negatives (the paper).
- ``partial``: like ``end_to_end`` but only the top ``partial_layers`` Item-LLM layers, the ``[ITEM]`` vector
  and the projection train.

Scoring is cosine (the loss's metric): `similarity = "cosine"` makes evaluation L2-normalise both sides.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor

from hllm.config import TrainConfig
from hllm.models.loss import CollapseDetector, generative_infonce
from hllm.models.modeling_hllm import HLLM
from hllm.models.text import tokenize_items

logger = logging.getLogger(__name__)
ENCODE_BATCH = 128
VECTORS_FILE = "item_vectors.safetensors"


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
    # trains in every mode; in cached mode it is applied to the cached backbone vectors.
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
    """Training, scoring and export of an `HLLM` (see the module docstring for the modes)."""

    name = "hllm"
    similarity = "cosine"

    def __init__(
        self,
        model: HLLM,
        tokens: dict[str, Tensor] | None,
        item_ids: list[str],
        config: TrainConfig,
        tokenizer=None,
        cache: Tensor | None = None,
    ) -> None:
        self.model = model
        self.tokens = tokens
        self.item_ids = item_ids  # index -> id, index 0 padding
        self.config = config
        self.tokenizer = tokenizer
        self.num_items = len(item_ids) - 1
        self.collapse = CollapseDetector(min_fraction=config.collapse_fraction, patience=3)
        if model.config.item_id_in_target and config.mode != "cached":
            raise ValueError("item_id_in_target is supported in cached mode only")
        _trainable_layers(model, config.mode, config.partial_layers)
        self.cache: Tensor | None = cache
        if config.mode == "cached" and cache is None:
            self.cache = self.encode_catalogue()  # (N + 1, D), fixed for the whole run

    @torch.no_grad()
    def encode_catalogue(self, show_progress: bool = False) -> Tensor:
        """(N + 1, H) Item LLM backbone vectors of every item, before the projection (row 0 = padding, zeros)."""
        from tqdm.auto import tqdm

        if self.tokens is None:
            raise ValueError("no item texts to encode: pass the items table (or load precomputed item vectors)")
        was_training = self.model.training
        self.model.eval()
        ids, mask = self.tokens["input_ids"], self.tokens["attention_mask"]
        chunks = []
        for start in tqdm(range(1, len(ids), ENCODE_BATCH), desc="embed items", disable=not show_progress):
            part = slice(start, start + ENCODE_BATCH)
            width = int(mask[part].sum(dim=1).max())
            chunks.append(self.model.item_llm.pooled(ids[part, :width], mask[part, :width]).float())
        self.model.train(was_training)
        vectors = torch.cat(chunks)
        return torch.cat([torch.zeros(1, vectors.shape[1]), vectors])

    def set_training_items(self, items: Tensor) -> None:
        """Draw negatives from these item indices only: the items of the training data.

        An item that never occurs in training would otherwise only ever be a negative, and its id vector would
        learn to push it down: exactly the cold items the text should make recommendable.
        """
        self.negative_items = items[items > 0]

    def _negatives(self) -> Tensor:
        # Uniformly sampled item ids (HLLM.md "Negatives"); index 0 is padding and never drawn.
        pool = getattr(self, "negative_items", None)
        if pool is None or len(pool) == 0:
            return torch.randint(1, self.num_items + 1, (self.config.num_negatives,))
        return pool[torch.randint(0, len(pool), (self.config.num_negatives,))]

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        items = batch["items"]  # (B, L+1), left padded
        real = items != 0
        negatives = self._negatives()
        use_ids = self.model.config.use_item_id_embedding
        if self.cache is not None:
            sequence = self._represent(self.cache[items], items)  # (B, L+1, D)
            user = self._forward_user(sequence[:, :-1], items[:, :-1])
            result = generative_infonce(
                user,
                sequence[:, 1:],
                self._represent(self.cache[negatives], negatives),
                real[:, :-1] & real[:, 1:],
                self.model.logit_scale,
                logit_scale_min=self.model.config.logit_scale_min,
                logit_scale_max=self.model.config.logit_scale_max,
                false_negative_threshold=self.model.config.false_negative_threshold,
            )
            loss, stats = result.loss, result.stats
        else:
            distinct, inverse = torch.unique(torch.cat([items.flatten(), negatives]), return_inverse=True)
            mask = self.tokens["attention_mask"][distinct]
            width = int(mask.sum(dim=1).max())
            output = self.model(
                input_ids=self.tokens["input_ids"][distinct, :width],
                attention_mask=mask[:, :width],
                seq_index=inverse[: items.numel()].view_as(items),
                seq_mask=real.long(),
                neg_index=inverse[items.numel() :],
                item_ids=items if use_ids else None,
            )
            loss, stats = output.loss, output.stats
        self.collapse.check(stats)
        return loss, {k: float(v) for k, v in stats.items()}

    def _represent(self, pooled: Tensor, ids: Tensor) -> Tensor:
        """Item vectors as scored, from backbone vectors: projected, plus the id embedding if ``item_id_in_target``."""
        vectors = self.model.item_llm.proj(pooled)
        if not self.model.config.item_id_in_target:
            return vectors
        id_vectors = self.model.item_id_embedding(ids)
        if self.model.training and self.config.item_id_dropout > 0:
            keep = torch.rand(ids.shape, device=ids.device) >= self.config.item_id_dropout
            id_vectors = id_vectors * keep.unsqueeze(-1).to(id_vectors.dtype)
        return vectors + id_vectors

    def _forward_user(self, sequence: Tensor, ids: Tensor) -> Tensor:
        """User LLM over represented item vectors; the id embedding is added here only if not already in."""
        config = self.model.config
        add_ids = config.use_item_id_embedding and not config.item_id_in_target
        return self.model.forward_user(sequence, (ids != 0).long(), item_ids=ids if add_ids else None)

    def after_step(self) -> None:
        self.model.clamp_logit_scale_()

    @torch.no_grad()
    def item_vectors(self) -> Tensor:
        vectors = self.cache if self.cache is not None else self.encode_catalogue()
        return self._represent(vectors, torch.arange(len(vectors)))

    @torch.no_grad()
    def user_vectors(self, histories: Tensor, item_vectors: Tensor) -> Tensor:
        """Last User-LLM output for (B, L) left-padded histories, given the (N + 1, D) `item_vectors`."""
        return self._forward_user(item_vectors[histories], histories)[:, -1].float()

    def export(self, out_dir: Path) -> None:
        """``save_pretrained`` (safetensors + config), the tokenizer, the catalogue ids and item vectors."""
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(out_dir), safe_serialization=True)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(out_dir))
        (out_dir / "item_ids.json").write_text(json.dumps(self.item_ids[1:]) + "\n")
        raw = self.cache if self.cache is not None else self.encode_catalogue()  # backbone vectors, pre-projection
        save_file({"vectors": raw.float().contiguous()}, str(out_dir / VECTORS_FILE))
        (out_dir / "train_mode.json").write_text(json.dumps({"mode": self.config.mode}) + "\n")


def load_hllm_task(folder: Path, items: pd.DataFrame | None = None) -> HLLMTask:
    """An exported HLLM ready for inference; item vectors from the folder, else encoded from ``items``."""
    from safetensors.torch import load_file

    from hllm.models.text import load_item_tokenizer

    model = HLLM.from_pretrained(str(folder))
    model.eval()
    tokenizer = load_item_tokenizer(str(folder)) if (folder / "tokenizer_config.json").is_file() else None
    item_ids = ["<pad>", *json.loads((folder / "item_ids.json").read_text())]
    tokens = None
    if items is not None and tokenizer is not None:
        order = items.set_index("item_id").loc[item_ids[1:]].reset_index()
        tokens = catalogue_tokens(order, tokenizer, model)
    cache = load_file(str(folder / VECTORS_FILE))["vectors"] if (folder / VECTORS_FILE).is_file() else None
    if cache is None and tokens is None:
        raise ValueError(f"{folder}: no {VECTORS_FILE} and no items table to compute item vectors from")
    return HLLMTask(model, tokens, item_ids, TrainConfig(mode="cached"), tokenizer, cache=cache)
