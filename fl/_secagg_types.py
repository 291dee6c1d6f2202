"""Public round parameters, the neighbour graph, stages and messages of SecAgg+.

Theory of operation (Bell et al. 2020, "Secure Single-Server Aggregation with
(Poly)Logarithmic Overhead"): every participant i has neighbours N(i) in a sparse random
graph derived from a public seed. Stages, each one message from every live participant
and one reply (per participant) from the coordinator:

1. ADVERTISE_KEYS: i sends two signed X25519 public keys (share encryption, masking).
   The coordinator replies with a `KeyRoster` of i's live neighbours' keys (set U1).
2. SHARE_KEYS: i Shamir-shares its masking secret key and a fresh self-mask seed among
   its roster, each share encrypted to its holder; the coordinator relays them (U2).
3. MASKED_INPUT: i sends x_i + PRG(self seed) + sum_j +-PRG(pair seed with j) mod 2^k,
   over neighbours j in U2. The coordinator adds the vectors up (U3 = senders).
4. CONSISTENCY_CHECK: the coordinator announces U3; i signs (round, U3) with Ed25519.
5. UNMASK: given >= t signatures on the same U3, i reveals, for each neighbour it holds
   shares of, the self-seed share if that neighbour is in U3 and the key share if not —
   decided from the one set it signed, so it never reveals both for one neighbour.
   The coordinator recombines, removes self masks of survivors and the pairwise masks of
   dropped participants, and is left with the sum over U3 only.

Messages are frozen slotted dataclasses; wire encoding is the caller's business.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass, field

import blake3
import numpy as np
from numpy.typing import NDArray

from fl._errors import FlInputError
from fl._quant import MAX_MODULUS_BITS

FULL_GRAPH_MAX = 32
"""Rounds with at most this many participants use the complete graph."""


class Stage(enum.Enum):
    """Where a SecAgg+ party is: the message it will handle or produce next."""

    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


NEXT_STAGE: dict[Stage, Stage] = {
    Stage.ADVERTISE_KEYS: Stage.SHARE_KEYS,
    Stage.SHARE_KEYS: Stage.MASKED_INPUT,
    Stage.MASKED_INPUT: Stage.CONSISTENCY_CHECK,
    Stage.CONSISTENCY_CHECK: Stage.UNMASK,
    Stage.UNMASK: Stage.DONE,
}
"""The only forward transitions; any stage may also go to ABORTED."""


def default_degree(n: int) -> int:
    """Neighbour count: everyone for n <= 32, else the even number 2*ceil(log2 n)."""
    if n <= FULL_GRAPH_MAX:
        return n - 1
    return min(n - 1, 2 * math.ceil(math.log2(n)))


def neighbour_graph(n: int, degree: int, seed: bytes) -> tuple[tuple[int, ...], ...]:
    """The public neighbour lists (sorted) of a round with `n` participants.

    `degree == n - 1` is the complete graph; otherwise `degree` must be even and the graph
    is a Harary graph on a seed-derived random permutation (each node linked to the
    `degree/2` nodes either side of it on the permuted ring), as in SecAgg+. BLAKE3 orders
    the permutation so every party, on any numpy version, derives the same graph.
    """
    if n < 2:
        raise FlInputError("a round needs at least 2 participants")
    if degree == n - 1:
        return tuple(tuple(j for j in range(n) if j != i) for i in range(n))
    if degree < 2 or degree % 2 or degree > n - 1:
        raise FlInputError(f"degree {degree} must be n-1 or even in 2..{n - 2}")
    ring = sorted(range(n), key=lambda i: blake3.blake3(seed + struct.pack(">I", i)).digest())
    position = {node: p for p, node in enumerate(ring)}
    half = degree // 2
    out = []
    for i in range(n):
        p = position[i]
        near = {ring[(p + o) % n] for o in range(-half, half + 1) if o}
        out.append(tuple(sorted(near)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SecAggConfig:
    """Public parameters every party of one SecAgg+ round agrees on.

    `round_id`: bytes naming the round (domain-separates every key and signature).
    `identities`: Ed25519 verify keys of the selected participants; participant i is index i.
    `vector_length`: field elements per input. `modulus_bits`: k, inputs live in Z_{2^k}.
    `threshold`: t, shares needed to recover a secret (must exceed degree/2 so a lying
    coordinator cannot collect both kinds of share for anyone). It is fixed when peers
    are selected and never lowered for the set that advertised keys (U1), as in Bonawitz
    et al. and SecAgg+: parties with fewer than t live neighbours are left out, and the
    round aborts when fewer than t remain. A t recomputed from U1 would let a coordinator
    that pretends honest peers dropped shrink a victim's share holders to a few
    colluders and lower the bar with them. `degree`: neighbour count.
    `graph_seed`: public randomness for the neighbour graph (32 bytes).
    """

    round_id: bytes
    identities: tuple[bytes, ...]
    vector_length: int
    modulus_bits: int
    threshold: int
    degree: int
    graph_seed: bytes
    graph: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.identities)
        if not 1 <= len(self.round_id) <= 64:
            raise FlInputError("round_id must be 1..64 bytes")
        if any(len(key) != 32 for key in self.identities):
            raise FlInputError("identities must be 32-byte Ed25519 verify keys")
        if len(set(self.identities)) != n:
            raise FlInputError("identities must be distinct")
        if self.vector_length < 1:
            raise FlInputError("vector_length must be positive")
        if not 1 <= self.modulus_bits <= MAX_MODULUS_BITS:
            raise FlInputError(f"modulus_bits must be in 1..{MAX_MODULUS_BITS}")
        if len(self.graph_seed) != 32:
            raise FlInputError("graph_seed must be 32 bytes")
        graph = neighbour_graph(n, self.degree, self.graph_seed)
        if not self.degree // 2 < self.threshold <= self.degree:
            raise FlInputError(f"threshold must be in {self.degree // 2 + 1}..{self.degree}")
        object.__setattr__(self, "graph", graph)

    @classmethod
    def create(
        cls,
        round_id: bytes,
        identities: tuple[bytes, ...],
        vector_length: int,
        graph_seed: bytes,
        modulus_bits: int = 16,
        degree: int | None = None,
        threshold: int | None = None,
    ) -> SecAggConfig:
        """A config with default degree (`default_degree`) and threshold (degree//2 + 1)."""
        deg = default_degree(len(identities)) if degree is None else degree
        thr = deg // 2 + 1 if threshold is None else threshold
        return cls(round_id, identities, vector_length, modulus_bits, thr, deg, graph_seed)

    @property
    def n(self) -> int:
        """Number of selected participants."""
        return len(self.identities)

    @property
    def modulus_mask(self) -> int:
        """2^k - 1: AND with it to reduce mod 2^k."""
        return (1 << self.modulus_bits) - 1

    def neighbours(self, i: int) -> tuple[int, ...]:
        """Sorted neighbours of participant `i`."""
        return self.graph[i]


@dataclass(frozen=True, slots=True)
class AdvertiseKeys:
    """Stage 1, participant -> coordinator -> neighbours: signed round public keys."""

    round_id: bytes
    sender: int
    cipher_pk: bytes
    mask_pk: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class KeyRoster:
    """Stage 1 reply, coordinator -> participant: its live neighbours' keys (U1 ∩ N(i))."""

    round_id: bytes
    recipient: int
    keys: tuple[AdvertiseKeys, ...]


@dataclass(frozen=True, slots=True)
class EncryptedShare:
    """One holder's shares of one owner's secrets, readable only by the holder."""

    sender: int
    recipient: int
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class ShareKeys:
    """Stage 2, participant -> coordinator: encrypted shares for each roster neighbour."""

    round_id: bytes
    sender: int
    seed_commitment: bytes
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True, slots=True)
class ShareBundle:
    """Stage 2 reply, coordinator -> participant: shares addressed to it (from U2)."""

    round_id: bytes
    recipient: int
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True, slots=True, eq=False)
class MaskedInput:
    """Stage 3, participant -> coordinator: the masked vector, uint32 values < 2^k."""

    round_id: bytes
    sender: int
    masked: NDArray[np.uint32]


@dataclass(frozen=True, slots=True)
class SurvivorList:
    """Stage 3 reply, coordinator -> survivors: U3, the participants whose input counts."""

    round_id: bytes
    survivors: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ConsistencySignature:
    """Stage 4, participant -> coordinator: Ed25519 signature over (round, U3)."""

    round_id: bytes
    sender: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class UnmaskRequest:
    """Stage 4 reply, coordinator -> participant: U3 and the signatures over it that the
    recipient needs (those of its neighbours' neighbours), as (signer, signature) pairs."""

    round_id: bytes
    recipient: int
    survivors: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class UnmaskResponse:
    """Stage 5, participant -> coordinator: (owner, share) for survivors' self-mask seeds
    and for dropped participants' masking keys; never both kinds for one owner."""

    round_id: bytes
    sender: int
    seed_shares: tuple[tuple[int, bytes], ...]
    key_shares: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True, eq=False)
class SecAggResult:
    """The coordinator's output: the sum mod 2^k over `survivors` and who dropped when."""

    total: NDArray[np.uint32]
    survivors: tuple[int, ...]
    dropped: tuple[int, ...]
