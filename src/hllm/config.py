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


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ValueError(f"override '{item}' is not of the form key=value")
    key, value = item.split("=", 1)
    return key.strip().split("."), yaml.safe_load(value)


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
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; known: {sorted(known)}")
    return cls(**values)
