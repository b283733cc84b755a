"""Canonical tables and the error type every data-layer failure is reported with.

Every reader produces the same two tables:

- interactions: ``user_id`` (str), ``item_id`` (str), ``timestamp`` (int64, unix seconds), in source order;
- items: ``item_id`` (str), ``title``, ``tag``, ``description`` (str, empty when absent) plus any other
  text columns of the source, kept as they are.

Readers keep every value as text (``RawTables``); the validation gate parses and checks it, so that a bad
value is reported with its file and line instead of being silently coerced.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

INTERACTION_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp")
ITEM_TEXT_FIELDS: tuple[str, ...] = ("title", "tag", "description")
ITEM_COLUMNS: tuple[str, ...] = ("item_id", *ITEM_TEXT_FIELDS)
# Bookkeeping columns readers add: the source file and the 1-based line a record starts on.
SOURCE_COLUMN = "_source"
LINE_COLUMN = "_line"
META_COLUMNS: tuple[str, ...] = (SOURCE_COLUMN, LINE_COLUMN)

INTERACTIONS_FILE = "interactions.parquet"
ITEMS_FILE = "items.parquet"
METADATA_FILE = "dataset.json"


class DataError(ValueError):
    """Input data that cannot be used, with the place it was found.

    Args:
        message: what is wrong, in words a user can act on.
        path: the offending file or folder.
        line: 1-based line in ``path`` where the offending record starts.
        column: the offending column or field.
        examples: a few offending values or rows, shown under the message.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: str | None = None,
        examples: list[str] | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        self.examples = list(examples or [])
        where = []
        if self.path:
            where.append(self.path + (f":{line}" if line is not None else ""))
        if column:
            where.append(f"column '{column}'")
        text = (", ".join(where) + ": " if where else "") + message
        if self.examples:
            text += "\n" + "\n".join(f"  - {e}" for e in self.examples)
        super().__init__(text)


@dataclass
class RawTables:
    """Interactions and items as read, every value a string, with source file and line columns."""

    interactions: pd.DataFrame
    items: pd.DataFrame
    source: str = ""
    format: str = ""


@dataclass
class Dataset:
    """Validated canonical tables.

    Attributes:
        interactions: ``user_id``, ``item_id`` (str), ``timestamp`` (int64), in source order.
        items: ``item_id`` and the text fields (str, never null), plus extra text columns.
        metadata: where the data came from and what the gate did to it.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    metadata: dict = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return int(self.interactions["user_id"].nunique())

    @property
    def num_items(self) -> int:
        return len(self.items)

    def fingerprint(self) -> str:
        """Content hash of both tables: the lineage id of a dataset, stable across file formats."""
        digest = hashlib.sha256()
        for frame in (self.interactions, self.items):
            hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
            digest.update(",".join(frame.columns).encode())
            digest.update(hashed.tobytes())
        return digest.hexdigest()[:16]

    def save(self, out_dir: str | Path) -> Path:
        """Write the tables as Parquet plus a ``dataset.json`` with counts and fingerprint."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.interactions.to_parquet(out / INTERACTIONS_FILE, index=False)
        self.items.to_parquet(out / ITEMS_FILE, index=False)
        meta = {
            **self.metadata,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "num_interactions": len(self.interactions),
            "fingerprint": self.fingerprint(),
        }
        (out / METADATA_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return out

    def save_csv(self, out_dir: str | Path) -> Path:
        """Write the official HLLM CSV layout: ``interactions.csv`` (item_id,user_id,timestamp) + ``items.csv``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.interactions.loc[:, ["item_id", "user_id", "timestamp"]].to_csv(out / "interactions.csv", index=False)
        self.items.to_csv(out / "items.csv", index=False)
        return out


def load_dataset(path: str | Path) -> Dataset:
    """Load a folder written by `Dataset.save` (already validated: no checks are repeated)."""
    folder = Path(path)
    for name in (INTERACTIONS_FILE, ITEMS_FILE):
        if not (folder / name).is_file():
            raise DataError(f"missing {name}; expected a folder written by 'hllm data prepare'", path=folder)
    meta_path = folder / METADATA_FILE
    metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return Dataset(pd.read_parquet(folder / INTERACTIONS_FILE), pd.read_parquet(folder / ITEMS_FILE), metadata=metadata)


def canonical_interactions(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` reduced to the canonical interaction columns and dtypes."""
    out = frame.loc[:, list(INTERACTION_COLUMNS)].reset_index(drop=True)
    out["user_id"] = out["user_id"].astype(str)
    out["item_id"] = out["item_id"].astype(str)
    out["timestamp"] = out["timestamp"].astype("int64")
    return out


def canonical_items(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with canonical item columns first, text never null, bookkeeping columns dropped."""
    extra = [c for c in frame.columns if c not in ITEM_COLUMNS and c not in META_COLUMNS and not c.startswith("_")]
    out = frame.reindex(columns=[*ITEM_COLUMNS, *extra]).reset_index(drop=True)
    for column in out.columns:
        out[column] = out[column].fillna("").astype(str)
    return out
