"""The policy/value network: a residual CNN with global pooling (KataGo-style).

Shape of the default :class:`ModelConfig` (6 blocks x 64 channels, 19 input planes,
heads 32 wide, two global-pooling blocks): **about 0.49M parameters, 1.9 MB** as
float32. Why this size: the design notes measured 6x64 at ~4 ms (9x9) and ~12 ms
(19x19) for one position on 2 laptop cores, inside the issue's 5 ms / 15 ms targets,
while 10x128 is already ~55 ms on 19x19. A 0.5M-parameter model also keeps federated
updates small (~2 MB before compression). ``benchmarks/bench_inference.py`` measures it.

Layout::

    input (B, 19, H, W)
      -> 3x3 conv -> [residual block] x blocks -> ReLU -> trunk (B, C, H, W)
    policy head: 1x1 conv P, 1x1 conv G -> pool(G) biases P -> 1x1 conv -> H*W logits
                 pass logit = linear(pool(G))
    value head:  1x1 conv V -> pool(V) -> FC -> ReLU -> FC -> win logit (+ score lead)

A residual block is pre-activation ``x + gain * conv(relu(conv(relu(x))))``; every
``global_pool_every``-th block adds a per-channel bias computed from the board-wide
pooled features between its two convs, which is how distant fights (ladders, kos,
whole-board counting) reach every point. Pooling is (mean, mean * (sqrt(area) - 14)
/ 10, max) over the board's points, so the network knows the board size.

No batch normalisation, deliberately: federated averaging of batch statistics is
ill-defined, padded mixed-size batches would pollute them, and training and inference
then compute the same function. Instead each block's ``gain`` starts at 0 (SkipInit),
so the untrained network is shallow and deepens as it learns; convolutions use He init.

Padded batches: plane 0 of the input is the on-board mask. When any point is off the
board, activations are multiplied by the mask after every convolution so padding
never leaks into the board, and off-board policy logits are set to -1e4 (not -inf, so
``target * log_softmax`` stays finite for zero targets). A batch of one size has no
padding and skips the masking entirely.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.nn._config import ModelConfig

__all__ = ["OFF_BOARD_LOGIT", "SCORE_SCALE", "NetOutput", "PolicyValueNet"]

OFF_BOARD_LOGIT = -1.0e4
# The score output is a raw linear unit times this, so a unit-scale output means ~20 points.
SCORE_SCALE = 20.0


class NetOutput(NamedTuple):
    policy_logits: Tensor  # (B, H*W + 1): row-major board points, then pass
    value_logit: Tensor  # (B,): logit of the side to move's win probability
    score_lead: Tensor | None  # (B,): expected score lead in points, if the config has it


class _Pooled(NamedTuple):
    """What the network knows about the board as a whole, for pooling."""

    mask: Tensor | None  # (B, 1, H, W), or None when every point is on the board
    area: Tensor  # (B, 1): points on each board


def _global_pool(h: Tensor, board: _Pooled) -> Tensor:
    """(B, C, H, W) non-negative, masked features -> (B, 3C) board summaries."""
    total = h.sum(dim=(2, 3))  # (B, C)
    mean = total / board.area
    scaled = mean * (board.area.sqrt() - 14.0) / 10.0
    # Inputs are ReLU outputs and padding is 0, so the padded max is the board's max.
    peak = h.amax(dim=(2, 3))  # (B, C)
    return torch.cat([mean, scaled, peak], dim=1)  # (B, 3C)


def _masked(h: Tensor, board: _Pooled) -> Tensor:
    return h if board.mask is None else h * board.mask


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, pooled: bool, device: torch.device | None) -> None:
        super().__init__()
        c, d = channels, device
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, device=d)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, device=d)
        self.pool_bias = nn.Linear(3 * c, c, device=d) if pooled else None
        self.gain = nn.Parameter(torch.zeros(1, device=d))

    def forward(self, x: Tensor, board: _Pooled) -> Tensor:
        h: Tensor = _masked(F.relu(self.conv1(F.relu(x))), board)  # (B, C, H, W)
        if self.pool_bias is not None:
            bias: Tensor = self.pool_bias(_global_pool(h, board))  # (B, C)
            h = _masked(F.relu(h + bias[:, :, None, None]), board)  # (B, C, H, W)
        out: Tensor = self.conv2(h)
        return _masked(x + self.gain * out, board)


class PolicyValueNet(nn.Module):
    """Policy over every point + pass, and the side to move's win probability."""

    def __init__(
        self, config: ModelConfig | None = None, *, device: torch.device | str | None = None
    ) -> None:
        """``device="meta"`` builds the shapes without allocating (used to check files)."""
        super().__init__()
        self.config = cfg = config or ModelConfig()
        c, hc, d = cfg.channels, cfg.head_channels, torch.device(device) if device else None
        self.stem = nn.Conv2d(cfg.input_planes, c, 3, padding=1, device=d)
        self.blocks = nn.ModuleList(
            _ResidualBlock(c, cfg.pooled_block(i), d) for i in range(cfg.blocks)
        )
        self.policy_conv = nn.Conv2d(c, hc, 1, device=d)
        self.policy_pool_conv = nn.Conv2d(c, hc, 1, device=d)
        self.policy_pool_bias = nn.Linear(3 * hc, hc, device=d)
        self.policy_out = nn.Conv2d(hc, 1, 1, device=d)
        self.pass_out = nn.Linear(3 * hc, 1, device=d)
        self.value_conv = nn.Conv2d(c, hc, 1, device=d)
        self.value_fc = nn.Linear(3 * hc, cfg.value_hidden, device=d)
        self.value_out = nn.Linear(cfg.value_hidden, 2 if cfg.score_head else 1, device=d)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.stem.weight.is_meta:
            return  # shapes only; and init on meta tensors would import torch._dynamo (~4 s)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        # Output layers start small so the untrained policy is near uniform and the value
        # near 50%: a confident random network is worse than an unsure one.
        for module in (self.policy_out, self.pass_out, self.value_out):
            nn.init.normal_(module.weight, std=0.01)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: Tensor) -> NetOutput:
        """``x``: (B, input_planes, H, W) from :func:`engine.nn.encode_batch`."""
        on_board = x[:, :1]  # (B, 1, H, W): plane 0 is the board mask
        padded = bool((on_board == 0).any())
        area = on_board.sum(dim=(2, 3))  # (B, 1)
        board = _Pooled(on_board if padded else None, area)

        h: Tensor = _masked(self.stem(x), board)  # (B, C, H, W)
        for block in self.blocks:
            h = block(h, board)
        h = F.relu(h)

        p: Tensor = self.policy_conv(h)  # (B, hc, H, W)
        g = _masked(F.relu(self.policy_pool_conv(h)), board)  # (B, hc, H, W)
        g_pooled = _global_pool(g, board)  # (B, 3hc)
        p_bias: Tensor = self.policy_pool_bias(g_pooled)  # (B, hc)
        p = F.relu(p + p_bias[:, :, None, None])  # (B, hc, H, W)
        board_logits: Tensor = self.policy_out(p).flatten(1)  # (B, 1, H, W) -> (B, H*W)
        if padded:
            off = on_board.flatten(1) == 0  # (B, H*W)
            board_logits = board_logits.masked_fill(off, OFF_BOARD_LOGIT)
        pass_logit: Tensor = self.pass_out(g_pooled)  # (B, 1)
        policy_logits = torch.cat([board_logits, pass_logit], dim=1)  # (B, H*W + 1)

        v = _masked(F.relu(self.value_conv(h)), board)  # (B, hc, H, W)
        v_hidden = F.relu(self.value_fc(_global_pool(v, board)))  # (B, value_hidden)
        v_out: Tensor = self.value_out(v_hidden)  # (B, 1) or (B, 2)
        score = v_out[:, 1] * SCORE_SCALE if self.config.score_head else None  # (B,)
        return NetOutput(policy_logits, v_out[:, 0], score)
