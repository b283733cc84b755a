"""The Item LLM run layer by layer (`hllm.models.item_layers`): the slot fast path against the full layer, the
layer runner against transformers' own forward, and the split [ITEM] slot of ``item_token_layers``."""

from __future__ import annotations

import pytest
import torch

from hllm.models.backbones import NAMED_BACKBONES, NamedBackbone, resolve_backbone
from hllm.models.item_layers import LayerStack
from hllm.models.modeling_hllm import HLLM, ItemLLM


def _right_padded(lengths: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()  # (N, T)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_slot_layer_equals_the_full_layer_at_the_slot(make_config, family: str) -> None:
    item = ItemLLM(make_config(item=family, item_token_layers=1)).eval()
    stack = item.stack
    lengths = torch.tensor([5, 2, 7])
    mask = _right_padded(lengths.tolist(), 8)  # the slot at index `lengths` of each row: 1 more attended
    hidden = torch.randn(3, 8, 32)
    rows = torch.arange(3)
    text_mask = _right_padded((lengths - 1).tolist(), 7)  # the text before the slot
    for index in range(stack.num_layers):
        full = stack.run(hidden, mask, index, index + 1)[rows, lengths - 1]  # (N, H)
        fast = stack.slot_layer(index, hidden[:, :7], text_mask, hidden[rows, lengths - 1], lengths - 1)
        assert torch.allclose(fast, full, atol=1e-5), (family, index)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_layer_runner_reproduces_the_backbone_forward(make_config, family: str) -> None:
    # With mean pooling the split point changes nothing: the layer-by-layer run must equal the backbone's own.
    reference = ItemLLM(make_config(item=family, item_pooling="mean")).eval()
    split = ItemLLM(make_config(item=family, item_pooling="mean", item_token_layers=1)).eval()
    split.load_state_dict(reference.state_dict())
    ids = torch.randint(5, 2000, (3, 9))
    mask = _right_padded([9, 4, 6], 9)
    assert torch.allclose(split.pooled(ids, mask), reference.pooled(ids, mask), atol=1e-5)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_cached_bottom_states_give_the_vector_of_fresh_text(make_config, family: str, layers: int) -> None:
    torch.manual_seed(1)
    model = HLLM(make_config(item=family, item_token_layers=layers)).eval()
    item = model.item_llm
    assert item.split_layer == 2 - layers and item.item_token is not None
    ids = torch.randint(5, 2000, (4, 10))
    mask = _right_padded([10, 3, 7, 1], 10)
    fresh = model.encode_items(ids, mask)  # serving: text through every layer
    lower = item.lower_states(ids, mask)  # training: bottom states cached once ...
    cached = item.proj(item.pooled_from_lower(lower[:, :7], mask[:, :7]))  # ... trimmed to a narrower batch
    assert torch.allclose(fresh[1:3], cached[1:3], atol=1e-5)
    assert torch.allclose(fresh, item.proj(item.pooled_from_lower(lower, mask)), atol=1e-5)
    # the slot is read: changing the [ITEM] vector changes every item's vector
    with torch.no_grad():
        item.item_token.add_(1.0)
    assert not torch.allclose(model.encode_items(ids, mask), fresh, atol=1e-3)


def test_item_token_layers_is_checked(make_config) -> None:
    with pytest.raises(ValueError, match="item_token_layers must be a non-negative integer"):
        make_config(item_token_layers=-1)
    with pytest.raises(ValueError, match="item_token_layers = 3 exceeds the 2 layers"):
        ItemLLM(make_config(item="bert", item_token_layers=3))
    with pytest.raises(ValueError, match="needs item_token_layers > 0"):
        ItemLLM(make_config(item="bert")).lower_states(torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3))


def test_unsupported_layouts_are_named() -> None:
    with pytest.raises(ValueError, match="BERT-type or Llama-type"):
        LayerStack(torch.nn.Linear(2, 2))


def test_a_named_backbone_without_its_package_names_the_package(monkeypatch) -> None:
    missing = NamedBackbone(package="hllm_no_such_package", distribution="no-such-dist", filename="x.gguf", install="i")
    monkeypatch.setitem(NAMED_BACKBONES, "nothere", missing)
    with pytest.raises(ValueError, match="needs the package 'no-such-dist'"):
        resolve_backbone("nothere")
    assert resolve_backbone("/some/folder") == ("/some/folder", {})
