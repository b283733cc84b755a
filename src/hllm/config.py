"""Typed configuration: one dataclass per concern, validated on construction, loaded from YAML + overrides.

A run configuration (`RunConfig`, read by `load_run_config`) is one YAML file with up to five sections:
``train:`` (`TrainConfig`), ``hllm:`` (`hllm.models.HLLMConfig` arguments), ``sasrec:`` (`SASRecConfig`),
``data:`` (`DataConfig`, the validation gate) and ``serving:`` (`ServingConfig`). ``section.key=value``
overrides (values parsed as YAML) come on top. Every section is validated when the file is read: an unknown
section or key fails with the nearest valid name, a bad value with a ``ValueError`` naming it. What a run gets
where the file is silent are the class defaults; ``hllm config show`` prints the resolved whole.

``load_config(DataConfig, "conf.yaml", ["max_text_chars=5000"])`` reads one concern alone (its section, or a
flat file): what the validate-data pipeline step uses for its overrides.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import logging
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

if TYPE_CHECKING:
    from hllm.models.configuration_hllm import HLLMConfig
    from hllm.models.sasrec import SASRecConfig

logger = logging.getLogger(__name__)

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


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def as_number(value: Any) -> Any:
    """Numbers YAML 1.1 leaves as text (``1e-3``) become numbers; anything else is returned unchanged."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
        return int(text) if text.lstrip("+-").isdigit() else float(text)
    return value


def parse_scalar(text: str) -> Any:
    """A ``key=value`` value: YAML, except that numbers YAML 1.1 leaves as text (``1e-3``) become numbers."""
    return as_number(yaml.safe_load(text))


