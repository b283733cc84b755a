"""Shared test setup: offline, no telemetry, small synthetic data, paths to the shared real datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never reach a hub and never report usage, whatever the caller's environment says.
for _key, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    "FEAST_USAGE": "False",
    "TOKENIZERS_PARALLELISM": "false",
}.items():
    os.environ[_key] = _value

from testdata import GOOD_INTERACTIONS, GOOD_ITEMS, write_hllm  # noqa: E402


@pytest.fixture
def good_dataset(tmp_path: Path) -> Path:
    return write_hllm(tmp_path / "good", GOOD_INTERACTIONS, GOOD_ITEMS)
