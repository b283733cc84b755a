"""From a run configuration and a dataset to a ready `RecTask`, and the `hllm train` job itself.

A run configuration is YAML with up to three sections: ``train:`` (`TrainConfig`), ``hllm:`` (`HLLMConfig`
keyword arguments) and ``sasrec:`` (`SASRecConfig` fields). Overrides are ``section.key=value`` strings; a bare
``key=value`` goes to ``train``. Backbone paths default to the offline all-MiniLM-L6-v2.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hllm.config import TrainConfig, parse_scalar
from hllm.data.schema import Dataset
from hllm.data.splits import leave_one_out
from hllm.training.data import ItemVocab, eval_set, item_popularity, train_sequences

logger = logging.getLogger(__name__)
SECTIONS = ("train", "hllm", "sasrec")


@dataclass
class RunConfig:
    train: TrainConfig
    hllm: dict[str, Any] = field(default_factory=dict)
    sasrec: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"train": dataclasses.asdict(self.train), "hllm": self.hllm, "sasrec": self.sasrec}

    def to_yaml(self) -> str:
        """YAML that `load_run_config` reads back to an equal config (how pipelines pass a config around)."""
        return yaml.safe_dump(json.loads(json.dumps(self.to_dict(), default=str)), sort_keys=False)


def load_run_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, text: str | None = None
) -> RunConfig:
    """Read the YAML sections (from ``path``, or from ``text``) and apply ``section.key=value`` overrides.

    Raises:
        ValueError: unknown sections or TrainConfig keys, malformed overrides, invalid values.
    """
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if path is not None or text:
        path = path or "run config"
        loaded = yaml.safe_load(text if text else Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping with sections {list(SECTIONS)}")
        unknown = sorted(set(loaded) - set(SECTIONS))
        if unknown:
            raise ValueError(f"{path}: unknown section(s) {unknown}; expected {list(SECTIONS)}")
        for section in SECTIONS:
            for key, value in (loaded.get(section) or {}).items():
                values[section][key] = parse_scalar(value) if isinstance(value, str) else value
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        section, _, name = key.strip().rpartition(".")
        section = section or "train"
        if section not in SECTIONS:
            raise ValueError(f"override '{item}': unknown section '{section}', expected one of {list(SECTIONS)}")
        values[section][name] = parse_scalar(raw)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values["train"]) - known)
    if unknown:
        raise ValueError(f"unknown train key(s) {unknown}; known: {sorted(known)}")
    return RunConfig(TrainConfig(**values["train"]), values["hllm"], values["sasrec"])


def _hllm_kwargs(run: RunConfig, vocab: ItemVocab) -> dict[str, Any]:
    """`HLLMConfig` keyword arguments of ``run`` with this project's defaults filled in."""
    from hllm.models import default_backbone_path

    kwargs = dict(run.hllm)
    for key in ("item_backbone", "user_backbone"):
        if not kwargs.get(key) and not kwargs.get(f"{key}_config"):
            kwargs[key] = default_backbone_path()
    if kwargs.get("use_item_id_embedding"):
        kwargs.setdefault("num_item_ids", vocab.num_items + 1)
    kwargs.setdefault("max_seq_len", run.train.max_seq_len)
    # The released code joins fields with no separator; with WordPiece that glues a value to the next field
    # name ("scifidescription"), so a space is the default here.
    kwargs.setdefault("text_separator", " ")
    if run.train.mode == "cached" and "item_pooling" not in kwargs:
        # A frozen Item LLM whose [ITEM] vector was never trained maps every item to nearly the same vector
        # (measured: mean cosine 0.99999 with a random [ITEM] slot); mean pooling keeps the text signal.
        # Cached mode after an end_to_end stage should set item_pooling: item_token explicitly.
        kwargs["item_pooling"] = "mean"
        logger.info(
            "cached mode: item_pooling=mean (the [ITEM] vector is untrained); set hllm.item_pooling to override"
        )
    if kwargs.get("item_pooling") == "mean":
        # Mean pooling averages every token, so a fixed instruction prompt is averaged into every item alike and
        # blurs them (Office, same recipe: valid NDCG@10 0.0838 with the prompt, 0.0882 without).
        kwargs.setdefault("item_prompt", "")
    return kwargs


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


