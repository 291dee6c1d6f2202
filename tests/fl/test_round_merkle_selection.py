"""Merkle tree over submission hashes, and Poisson selection with over-selection."""

from __future__ import annotations

import math
import os

import blake3
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl import (
    FlInputError,
    MerkleProof,
    announced_rate,
    draw_seed,
    graph_seed,
    merkle_proof,
    merkle_root,
    over_selection_target,
    poisson_sample,
    sampling_rate,
    select_peers,
    selection_commitment,
    verify_inclusion,
)


def _hashes(n: int, salt: bytes = b"") -> list[bytes]:
    return [
        blake3.blake3(salt + n.to_bytes(4, "big") + i.to_bytes(4, "big")).digest() for i in range(n)
    ]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.data())
def test_every_leaf_has_a_proof_and_no_other_leaf_passes(n: int, data: st.DataObject) -> None:
    leaves = _hashes(n)
    root = merkle_root(leaves)
    index = data.draw(st.integers(0, n - 1))
    proof = merkle_proof(leaves, index)
    assert verify_inclusion(root, leaves[index], proof)
    assert len(proof.steps) <= math.ceil(math.log2(n)) if n > 1 else proof.steps == ()
    assert not verify_inclusion(root, blake3.blake3(b"outsider").digest(), proof)
    if n > 1:
        other = (index + 1) % n
        assert not verify_inclusion(root, leaves[other], proof)


def test_roots_depend_on_every_leaf_order_and_count() -> None:
    a, b, c, d = _hashes(4)
    roots = {
        merkle_root([]),
        merkle_root([a]),
        merkle_root([a, b]),
        merkle_root([b, a]),
        merkle_root([a, b, c]),
        # Carrying the odd node up (not duplicating it) keeps these two apart.
        merkle_root([a, b, c, c]),
        merkle_root([a, b, c, d]),
    }
    assert len(roots) == 7
    # A single leaf is not its own root: leaves and nodes are domain-separated.
    assert merkle_root([a]) != a
    # An inner node cannot be passed off as a leaf of a shorter list.
    left = merkle_proof([a, b], 0).steps[0][1]  # leaf(b)
    assert merkle_root([a, b]) != merkle_root([left])


def test_merkle_rejects_bad_input() -> None:
    with pytest.raises(FlInputError):
        merkle_root([b"short"])
    with pytest.raises(FlInputError):
        merkle_proof(_hashes(3), 3)
    assert not verify_inclusion(b"x" * 32, b"short", MerkleProof(0, ()))


def test_over_selection_and_rate() -> None:
    assert over_selection_target(100, 0.1) == 112  # ceil(111.1)
    assert over_selection_target(90, 0.1) == 100  # exact, no float creep
    assert over_selection_target(10, 0.0) == 10
    assert sampling_rate(112, 1000, 0.5) == pytest.approx(0.112)
    assert sampling_rate(112, 100, 0.5) == 0.5  # never above the announced rate
    assert sampling_rate(5, 0, 1.0) == 0.0
    with pytest.raises(FlInputError):
        over_selection_target(10, 1.0)


def test_poisson_sample_is_deterministic_order_free_and_near_the_rate() -> None:
    peers = [os.urandom(32) for _ in range(4000)]
    seed = draw_seed(b"s" * 32)
    chosen = poisson_sample(peers, 0.1, seed)
    assert chosen == poisson_sample(list(reversed(peers)), 0.1, seed)
    assert list(chosen) == sorted(chosen)
    # Binomial(4000, 0.1): mean 400, sd 19; 5 sd either side.
    assert 305 < len(chosen) < 495
    assert poisson_sample(peers, 0.1, draw_seed(b"t" * 32)) != chosen
    assert len(poisson_sample(peers, 1.0, seed)) == 4000
    assert poisson_sample(peers, 0.0, seed) == ()
    # Inclusion is monotone in the rate: a peer in at 0.1 is in at 0.2.
    assert set(chosen) <= set(poisson_sample(peers, 0.2, seed))


def test_announced_rate_aims_at_the_over_selected_target_with_a_cap() -> None:
    assert announced_rate(90, 0.1, 2000, 1.0) == pytest.approx(0.05)  # 100 of 2000
    assert announced_rate(8, 0.1, 300, 1.0) == pytest.approx(9 / 300)
    assert announced_rate(8, 0.1, 10, 1.0) == pytest.approx(0.9)  # tiny network: high q
    assert announced_rate(8, 0.1, 10, 0.2) == 0.2  # the operator's cap
    assert announced_rate(8, 0.1, 5, 1.0) == 1.0
    assert announced_rate(8, 0.1, 0, 0.3) == 0.3  # nobody known yet: the cap
    with pytest.raises(FlInputError):
        announced_rate(8, 0.1, 10, 0.0)


def test_select_peers_draws_at_exactly_the_announced_rate() -> None:
    peers = [os.urandom(32) for _ in range(2000)]
    rate = announced_rate(90, 0.1, len(peers), 1.0)
    plan = select_peers(peers, per_round=90, expected_dropout=0.1, rate=rate, draw_seed=b"x" * 32)
    assert plan.target == 100 and plan.rate == rate
    assert 60 < len(plan.selected) < 140
    # Twice the peers turned up: the rate does not shrink to hold the target (each peer's
    # inclusion must not depend on who else is ready), the round just gets bigger.
    more = peers + [os.urandom(32) for _ in range(2000)]
    bigger = select_peers(more, per_round=90, expected_dropout=0.1, rate=rate, draw_seed=b"x" * 32)
    assert bigger.rate == rate and set(plan.selected) <= set(bigger.selected)
    assert 140 < len(bigger.selected) < 260


def test_commit_reveal_seed_binds_coordinator_and_every_nonce() -> None:
    seed = b"c" * 32
    ready = [(b"a" * 32, b"1" * 32), (b"b" * 32, b"2" * 32)]
    base = draw_seed(seed, ready)
    assert draw_seed(seed, list(reversed(ready))) == base  # order-free
    assert draw_seed(seed, ready[:1]) != base
    assert draw_seed(seed, [(b"a" * 32, b"9" * 32), ready[1]]) != base
    assert draw_seed(b"d" * 32, ready) != base
    assert draw_seed(seed) != base
    assert selection_commitment(seed) != selection_commitment(b"d" * 32)
    assert graph_seed(base) not in (base, seed)
    with pytest.raises(FlInputError):
        selection_commitment(b"short")
