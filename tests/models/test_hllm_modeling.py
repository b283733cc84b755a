"""HLLM model: shapes, save/load, causality, padding parity, gradients, overfitting, auxiliary embeddings."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from torch import nn

from hllm.models.modeling_hllm import HLLM, ItemLLM, UserLLM, timestamp_buckets

VOCAB_LOW, VOCAB_HIGH = 1000, 2000  # token ids drawn for synthetic item texts


def _item_batch(lengths: list[int], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random token ids with the given real lengths: (N, T) ids and mask."""
    width = width or max(lengths)
    ids = torch.randint(VOCAB_LOW, VOCAB_HIGH, (len(lengths), width))
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return ids * mask, mask


def _left_mask(lengths: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width)[None, :] >= width - torch.tensor(lengths)[:, None]).long()


def _training_batch() -> dict[str, torch.Tensor]:
    """8 distinct items; 2 users with windows of 5 (one left-padded by 2); 3 negatives."""
    input_ids, attention_mask = _item_batch([5, 9, 3, 7, 6, 4, 8, 5])
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "seq_index": torch.tensor([[0, 0, 1, 2, 3], [4, 3, 5, 1, 0]]),
        "seq_mask": torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]),
        "neg_index": torch.tensor([5, 6, 7]),
    }


def test_shapes_and_projection_when_hidden_sizes_differ(make_config) -> None:
    model = HLLM(make_config(item="llama", user="bert", item_hidden=32, user_hidden=48)).eval()
    assert isinstance(model.item_llm.proj, nn.Linear) and model.embedding_dim == 48
    ids, mask = _item_batch([4, 7, 2])
    assert model.encode_items(ids, mask).shape == (3, 48)
    vectors = torch.randn(2, 5, 48)
    assert model.forward_user(vectors, _left_mask([5, 3], 5)).shape == (2, 5, 48)
    same = HLLM(make_config(item="llama", user="llama")).eval()
    assert isinstance(same.item_llm.proj, nn.Identity)


@pytest.mark.parametrize(("item", "user", "pooling"), [("llama", "llama", "item_token"), ("bert", "bert", "mean")])
def test_save_and_load_give_identical_outputs(tmp_path, make_config, item, user, pooling) -> None:
    model = HLLM(make_config(item=item, user=user, item_pooling=pooling)).eval()
    with torch.no_grad():
        model.logit_scale.fill_(3.0)
    model.save_pretrained(tmp_path, safe_serialization=True)
    assert (tmp_path / "model.safetensors").is_file() and not list(tmp_path.glob("*.bin"))
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as weights:
        keys = set(weights.keys())
    assert ("item_llm.item_token" in keys) == (pooling == "item_token")
    assert "logit_scale" in keys

    loaded = HLLM.from_pretrained(tmp_path).eval()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    ids, mask = _item_batch([4, 7, 2])
    vectors = torch.randn(2, 5, 32)
    user_mask = _left_mask([5, 2], 5)
    batch = _training_batch()
    with torch.no_grad():
        assert torch.equal(model.encode_items(ids, mask), loaded.encode_items(ids, mask))
        assert torch.equal(model.forward_user(vectors, user_mask), loaded.forward_user(vectors, user_mask))
        assert torch.equal(model(**batch).loss, loaded(**batch).loss)


@pytest.mark.parametrize("user", ["llama", "bert", "qwen2"])
def test_no_causal_leak(make_config, user) -> None:
    model = HLLM(make_config(user=user)).eval()
    vectors = torch.randn(2, 6, 32)
    mask = _left_mask([6, 4], 6)
    changed = vectors.clone()
    changed[:, 4] = torch.randn(2, 32) * 5  # a future item
    with torch.no_grad():
        before, after = model.forward_user(vectors, mask), model.forward_user(changed, mask)
    torch.testing.assert_close(after[:, :4], before[:, :4], rtol=0, atol=1e-6)
    assert (after[:, 4:] - before[:, 4:]).abs().amax() > 1e-3


def test_bert_user_backbone_is_made_causal(make_config) -> None:
    model = HLLM(make_config(user="bert")).eval()
    assert model.user_llm.backbone.config.is_decoder is True
    # Negative control: left bidirectional, the same check does see the future.
    leaky = HLLM(make_config(user="bert", user_is_decoder=False)).eval()
    vectors, changed = torch.randn(1, 5, 32), torch.randn(1, 5, 32)
    changed[:, :3] = vectors[:, :3]
    mask = torch.ones(1, 5, dtype=torch.long)
    with torch.no_grad():
        leak = (leaky.forward_user(changed, mask) - leaky.forward_user(vectors, mask))[:, :3].abs().amax()
    assert leak > 1e-3


