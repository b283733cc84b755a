"""The quality benchmark's record of how a result was made (benchmarks/quality/run.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "quality"))

import run


def test_command_records_the_recipe_overrides_of_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["run.py", "--data", "my data", "--seed", "2"])
    monkeypatch.delenv("HLLM_MODEL_OVERRIDES", raising=False)
    monkeypatch.setenv("HLLM_TRAIN_OVERRIDES", '{"item_id_dropout": 0.3}')
    command = run._command()
    assert command.startswith("HLLM_TRAIN_OVERRIDES='{\"item_id_dropout\": 0.3}' ")
    assert command.endswith("run.py --data 'my data' --seed 2") and "HLLM_MODEL_OVERRIDES" not in command
    monkeypatch.delenv("HLLM_TRAIN_OVERRIDES")
    assert run._command().split()[1:] == ["run.py", "--data", "'my", "data'", "--seed", "2"]
