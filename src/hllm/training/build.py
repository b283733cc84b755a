"""From a run configuration and a dataset to a ready `RecTask`, and the `hllm train` job itself.

The run configuration (`hllm.config.RunConfig`, read by `load_run_config`) is typed and validated when read;
here it only meets the catalogue: the model configs get their catalogue size, nothing else is decided here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hllm.config import RunConfig, load_run_config
from hllm.data.schema import Dataset
from hllm.data.splits import leave_one_out
from hllm.training.data import ItemVocab, eval_set, item_popularity, train_sequences

__all__ = ["RunConfig", "build_task", "encode_item_texts", "load_item_texts", "load_run_config", "run_training"]
logger = logging.getLogger(__name__)


def hllm_model_config(run: RunConfig, vocab: ItemVocab):  # -> HLLMConfig
    """``run.hllm`` sized for this catalogue (a copy: building the model fills in the backbone configs)."""
    config = copy.deepcopy(run.hllm)
    if config.use_item_id_embedding:
        config.num_item_ids = vocab.num_items + 1
    return config


# What decides an Item-LLM text vector: precomputed vectors are only reused when all of these agree.
ITEM_SIDE_KEYS = (
    "item_backbone",
    "item_backbone_config",
    "item_pooling",
    "item_prompt",
    "max_text_tokens",
    "text_fields",
    "text_separator",
)


def item_side_settings(run: RunConfig, vocab: ItemVocab | None = None) -> dict[str, Any]:
    """The settings of ``run`` that determine the cached item text vectors (JSON-able)."""
    return json.loads(json.dumps({k: getattr(run.hllm, k) for k in ITEM_SIDE_KEYS}, default=str))


def build_task(run: RunConfig, dataset: Dataset, vocab: ItemVocab, text_vectors: str | Path | None = None):
    """The `RecTask` for ``run.train.model`` over ``dataset``'s catalogue.

    Args:
        text_vectors: a folder written by `encode_item_texts` (cached HLLM only): its item text states are used
            instead of encoding the catalogue again; they must come from the same catalogue and Item-LLM settings.
    """
    if run.train.model == "sasrec":
        from hllm.training.tasks import SASRecTask

        return SASRecTask(dataclasses.replace(run.sasrec, num_items=vocab.num_items), vocab.ids)
    from hllm.models import HLLM, load_item_tokenizer
    from hllm.training.hllm_task import HLLMTask

    model = HLLM(hllm_model_config(run, vocab))
    tokenizer = load_item_tokenizer(_tokenizer_folder(run))
    model.set_gradient_checkpointing(run.train.gradient_checkpointing)
    states = None
    if text_vectors is not None:
        if run.train.mode == "cached":
            states = load_item_texts(text_vectors, vocab, item_side_settings(run))
        else:
            logger.info("%s mode trains the Item LLM: precomputed item text states are not used", run.train.mode)
    return HLLMTask(model, tokenizer, dataset.items, vocab.ids, run.train, item_states=states)


def _tokenizer_folder(run: RunConfig) -> str:
    """The item tokenizer's folder: the Item LLM's checkpoint, else (a config-dict backbone) the offline MiniLM's."""
    from hllm.models import default_backbone_path

    return run.hllm.item_backbone or default_backbone_path()


TEXT_STATES_MANIFEST_FILE = "item_text_states.json"


