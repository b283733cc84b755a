"""Shared test setup: offline, no telemetry, small synthetic data, paths to the shared real datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
from testdata import GOOD_INTERACTIONS, GOOD_ITEMS, write_hllm


@pytest.fixture
def good_dataset(tmp_path: Path) -> Path:
    return write_hllm(tmp_path / "good", GOOD_INTERACTIONS, GOOD_ITEMS)
