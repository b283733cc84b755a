"""The quality benchmark's seed summary (benchmarks/quality/seeds.py): means, spreads and the inputs it refuses."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "quality"))

import seeds


def _result(seed: int, ndcg: float, cold: float | None = None, fingerprint: str = "f") -> dict:
    runs = {"loo": {"metrics_valid": {"ndcg@10": ndcg + 0.01}, "metrics_test": {"ndcg@10": ndcg}, "train_seconds": 60}}
    if cold is not None:
        runs["cold"] = {"metrics_test": {"cold/recall@10": cold}, "train_seconds": 120}
    return {
        "dataset": "d",
        "fingerprint": fingerprint,
        "seed": seed,
        "command": f"run --seed {seed}",
        "models": {"hllm": runs},
    }


def test_mean_and_standard_deviation_per_model_and_column(tmp_path: Path) -> None:
    inputs = []
    for seed, ndcg, cold in ((0, 0.07, 0.010), (1, 0.08, 0.012), (2, 0.09, 0.008)):
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps(_result(seed, ndcg, cold)))
        inputs.append(str(folder))
    seeds.main([*inputs, "--out", str(tmp_path / "out")])
    summary = json.loads((tmp_path / "out" / "seeds.json").read_text())
    test = summary["models"]["hllm"]["columns"]["test N@10"]
    assert test["mean"] == pytest.approx(0.08) and test["std"] == pytest.approx(0.01) and test["n"] == 3
    assert summary["models"]["hllm"]["columns"]["cold items R@10"]["mean"] == pytest.approx(0.010)
    assert summary["models"]["hllm"]["train_minutes"] == [3.0, 3.0, 3.0]  # both splits' training, per seed
    table = (tmp_path / "out" / "seeds.md").read_text()
    assert "| hllm | 0,1,2 | 0.0900 +- 0.0100 | 0.0800 +- 0.0100 |" in table


def test_one_seed_has_no_spread() -> None:
    column = seeds.summarise([_result(0, 0.07)])["models"]["hllm"]["columns"]["test N@10"]
    assert column["std"] is None and "0.0700 |" in seeds.render(seeds.summarise([_result(0, 0.07)]))


def test_refuses_mixed_datasets_and_repeated_seeds() -> None:
    with pytest.raises(SystemExit, match="different datasets"):
        seeds.summarise([_result(0, 0.07), _result(1, 0.07, fingerprint="other")])
    with pytest.raises(SystemExit, match="repeat seed 0 of hllm"):
        seeds.summarise([_result(0, 0.07), _result(0, 0.08)])


def test_one_seed_may_come_from_several_runs_of_different_models() -> None:
    other = _result(0, 0.06)
    other["models"] = {"sasrec": other["models"].pop("hllm")}
    summary = seeds.summarise([_result(0, 0.07), other, _result(1, 0.09)])
    assert summary["models"]["hllm"]["seeds"] == [0, 1] and summary["models"]["sasrec"]["seeds"] == [0]
    assert summary["models"]["hllm"]["columns"]["test N@10"]["mean"] == pytest.approx(0.08)
