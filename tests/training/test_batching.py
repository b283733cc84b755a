"""Batching: `LengthBatches` (every window once, equal target counts, little padding, reproducible epochs) and
the SASRec loss ignoring targets whose input is padding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hllm.config import TrainConfig
from hllm.data.splits import leave_one_out
from hllm.data.synth import SynthConfig, generate
from hllm.models.sasrec import SASRecConfig
from hllm.training.data import ItemVocab, LengthBatches, TrainWindows, eval_set, train_sequences
from hllm.training.tasks import SASRecTask
from hllm.training.trainer import train


def _lengths(n: int, seed: int = 0) -> list[int]:
    # Skewed like Amazon reviews: most windows short, a few full (51 items).
    rng = np.random.default_rng(seed)
    return np.minimum(2 + rng.geometric(0.12, n), 51).tolist()


def test_every_window_once_and_len_matches() -> None:
    for n, batch_size in [(80, 16), (4905, 256), (7, 3), (5, 1), (1000, 7)]:
        sampler = LengthBatches(_lengths(n), batch_size, seed=1)
        sampler.set_epoch(3)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(n))
        assert len(batches) == len(sampler)
        assert all(batches)


def test_batches_carry_equal_targets_and_little_padding() -> None:
    lengths = _lengths(4000)
    batches = list(LengthBatches(lengths, 128, seed=0))
    targets = np.array([sum(lengths[i] - 1 for i in b) for b in batches])
    assert targets.max() < 1.2 * targets.min()
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    random_padded = sum(len(b) * max(lengths[i] for i in b) for b in np.array_split(np.arange(4000), len(batches)))
    assert padded < 0.5 * random_padded


def test_epochs_are_reproducible_and_differ() -> None:
    lengths = _lengths(500)
    first, again, other = (LengthBatches(lengths, 32, seed=5) for _ in range(3))
    first.set_epoch(2)
    again.set_epoch(2)
    other.set_epoch(3)
    assert list(first) == list(again)
    assert list(first) != list(other)


def test_trainer_with_length_batching(tmp_path: Path) -> None:
    dataset = generate(SynthConfig(n_users=80, n_items=60, n_topics=4, max_seq_len=12, seed=3))
    split, vocab = leave_one_out(dataset.interactions), ItemVocab.from_items(dataset.items)
    sequences = train_sequences(split, vocab)
    torch.manual_seed(0)
    task = SASRecTask(SASRecConfig(num_items=vocab.num_items, hidden=16, num_layers=1, num_heads=1, max_seq_len=12))
    config = TrainConfig(model="sasrec", epochs=2, batch_size=16, lr=5e-3, max_seq_len=12, select_metric="ndcg@10")
    valid = eval_set(split, vocab, "valid")
    result = train(task, sequences, valid, config, tmp_path, show_progress=False, length_batching=True)
    expected = len(LengthBatches([len(w) for w in TrainWindows(sequences, 12).samples], 16))
    assert result.steps == 2 * expected
    assert (tmp_path / "model" / "model.safetensors").is_file()
    valid_lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"valid"' in x]
    assert [r["epoch"] for r in valid_lines] == [1, 2]


def test_sasrec_loss_ignores_targets_without_history() -> None:
    torch.manual_seed(0)
    task = SASRecTask(SASRecConfig(num_items=30, hidden=16, num_layers=1, num_heads=1, dropout=0.0, max_seq_len=6))
    batch = TrainWindows.collate([[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12]])  # left padded to 7 items
    loss, _ = task.loss(batch)
    hidden = task.model(batch["inputs"])
    real = batch["targets"] * (batch["inputs"] != 0)  # 6 + 1 + 2 targets with at least one item of history
    assert int((real > 0).sum()) == 9 and int((batch["targets"] > 0).sum()) == 11
    assert loss.item() == pytest.approx(task.model.full_softmax_loss(hidden, real).item(), abs=1e-6)
