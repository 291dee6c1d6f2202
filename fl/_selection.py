"""Participant selection: Poisson sampling among ready peers at the announced rate.

Each ready peer is included independently with probability `rate`, decided by BLAKE3 of
a selection seed and the peer's key (so the draw is reproducible from the seed and
independent of arrival order). The rate is fixed *before* anyone says ready and
announced in the RoundStart: `announced_rate` aims at `k` survivors among the peers the
coordinator expects to be eligible (over-selecting by `ceil(k / (1 - d))` for an
expected dropout `d`), capped by the operator's maximum. The draw then uses exactly that
rate, whatever number of peers turns up: a rate recomputed from this round's ready count
would make every peer's inclusion depend on whether others joined, which the
amplification-by-sampling analysis (independent inclusion at a fixed q) does not cover.
More ready peers than expected only means a larger round.

Where the seed comes from decides what privacy claim holds, and the accountant event
(`RoundParams.privacy_event`) says which, through `fl.Sampling`:

* `Sampling.POISSON_SECRET` — the coordinator draws the seed from its own randomness and
  never reveals it; the Selection goes only to the selected peers and everyone else gets
  a bare NotSelected. Amplification by sampling (rate q) then holds against observers
  of the published model and ModelUpdate, *if the coordinator is honest*: peers must
  trust it to sample as announced and to keep the selection secret. It does not hold
  against the coordinator itself or the selected peers (who see the selected set).
* `Sampling.NONE` — commit-reveal: the RoundStart commits to BLAKE3 of the coordinator's
  seed; peers add a random nonce each in PeerReady; the Selection reveals the seed and
  lists every (peer, nonce) it drew from, and every peer recomputes it. The coordinator
  cannot steer the draw (only drop PeerReady messages, which the dropped peer sees),
  but the selection is public, so no amplification is claimed: every round a peer
  submits to costs the full Gaussian mechanism (q = 1 in the accountant). A peer could
  grind its own nonce to bias the draw; that is harmless to privacy for the same reason.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from fl._errors import FlInputError

SEED_BYTES = 32
_CONTEXT = "p2pgo fl selection v1 "


def _kdf(context: str, *parts: bytes) -> bytes:
    hasher = blake3.blake3(derive_key_context=_CONTEXT + context)
    for part in parts:
        hasher.update(struct.pack(">I", len(part)))
        hasher.update(part)
    return hasher.digest(SEED_BYTES)


def selection_commitment(seed: bytes) -> bytes:
    """What the RoundStart publishes about the coordinator's selection seed."""
    if len(seed) != SEED_BYTES:
        raise FlInputError(f"selection seed must be {SEED_BYTES} bytes")
    return _kdf("commitment", seed)


def draw_seed(seed: bytes, ready: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The seed the coin flips use: from the coordinator's seed alone (secret selection)
    or from it and every ready peer's nonce, in peer order (commit-reveal)."""
    if len(seed) != SEED_BYTES:
        raise FlInputError(f"selection seed must be {SEED_BYTES} bytes")
    parts = [seed]
    for peer, nonce in sorted(ready):
        parts += [peer, nonce]
    return _kdf("draw", *parts)


def graph_seed(draw_seed: bytes) -> bytes:
    """The SecAgg+ neighbour-graph seed (public; reveals nothing about the draw seed)."""
    return _kdf("graph", draw_seed)


def over_selection_target(k: int, expected_dropout: float) -> int:
    """How many peers to select so that about `k` remain: ceil(k / (1 - dropout))."""
    if k < 1 or not 0 <= expected_dropout < 1:
        raise FlInputError("need k >= 1 and 0 <= expected_dropout < 1")
    return math.ceil(k / (1.0 - expected_dropout) - 1e-9)


def sampling_rate(target: int, ready: int, max_rate: float) -> float:
    """Inclusion probability aiming at `target` of `ready` peers, capped at `max_rate`."""
    if ready < 1:
        return 0.0
    return min(max_rate, target / ready, 1.0)


def announced_rate(
    per_round: int, expected_dropout: float, eligible: int, max_rate: float
) -> float:
    """The rate q a RoundStart announces: `per_round` survivors among `eligible` peers.

    `eligible` is how many peers the coordinator expects could say ready (e.g. the
    sessions holding the current model); q is capped at `max_rate`, and is `max_rate`
    when nobody is known yet. Small networks get a high q, which costs each peer more
    epsilon per round: peers with a small budget then refuse, as they should.
    """
    if not 0 < max_rate <= 1:
        raise FlInputError("max_rate must be in (0, 1]")
    if eligible < 1:
        return max_rate
    return sampling_rate(over_selection_target(per_round, expected_dropout), eligible, max_rate)


def poisson_sample(peers: Sequence[bytes], rate: float, draw_seed: bytes) -> tuple[bytes, ...]:
    """The peers (sorted) whose BLAKE3 draw falls below `rate`: each independently."""
    if not 0 <= rate <= 1:
        raise FlInputError("rate must be in [0, 1]")
    # Integer comparison so every platform draws identically; rate 1 includes everyone.
    threshold = min(int(rate * 2**64), 2**64)
    chosen = [
        peer
        for peer in peers
        if int.from_bytes(_kdf("coin", draw_seed, peer)[:8], "big") < threshold
    ]
    return tuple(sorted(set(chosen)))


@dataclass(frozen=True, slots=True)
class SelectionPlan:
    """The outcome of one draw: who, at what rate, and the over-selected target the
    announced rate was sized for."""

    selected: tuple[bytes, ...]
    rate: float
    target: int
    draw_seed: bytes


def select_peers(
    ready: Sequence[bytes],
    *,
    per_round: int,
    expected_dropout: float,
    rate: float,
    draw_seed: bytes,
) -> SelectionPlan:
    """Poisson-sample `ready` at exactly the announced `rate` (see the module docstring);
    `per_round` and `expected_dropout` give the target recorded in the plan."""
    target = over_selection_target(per_round, expected_dropout)
    return SelectionPlan(poisson_sample(ready, rate, draw_seed), rate, target, draw_seed)