def item_side_settings(run: RunConfig, vocab: ItemVocab) -> dict[str, Any]:
    """The settings of ``run`` that determine the cached item text vectors (JSON-able)."""
    return _item_settings(_hllm_kwargs(run, vocab))


def _item_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: kwargs.get(k) for k in ITEM_SIDE_KEYS}, default=str))


def build_task(run: RunConfig, dataset: Dataset, vocab: ItemVocab, text_vectors: str | Path | None = None):
    """The `RecTask` for ``run.train.model`` over ``dataset``'s catalogue.

    Args:
        text_vectors: a folder written by `encode_item_texts` (cached HLLM only): its item text states are used
            instead of encoding the catalogue again; they must come from the same catalogue and Item-LLM settings.
    """
    if run.train.model == "sasrec":
        from hllm.models.sasrec import SASRecConfig
        from hllm.training.tasks import SASRecTask

        config = SASRecConfig(num_items=vocab.num_items, **{"max_seq_len": run.train.max_seq_len, **run.sasrec})
        return SASRecTask(config, vocab.ids)
    from hllm.models import HLLM, HLLMConfig, default_backbone_path, load_item_tokenizer
    from hllm.training.hllm_task import HLLMTask

    kwargs = _hllm_kwargs(run, vocab)
    model = HLLM(HLLMConfig(**kwargs))
    tokenizer = load_item_tokenizer(kwargs.get("item_backbone") or default_backbone_path())
    model.set_gradient_checkpointing(run.train.gradient_checkpointing)
    states = None
    if text_vectors is not None:
        if run.train.mode == "cached":
            states = load_item_texts(text_vectors, vocab, _item_settings(kwargs))
        else:
            logger.info("%s mode trains the Item LLM: precomputed item text states are not used", run.train.mode)
    return HLLMTask(model, tokenizer, dataset.items, vocab.ids, run.train, item_states=states)


TEXT_STATES_MANIFEST_FILE = "item_text_states.json"


def encode_item_texts(run: RunConfig, dataset: Dataset, out_dir: str | Path, *, show_progress: bool = False) -> Path:
    """Encode every catalogue item with the (frozen) Item LLM of ``run``; the states cached training reads.

    Writes ``item_text_states.safetensors`` ((N + 1, H) backbone states before the projection, row 0 padding)
    and ``item_text_states.json`` (item ids in row order and the Item-LLM settings), and returns the folder.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from hllm.models import HLLM, HLLMConfig, default_backbone_path, load_item_tokenizer
    from hllm.models.recommender import ITEM_TEXT_STATES_FILE, catalogue_states

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = ItemVocab.from_items(dataset.items)
    if run.train.model != "hllm":
        manifest = {"skipped": f"model {run.train.model} reads no text"}
        (out / TEXT_STATES_MANIFEST_FILE).write_text(json.dumps(manifest))
        return out
    kwargs = _hllm_kwargs(run, vocab)
    model = HLLM(HLLMConfig(**kwargs))
    tokenizer = load_item_tokenizer(kwargs.get("item_backbone") or default_backbone_path())
    with tqdm(total=vocab.num_items, desc="embed items", disable=not show_progress) as bar:
        states = catalogue_states(
            model, tokenizer, dataset.items.to_dict("records"), progress=lambda done, _: bar.update(done - bar.n)
        )
    save_file({"states": states.contiguous()}, str(out / ITEM_TEXT_STATES_FILE))
    manifest = {"item_ids": vocab.ids[1:], "settings": _item_settings(kwargs), "dim": int(states.shape[1])}
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