@pytest.mark.parametrize("user", ["llama", "bert", "qwen2"])
def test_left_padding_matches_unpadded_sequences(make_config, user) -> None:
    model = HLLM(make_config(user=user)).eval()
    lengths, width = [6, 3, 1], 6
    vectors = torch.randn(3, width, 32)
    with torch.no_grad():
        padded = model.forward_user(vectors, _left_mask(lengths, width))
        for row, length in enumerate(lengths):
            alone = model.forward_user(
                vectors[row : row + 1, width - length :], torch.ones(1, length, dtype=torch.long)
            )
            torch.testing.assert_close(padded[row, width - length :], alone[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("item", "pooling"), [("llama", "item_token"), ("bert", "item_token"), ("qwen2", "item_token"), ("llama", "mean")]
)
def test_padded_item_batch_equals_one_at_a_time(make_config, item, pooling) -> None:
    model = HLLM(make_config(item=item, item_pooling=pooling)).eval()
    lengths = [7, 2, 5, 1]
    ids, mask = _item_batch(lengths, width=9)
    with torch.no_grad():
        batched = model.encode_items(ids, mask)
        for row, length in enumerate(lengths):
            alone = model.encode_items(ids[row : row + 1, :length], mask[row : row + 1, :length])
            torch.testing.assert_close(batched[row], alone[0], rtol=0, atol=1e-5)


def test_item_vector_is_the_last_hidden_state_at_the_item_slot(make_config) -> None:
    item_llm = ItemLLM(make_config(item="llama")).eval()
    ids, mask = _item_batch([4])
    with torch.no_grad():
        embeds = item_llm.backbone.get_input_embeddings()(ids)  # (1, 4, H)
        embeds = torch.cat([embeds, item_llm.item_token.view(1, 1, -1)], dim=1)  # [ITEM] after the last token
        expected = item_llm.backbone(inputs_embeds=embeds).last_hidden_state[0, -1]
        torch.testing.assert_close(item_llm(ids, mask)[0], expected, rtol=0, atol=1e-6)
    assert item_llm.item_token.std().item() == pytest.approx(0.02, rel=0.5)


def test_mean_pooling_averages_real_tokens(make_config) -> None:
    item_llm = ItemLLM(make_config(item="bert", item_pooling="mean")).eval()
    assert item_llm.item_token is None
    ids, mask = _item_batch([3, 5])
    with torch.no_grad():
        hidden = item_llm.backbone(input_ids=ids[:1, :3]).last_hidden_state[0]
        torch.testing.assert_close(item_llm(ids, mask)[0], hidden.mean(dim=0), rtol=0, atol=1e-6)


def test_padding_sides_are_checked(make_config) -> None:
    model = HLLM(make_config())
    ids, _ = _item_batch([3, 3])
    with pytest.raises(ValueError, match="right-padded"):
        model.encode_items(ids, torch.tensor([[0, 1, 1], [1, 1, 1]]))
    with pytest.raises(ValueError, match="left-padded"):
        model.forward_user(torch.randn(1, 3, 32), torch.tensor([[1, 1, 0]]))


@pytest.mark.parametrize(("item", "user"), [("llama", "llama"), ("bert", "bert")])
def test_gradients_reach_item_token_and_every_trainable_weight(make_config, item, user) -> None:
    model = HLLM(make_config(item=item, user=user)).train()
    out = model(**_training_batch())
    out.loss.backward()
    assert model.item_llm.item_token.grad is not None and model.item_llm.item_token.grad.abs().sum() > 0
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert missing == []  # nothing unused: DDP needs no find_unused_parameters
    assert not model.user_llm.backbone.get_input_embeddings().weight.requires_grad
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_auto_classes_build_llama_and_qwen2(make_config) -> None:
    model = HLLM(make_config(item="qwen2", user="llama"))
    assert type(model.item_llm.backbone).__name__ == "Qwen2Model"
    assert type(model.user_llm.backbone).__name__ == "LlamaModel"
    assert isinstance(model.user_llm, UserLLM)
    assert model.config.item_backbone_config["model_type"] == "qwen2"


def test_one_batch_overfits(make_config) -> None:
    model = HLLM(make_config(item="llama", user="llama")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    batch = _training_batch()
    losses = []
    for _ in range(50):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        model.clamp_logit_scale_()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0], losses[::10]
    with torch.no_grad():
        stats = model(**batch).stats
    assert stats["top1_accuracy"].item() == 1.0


def _checkpointing(backbone: nn.Module) -> bool:
    return any(getattr(module, "gradient_checkpointing", False) for module in backbone.modules())


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(make_config) -> None:
    model = HLLM(make_config(item="llama", user="bert")).train()
    batch = _training_batch()
    plain = model(**batch).loss
    plain.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_gradient_checkpointing(True)
    assert _checkpointing(model.user_llm.backbone) and _checkpointing(model.item_llm.backbone)
    checkpointed = model(**batch).loss
    checkpointed.backward()
    torch.testing.assert_close(checkpointed, plain)
    for name, grad in grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6)
    model.set_gradient_checkpointing(False)
    assert not _checkpointing(model.user_llm.backbone) and not _checkpointing(model.item_llm.backbone)


