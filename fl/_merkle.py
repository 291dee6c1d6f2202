"""A Merkle tree over submission hashes, with inclusion proofs.

A ModelUpdate lists the BLAKE3 hash of every accepted submission and commits to them with
this tree's root, so a peer can check that its own submission was aggregated from the
root plus a short proof, without the whole list (the full list also travels today; the
proofs let a later protocol drop it).

Construction (BLAKE3 throughout, domain-separated so that a leaf can never be passed off
as an inner node or the reverse — the classic second-preimage trick):

    leaf(h)    = BLAKE3(0x00 || h)
    node(l, r) = BLAKE3(0x01 || l || r)
    empty root = BLAKE3(0x02)

Levels pair neighbours left to right. An odd node out at the end of a level is carried
up unchanged (not paired with a copy of itself): duplicating it, as Bitcoin does, makes
the lists [a, b, c] and [a, b, c, c] share a root. Carrying up keeps every distinct list
of leaves at a distinct root, given a collision-resistant hash; the leaf count is not
otherwise encoded, and the caller checks it (`participant_count`) separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from fl._errors import FlInputError

HASH_BYTES = 32
_LEAF, _NODE, _EMPTY = b"\x00", b"\x01", b"\x02"


def _leaf(digest: bytes) -> bytes:
    return blake3.blake3(_LEAF + digest).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return blake3.blake3(_NODE + left + right).digest()


def _check(leaves: Sequence[bytes]) -> None:
    if any(not isinstance(h, bytes) or len(h) != HASH_BYTES for h in leaves):
        raise FlInputError(f"Merkle leaves must be {HASH_BYTES}-byte hashes")


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    level = [_leaf(h) for h in leaves]
    levels = [level]
    while len(level) > 1:
        nxt = [_node(level[k], level[k + 1]) for k in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])  # the odd one out moves up unchanged
        level = nxt
        levels.append(level)
    return levels


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root of the tree over `leaves` (32-byte hashes, in order)."""
    _check(leaves)
    if not leaves:
        return blake3.blake3(_EMPTY).digest()
    return _levels(leaves)[-1][0]


@dataclass(frozen=True, slots=True)
class MerkleProof:
    """Path from leaf `index` to the root: (sibling is on the left, sibling) per level
    where the node had a sibling (carried-up levels contribute nothing)."""

    index: int
    steps: tuple[tuple[bool, bytes], ...]


def merkle_proof(leaves: Sequence[bytes], index: int) -> MerkleProof:
    """The inclusion proof of `leaves[index]`."""
    _check(leaves)
    if not 0 <= index < len(leaves):
        raise FlInputError(f"index {index} not in 0..{len(leaves) - 1}")
    steps: list[tuple[bool, bytes]] = []
    position = index
    for level in _levels(leaves)[:-1]:
        sibling = position ^ 1
        if sibling < len(level):
            steps.append((sibling < position, level[sibling]))
        position //= 2
    return MerkleProof(index, tuple(steps))


def verify_inclusion(root: bytes, leaf: bytes, proof: MerkleProof) -> bool:
    """True if `leaf` is under `root` by `proof`."""
    if len(leaf) != HASH_BYTES or len(root) != HASH_BYTES:
        return False
    node = _leaf(leaf)
    for sibling_is_left, sibling in proof.steps:
        if len(sibling) != HASH_BYTES:
            return False
        node = _node(sibling, node) if sibling_is_left else _node(node, sibling)
    return node == root
