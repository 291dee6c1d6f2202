"""The sans-IO game state machine: whole games, rejections, resume, scoring, signatures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from engine import Color, GameRecord, HeuristicPlayer, Move, estimate_dead
from engine._store import verify_signature
from net._errors import ProtocolError
from net._game import (
    GamePhase,
    GameProtocolError,
    GameSession,
    GameStateError,
    GameTerms,
)
from net._wire import (
    GameAccept,
    GameChallenge,
    GameDeadStones,
    GameMove,
    GameMoveAck,
    GameMoveRejected,
    GameSignature,
    GameSync,
    Message,
)

BLACK, WHITE = "peer-black", "peer-white"


def pair(size: int = 5) -> tuple[GameSession, GameSession]:
    """(black = challenger, white = accepter), already playing."""
    terms = GameTerms("g1", size, "chinese", 7.5, BLACK, WHITE, 300, 5, "2024-05-01")
    kb, kw = SigningKey(b"b" * 32), SigningKey(b"w" * 32)
    b = GameSession(terms, BLACK, kb, bytes(kw.verify_key), challenger=True)
    w = GameSession(terms, WHITE, kw, bytes(kb.verify_key), challenger=False)
    deliver(b, w.accept())
    assert b.phase is w.phase is GamePhase.PLAYING
    return b, w


def deliver(to: GameSession, messages: Iterable[Message]) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        out += to.receive(m)
    return out


def exchange(a: GameSession, b: GameSession, outbox: list[Message]) -> None:
    """Deliver `outbox` (from a) to b, then replies back and forth until quiet."""
    sender, receiver = a, b
    while outbox:
        outbox = deliver(receiver, outbox)
        sender, receiver = receiver, sender


def play_out(b: GameSession, w: GameSession, moves: int = 14) -> None:
    players = {Color.BLACK: HeuristicPlayer(1), Color.WHITE: HeuristicPlayer(2)}
    sessions = {Color.BLACK: (b, w), Color.WHITE: (w, b)}
    while b.phase is GamePhase.PLAYING:
        me, other = sessions[b.position.to_play]
        assert me.my_turn and not other.my_turn
        move = players[me.color].choose(me.position)
        if len(me.record.moves) >= moves or move.is_resign:
            move = Move.pass_(me.color)
        exchange(me, other, me.play(move))
    for s, o in ((b, w), (w, b)):
        if s.phase is GamePhase.SCORING:
            exchange(s, o, s.propose_dead(estimate_dead(s.position, playouts=16, seed=0)))


def test_a_whole_game_ends_with_one_record_signed_by_both() -> None:
    b, w = pair()
    play_out(b, w)
    assert b.phase is w.phase is GamePhase.FINISHED
    assert b.final_record is not None and w.final_record is not None
    data = b.final_record.to_cbor()
    assert data == w.final_record.to_cbor()
    assert b.result == w.result and b.result[0] in "BW0"
    assert b.signatures == w.signatures and len(b.signatures) == 2
    for key, sig in b.signatures.items():
        assert verify_signature(data, key, sig)
    record = GameRecord.from_cbor(data)
    assert record.black.name == BLACK and record.comments[0].startswith("time control")
    assert record.moves[-1].is_pass and record.moves[-2].is_pass


def test_resignation_finishes_and_both_sign() -> None:
    b, w = pair()
    exchange(b, w, b.play(Move.play(Color.BLACK, (2, 2))))
    exchange(w, b, w.play(Move.resign(Color.WHITE)))
    assert b.phase is w.phase is GamePhase.FINISHED
    assert b.result == w.result == "B+R"


def test_illegal_and_out_of_turn_moves_are_rejected_and_not_applied() -> None:
    b, w = pair()
    exchange(b, w, b.play(Move.play(Color.BLACK, (2, 2))))
    head = w.record.head
    # White plays on the occupied point: refused by the engine's reason.
    forged = GameMove("g1", 2, int(Color.WHITE), 0, 2, 2, head)
    (reply,) = b.receive(forged)
    assert isinstance(reply, GameMoveRejected) and "occupied" in reply.reason
    # Black moves again (out of turn); a move in the other's colour; a move off the chain.
    (reply,) = w.receive(GameMove("g1", 2, int(Color.BLACK), 0, 0, 0, head))
    assert isinstance(reply, GameMoveRejected) and "other player's turn" in reply.reason
    (reply,) = b.receive(GameMove("g1", 2, int(Color.BLACK), 0, 0, 0, head))
    assert isinstance(reply, GameMoveRejected) and "you play white" in reply.reason
    (reply,) = b.receive(GameMove("g1", 2, int(Color.WHITE), 0, 0, 0, bytes(32)))
    assert isinstance(reply, GameMoveRejected) and "chain head" in reply.reason
    (reply,) = b.receive(GameMove("g1", 5, int(Color.WHITE), 0, 0, 0, head))
    assert isinstance(reply, GameMoveRejected) and "expected move 2" in reply.reason
    (reply,) = b.receive(GameMove("g1", 2, int(Color.WHITE), 0, 9, 0, head))
    assert isinstance(reply, GameMoveRejected) and "off the board" in reply.reason
    assert len(b.record.moves) == 1 and b.record.head == head and len(b.rejected_incoming) == 5
    # Our own side refuses to send such moves at all.
    with pytest.raises(GameStateError):
        b.play(Move.play(Color.BLACK, (0, 0)))
    with pytest.raises(ValueError, match="occupied"):
        w.play(Move.play(Color.WHITE, (2, 2)))
    # The rejected sender gets its pending move dropped, not applied.
    out = w.play(Move.play(Color.WHITE, (1, 1)))
    assert w.receive(GameMoveRejected("g1", 2, "test")) == []
    assert w.pending is None and w.last_rejection == "test" and len(w.record.moves) == 1
    del out


def test_out_of_turn_while_our_move_is_in_flight() -> None:
    b, w = pair()
    exchange(b, w, b.play(Move.play(Color.BLACK, (2, 2))))
    w.play(Move.play(Color.WHITE, (1, 1)))  # in flight, not yet acked
    (reply,) = w.receive(GameMove("g1", 2, int(Color.BLACK), 0, 0, 0, w.record.head))
    assert isinstance(reply, GameMoveRejected)


def test_resume_after_a_lost_ack_and_a_lost_move() -> None:
    b, w = pair()
    exchange(b, w, b.play(Move.play(Color.BLACK, (2, 2))))
    # White's move arrives but its ack is lost with the connection.
    move = w.play(Move.play(Color.WHITE, (1, 1)))
    lost_ack = deliver(b, move)
    assert isinstance(lost_ack[0], GameMoveAck)
    assert len(b.record.moves) == 2 and len(w.record.moves) == 1 and w.pending
    # New stream: both send sync first; white commits its pending move from black's.
    b_sync, w_sync = b.sync(), w.sync()
    assert deliver(b, w_sync) == []
    assert deliver(w, b_sync) == []
    assert w.record.head == b.record.head and w.pending is None
    # Black's next move is lost entirely: after sync it is sent again and acked.
    b.play(Move.play(Color.BLACK, (3, 3)))
    resent = deliver(b, w.sync())
    assert [type(m) for m in resent] == [GameMove]
    exchange(b, w, resent)
    assert w.record.head == b.record.head and len(w.record.moves) == 3
    # A duplicate of an applied move is acked again, not applied twice.
    (dup,) = w.receive(resent[0])
    assert isinstance(dup, GameMoveAck) and len(w.record.moves) == 3
    assert b.receive(dup) == []


def test_diverged_games_cannot_resume() -> None:
    b, w = pair()
    exchange(b, w, b.play(Move.play(Color.BLACK, (2, 2))))
    with pytest.raises(GameProtocolError, match="diverged"):
        b.receive(GameSync("g1", 1, bytes(32)))
    with pytest.raises(GameProtocolError):
        b.receive(GameMoveAck("g1", 2, bytes(32)))


def test_a_dead_stone_dispute_is_settled_by_proposing_again() -> None:
    b, w = pair()
    for m in [(Color.BLACK, (0, 0)), (Color.WHITE, (4, 4))]:
        me, other = (b, w) if m[0] is Color.BLACK else (w, b)
        exchange(me, other, me.play(Move.play(*m)))
    exchange(b, w, b.play(Move.pass_(Color.BLACK)))
    exchange(w, b, w.play(Move.pass_(Color.WHITE)))
    assert b.phase is w.phase is GamePhase.SCORING
    exchange(b, w, b.propose_dead(frozenset({(4, 4)})))
    exchange(w, b, w.propose_dead(frozenset()))
    assert b.disputed and w.disputed
    with pytest.raises(GameStateError):
        b.propose_dead(frozenset({(2, 2)}))  # not a stone
    exchange(b, w, b.propose_dead(frozenset()))
    assert {b.phase, w.phase} == {GamePhase.FINISHED}
    assert b.result == w.result == "W+7.5"  # one stone each, komi decides


def test_signatures_that_do_not_match_are_protocol_errors() -> None:
    b, w = pair()
    exchange(b, w, b.play(Move.resign(Color.BLACK)))
    assert b.phase is GamePhase.FINISHED
    forged = GameSignature("g1", bytes(32), bytes(64))
    with pytest.raises(GameProtocolError):
        w.receive(forged)


def test_challenges_are_checked_and_can_be_declined() -> None:
    terms = GameTerms("g2", 9, "japanese", 6.5, BLACK, WHITE)
    message = terms.challenge_message(WHITE)
    assert GameTerms.from_challenge(message, WHITE) == terms
    with pytest.raises(GameProtocolError, match="wrong colour"):
        GameTerms.from_challenge(message, BLACK)
    with pytest.raises(GameProtocolError):
        GameTerms.from_challenge(message, "someone else")
    bad = GameChallenge("g2", 9, "no-such-rules", 13, 1, 0, 0, "", BLACK, WHITE)
    with pytest.raises(GameProtocolError):
        GameTerms.from_challenge(bad, BLACK)
    w = GameSession(terms, BLACK, SigningKey(b"x" * 32), bytes(32), challenger=False)
    (decline,) = w.decline("busy")
    assert w.phase is GamePhase.DECLINED
    b = GameSession(terms, WHITE, SigningKey(b"y" * 32), bytes(32), challenger=True)
    assert b.receive(decline) == [] and b.phase is GamePhase.DECLINED
    with pytest.raises(GameProtocolError):
        b.receive(GameAccept("g2"))


game_messages = st.one_of(
    st.builds(
        GameMove,
        st.just("g1"),
        st.integers(1, 6),
        st.integers(1, 2),
        st.integers(0, 2),
        st.integers(0, 6),
        st.integers(0, 6),
        st.sampled_from([bytes(32), b"\x01" * 32]),
    ),
    st.builds(GameMoveAck, st.just("g1"), st.integers(1, 4), st.binary(min_size=32, max_size=32)),
    st.builds(GameMoveRejected, st.just("g1"), st.integers(1, 4), st.text(max_size=5)),
    st.builds(GameSync, st.sampled_from(["g1", "g9"]), st.integers(0, 4), st.just(bytes(32))),
    st.builds(
        GameDeadStones,
        st.just("g1"),
        st.just(bytes(32)),
        st.lists(st.integers(0, 40), unique=True).map(lambda xs: tuple(sorted(xs))),
    ),
    st.builds(GameAccept, st.just("g1")),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(game_messages, max_size=6))
def test_hostile_messages_are_replies_or_protocol_errors(messages: list[Message]) -> None:
    b, w = pair()
    exchange(b, w, b.play(Move.play(Color.BLACK, (2, 2))))
    before = w.record.head
    for m in messages:
        with contextlib.suppress(ProtocolError):
            w.receive(m)
    # Whatever they sent, white's game only grows by legal moves on its own chain.
    assert w.record.extends([before]) or w.record.head == before
    w.record.replay()
