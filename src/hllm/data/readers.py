"""Readers for every supported source layout, all producing `RawTables`.

Formats:
- ``hllm``: the official HLLM layout, either flat (``interactions.csv`` with ``item_id,user_id,timestamp`` and
  ``items.csv`` with ``item_id,title,tag,description``; ``tag`` and ``description`` optional, extra columns
  kept) or the official folder form ``dataset/<name>.csv`` + ``information/<name>.csv``;
- ``movielens``: ml-latest-small / ml-25m CSV, ml-1m ``.dat``, ml-100k ``u.data`` (see `hllm.data.movielens`);
- ``parquet``: ``interactions.parquet`` + ``items.parquet`` (what ``hllm data prepare`` writes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from hllm.data.csvio import check_file, read_delimited
from hllm.data.schema import (
    INTERACTION_COLUMNS,
    INTERACTIONS_FILE,
    ITEM_TEXT_FIELDS,
    ITEMS_FILE,
    LINE_COLUMN,
    SOURCE_COLUMN,
    DataError,
    RawTables,
)

logger = logging.getLogger(__name__)

FORMATS = ("auto", "hllm", "movielens", "parquet")
_FLAT_ITEM_FILES = ("items.csv", "item_info.csv", "information.csv")


def detect_format(src: Path) -> str:
    """Name the format of the folder ``src`` by the files it holds.

    Raises:
        DataError: ``src`` is missing, not a folder, or holds no known layout.
    """
    from hllm.data.movielens import detect_movielens_form

    if not src.exists():
        raise DataError("no such file or folder", path=src)
    if not src.is_dir():
        raise DataError("expected a dataset folder, got a file", path=src)
    if (src / INTERACTIONS_FILE).exists():
        return "parquet"
    if (src / "interactions.csv").exists() or ((src / "dataset").is_dir() and (src / "information").is_dir()):
        return "hllm"
    if detect_movielens_form(src) is not None:
        return "movielens"
    found = sorted(p.name for p in src.iterdir())[:20]
    raise DataError(
        "no known dataset layout: expected interactions.csv + items.csv (HLLM), dataset/ + information/ "
        "(official HLLM folders), ratings.csv + movies.csv / ratings.dat / u.data (MovieLens) or "
        f"interactions.parquet + items.parquet; found {found}",
        path=src,
    )


def read_raw(src: str | Path, fmt: str = "auto", *, name: str | None = None) -> RawTables:
    """Read the dataset folder ``src`` in format ``fmt`` (``auto`` detects it).

    Args:
        src: dataset folder.
        fmt: one of `FORMATS`.
        name: for the official folder form, which ``<name>.csv`` to read when there are several.
    """
    src = Path(src)
    if fmt not in FORMATS:
        raise DataError(f"unknown format '{fmt}', expected one of {list(FORMATS)}")
    if fmt == "auto":
        fmt = detect_format(src)
    elif not src.is_dir():
        detect_format(src)  # raises the right message for a missing path or a file
    logger.info("reading %s as %s", src, fmt)
    if fmt == "hllm":
        return read_hllm(src, name=name)
    if fmt == "movielens":
        from hllm.data.movielens import read_movielens

        return read_movielens(src)
    return read_parquet(src)


def _official_pair(src: Path, name: str | None) -> tuple[Path, Path]:
    """Resolve ``dataset/<name>.csv`` and ``information/<name>.csv`` in the official folder form."""
    candidates = sorted(p.stem for p in (src / "dataset").glob("*.csv"))
    if name is None:
        if len(candidates) != 1:
            raise DataError(
                f"the dataset/ folder holds {len(candidates)} CSV files {candidates[:10]}; pick one with --name",
                path=src / "dataset",
            )
        name = candidates[0]
    return src / "dataset" / f"{name}.csv", src / "information" / f"{name}.csv"


def read_hllm(src: Path, *, name: str | None = None) -> RawTables:
    """Read the official HLLM CSV layout (flat or ``dataset/`` + ``information/`` folders)."""
    if not (src / "interactions.csv").exists() and not (src / "dataset").is_dir():
        raise DataError(
            "not in the HLLM layout: expected interactions.csv + items.csv, or dataset/<name>.csv + "
            "information/<name>.csv (try --format auto)",
            path=src,
        )
    if (src / "interactions.csv").exists():
        interactions_path = src / "interactions.csv"
        items_path = next((src / f for f in _FLAT_ITEM_FILES if (src / f).exists()), src / "items.csv")
    else:
        interactions_path, items_path = _official_pair(src, name)
    interactions = read_delimited(interactions_path, required=INTERACTION_COLUMNS)
    items = read_delimited(items_path, required=("item_id",))
    if not any(f in items.columns for f in ITEM_TEXT_FIELDS):
        raise DataError(
            f"no text column: an item table needs at least one of {list(ITEM_TEXT_FIELDS)}; "
            f"found {[c for c in items.columns if not c.startswith('_')]}",
            path=items_path,
            line=1,
        )
    return RawTables(interactions=interactions, items=items, source=str(src), format="hllm")


def _as_text(series: pd.Series, path: Path, column: str) -> pd.Series:
    """Parquet column -> strings; integral floats lose their '.0' so ids match across tables."""
    if pd.api.types.is_datetime64_any_dtype(series):
        if column != "timestamp":
            raise DataError("is a datetime column; expected text", path=path, column=column)
        values = series.dt.tz_localize(None) if getattr(series.dt, "tz", None) else series
        return (values.astype("int64") // 1_000_000_000).astype(str).where(series.notna(), "")
    if pd.api.types.is_float_dtype(series):
        finite = series.dropna()
        if len(finite) and np.all(np.mod(finite, 1) == 0):
            series = series.astype("Int64")
    return series.astype(object).where(series.notna(), "").astype(str)


def read_parquet(src: Path) -> RawTables:
    """Read ``interactions.parquet`` and ``items.parquet``; values become text like the CSV readers'."""
    frames = {}
    for file_name, required in ((INTERACTIONS_FILE, INTERACTION_COLUMNS), (ITEMS_FILE, ("item_id",))):
        path = check_file(src / file_name)
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
            raise DataError(f"cannot read as Parquet: {exc}", path=path) from exc
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise DataError(f"missing required column(s) {missing}; found {list(frame.columns)}", path=path)
        for column in frame.columns:
            frame[column] = _as_text(frame[column], path, column)
        frame[LINE_COLUMN] = np.arange(1, len(frame) + 1)  # the row number, for messages
        frame[SOURCE_COLUMN] = str(path)
        frames[file_name] = frame
    return RawTables(frames[INTERACTIONS_FILE], frames[ITEMS_FILE], source=str(src), format="parquet")