def check_keys(
    section: str,
    given: Iterable[str],
    known: Iterable[str],
    derived: Mapping[str, str] = {},
    elsewhere: Mapping[str, Iterable[str]] = {},
) -> None:
    """Raise a ``ValueError`` naming every key of ``given`` that ``section`` does not have, with the nearest valid one.

    Args:
        derived: keys that exist but are not set here, with the reason (e.g. where their value comes from).
        elsewhere: the keys of the other sections: a key that belongs to one is pointed there.
    """
    known = sorted(known)
    problems = []
    for key in sorted(given):
        if key in derived:
            problems.append(f"{section}.{key} is not set in a run config: {derived[key]}")
        elif key not in known:
            owner = next((other for other, keys in elsewhere.items() if key in keys), None)
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{owner}.{key}'?)" if owner else f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"unknown {section} key '{key}'{hint}")
    if problems:
        raise ValueError("; ".join(problems) + f". Valid {section} keys: {', '.join(known)}")


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
    values = {k: as_number(v) for k, v in values.items()}
    check_keys(section, values, (f.name for f in dataclasses.fields(cls)))  # type: ignore[arg-type]
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
            ``partial_layers`` Item-LLM layers, the ``[ITEM]`` vector and the projection trainable; the frozen
            bottom layers' states of every item are computed once and cached, and ``[ITEM]`` joins at the input
            of the first trainable layer: ``hllm.item_token_layers``).
        item_refresh_every: ``partial`` mode: the Item LLM's top layers train on every this-many-th step; the steps
            between read each item's states as last computed, without Item-LLM gradient (1: every step).
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
    item_refresh_every: int = 1
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
        positive = ("max_seq_len", "epochs", "batch_size", "grad_accum", "num_negatives", "eval_every")
        for name in (*positive, "item_refresh_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if not 0.0 <= self.item_id_dropout < 1.0:
            problems.append(f"item_id_dropout={self.item_id_dropout} (must be in [0, 1))")
        if self.partial_layers < 1:
            problems.append(f"partial_layers={self.partial_layers} (must be >= 1)")
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


INDEX_KINDS = ("auto", "exact", "faiss", "ivf", "hnsw")  # hllm.index builds these (faiss = hnsw)


@dataclasses.dataclass
class ServingConfig:
    """What the HTTP service needs besides the model (the model folder carries everything about the model).

    ``hllm serve`` passes these to the service as the ``HLLM_*`` environment variables it reads (`to_env`).

    Attributes:
        index: item index: ``auto`` (the one stored with the model, built by the pipeline), ``exact``, ``hnsw``
            (``faiss``) or ``ivf`` (built at start; see `hllm.index`).
        torch_threads: torch/faiss threads per request (requests already run concurrently).
        max_body_bytes: larger request bodies are refused with 413 before they reach the API.
        request_log: JSONL request log for drift checks; ``null`` for none.
        workers: server worker processes; each runs one request at a time on ``torch_threads`` threads, so one
            per CPU core (the manifests give a pod as many CPUs as workers).
        max_in_flight: API requests one worker holds at once (running or waiting); more are shed with 503 and
            ``Retry-After`` instead of queueing into timeouts (`serving/admission.py`).
        user_llm: ``fast`` (`hllm.models.fast_user`, used when the backbone allows it and its outputs match the
            module's at start) or ``eager`` (the transformers module: the reference).
    """

    index: str = "auto"
    torch_threads: int = 1
    max_body_bytes: int = 1 << 20
    request_log: str | None = "runs/requests.jsonl"
    workers: int = 1
    max_in_flight: int = 8
    user_llm: str = "fast"

    def __post_init__(self) -> None:
        problems = []
        if self.index not in INDEX_KINDS:
            problems.append(f"index={self.index!r} (expected one of {INDEX_KINDS})")
        if self.user_llm not in ("fast", "eager"):
            problems.append(f"user_llm={self.user_llm!r} (expected fast or eager)")
        for name in ("torch_threads", "max_body_bytes", "workers", "max_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r} (must be an integer >= 1)")
        if self.request_log is not None and not (isinstance(self.request_log, str) and self.request_log):
            problems.append(f"request_log={self.request_log!r} (a file path, or null)")
        if problems:
            raise ValueError("invalid ServingConfig: " + "; ".join(problems))

    def to_env(self) -> dict[str, str]:
        """The environment variables `serving/service.py` reads."""
        env = {
            "HLLM_INDEX": self.index,
            "HLLM_TORCH_THREADS": str(self.torch_threads),
            "HLLM_MAX_BODY_BYTES": str(self.max_body_bytes),
            "HLLM_WORKERS": str(self.workers),
            "HLLM_MAX_IN_FLIGHT": str(self.max_in_flight),
            "HLLM_USER_LLM": self.user_llm,
        }
        if self.request_log:
            env["HLLM_REQUEST_LOG"] = str(Path(self.request_log).resolve())
        return env


SECTIONS = ("train", "hllm", "sasrec", "data", "serving")
# Model-config fields a run config does not set: each follows from one other setting or from the catalogue, and
# is written into the saved model, which serving reads (the history length the Predictor uses, for one).
DERIVED = {
    "hllm": {
        "max_seq_len": "it is train.max_seq_len",
        "num_item_ids": "it is the catalogue size + 1, set when the model is built",
        "item_token_layers": "it is train.partial_layers in partial mode, else 0",
    },
    "sasrec": {
        "max_seq_len": "it is train.max_seq_len",
        "num_items": "it is the catalogue size, set when the model is built",
    },
}
BACKBONE_KEYS = ("item_backbone", "user_backbone")


def hllm_keys() -> list[str]:
    """The keys of the ``hllm`` section: `HLLMConfig`'s own arguments (not ``PretrainedConfig``'s), less `DERIVED`."""
    from hllm.models.configuration_hllm import HLLMConfig

    params = inspect.signature(HLLMConfig.__init__).parameters.values()
    names = [p.name for p in params if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    return [n for n in names if n not in DERIVED["hllm"]]


def sasrec_keys() -> list[str]:
    from hllm.models.sasrec import SASRecConfig

    return [f.name for f in dataclasses.fields(SASRecConfig) if f.name not in DERIVED["sasrec"]]


def default_hllm_config(max_seq_len: int = 50, **values: Any) -> HLLMConfig:
    """The ``hllm`` section as an `HLLMConfig`; a backbone given neither a folder nor a config dict is the offline
    all-MiniLM-L6-v2 (resolved here, so that ``hllm config show`` prints the folder)."""
    from hllm.models.configuration_hllm import HLLMConfig
    from hllm.models.modeling_hllm import default_backbone_path

    for key in BACKBONE_KEYS:
        if not values.get(key) and not values.get(f"{key}_config"):
            values[key] = default_backbone_path()
    return HLLMConfig(**values, max_seq_len=max_seq_len)


@dataclasses.dataclass
class RunConfig:
    """Everything one run reads: how to train, both model architectures, the data gate and serving.

    ``hllm.max_seq_len`` and ``sasrec.max_seq_len`` are set from ``train.max_seq_len`` here (one setting), and the
    model saved by training carries them. The catalogue sizes (``hllm.num_item_ids``, ``sasrec.num_items``) are
    0 until `hllm.training.build.build_task` sizes the model.
    """

    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    hllm: HLLMConfig = dataclasses.field(default_factory=default_hllm_config)
    sasrec: SASRecConfig = dataclasses.field(default_factory=lambda: _sasrec_config())
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    serving: ServingConfig = dataclasses.field(default_factory=ServingConfig)

    def __post_init__(self) -> None:
        self.hllm.max_seq_len = self.train.max_seq_len
        # partial: the frozen bottom layers read the text alone (cached), [ITEM] joins the trainable top layers.
        self.hllm.item_token_layers = self.train.partial_layers if self.train.mode == "partial" else 0
        self.sasrec = dataclasses.replace(self.sasrec, max_seq_len=self.train.max_seq_len)
        if self.train.model == "hllm" and self.train.mode == "cached" and self.hllm.item_pooling == "item_token":
            logger.warning(
                "train.mode=cached keeps the [ITEM] vector of hllm.item_pooling=item_token at its random init: "
                "items may all get nearly one vector (the collapse detector then stops training); "
                "hllm.item_pooling=mean is the cached recipe"
            )

    def to_dict(self, portable: bool = False) -> dict[str, Any]:
        """Every setting, by section (what ``hllm config show`` prints and ``run_config.json`` holds).

        Args:
            portable: write a default backbone as ``""`` instead of this machine's folder of it, so that another
                machine (a pipeline pod) resolves its own.
        """
        hllm = {k: copy.deepcopy(getattr(self.hllm, k)) for k in hllm_keys()}
        if portable:
            from hllm.models.modeling_hllm import default_backbone_path

            for key in BACKBONE_KEYS:
                if hllm[key] == default_backbone_path():
                    hllm[key] = ""
        return {
            "train": dataclasses.asdict(self.train),
            "hllm": hllm,
            "sasrec": {k: getattr(self.sasrec, k) for k in sasrec_keys()},
            "data": dataclasses.asdict(self.data),
            "serving": dataclasses.asdict(self.serving),
        }

    def to_yaml(self, portable: bool = True) -> str:
        """YAML that `load_run_config` reads back to an equal config (how pipelines pass a config around)."""
        return yaml.safe_dump(self.to_dict(portable=portable), sort_keys=False)


def _sasrec_config(**values: Any) -> SASRecConfig:
    from hllm.models.sasrec import SASRecConfig

    return SASRecConfig(num_items=0, **values)


def run_config_from_dict(values: Mapping[str, Mapping[str, Any]]) -> RunConfig:
    """Check and build every section of ``values`` (``{section: {key: value}}``)."""
    unknown_sections(values)
    sections = {s: {k: as_number(v) for k, v in (values.get(s) or {}).items()} for s in SECTIONS}
    keys = {s: _section_keys(s) for s in SECTIONS}
    for name in SECTIONS:
        others = {s: k for s, k in keys.items() if s != name}
        check_keys(name, sections[name], keys[name], DERIVED.get(name, {}), others)
    train = TrainConfig(**sections["train"])
    return RunConfig(
        train=train,
        hllm=default_hllm_config(train.max_seq_len, **sections["hllm"]),
        sasrec=_sasrec_config(max_seq_len=train.max_seq_len, **sections["sasrec"]),
        data=DataConfig(**sections["data"]),
        serving=ServingConfig(**sections["serving"]),
    )


def unknown_sections(values: Mapping[str, Any], where: str = "run config") -> None:
    """Raise naming each top-level key that is no section, with the nearest section (or ``section.key``)."""
    problems = []
    for name in sorted(set(values) - set(SECTIONS)):
        owner = next((s for s in SECTIONS if name in _section_keys(s)), None)
        close = difflib.get_close_matches(name, SECTIONS, n=1)
        hint = f" (did you mean '{owner}.{name}'?)" if owner else f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(f"unknown section '{name}'{hint}")
    if problems:
        raise ValueError(f"{where}: " + "; ".join(problems) + f". Sections: {', '.join(SECTIONS)}")


def _section_keys(section: str) -> list[str]:
    classes = {"train": TrainConfig, "data": DataConfig, "serving": ServingConfig}
    if section in classes:
        return [f.name for f in dataclasses.fields(classes[section])]
    return hllm_keys() if section == "hllm" else sasrec_keys()


def load_run_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    text: str | None = None,
    bare_section: str = "train",
) -> RunConfig:
    """Read the YAML sections (from ``path``, or from ``text``), apply ``section.key=value`` overrides, validate.

    Args:
        overrides: ``section.key=value`` strings, values parsed as YAML; ``section.key.sub=value`` sets one entry
            of a mapping value (e.g. ``hllm.user_backbone_config.hidden_size=64``).
        bare_section: the section a ``key=value`` without one goes to.

    Raises:
        ValueError: unknown sections or keys (with the nearest valid name), malformed overrides, invalid values.
    """
    values: dict[str, dict[str, Any]] = {}
    if path is not None or text:
        where = str(path) if path is not None else "run config"
        loaded = yaml.safe_load(text if text else Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{where}: expected a mapping with sections {list(SECTIONS)}")
        unknown_sections(loaded, where)
        for section, body in loaded.items():
            if body is not None and not isinstance(body, dict):
                raise ValueError(f"{where}: section '{section}' must be a mapping of key: value")
            values[section] = dict(body or {})
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' is not of the form key=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] not in SECTIONS:
            if len(parts) > 1:
                unknown_sections({parts[0]: None}, f"override '{item}'")
            parts = [bare_section, *parts]
        if len(parts) < 2 or not all(parts):
            raise ValueError(f"override '{item}': expected section.key=value")
        target = values.setdefault(parts[0], {})
        for name in parts[1:-1]:
            if not isinstance(target.get(name), dict):
                target[name] = {}
            target = target[name]
        target[parts[-1]] = parse_scalar(raw)
    return run_config_from_dict(values)
