"""Shared fixtures: small, seeded networks so the tests stay fast on two CPU cores."""

from __future__ import annotations

import random

import pytest
import torch

from engine import Position
from engine.nn import ModelConfig, PolicyValueNet

SMALL = ModelConfig(
    blocks=2, channels=16, head_channels=8, value_hidden=16, global_pool_every=2, score_head=True
)


def make_small_model(seed: int = 0, config: ModelConfig = SMALL) -> PolicyValueNet:
    """A small network with every weight non-trivial (a fresh one has zero block gains and
    near-zero output layers, which would hide bugs behind a flat policy)."""
    torch.manual_seed(seed)
    model = PolicyValueNet(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gain"):
                p.fill_(0.7)
            elif name.startswith(("policy_out", "pass_out", "value_out")):
                p.normal_(0.0, 0.5)
    return model.eval()


def random_game(size: int, moves: int, seed: int) -> Position:
    """A position after ``moves`` uniformly random legal moves (passing when none)."""
    rng = random.Random(seed)
    pos = Position(size)
    for _ in range(moves):
        legal = pos.legal_points()
        pos = pos.play_at(rng.choice(legal) if legal else None)
        if pos.is_game_over:
            break
    return pos


@pytest.fixture
def small_model() -> PolicyValueNet:
    return make_small_model()
