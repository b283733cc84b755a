"""SASRec baseline: shapes, causality, padding, full-softmax loss, overfitting, config validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hllm.models.sasrec import SASRec, SASRecConfig


def _model(seed: int = 0, **overrides) -> SASRec:
    torch.manual_seed(seed)
    config = SASRecConfig(
        **{"num_items": 30, "hidden": 32, "num_layers": 2, "num_heads": 2, "max_seq_len": 8, **overrides}
    )
    return SASRec(config)


def _sequences() -> torch.Tensor:
    return torch.tensor(
        [
            [0, 0, 0, 4, 9, 2, 17, 5],
            [3, 1, 8, 30, 12, 6, 6, 21],
            [0, 0, 0, 0, 0, 0, 0, 11],
        ]
    )


def test_shapes():
    model = _model().eval()
    seq = _sequences()
    hidden = model(seq)
    assert hidden.shape == (3, 8, 32)
    assert model.user_vectors(seq).shape == (3, 32)
    assert torch.equal(model.user_vectors(seq), hidden[:, -1])
    assert model.item_vectors().shape == (31, 32)
    assert model(seq[:, -5:]).shape == (3, 5, 32)  # shorter than max_seq_len
    assert torch.isfinite(hidden).all()
    assert torch.all(hidden[seq == 0] == 0)  # padding outputs are zeroed


def test_init_padding_row_is_zero_and_embedding_is_shared():
    model = _model()
    assert torch.all(model.item_vectors()[0] == 0)
    assert model.item_vectors() is model.item_embedding.weight
    assert model.item_embedding.weight[1:].std().item() == pytest.approx(0.02, rel=0.2)


def test_no_causal_leak():
    model = _model().eval()
    seq = _sequences()
    with torch.no_grad():
        before = model(seq)
        for position in range(1, 8):
            changed = seq.clone()
            changed[:, position] = (changed[:, position] % 30) + 1  # a different real item
            after = model(changed)
            torch.testing.assert_close(after[:, :position], before[:, :position], rtol=0, atol=1e-6)
            assert not torch.allclose(after[1, position:], before[1, position:])


def test_padding_does_not_affect_real_positions():
    model = _model().eval()
    real = torch.tensor([[4, 9, 2, 17, 5]])
    with torch.no_grad():
        unpadded = model(real)  # (1, 5, H)
        for pad in (1, 3):
            padded = model(F.pad(real, (pad, 0), value=0))  # left padding
            torch.testing.assert_close(padded[:, pad:], unpadded, rtol=0, atol=1e-5)
        # Whatever sits in the padding embedding row, real positions cannot see it.
        model.item_embedding.weight[0].normal_()
        torch.testing.assert_close(model(F.pad(real, (3, 0), value=0))[:, 3:], unpadded, rtol=0, atol=1e-5)


def test_loss_is_full_softmax_over_items_and_ignores_padding_targets():
    model = _model().eval()
    seq = _sequences()
    targets = torch.cat([seq[:, 1:], torch.tensor([[7], [0], [3]])], dim=1)  # next item; 0 = ignore
    hidden = model(seq)
    loss = model.full_softmax_loss(hidden, targets)

    # Reference: logits over all rows but padding, cross-entropy at the kept positions only.
    logits = hidden @ model.item_embedding.weight.T  # (B, L, N + 1)
    logits[..., 0] = float("-inf")
    keep = targets != 0
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)

    # Changing the hidden states at ignored positions leaves the loss unchanged.
    noisy = hidden.clone()
    noisy[~keep] = torch.randn_like(noisy[~keep])
    torch.testing.assert_close(model.full_softmax_loss(noisy, targets), loss)

    # No target at all: a zero loss that still backpropagates.
    empty = model.full_softmax_loss(hidden, torch.zeros_like(targets))
    assert empty.item() == 0.0 and empty.requires_grad


def test_overfits_one_batch():
    torch.manual_seed(0)
    model = _model(dropout=0.0)
    seq = torch.randint(1, 31, (8, 8))
    seq[:4, :3] = 0  # some left padding
    targets = torch.cat([seq[:, 1:], torch.randint(1, 31, (8, 1))], dim=1)
    targets[seq == 0] = 0
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = model.full_softmax_loss(model(seq), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 3.0  # about ln(30) at init
    assert losses[-1] < 0.1 * losses[0]


def test_forward_rejects_too_long_sequences():
    with pytest.raises(ValueError, match="max_seq_len"):
        _model()(torch.ones(2, 9, dtype=torch.long))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"num_items": -1}, "num_items"),
        ({"hidden": 0}, "hidden"),
        ({"hidden": 30, "num_heads": 4}, "num_heads"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_heads": -1}, "num_heads"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"max_seq_len": 0}, "max_seq_len"),
        ({"ffn_hidden": 0}, "ffn_hidden"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
        ({"initializer_range": -1.0}, "initializer_range"),
    ],
)
def test_config_validation(overrides: dict, field: str):
    with pytest.raises(ValueError, match=field):
        SASRecConfig(**{"num_items": 10, **overrides})


def test_a_model_needs_its_catalogue_size():
    assert SASRecConfig().num_items == 0  # what a run config holds until the catalogue is known
    with pytest.raises(ValueError, match="num_items"):
        SASRec(SASRecConfig())


def test_config_defaults():
    config = SASRecConfig(num_items=10)
    assert (config.hidden, config.num_layers, config.num_heads, config.dropout, config.max_seq_len) == (
        64,
        2,
        2,
        0.2,
        50,
    )
    assert config.ffn_hidden == 256
