"""The serving fast path of the User LLM (`hllm.models.fast_user`) against the transformers module: same outputs
for every history length and batch shape, the same rankings, and a divergence is caught (at start: fallback)."""

from __future__ import annotations

import pytest
import torch

from hllm.models import HLLM, HLLMConfig
from hllm.models.fast_user import FastBertUser, check
from hllm.models.recommender import HLLMRecommender

USER = {
    "model_type": "bert",
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "vocab_size": 8,
    "max_position_embeddings": 64,
    "type_vocab_size": 1,
}
ITEM = {**USER, "hidden_size": 24, "num_hidden_layers": 1, "max_position_embeddings": 512}
MAX_LEN = 12


def recommender(seed: int = 0, **config) -> HLLMRecommender:
    torch.manual_seed(seed)
    hllm_config = HLLMConfig(
        item_backbone_config=ITEM, user_backbone_config=USER, item_pooling="mean", max_seq_len=MAX_LEN, **config
    )
    model = HLLM(hllm_config).eval()
    return HLLMRecommender(model, torch.cat([torch.zeros(1, 24), torch.randn(40, 24)]))


def histories(seed: int = 1) -> torch.Tensor:
    """Left-padded (B, MAX_LEN) rows of every length 1..MAX_LEN."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.zeros(MAX_LEN, MAX_LEN, dtype=torch.long)
    for n in range(1, MAX_LEN + 1):
        rows[n - 1, MAX_LEN - n :] = torch.randint(1, 41, (n,), generator=generator)
    return rows


def test_fast_path_equals_the_module_for_every_length_alone_and_batched() -> None:
    model = recommender()
    vectors = model.item_vectors()
    rows = histories()
    eager = model.user_vectors(rows, vectors)
    assert model.use_fast_user_llm()
    batched = model.user_vectors(rows, vectors)
    single = torch.cat([model.user_vectors(rows[j : j + 1], vectors) for j in range(len(rows))])
    torch.testing.assert_close(batched, eager, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(single, eager, atol=1e-5, rtol=1e-4)
    # not a constant: different histories give different vectors (a broken path cannot pass by accident)
    distances = torch.cdist(eager, eager)
    assert distances[~torch.eye(len(distances), dtype=torch.bool)].min() > 1e-3


def test_rankings_are_the_same() -> None:
    model = recommender(seed=3)
    vectors = torch.nn.functional.normalize(model.item_vectors(), dim=-1)
    rows = histories(seed=4)
    eager = model.user_vectors(rows, model.item_vectors()) @ vectors[1:].T
    model.use_fast_user_llm()
    fast = model.user_vectors(rows, model.item_vectors()) @ vectors[1:].T
    assert torch.equal(eager.topk(10).indices, fast.topk(10).indices)


def test_a_divergence_is_caught_and_the_module_kept(caplog) -> None:
    model = recommender()
    fast = FastBertUser(model.model.user_llm.backbone)
    check(fast, model.model.user_llm, 32, MAX_LEN)  # equal: passes
    fast.layers[1]["down"] = (fast.layers[1]["down"][0] * 1.01, fast.layers[1]["down"][1])
    with pytest.raises(AssertionError, match="differs"):
        check(fast, model.model.user_llm, 32, MAX_LEN)
    original = FastBertUser.last

    def off(self, inputs, mask):
        return original(self, inputs, mask) + 1e-3

    try:
        FastBertUser.last = off
        assert not model.use_fast_user_llm()
    finally:
        FastBertUser.last = original
    assert model.fast_user is None and "keeping the transformers module" in caplog.text


def test_only_a_causal_bert_in_eval_mode_gets_the_fast_path() -> None:
    assert not recommender(user_is_decoder=False).use_fast_user_llm()
    training = recommender()
    training.model.train()
    assert not FastBertUser.supports(training.model.user_llm.backbone)
