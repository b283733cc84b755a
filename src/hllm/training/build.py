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

import yaml

from hllm.config import TrainConfig, parse_scalar
from hllm.data.schema import Dataset
from hllm.data.splits import leave_one_out
from hllm.training.data import ItemVocab, eval_set, train_sequences

logger = logging.getLogger(__name__)
SECTIONS = ("train", "hllm", "sasrec")


@dataclass
class RunConfig:
    train: TrainConfig
    hllm: dict[str, Any] = field(default_factory=dict)
    sasrec: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"train": dataclasses.asdict(self.train), "hllm": self.hllm, "sasrec": self.sasrec}


def load_run_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read the YAML sections and apply ``section.key=value`` overrides.

    Raises:
        ValueError: unknown sections or TrainConfig keys, malformed overrides, invalid values.
    """
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
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


def build_task(run: RunConfig, dataset: Dataset, vocab: ItemVocab):
    """The `RecTask` for ``run.train.model`` over ``dataset``'s catalogue."""
    if run.train.model == "sasrec":
        from hllm.models.sasrec import SASRecConfig
        from hllm.training.tasks import SASRecTask

        config = SASRecConfig(num_items=vocab.num_items, **{"max_seq_len": run.train.max_seq_len, **run.sasrec})
        return SASRecTask(config, vocab.ids)
    from hllm.models import HLLM, HLLMConfig, default_backbone_path, load_item_tokenizer
    from hllm.training.hllm_task import HLLMTask, catalogue_tokens

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
    model = HLLM(HLLMConfig(**kwargs))
    tokenizer = load_item_tokenizer(kwargs.get("item_backbone") or default_backbone_path())
    model.set_gradient_checkpointing(run.train.gradient_checkpointing)
    return HLLMTask(model, catalogue_tokens(dataset.items, tokenizer, model), vocab.ids, run.train, tokenizer)


def run_training(dataset: Dataset, run: RunConfig, out_dir: str | Path, *, resume: bool = False, progress: bool = True):
    """Leave-one-out split -> task -> DeepSpeed training; writes ``run_config.json`` beside the artifacts."""
    from hllm.training.trainer import seed_everything, train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "run_config.json").write_text(json.dumps(run.to_dict(), indent=2, default=str) + "\n")
    seed_everything(run.train.seed)
    split = leave_one_out(dataset.interactions)
    vocab = ItemVocab.from_items(dataset.items)
    task = build_task(run, dataset, vocab)
    return train(
        task,
        train_sequences(split, vocab),
        eval_set(split, vocab, "valid"),
        run.train,
        out,
        resume=resume,
        show_progress=progress,
    )
