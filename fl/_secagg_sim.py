"""In-process driver of one SecAgg+ round: every party's real code and cryptography,
messages handed over directly. For tests, benchmarks and the simulator's inner loop.

Dropouts are given as the stage at which a participant goes silent (it sends nothing in
that stage or later). The driver measures compute per party with an injected clock and
counts the payload bytes each participant uploads (fields' bytes, masked vectors at
2 bytes/element for k <= 16 else 4; wire framing excluded).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
from nacl.signing import SigningKey
from numpy.typing import NDArray

from fl._errors import FlInputError
from fl._secagg_coordinator import SecAggCoordinator, SecAggMessage
from fl._secagg_participant import SecAggParticipant
from fl._secagg_types import (
    AdvertiseKeys,
    ConsistencySignature,
    MaskedInput,
    SecAggConfig,
    SecAggResult,
    ShareBundle,
    ShareKeys,
    Stage,
    UnmaskResponse,
)


@dataclass(frozen=True, slots=True)
class RoundStats:
    """Compute seconds and upload bytes of one simulated round."""

    coordinator_seconds: float
    participant_seconds: Mapping[int, float]
    upload_bytes: Mapping[int, int]

    @property
    def mean_participant_seconds(self) -> float:
        """Mean compute of the participants that took part at all."""
        values = list(self.participant_seconds.values())
        return sum(values) / len(values) if values else 0.0

    @property
    def mean_upload_bytes(self) -> float:
        """Mean upload of participants that sent anything."""
        values = [b for b in self.upload_bytes.values() if b]
        return sum(values) / len(values) if values else 0.0


def upload_size(message: object, modulus_bits: int) -> int:
    """Payload bytes of a participant message (framing excluded)."""
    if isinstance(message, AdvertiseKeys):
        return 4 + len(message.cipher_pk) + len(message.mask_pk) + len(message.signature)
    if isinstance(message, ShareKeys):
        return 4 + len(message.seed_commitment) + sum(8 + len(s.ciphertext) for s in message.shares)
    if isinstance(message, MaskedInput):
        return 4 + message.masked.size * (2 if modulus_bits <= 16 else 4)
    if isinstance(message, ConsistencySignature):
        return 4 + len(message.signature)
    if isinstance(message, UnmaskResponse):
        pairs = message.seed_shares + message.key_shares
        return 4 + sum(4 + len(share) for _, share in pairs)
    raise FlInputError(f"not a participant message: {type(message).__name__}")


_T = TypeVar("_T")


def _masked(
    party: SecAggParticipant,
    bundle: ShareBundle,
    inputs: Callable[[int], NDArray[np.uint32]],
) -> MaskedInput:
    return party.masked_input(bundle, inputs(party.index))


_ORDER = (
    Stage.ADVERTISE_KEYS,
    Stage.SHARE_KEYS,
    Stage.MASKED_INPUT,
    Stage.CONSISTENCY_CHECK,
    Stage.UNMASK,
)


def run_secagg_round(
    config: SecAggConfig,
    signing_keys: Sequence[SigningKey],
    inputs: Callable[[int], NDArray[np.uint32]],
    dropouts: Mapping[int, Stage] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[SecAggResult, RoundStats]:
    """Run one round; participant i goes silent from stage `dropouts[i]` on.

    `inputs(i)` is called once, when participant i builds its masked input, so a large
    round never holds every plaintext at once. Raises `SecAggAborted` if the round fails.
    """
    if len(signing_keys) != config.n:
        raise FlInputError("need one signing key per participant")
    drop = dict(dropouts or {})
    rank = {stage: k for k, stage in enumerate(_ORDER)}

    def live(i: int, stage: Stage) -> bool:
        return i not in drop or rank[drop[i]] > rank[stage]

    seconds = dict.fromkeys(range(config.n), 0.0)
    uploaded = dict.fromkeys(range(config.n), 0)
    coordinator_seconds = 0.0
    coordinator = SecAggCoordinator(config)
    parties = [SecAggParticipant(config, i, key) for i, key in enumerate(signing_keys)]

    def step(i: int, make: Callable[[], SecAggMessage]) -> None:
        nonlocal coordinator_seconds
        start = clock()
        message = make()
        middle = clock()
        coordinator.receive(message)
        coordinator_seconds += clock() - middle
        seconds[i] += middle - start
        uploaded[i] += upload_size(message, config.modulus_bits)

    def closing(close: Callable[[], _T]) -> _T:
        nonlocal coordinator_seconds
        start = clock()
        out = close()
        coordinator_seconds += clock() - start
        return out

    for i in range(config.n):
        if live(i, Stage.ADVERTISE_KEYS):
            step(i, parties[i].advertise_keys)
    for i, roster in closing(coordinator.close_advertise_keys).items():
        if live(i, Stage.SHARE_KEYS):
            step(i, partial(parties[i].share_keys, roster))
    for i, bundle in closing(coordinator.close_share_keys).items():
        if live(i, Stage.MASKED_INPUT):
            step(i, partial(_masked, parties[i], bundle, inputs))
    survivors = closing(coordinator.close_masked_input)
    for i in sorted(coordinator.pending()):
        if live(i, Stage.CONSISTENCY_CHECK):
            step(i, partial(parties[i].consistency_check, survivors))
    for i, request in closing(coordinator.close_consistency_check).items():
        if live(i, Stage.UNMASK):
            step(i, partial(parties[i].unmask, request))
    result = closing(coordinator.close_unmask)
    active = {i: s for i, s in seconds.items() if s > 0}
    return result, RoundStats(coordinator_seconds, active, uploaded)