def encode_item_texts(run: RunConfig, dataset: Dataset, out_dir: str | Path, *, show_progress: bool = False) -> Path:
    """Encode every catalogue item with the (frozen) Item LLM of ``run``; the states cached training reads.

    Writes ``item_text_states.safetensors`` ((N + 1, H) backbone states before the projection, row 0 padding)
    and ``item_text_states.json`` (item ids in row order and the Item-LLM settings), and returns the folder.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from hllm.models import HLLM, load_item_tokenizer
    from hllm.models.recommender import ITEM_TEXT_STATES_FILE, catalogue_states

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ItemVocab.from_items(dataset.items)
    if run.train.model != "hllm":
        manifest = {"skipped": f"model {run.train.model} reads no text"}
        (out / TEXT_STATES_MANIFEST_FILE).write_text(json.dumps(manifest))
        return out
    model = HLLM(hllm_model_config(run, vocab))
    tokenizer = load_item_tokenizer(_tokenizer_folder(run))
    with tqdm(total=vocab.num_items, desc="embed items", disable=not show_progress) as bar:
        states = catalogue_states(
            model, tokenizer, dataset.items.to_dict("records"), progress=lambda done, _: bar.update(done - bar.n)
        )
    save_file({"states": states.contiguous()}, str(out / ITEM_TEXT_STATES_FILE))
    manifest = {"item_ids": vocab.ids[1:], "settings": item_side_settings(run), "dim": int(states.shape[1])}
    (out / TEXT_STATES_MANIFEST_FILE).write_text(json.dumps(manifest) + "\n")
    logger.info("encoded %d items (%d-dim) to %s", vocab.num_items, states.shape[1], out)
    return out


def load_item_texts(folder: str | Path, vocab: ItemVocab, settings: dict[str, Any]):
    """The states of `encode_item_texts`, checked against this catalogue and these Item-LLM settings."""
    from safetensors.torch import load_file

    from hllm.models.recommender import ITEM_TEXT_STATES_FILE

    folder = Path(folder)
    if not (folder / TEXT_STATES_MANIFEST_FILE).is_file():
        raise ValueError(f"{folder}: missing {TEXT_STATES_MANIFEST_FILE}; expected the output of encode_item_texts")
    manifest = json.loads((folder / TEXT_STATES_MANIFEST_FILE).read_text())
    if "skipped" in manifest:
        raise ValueError(f"{folder}: holds no item text states ({manifest['skipped']})")
    if not (folder / ITEM_TEXT_STATES_FILE).is_file():
        raise ValueError(f"{folder}: missing {ITEM_TEXT_STATES_FILE}; the embed step did not finish")
    if manifest["item_ids"] != vocab.ids[1:]:
        raise ValueError(f"{folder}: the item text states were computed for another catalogue (item ids differ)")
    if manifest["settings"] != settings:
        changed = sorted(k for k in settings if manifest["settings"].get(k) != settings[k])
        raise ValueError(f"{folder}: item text states were computed with other Item-LLM settings: {changed}")
    states = load_file(str(folder / ITEM_TEXT_STATES_FILE))["states"]
    if states.shape[0] != len(vocab.ids):
        raise ValueError(f"{folder}: {states.shape[0]} state rows for {len(vocab.ids)} catalogue rows")
    return states


def run_training(
    dataset: Dataset,
    run: RunConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    text_vectors: str | Path | None = None,
):
    """Leave-one-out split -> task -> DeepSpeed training; writes ``run_config.json`` beside the artifacts."""
    from hllm.training.trainer import seed_everything, train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(run.to_dict(), indent=2, default=str) + "\n")
    seed_everything(run.train.seed)
    split = leave_one_out(dataset.interactions)
    vocab = ItemVocab.from_items(dataset.items)
    task = build_task(run, dataset, vocab, text_vectors)
    sequences = train_sequences(split, vocab)
    result = train(
        task,
        sequences,
        eval_set(split, vocab, "valid"),
        run.train,
        out,
        resume=resume,
        show_progress=progress,
    )
    write_popular_items(sequences, vocab, out / "model")
    return result


def write_popular_items(sequences, vocab: ItemVocab, model_dir: Path, top: int = 1000) -> None:
    """The most popular training items (most first) beside the model: the fallback for users without history."""
    counts = item_popularity(sequences, vocab.num_items)[1:]  # row 0 is padding
    order = np.argsort(-counts, kind="stable")[: min(top, int((counts > 0).sum()))]
    if model_dir.is_dir():
        (model_dir / "popular_items.json").write_text(json.dumps([vocab.ids[i + 1] for i in order]) + "\n")
