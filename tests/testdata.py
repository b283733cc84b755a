"""Shared test data helpers (importable as ``testdata``: ``tests/`` is on pytest's pythonpath)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("HLLM_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """Path of a dataset in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (set HLLM_SHARED_DATA to the folder holding it)")
    return path


def write_hllm(folder: Path, interactions: str, items: str) -> Path:
    """Write an HLLM-layout dataset from literal CSV text (bytes are written exactly as given)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "interactions.csv").write_bytes(interactions.encode("utf-8", errors="surrogateescape"))
    (folder / "items.csv").write_bytes(items.encode("utf-8", errors="surrogateescape"))
    return folder


GOOD_ITEMS = (
    "item_id,title,tag,description\ni1,Blue pen,office,A pen\ni2,Red stapler,office,Staples\ni3,Desk lamp,,Bright\n"
)
GOOD_INTERACTIONS = (
    "item_id,user_id,timestamp\n"
    "i1,u1,1400000000\ni2,u1,1400000100\ni3,u1,1400000200\n"
    "i2,u2,1400000000\ni3,u2,1400000000\ni1,u2,1400000300\n"
)
