"""Typed configuration: one dataclass per concern, validated on construction, loaded from YAML + overrides.

``load_config(DataConfig, "conf.yaml", ["validation.max_text_chars=5000"])`` reads the YAML mapping (the whole
file, or the section named after the concern, e.g. ``data:``), applies ``key=value`` overrides (values parsed
as YAML scalars) and builds the dataclass, whose ``__post_init__`` raises ``ValueError`` naming bad values.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# 1990-01-01T00:00:00Z: older "interaction" timestamps are almost always parsing or unit errors.
DEFAULT_MIN_TIMESTAMP = 631_152_000


@dataclasses.dataclass
class DataConfig:
    """What the validation gate accepts.

    Attributes:
        min_interactions_per_user: users with fewer accepted interactions are rejected (leave-one-out needs 3).
        min_timestamp: smallest accepted unix timestamp (seconds).
        max_timestamp: largest accepted unix timestamp; ``None`` means one day after the validation time.
        max_text_chars: an item whose title+tag+description is longer is rejected (garbage or a broken file).
        max_id_chars: longest accepted user or item id.
        max_quarantine_fraction: with the quarantine policy, fail anyway when a larger share of either table
            is rejected: that is a broken source, not a few bad rows.
    """

    min_interactions_per_user: int = 3
    min_timestamp: int = DEFAULT_MIN_TIMESTAMP
    max_timestamp: int | None = None
    max_text_chars: int = 20_000
    max_id_chars: int = 256
    max_quarantine_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.min_interactions_per_user < 3:
            raise ValueError(
                f"min_interactions_per_user={self.min_interactions_per_user}: must be >= 3 "
                "(leave-one-out needs a training item, a validation item and a test item)"
            )
        if self.max_timestamp is not None and self.max_timestamp <= self.min_timestamp:
            raise ValueError(f"max_timestamp={self.max_timestamp} must be > min_timestamp={self.min_timestamp}")
        if self.max_text_chars < 1 or self.max_id_chars < 1:
            raise ValueError(f"max_text_chars={self.max_text_chars} and max_id_chars={self.max_id_chars} must be >= 1")
        if not 0.0 <= self.max_quarantine_fraction <= 1.0:
            raise ValueError(f"max_quarantine_fraction={self.max_quarantine_fraction} must be in [0, 1]")

    def resolved_max_timestamp(self) -> int:
        """The upper timestamp bound in force now."""
        return self.max_timestamp if self.max_timestamp is not None else int(time.time()) + 86_400


def parse_scalar(text: str) -> Any:
    """A ``key=value`` value: YAML, except that numbers YAML 1.1 leaves as text (``1e-3``) become numbers."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        for number in (int, float):
            try:
                return number(value)
            except ValueError:
                pass
    return value


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"override '{item}' is not of the form key=value")
    key, value = item.split("=", 1)
    return key.strip().split("."), parse_scalar(value)


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Build ``cls`` from an optional YAML file and ``key=value`` overrides.

    Args:
        cls: the config dataclass.
        path: YAML file; if its top level has a key named like the concern (``DataConfig`` -> ``data``),
            that section is used.
        overrides: ``key=value`` strings; a leading ``<concern>.`` is accepted and ignored.

    Raises:
        ValueError: unknown keys (named), malformed overrides, or values the dataclass rejects.
    """
    section = cls.__name__.removesuffix("Config").lower()
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a YAML mapping at the top level")
        values = dict(loaded.get(section, loaded)) if isinstance(loaded.get(section), dict) else dict(loaded)
    for item in overrides or []:
        keys, value = _parse_override(item)
        if keys[0] == section and len(keys) > 1:
            keys = keys[1:]
        if len(keys) != 1:
            raise ValueError(f"override '{item}': nested keys are not supported for {cls.__name__}")
        values[keys[0]] = value
    values = {k: parse_scalar(v) if isinstance(v, str) else v for k, v in values.items()}
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)


MODES = ("cached", "end_to_end", "partial")
MODELS = ("hllm", "sasrec")


@dataclasses.dataclass
class TrainConfig:
    """How a recommender is trained. The DeepSpeed JSON is generated from it (`deepspeed_config`).

    Attributes:
        model: ``hllm`` or ``sasrec`` (the ID baseline).
        mode: HLLM training mode: ``cached`` (Item LLM frozen, item vectors computed once: the serving recipe
            and the CPU default), ``end_to_end`` (both LLMs trainable, the paper) or ``partial`` (the top
            ``partial_layers`` Item-LLM layers trainable).
        max_seq_len: items of history the user model reads (windows of ``max_seq_len + 1`` for training).
        epochs: upper bound; early stopping usually ends sooner.
        batch_size: micro-batch of user windows per process.
        grad_accum: gradient accumulation steps.
        lr, weight_decay, warmup_ratio: AdamW with linear warmup then cosine decay to 0 (HLLM.md).
        num_negatives: size of the shared negative pool per step (per process, before gathering).
        zero_stage: DeepSpeed ZeRO stage 0-3.
        precision: ``auto`` (bf16 where the accelerator supports it, else fp32), ``bf16`` or ``fp32``.
        gradient_checkpointing: recompute activations in the backward pass to save memory.
        eval_every: validate every this many epochs; early stopping counts validations.
        patience: stop after this many validations without improvement of ``select_metric``.
        select_metric: validation metric used for early stopping and model selection.
        max_minutes: wall-clock budget for training; ``None`` for no limit.
        collapse_fraction: stop when unmasked negatives per row fall below this fraction of the pool.
        item_id_dropout: in training, drop an item's id vector with this probability (HLLM with
            ``item_id_in_target``), so the model also learns to score items by their text alone: items never
            seen in training (cold items) have no trained id vector.
        seed: seeds python, numpy and torch.
    """

    model: str = "hllm"
    mode: str = "cached"
    partial_layers: int = 1
    max_seq_len: int = 50
    epochs: int = 5
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    num_negatives: int = 512
    zero_stage: int = 0
    precision: str = "auto"
    gradient_checkpointing: bool = False
    eval_every: int = 1
    patience: int = 3
    select_metric: str = "ndcg@200"
    eval_batch_size: int = 256
    max_minutes: float | None = None
    collapse_fraction: float = 0.05
    item_id_dropout: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.model not in MODELS:
            problems.append(f"model={self.model!r} (expected one of {MODELS})")
        if self.mode not in MODES:
            problems.append(f"mode={self.mode!r} (expected one of {MODES})")
        if self.precision not in ("auto", "bf16", "fp32"):
            problems.append(f"precision={self.precision!r} (expected auto, bf16 or fp32)")
        if self.zero_stage not in (0, 1, 2, 3):
            problems.append(f"zero_stage={self.zero_stage} (expected 0-3)")
        for name in ("max_seq_len", "epochs", "batch_size", "grad_accum", "num_negatives", "eval_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if not 0.0 <= self.item_id_dropout < 1.0:
            problems.append(f"item_id_dropout={self.item_id_dropout} (must be in [0, 1))")
        if self.partial_layers < 0:
            problems.append(f"partial_layers={self.partial_layers} (must be >= 0)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(f"warmup_ratio={self.warmup_ratio} (must be in [0, 1))")
        if self.lr <= 0:
            problems.append(f"lr={self.lr} (must be > 0)")
        if (
            self.select_metric.split("@")[0] not in ("ndcg", "recall")
            or not self.select_metric.split("@")[-1].isdigit()
        ):
            problems.append(f"select_metric={self.select_metric!r} (expected ndcg@K or recall@K)")
        if self.max_minutes is not None and self.max_minutes <= 0:
            problems.append(f"max_minutes={self.max_minutes} (must be > 0)")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))


def deepspeed_config(config: TrainConfig, total_steps: int, bf16: bool) -> dict[str, Any]:
    """The DeepSpeed JSON for ``config``: the only place DeepSpeed settings are decided.

    The optimizer is a torch AdamW passed to ``deepspeed.initialize`` (no FusedAdam/CPUAdam JIT build), the
    schedule DeepSpeed's ``WarmupCosineLR`` (linear warmup, cosine decay to 0).
    """
    warmup = max(1, int(total_steps * config.warmup_ratio))  # DeepSpeed requires at least one warmup step
    return {
        "train_micro_batch_size_per_gpu": config.batch_size,
        "gradient_accumulation_steps": config.grad_accum,
        "gradient_clipping": config.max_grad_norm,
        "zero_optimization": {"stage": config.zero_stage},
        "zero_allow_untested_optimizer": True,
        "bf16": {"enabled": bf16},
        "scheduler": {
            "type": "WarmupCosineLR",
            "params": {
                "total_num_steps": max(total_steps, 1),
                "warmup_num_steps": warmup,
                "warmup_min_ratio": 0.0,
                "cos_min_ratio": 0.0,
                "warmup_type": "linear",
            },
        },
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
