"""HLLM through the trainer, the Predictor, `hllm evaluate` and `embed-items`, on tiny random-init backbones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from hllm.cli import app
from hllm.data.splits import leave_one_out
from hllm.data.synth import SynthConfig, generate
from hllm.embedding import TABLE_FILE, embed_items
from hllm.evaluation.evaluate import evaluate_dataset
from hllm.models.loss import EmbeddingCollapseError
from hllm.predictor import Predictor
from hllm.training.build import build_task, load_run_config, run_training
from hllm.training.data import ItemVocab, left_pad, train_sequences

MINILM_VOCAB = 30522  # the tiny backbones read the offline MiniLM tokenizer's ids


def _backbone(model_type: str) -> dict:
    config = {
        "model_type": model_type,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "vocab_size": MINILM_VOCAB,
        "max_position_embeddings": 128,
    }
    return {**config, "num_key_value_heads": 2} if model_type == "llama" else config


def _overrides(mode: str = "cached", epochs: int = 2) -> list[str]:
    # Frozen random-init vectors must differ between items: a tiny BERT maps them all to one point (collapse),
    # a tiny Llama with mean pooling does not. Trainable modes use BERT (its layers are checked below).
    item = "llama" if mode == "cached" else "bert"
    # A frozen Item LLM's [ITEM] vector never trains: cached mode pools the mean, without the prompt.
    cached = ["hllm.item_pooling=mean", 'hllm.item_prompt=""'] if mode == "cached" else []
    return [
        *cached,
        'hllm.text_separator=" "',
        f"mode={mode}",
        f"epochs={epochs}",
        "batch_size=16",
        "lr=1e-3",
        "num_negatives=32",
        "max_seq_len=8",
        "select_metric=ndcg@10",
        f"hllm.item_backbone_config={json.dumps(_backbone(item))}",
        f"hllm.user_backbone_config={json.dumps(_backbone('llama'))}",
        "hllm.max_text_tokens=32",
    ]


@pytest.fixture(scope="module")
def dataset():
    return generate(SynthConfig(n_users=60, n_items=48, n_topics=4, max_seq_len=10, seed=5))


@pytest.fixture(scope="module")
def drawn_negatives() -> list[torch.Tensor]:
    """Every negative sample the training run of `trained` draws."""
    return []


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory, drawn_negatives):
    from hllm.training.hllm_task import HLLMTask

    sample = HLLMTask._negatives

    def recorded(self):
        negatives = sample(self)
        drawn_negatives.append(negatives.clone())
        return negatives

    out = tmp_path_factory.mktemp("hllm-run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(HLLMTask, "_negatives", recorded)
        result = run_training(dataset, load_run_config(None, _overrides()), out, progress=False)
    return out, result


def test_cached_training_exports_a_loadable_model(trained) -> None:
    out, result = trained
    assert result.epochs_run == 2 and result.best_metrics["count"] == 60
    for name in ("config.json", "model.safetensors", "item_ids.json", "item_text_states.safetensors", "tokenizer.json"):
        assert (out / "model" / name).is_file(), name
    assert not list((out / "model").glob("*.bin")) and not list((out / "model").glob("*.pt"))


def test_predictor_reproduces_the_validation_metrics(trained, dataset) -> None:
    out, result = trained
    metrics = evaluate_dataset(Predictor.load(out / "model"), dataset)
    for key in ("ndcg@10", "recall@10", "recall@200"):
        assert metrics["valid"][key] == pytest.approx(result.best_metrics[key], abs=1e-5)
    assert set(metrics) == {"valid", "test"} and "cold/count" in metrics["test"]


def test_recommend_excludes_history_and_sorts(trained, dataset) -> None:
    out, _ = trained
    predictor = Predictor.load(out / "model")
    assert predictor.max_len == 8  # the model's window (max_seq_len=8), read from the saved model
    history = dataset.items["item_id"].head(20).tolist()  # longer than the window: all of it is still excluded
    (recs,) = predictor.recommend([history], k=10)
    ids, scores = [r[0] for r in recs], [r[1] for r in recs]
    assert len(ids) == 10 and not set(ids) & set(history)
    assert scores == sorted(scores, reverse=True)
    (with_seen,) = predictor.recommend([history], k=48, exclude_seen=False)
    assert set(history) <= {r[0] for r in with_seen}
    with pytest.raises(ValueError, match="k=0"):
        predictor.recommend([history], k=0)
    with pytest.raises(Exception, match="unknown item id"):
        predictor.recommend([["nope"]], k=3)


def test_predictor_computes_vectors_when_none_are_stored(trained, dataset, tmp_path: Path) -> None:
    out, _ = trained
    copy = tmp_path / "model"
    copy.mkdir()
    for f in (out / "model").iterdir():
        if f.name != "item_text_states.safetensors":
            (copy / f.name).write_bytes(f.read_bytes())
    stored = Predictor.load(out / "model")
    computed = Predictor.load(copy, dataset.items)
    assert torch.allclose(stored.raw_vectors, computed.raw_vectors, atol=1e-5)


def test_a_model_exported_before_the_artifact_rename_still_loads(trained, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    out, _ = trained
    copy = tmp_path / "model"
    copy.mkdir()
    for f in (out / "model").iterdir():
        if f.name != "item_text_states.safetensors":
            (copy / f.name).write_bytes(f.read_bytes())
    states = load_file(str(out / "model" / "item_text_states.safetensors"))["states"]
    save_file({"vectors": states}, str(copy / "item_vectors.safetensors"))  # the old name and key
    assert torch.equal(Predictor.load(copy).raw_vectors, Predictor.load(out / "model").raw_vectors)


@pytest.mark.parametrize("mode", ["end_to_end", "partial"])
def test_trainable_item_llm_modes(dataset, mode: str) -> None:
    run = load_run_config(None, [*_overrides(mode=mode, epochs=1), "partial_layers=1"])
    task = build_task(run, dataset, ItemVocab.from_items(dataset.items))
    layers = task.model.item_llm.backbone.encoder.layer
    before = [p.detach().clone() for p in (layers[0].parameters(), layers[1].parameters()) for p in p]
    item_token = task.model.item_llm.item_token.detach().clone()
    optimizer = torch.optim.AdamW([p for p in task.model.parameters() if p.requires_grad], lr=1e-2)
    split = leave_one_out(dataset.interactions)
    vocab = ItemVocab.from_items(dataset.items)
    items = left_pad([vocab.encode(seq[-6:]) for seq in split.users["train"][:4]], 7)  # (4, 7)
    loss, stats = task.loss({"items": items})
    loss.backward()
    optimizer.step()
    after = [p.detach() for p in (layers[0].parameters(), layers[1].parameters()) for p in p]
    half = len(before) // 2
    bottom_changed = any(not torch.equal(a, b) for a, b in zip(before[:half], after[:half], strict=True))
    top_changed = any(not torch.equal(a, b) for a, b in zip(before[half:], after[half:], strict=True))
    assert top_changed and not torch.equal(item_token, task.model.item_llm.item_token)
    assert bottom_changed == (mode == "end_to_end")
    assert stats["negative_pool_size"] == 32


@pytest.mark.parametrize("item", ["bert", "llama"])
def test_partial_training_serves_the_vectors_it_trained(dataset, item: str, tmp_path: Path) -> None:
    # partial mode caches the frozen bottom layers once; serving encodes text through every layer. After a
    # training step (top layer and [ITEM] changed) both must give every item the same vector.
    overrides = [*_overrides(mode="partial", epochs=1), f"hllm.item_backbone_config={json.dumps(_backbone(item))}"]
    run = load_run_config(None, overrides)
    assert run.hllm.item_token_layers == 1
    vocab = ItemVocab.from_items(dataset.items)
    task = build_task(run, dataset, vocab)
    assert task.lower is not None and task.lower.shape[:2] == task.tokens["input_ids"].shape
    optimizer = torch.optim.AdamW([p for p in task.model.parameters() if p.requires_grad], lr=1e-2)
    split = leave_one_out(dataset.interactions)
    items = left_pad([vocab.encode(seq[-6:]) for seq in split.users["train"][:4]], 7)  # (4, 7)
    token_before = task.model.item_llm.item_token.detach().clone()
    task.loss({"items": items})[0].backward()
    optimizer.step()
    assert not torch.equal(token_before, task.model.item_llm.item_token)
    from hllm.models.recommender import HLLMRecommender, catalogue_states

    trained = task.recommender().item_states  # (N + 1, H) from the cache
    fresh = catalogue_states(task.model, task.tokenizer, dataset.items.to_dict("records"))  # from text
    assert torch.allclose(trained[1:], fresh[1:], atol=1e-5)
    task.export(tmp_path / "model")
    served = HLLMRecommender.load(tmp_path / "model")
    assert served.model.config.item_token_layers == 1
    new_items = served.encode_texts(dataset.items.head(5).to_dict("records"))  # the serving path for new items
    with torch.no_grad():
        assert torch.allclose(new_items, task.model.item_llm.proj(trained[1:6]), atol=1e-5)


def test_partial_item_refresh_trains_the_item_llm_every_kth_step(dataset) -> None:
    run = load_run_config(None, [*_overrides(mode="partial", epochs=1), "item_refresh_every=2"])
    vocab = ItemVocab.from_items(dataset.items)
    task = build_task(run, dataset, vocab)
    split = leave_one_out(dataset.interactions)
    items = left_pad([vocab.encode(seq[-6:]) for seq in split.users["train"][:4]], 7)  # (4, 7)
    top = [*task.model.item_llm.backbone.encoder.layer[-1].parameters(), task.model.item_llm.item_token]
    stale = task.stale.clone()
    for step in range(4):
        task.model.zero_grad(set_to_none=True)
        task.loss({"items": items})[0].backward()
        assert any(p.grad is not None for p in top) == (step % 2 == 0), step
        assert all(p.grad is not None for p in task.model.user_llm.backbone.layers.parameters())  # every step
        if step == 0:
            assert not torch.equal(stale, task.stale)  # the Item-LLM step refreshed the states it computed


def test_collapse_stops_training_with_a_clear_message(dataset, tmp_path: Path) -> None:
    # A frozen tiny BERT with an untrained [ITEM] slot gives every item the same vector: the 0.99 filter then
    # masks every negative, and training must stop instead of going on with a loss that trains nothing.
    overrides = [
        *_overrides(),
        f"hllm.item_backbone_config={json.dumps(_backbone('bert'))}",
        "hllm.item_pooling=item_token",
    ]
    with pytest.raises(EmbeddingCollapseError, match="collapsed"):
        run_training(dataset, load_run_config(None, overrides), tmp_path, progress=False)
    result = json.loads((tmp_path / "train_result.json").read_text())
    assert result["stopped"].startswith("collapse:")


def test_embed_items_resumes(trained, dataset, tmp_path: Path) -> None:
    out, _ = trained
    table_path = embed_items(out / "model", dataset.items, tmp_path, chunk_size=20)
    table = pd.read_parquet(table_path)
    assert table["item_id"].tolist() == dataset.items["item_id"].tolist()
    stored = Predictor.load(out / "model").raw_vectors[1:]
    assert torch.allclose(torch.tensor(np.stack(table["vector"].to_list())), stored, atol=1e-4)
    first = (tmp_path / "parts" / "part-00000.parquet").stat().st_mtime_ns
    (tmp_path / "parts" / "part-00002.parquet").unlink()  # as if killed before the last chunk
    (tmp_path / TABLE_FILE).unlink()
    embed_items(out / "model", dataset.items, tmp_path, chunk_size=20)
    assert (tmp_path / "parts" / "part-00000.parquet").stat().st_mtime_ns == first
    assert pd.read_parquet(tmp_path / TABLE_FILE).equals(table)
    with pytest.raises(Exception, match="partial run with different settings"):
        embed_items(out / "model", dataset.items, tmp_path, chunk_size=10)


def test_cli_train_and_evaluate(dataset, tmp_path: Path) -> None:
    data = dataset.save(tmp_path / "data")
    config = tmp_path / "run.yaml"
    pairs = [o.split("=", 1) for o in _overrides(epochs=1)]
    sections: dict = {"train": {}, "hllm": {}}
    for key, value in pairs:
        section, _, name = key.rpartition(".")
        sections[section or "train"][name] = yaml.safe_load(value)
    config.write_text(yaml.safe_dump(sections))
    runner = CliRunner()
    result = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "run"), "--config", str(config)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "run" / "model"), "--data", str(data), "--out", str(tmp_path / "m.json")]
    )
    assert result.exit_code == 0, result.output
    assert set(json.loads((tmp_path / "m.json").read_text())) == {"valid", "test"}
    bad = runner.invoke(app, ["train", str(data), "--out", str(tmp_path / "x"), "--set", "lr=-1"])
    assert bad.exit_code == 2 and "lr=-1" in bad.output


def test_item_id_in_target_round_trips_through_the_predictor(dataset, tmp_path: Path) -> None:
    overrides = [*_overrides(epochs=1), "hllm.use_item_id_embedding=true", "hllm.item_id_in_target=true"]
    result = run_training(dataset, load_run_config(None, overrides), tmp_path, progress=False)
    predictor = Predictor.load(tmp_path / "model")
    # the scored vectors are text vector + id vector: they differ from the projected Item-LLM states alone
    model = predictor.model.model
    with torch.no_grad():
        text_only = model.item_llm.proj(predictor.model.item_states)
    assert not torch.allclose(predictor.raw_vectors[1:], text_only[1:], atol=1e-4)
    ids_part = predictor.model.id_vectors(torch.arange(1, 49))
    assert torch.allclose(predictor.raw_vectors[1:], text_only[1:] + ids_part, atol=1e-5)
    # An item no training sequence holds (here: validation/test targets only, e.g. the late cold items) has a zero
    # id vector, as an item added after training gets at serving; every trained item has a learned one.
    vocab = ItemVocab.from_items(dataset.items)
    training = {i for sequence in train_sequences(leave_one_out(dataset.interactions), vocab) for i in sequence}
    untrained = sorted(set(range(1, 49)) - training)
    assert untrained and all(ids_part[i - 1].abs().sum() == 0 for i in untrained)
    assert all(ids_part[i - 1].abs().sum() > 0 for i in training)
    metrics = evaluate_dataset(predictor, dataset)["valid"]
    assert metrics["ndcg@10"] == pytest.approx(result.best_metrics["ndcg@10"], abs=1e-5)


def test_negatives_come_from_training_items_only(trained, drawn_negatives, dataset) -> None:
    vocab = ItemVocab.from_items(dataset.items)
    training = {i for sequence in train_sequences(leave_one_out(dataset.interactions), vocab) for i in sequence}
    held_out = set(range(1, vocab.num_items + 1)) - training  # validation/test targets only, or never used
    # The data has items a sampler over the whole catalogue would draw: the late (cold) items, test targets only.
    assert {vocab.index[i] for i in dataset.metadata["cold_items"]} & held_out
    drawn = torch.cat(drawn_negatives)
    # Enough draws that a sampler over the whole catalogue would almost surely have drawn a held-out item.
    assert (1 - len(held_out) / vocab.num_items) ** len(drawn) < 1e-3
    assert set(drawn.tolist()) <= training and len(set(drawn.tolist())) > 0.8 * len(training)
    task = build_task(load_run_config(None, _overrides()), dataset, vocab)
    task.set_training_items(torch.tensor([0, 3, 5]))  # padding is never a negative
    assert set(task._negatives().tolist()) == {3, 5}


def test_item_id_dropout_only_in_training(dataset) -> None:
    overrides = [*_overrides(), "hllm.use_item_id_embedding=true", "hllm.item_id_in_target=true", "item_id_dropout=0.5"]
    task = build_task(load_run_config(None, overrides), dataset, ItemVocab.from_items(dataset.items))
    torch.nn.init.normal_(task.model.item_id_embedding.weight, std=1.0)
    ids = torch.arange(1, 49).repeat(20)  # (960,)
    pooled = torch.zeros(len(ids), task.item_states.shape[1])
    model = task.model
    model.train()
    text_only = model.item_llm.proj(pooled)
    dropped = (model.item_vectors_from_states(pooled, ids, 0.5) - text_only).abs().sum(dim=-1) == 0
    assert 0.35 < dropped.float().mean() < 0.65  # about half the id vectors are dropped
    model.eval()
    evaluated = model.item_vectors_from_states(pooled, ids, 0.5)
    assert torch.equal(evaluated, model.item_vectors_from_states(pooled, ids, 0.5))
    assert not ((evaluated - text_only).abs().sum(dim=-1) == 0).any()
    with pytest.raises(ValueError, match=r"item_id_dropout=1\.0"):
        load_run_config(None, ["item_id_dropout=1.0"])
