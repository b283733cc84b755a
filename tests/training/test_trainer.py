"""The DeepSpeed trainer on tiny synthetic data: artifacts, model selection, resume, the generated config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hllm.config import TrainConfig, deepspeed_config
from hllm.data.splits import leave_one_out
from hllm.data.synth import SynthConfig, generate
from hllm.evaluation.evaluate import evaluate
from hllm.models.sasrec import SASRecConfig
from hllm.training.data import ItemVocab, eval_set, train_sequences
from hllm.training.tasks import SASRecTask
from hllm.training.trainer import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    dataset = generate(SynthConfig(n_users=80, n_items=60, n_topics=4, max_seq_len=12, seed=3))
    split = leave_one_out(dataset.interactions)
    vocab = ItemVocab.from_items(dataset.items)
    return split, vocab


def _task(vocab: ItemVocab) -> SASRecTask:
    torch.manual_seed(0)
    return SASRecTask(SASRecConfig(num_items=vocab.num_items, hidden=16, num_layers=1, num_heads=1, max_seq_len=12))


def test_train_writes_artifacts_and_best_model(tiny, tmp_path: Path) -> None:
    split, vocab = tiny
    config = TrainConfig(model="sasrec", epochs=3, batch_size=16, lr=5e-3, max_seq_len=12, select_metric="ndcg@10")
    result = train(_task(vocab), train_sequences(split, vocab), eval_set(split, vocab, "valid"), config, tmp_path)
    assert result.epochs_run == 3 and result.stopped == "epochs" and result.steps == 3 * 5
    for name in ("model/model.safetensors", "metrics.jsonl", "curve.png", "train_result.json", "deepspeed_config.json"):
        assert (tmp_path / name).is_file(), name
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    valid = [r for r in records if r.get("split") == "valid"]
    assert [r["epoch"] for r in valid] == [1, 2, 3]
    assert any("loss" in r and r["loss"] > 0 for r in records)
    best = max(valid, key=lambda r: r["ndcg@10"])
    assert result.best_epoch == best["epoch"]
    # The exported model is the best one: re-evaluating it reproduces the best validation metrics.
    reloaded = SASRecTask.load(tmp_path / "model")
    again = evaluate(reloaded.recommender(), eval_set(split, vocab, "valid"), max_len=12, batch_size=64)
    assert again["ndcg@10"] == pytest.approx(best["ndcg@10"], abs=1e-6)
    ds = json.loads((tmp_path / "deepspeed_config.json").read_text())
    assert ds == deepspeed_config(config, total_steps=15, bf16=False)


def test_training_beats_an_untrained_model(tiny, tmp_path: Path) -> None:
    split, vocab = tiny
    valid = eval_set(split, vocab, "valid")
    before = evaluate(_task(vocab).recommender(), valid, max_len=12, batch_size=64)["recall@10"]
    config = TrainConfig(model="sasrec", epochs=8, batch_size=16, lr=1e-2, max_seq_len=12, select_metric="recall@10")
    result = train(_task(vocab), train_sequences(split, vocab), valid, config, tmp_path, show_progress=False)
    assert result.best_metrics["recall@10"] > before + 0.05


def test_resume_continues_from_the_checkpoint(tiny, tmp_path: Path) -> None:
    split, vocab = tiny
    sequences, valid = train_sequences(split, vocab), eval_set(split, vocab, "valid")
    short = TrainConfig(model="sasrec", epochs=2, batch_size=16, max_seq_len=12)
    train(_task(vocab), sequences, valid, short, tmp_path, show_progress=False)
    longer = TrainConfig(model="sasrec", epochs=3, batch_size=16, max_seq_len=12)
    result = train(_task(vocab), sequences, valid, longer, tmp_path, resume=True, show_progress=False)
    assert result.epochs_run == 3 and result.steps == 15  # 10 steps before the resume + 5 after
    epochs = [json.loads(line).get("epoch") for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert max(epochs) == 3 and epochs.count(3) >= 1


def test_early_stopping(tiny, tmp_path: Path) -> None:
    split, vocab = tiny
    # lr so small that nothing improves after the first validation: stops after `patience` more validations.
    config = TrainConfig(
        model="sasrec", epochs=10, batch_size=16, lr=1e-9, warmup_ratio=0.0, max_seq_len=12, patience=2
    )
    result = train(_task(vocab), train_sequences(split, vocab), eval_set(split, vocab, "valid"), config, tmp_path)
    assert result.stopped == "early_stopping" and result.epochs_run == 3


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [0, 2])
def test_two_cpu_processes_with_zero(zero_stage: int, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("RANK", None)
    script = REPO / "tests" / "training" / "ddp_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29611"]
    proc = subprocess.run(
        [*cmd, str(script), str(tmp_path), str(zero_stage)], capture_output=True, text=True, timeout=900, env=env
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "train_result.json").read_text())
    assert result["epochs_run"] == 2 and result["best_metrics"]["count"] > 0
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_one_process_rendezvous_uses_a_file_store_not_a_port(tmp_path: Path, monkeypatch) -> None:
    """A port picked for a launcher-less run can be taken by any process on a busy machine (EADDRINUSE)."""
    from hllm.training.trainer import _prepare_distributed_env

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    (tmp_path / ".dist_store").write_text("stale")
    assert _prepare_distributed_env(tmp_path) == f"file://{(tmp_path / '.dist_store').resolve()}"
    assert not (tmp_path / ".dist_store").exists()  # a stale store of an earlier run is never reused
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun / the Training Operator: their env:// rendezvous
    assert _prepare_distributed_env(tmp_path) is None
