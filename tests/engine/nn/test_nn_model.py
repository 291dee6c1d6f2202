"""The network: config checks, output shapes, padding, and that gradients flow."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine import Position
from engine.nn import (
    FEATURE_PLANES,
    OFF_BOARD_LOGIT,
    ModelConfig,
    PolicyValueNet,
    encode_batch,
)

from .conftest import SMALL, make_small_model, random_game


def test_default_size_is_documented() -> None:
    model = PolicyValueNet()
    # The module docstring promises about 0.49M parameters for 6 blocks x 64 channels.
    assert 450_000 <= model.num_parameters() <= 520_000
    assert model.config == ModelConfig(blocks=6, channels=64)
    assert [ModelConfig().pooled_block(i) for i in range(6)] == [0, 0, 1, 0, 0, 1]


@pytest.mark.parametrize(
    "bad",
    [
        {"blocks": 0},
        {"channels": 4},
        {"channels": 100_000},
        {"blocks": True},
        {"head_channels": 2.0},
        {"score_head": 1},
        {"global_pool_every": -1},
    ],
)
def test_config_ranges(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [9, 13, 19])
def test_output_shapes(size: int, small_model: PolicyValueNet) -> None:
    x = torch.from_numpy(encode_batch([random_game(size, 20, seed=size)] * 3))
    with torch.inference_mode():
        out = small_model(x)
    assert out.policy_logits.shape == (3, size * size + 1)
    assert out.value_logit.shape == (3,)
    assert out.score_lead is not None and out.score_lead.shape == (3,)
    assert torch.isfinite(out.policy_logits).all()
    no_score = PolicyValueNet(ModelConfig(blocks=1, channels=8, head_channels=4))
    assert no_score(x).score_lead is None


def test_padding_does_not_change_what_a_board_sees(small_model: PolicyValueNet) -> None:
    # A 9x9 board inside a 13x13 padded batch must give exactly what it gives alone:
    # the mask stops padding leaking through convolutions and pooling.
    nine, thirteen = random_game(9, 30, seed=1), random_game(13, 30, seed=2)
    with torch.inference_mode():
        padded = small_model(torch.from_numpy(encode_batch([nine, thirteen])))
        alone9 = small_model(torch.from_numpy(encode_batch([nine])))
        alone13 = small_model(torch.from_numpy(encode_batch([thirteen])))
    board = padded.policy_logits[0, :-1].reshape(13, 13)  # (13, 13)
    assert torch.allclose(board[:9, :9].reshape(-1), alone9.policy_logits[0, :-1], atol=1e-4)
    assert (board[9:, :] == OFF_BOARD_LOGIT).all() and (board[:, 9:] == OFF_BOARD_LOGIT).all()
    assert torch.allclose(padded.policy_logits[0, -1], alone9.policy_logits[0, -1], atol=1e-4)
    assert torch.allclose(padded.value_logit[0], alone9.value_logit[0], atol=1e-4)
    assert padded.score_lead is not None and alone9.score_lead is not None
    assert torch.allclose(padded.score_lead[0], alone9.score_lead[0], atol=1e-3)
    assert torch.allclose(padded.policy_logits[1], alone13.policy_logits[0], atol=1e-4)


def test_board_size_changes_the_pooled_features(small_model: PolicyValueNet) -> None:
    # The scaled-mean pooling term tells the value head how big the board is.
    with torch.inference_mode():
        v9 = small_model(torch.from_numpy(encode_batch([Position(9)]))).value_logit
        v19 = small_model(torch.from_numpy(encode_batch([Position(19)]))).value_logit
    assert not torch.allclose(v9, v19)


def test_a_few_sgd_steps_lower_the_loss_and_reach_every_weight() -> None:
    torch.manual_seed(0)
    model = PolicyValueNet(SMALL).train()
    rng = np.random.default_rng(0)
    positions = [random_game(9, int(rng.integers(5, 40)), seed=i) for i in range(8)]
    x = torch.from_numpy(encode_batch(positions))  # (8, C, 9, 9)
    policy_target = torch.from_numpy(rng.integers(0, 82, size=8))
    value_target = torch.from_numpy(rng.integers(0, 2, size=8).astype(np.float32))
    score_target = torch.from_numpy(rng.normal(0, 10, size=8).astype(np.float32))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)

    def loss() -> torch.Tensor:
        out = model(x)
        assert out.score_lead is not None
        return (
            F.cross_entropy(out.policy_logits, policy_target)
            + F.binary_cross_entropy_with_logits(out.value_logit, value_target)
            + F.huber_loss(out.score_lead / 20, score_target / 20)
        )

    losses = []
    for _ in range(6):
        optimiser.zero_grad()
        value = loss()
        torch.autograd.backward(value)
        optimiser.step()
        losses.append(value.item())
    assert losses[-1] < losses[0] - 0.2, losses
    # Block gains start at 0 (SkipInit); after a step every weight gets a gradient.
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_input_planes_must_match(small_model: PolicyValueNet) -> None:
    with pytest.raises(RuntimeError):
        small_model(torch.zeros(1, FEATURE_PLANES - 1, 9, 9))


def test_seeded_models_are_reproducible() -> None:
    a, b = make_small_model(5), make_small_model(5)
    for (na, ta), (nb, tb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert na == nb and torch.equal(ta, tb)
