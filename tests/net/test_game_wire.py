"""Directory and game wire records: round trips and value checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from net._errors import ProtocolError
from net._wire import (
    DirectoryEntries,
    DirectoryEntry,
    DirectoryList,
    DirectoryLookup,
    DirectoryRefused,
    DirectoryRegister,
    DirectoryRegistered,
    GameAccept,
    GameChallenge,
    GameDeadStones,
    GameDecline,
    GameMove,
    GameMoveAck,
    GameMoveRejected,
    GameSignature,
    GameSync,
    Message,
    decode,
    encode,
)

digests = st.binary(min_size=32, max_size=32)
ids = st.text(min_size=1, max_size=64)
texts = st.text(max_size=30)
small = st.integers(0, 10_000)
addrs = st.lists(st.text(min_size=1, max_size=40), max_size=8).map(tuple)

COVERED = frozenset(
    {
        DirectoryEntries,
        DirectoryEntry,
        DirectoryList,
        DirectoryLookup,
        DirectoryRefused,
        DirectoryRegister,
        DirectoryRegistered,
        GameAccept,
        GameChallenge,
        GameDeadStones,
        GameDecline,
        GameMove,
        GameMoveAck,
        GameMoveRejected,
        GameSignature,
        GameSync,
    }
)

messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(DirectoryRegister, addrs, st.text(max_size=64), st.integers(1, 10_000)),
    st.builds(DirectoryRegistered, small),
    st.builds(DirectoryLookup, texts),
    st.builds(DirectoryList, st.integers(1, 500)),
    st.builds(DirectoryEntry, texts, addrs, texts, small),
    st.builds(DirectoryEntries, st.lists(st.binary(max_size=50), max_size=4).map(tuple)),
    st.builds(DirectoryRefused, texts),
    st.builds(
        GameChallenge,
        ids,
        st.integers(2, 25),
        texts,
        st.integers(-1000, 1000),
        st.integers(1, 2),
        small,
        small,
        texts,
        texts,
        texts,
    ),
    st.builds(GameAccept, ids),
    st.builds(GameDecline, ids, texts),
    st.builds(
        GameMove,
        ids,
        st.integers(1, 1000),
        st.integers(1, 2),
        st.integers(0, 2),
        st.integers(0, 24),
        st.integers(0, 24),
        digests,
    ),
    st.builds(GameMoveAck, ids, st.integers(1, 1000), digests),
    st.builds(GameMoveRejected, ids, st.integers(1, 1000), texts),
    st.builds(GameSync, ids, small, digests),
    st.builds(
        GameDeadStones,
        ids,
        digests,
        st.lists(st.integers(0, 624), unique=True).map(lambda p: tuple(sorted(p))),
    ),
    st.builds(GameSignature, ids, digests, st.binary(min_size=64, max_size=64)),
)


@settings(max_examples=200, deadline=None)
@given(messages)
def test_new_kinds_round_trip(message: Message) -> None:
    data = encode(message)
    assert decode(data) == message


@pytest.mark.parametrize(
    "make",
    [
        lambda: GameMove("g", 0, 1, 0, 0, 0, bytes(32)),  # moves count from 1
        lambda: GameMove("g", 1, 3, 0, 0, 0, bytes(32)),  # no such colour
        lambda: GameMove("g", 1, 1, 7, 0, 0, bytes(32)),  # no such move kind
        lambda: GameMove("", 1, 1, 0, 0, 0, bytes(32)),  # empty game id
        lambda: GameDeadStones("g", bytes(32), (3, 1)),  # unsorted
        lambda: GameChallenge("g", 99, "chinese", 15, 1, 0, 0, "", "a", "b"),  # size
        lambda: GameChallenge("g", 9, "chinese", 5000, 1, 0, 0, "", "a", "b"),  # komi
        lambda: DirectoryRegister(tuple("x" * 9), "a", 10),  # too many addresses
        lambda: DirectoryRegister(("",), "a", 10),  # empty address
        lambda: DirectoryList(0),
    ],
)
def test_out_of_range_values_are_refused(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_out_of_range_values_on_the_wire_are_protocol_errors() -> None:
    import cbor2

    body = {
        "v": 1,
        "kind": "game_move",
        "game_id": "g",
        "number": 1,
        "color": 9,
        "move_kind": 0,
        "row": 0,
        "col": 0,
        "prev_head": bytes(32),
    }
    with pytest.raises(ProtocolError, match="color"):
        decode(cbor2.dumps(body, canonical=True))