def test_item_id_and_timestamp_embeddings_are_added(make_config) -> None:
    model = HLLM(make_config(use_item_id_embedding=True, num_item_ids=10, use_timestamp_embedding=True)).eval()
    vectors, mask = torch.randn(1, 4, 32), torch.ones(1, 4, dtype=torch.long)
    ids, times = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 10, 10, 5000]])
    with pytest.raises(ValueError, match="item_ids"):
        model.forward_user(vectors, mask, timestamps=times)
    with pytest.raises(ValueError, match="timestamps"):
        model.forward_user(vectors, mask, item_ids=ids)
    with torch.no_grad():
        base = model.forward_user(vectors, mask, item_ids=ids, timestamps=times)
        manual = vectors + model.item_id_embedding(ids) + model.timestamp_embedding(timestamp_buckets(times, mask, 32))
        torch.testing.assert_close(base, model.user_llm(manual, mask))
        other_ids = model.forward_user(vectors, mask, item_ids=torch.tensor([[1, 2, 3, 9]]), timestamps=times)
    assert torch.equal(other_ids[:, :3], base[:, :3]) and not torch.equal(other_ids[:, 3], base[:, 3])
    batch = _training_batch()
    batch["item_ids"] = torch.arange(8)  # catalogue id of each distinct item
    batch["timestamps"] = torch.arange(10).view(2, 5) * 100
    assert torch.isfinite(model(**batch).loss)


def test_timestamp_buckets() -> None:
    times = torch.tensor([[0, 0, 100, 100, 103, 50], [7, 8, 8 + 2**40, 0, 0, 0]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    buckets = timestamp_buckets(times, mask, num_buckets=32)
    # gap 0 -> 1; gap 3 -> 1 + log2(4) = 3; negative gap -> 1; gap 1 -> 2; 2**40 s -> clamped to 31.
    assert buckets.tolist() == [[0, 0, 0, 1, 3, 1], [0, 2, 31, 1, 1, 1]]


def test_attention_implementation_reaches_both_backbones(tmp_path, make_config) -> None:
    model = HLLM(make_config(item="llama", user="bert")).eval()
    model.save_pretrained(tmp_path)
    eager = HLLM.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert eager.item_llm.backbone.config._attn_implementation == "eager"
    assert eager.user_llm.backbone.config._attn_implementation == "eager"
    ids, mask = _item_batch([3, 6])
    with torch.no_grad():
        torch.testing.assert_close(eager.encode_items(ids, mask), model.encode_items(ids, mask), rtol=0, atol=1e-5)


def test_clamp_logit_scale_keeps_the_parameter_in_range(make_config) -> None:
    model = HLLM(make_config())
    with torch.no_grad():
        model.logit_scale.fill_(9.0)
    model.clamp_logit_scale_()
    assert model.logit_scale.item() == pytest.approx(model.config.logit_scale_max)


def test_backbones_follow_the_default_dtype_not_the_recorded_one(make_config, make_backbone) -> None:
    config = make_config()
    config.item_backbone_config = {**make_backbone("llama"), "dtype": "bfloat16"}
    model = HLLM(config)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    ids, mask = _item_batch([3, 5])
    assert model.encode_items(ids, mask).dtype == torch.float32


def test_lengths_beyond_the_backbone_positions_are_refused(make_config) -> None:
    with pytest.raises(ValueError, match="max_text_tokens"):
        HLLM(make_config(max_text_tokens=320))  # 320 + [ITEM] > 320 positions
    with pytest.raises(ValueError, match="max_seq_len"):
        HLLM(make_config(user="bert", max_seq_len=321))
