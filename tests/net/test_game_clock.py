"""Game clocks and resigning at any time, on the sans-IO session with an injected clock.

Each test passes ``now`` explicitly: black's and white's sessions each read their own
(fake) clock, and a message "arrives" at whatever time the test says.
"""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from engine import Color, Move
from net._game import GamePhase, GameProtocolError, GameSession, GameStateError, GameTerms
from net._game_clock import TIME_GRACE_S, GameClock
from net._wire import GameMove, GameMoveAck, GameMoveRejected, GameSignature, Message

BLACK, WHITE = "peer-black", "peer-white"
B, W = Color.BLACK, Color.WHITE


def pair(
    main: int = 60, increment: int = 5, accept_delay: float = 0.0
) -> tuple[GameSession, GameSession]:
    """(black = challenger, white = accepter); white accepts at t=0."""
    terms = GameTerms("g1", 5, "chinese", 7.5, BLACK, WHITE, main, increment, "2024-05-01")
    kb, kw = SigningKey(b"b" * 32), SigningKey(b"w" * 32)
    b = GameSession(terms, BLACK, kb, bytes(kw.verify_key), challenger=True)
    w = GameSession(terms, WHITE, kw, bytes(kb.verify_key), challenger=False)
    assert b.receive(w.accept(now=0.0)[0], now=accept_delay) == []
    return b, w


def send(to: GameSession, messages: list[Message], now: float) -> list[Message]:
    out: list[Message] = []
    for m in messages:
        out += to.receive(m, now=now)
    return out


def move(
    me: GameSession, other: GameSession, point: tuple[int, int], sent: float, rtt: float
) -> None:
    """`me` plays at `sent`; it arrives half a round trip later, the ack a whole one later."""
    replies = send(other, me.play(Move.play(me.color, point), now=sent), now=sent + rtt / 2)
    assert isinstance(replies[0], GameMoveAck)
    assert send(me, replies, now=sent + rtt) == []


def test_the_clock_alone_charges_thinking_time_and_adds_the_increment() -> None:
    clock = GameClock(10, 2)
    clock.start(B, 100.0)
    assert clock.left(B, 104.0) == 6.0 and clock.left(W, 104.0) == 10.0
    clock.freeze(104.0)
    assert clock.left(B, 200.0) == 6.0  # frozen while the move is in flight
    assert clock.charge() == 4.0
    assert clock.left(B, 300.0) == 8.0 and clock.running is None
    clock.start(W, 300.0)
    assert clock.flag_deadline() == 300.0 + 10.0 + TIME_GRACE_S
    assert clock.flagged(311.0 - 0.01) is None and clock.flagged(311.01) is W
    assert not GameClock(0, 0).timed and GameClock(0, 0).flagged(1e9) is None


def test_both_sides_see_the_same_clocks_whatever_the_latency() -> None:
    b, w = pair(main=60, increment=5, accept_delay=1.0)
    move(b, w, (2, 2), sent=11.0, rtt=2.0)  # black thought 10 s after the accept arrived
    move(w, b, (1, 1), sent=15.0, rtt=2.0)  # white 3 s after its ack went out
    move(b, w, (3, 3), sent=23.0, rtt=2.0)  # black 7 s
    cb, cw = b.clocks(30.0), w.clocks(30.0)
    assert cb is not None and cw is not None
    assert cb.running is cw.running is W
    # Black: 60 - 10 + 5 - 7 + 5 in its own view; white charged black's first move one
    # round trip more (the accept is no ack), later moves exactly the same.
    assert cb.remaining(B) == pytest.approx(53.0) and cw.remaining(B) == pytest.approx(51.0)
    # White: 60 - 3 + 5, running since its ack went out (24) / arrived (25).
    assert cw.remaining(W) == pytest.approx(62.0 - 6.0)
    assert cb.remaining(W) == pytest.approx(62.0 - 5.0)


def test_an_untimed_game_has_no_clocks() -> None:
    b, w = pair(main=0, increment=0)
    move(b, w, (2, 2), sent=1e6, rtt=0.1)
    assert b.clocks(2e6) is None and b.flag_deadline() is None and w.check_time(3e6) == []


def test_a_late_move_is_rejected_and_both_agree_black_lost_on_time() -> None:
    b, w = pair(main=10, increment=0)
    move(b, w, (2, 2), sent=4.0, rtt=0.2)  # black has 6 s left
    move(w, b, (1, 1), sent=5.0, rtt=0.2)  # black's clock restarts at 5.2 (black's view)
    # Black sends at 12.0 (6.8 s used: inside the grace in black's view) but the move
    # takes 0.5 s: 7.3 s in white's view, past 6 s + 1 s grace.
    out = b.play(Move.play(B, (3, 3)), now=12.0)
    replies = send(w, out, now=12.5)
    assert isinstance(replies[0], GameMoveRejected) and "out of time" in replies[0].reason
    assert isinstance(replies[1], GameSignature)
    assert w.phase is GamePhase.SIGNING and w.result == "W+Time"
    assert w.rejected_incoming[-1].startswith("out of time: black used 7.3 s of 5.9 s")
    # Black sees the rejection and white's signed claim, which its own clock supports.
    final = send(b, replies, now=12.7)
    assert b.result == "W+Time" and b.pending is None
    send(w, final, now=12.8)
    assert {b.phase, w.phase} == {GamePhase.FINISHED}
    assert b.final_record is not None and b.final_record == w.final_record
    assert len(b.final_record.moves) == 2
    assert b.signatures == w.signatures and len(b.signatures) == 2


def test_a_silent_player_loses_when_the_flag_deadline_passes_on_either_side() -> None:
    b, w = pair(main=10, increment=2)
    move(b, w, (2, 2), sent=1.0, rtt=0.2)
    deadline = w.flag_deadline()  # white's own clock: started when its ack went out
    black_deadline = b.flag_deadline()
    assert deadline is not None and black_deadline is not None
    assert deadline == pytest.approx(1.1 + 10.0 + TIME_GRACE_S)
    assert w.check_time(deadline - 0.01) == []
    assert b.check_time(black_deadline - 0.01) == []
    # White's own view flags first (it started its clock later): it concedes.
    conceded = w.check_time(deadline + 0.01)
    assert w.result == "B+Time" and isinstance(conceded[0], GameSignature)
    # Black has not flagged white yet; a concession is accepted at any time.
    assert b.phase is GamePhase.PLAYING
    final = send(b, conceded, now=deadline - 0.5)
    send(w, final, now=deadline + 0.1)
    assert {b.phase, w.phase} == {GamePhase.FINISHED} and b.result == "B+Time"
    # Any move after the flag is refused with the reason.
    (rejected,) = w.receive(GameMove("g1", 2, int(W), 0, 0, 0, b.record.head), now=99.0)
    assert isinstance(rejected, GameMoveRejected)
    (rejected,) = b.receive(GameMove("g1", 2, int(W), 0, 0, 0, b.record.head), now=99.0)
    assert isinstance(rejected, GameMoveRejected) and "flag fell (B+Time)" in rejected.reason


def test_both_flag_at_once_and_still_finish_with_one_record() -> None:
    b, w = pair(main=5, increment=0)
    move(b, w, (2, 2), sent=1.0, rtt=0.2)
    from_w, from_b = w.check_time(30.0), b.check_time(30.0)
    send(b, from_w, now=30.1)
    send(w, from_b, now=30.1)
    assert {b.phase, w.phase} == {GamePhase.FINISHED}
    assert b.result == w.result == "B+Time"


def test_a_premature_time_claim_is_a_protocol_error() -> None:
    b, w = pair(main=60, increment=0)
    move(b, w, (2, 2), sent=1.0, rtt=0.2)
    # Black claims white's flag fell 5 s into white's 60 s.
    b.clock.start(W, -1000.0)  # black's clock is wrong (or black lies)
    claim = b.check_time(6.0)
    assert b.result == "B+Time"
    with pytest.raises(GameProtocolError, match="premature time claim"):
        send(w, claim, now=6.1)


def test_playing_after_our_own_flag_fell_is_refused_locally() -> None:
    b, _ = pair(main=10, increment=0)
    with pytest.raises(GameStateError, match="out of time"):
        b.play(Move.play(B, (2, 2)), now=11.5)
    assert b.check_time(11.5)[0].KIND == "game_signature" and b.result == "W+Time"


def test_resigning_on_the_opponents_turn_is_agreed_and_signed_by_both() -> None:
    b, w = pair()
    move(b, w, (2, 2), sent=1.0, rtt=0.2)
    assert not b.my_turn
    out = b.resign(now=2.0)  # white is thinking
    assert isinstance(out[0], GameMove) and out[0].move_kind == 2 and out[0].number == 2
    final = send(w, out, now=2.1)
    send(w, send(b, final, now=2.2), now=2.3)
    assert {b.phase, w.phase} == {GamePhase.FINISHED} and b.result == w.result == "W+R"
    assert b.final_record == w.final_record and b.final_record is not None
    assert b.final_record.moves[-1] == Move.resign(B)
    assert len(b.signatures) == 2 and b.signatures == w.signatures
    with pytest.raises(GameStateError):
        b.resign(now=3.0)
    with pytest.raises(GameStateError):
        w.play(Move.play(W, (1, 1)), now=3.0)  # white's move was being chosen: too late


def test_a_resignation_crossing_the_opponents_move_wins() -> None:
    b, w = pair()
    move(b, w, (2, 2), sent=1.0, rtt=0.2)
    white_move = w.play(Move.play(W, (1, 1)), now=3.0)
    black_resigns = b.resign(now=3.0)
    # Both messages are in flight; each side now receives the other's.
    from_w = send(w, black_resigns, now=3.1)  # white drops its move, acks, signs
    from_b = send(b, white_move, now=3.1)  # black refuses the crossing move
    assert isinstance(from_b[0], GameMoveRejected) and "resignation" in from_b[0].reason
    assert w.result == "W+R" and w.pending is None
    send(w, from_b, now=3.2)  # the rejection of a move white already dropped: ignored
    send(w, send(b, from_w, now=3.2), now=3.3)
    assert {b.phase, w.phase} == {GamePhase.FINISHED} and b.result == w.result == "W+R"
    assert b.final_record == w.final_record and b.final_record is not None
    assert len(b.final_record.moves) == 2


def test_two_crossing_resignations_black_stands() -> None:
    b, w = pair()
    move(b, w, (2, 2), sent=1.0, rtt=0.2)
    black_resigns, white_resigns = b.resign(now=3.0), w.resign(now=3.0)
    from_w = send(w, black_resigns, now=3.1)
    from_b = send(b, white_resigns, now=3.1)
    assert isinstance(from_b[0], GameMoveRejected) and "stands" in from_b[0].reason
    assert send(w, from_b, now=3.2) == []  # rejects a resignation white dropped already
    send(w, send(b, from_w, now=3.2), now=3.3)
    assert b.result == w.result == "W+R"
    assert {b.phase, w.phase} == {GamePhase.FINISHED}
    assert b.final_record == w.final_record


def test_resigning_with_our_move_in_flight_follows_its_ack() -> None:
    b, w = pair()
    played = b.play(Move.play(B, (2, 2)), now=1.0)
    assert b.resign(now=1.05) == []  # queued behind the move in flight
    assert b.resign(now=1.06) == []
    acked = send(w, played, now=1.1)
    resignation = send(b, acked, now=1.2)
    assert isinstance(resignation[0], GameMove) and resignation[0].number == 2
    send(w, send(b, send(w, resignation, now=1.3), now=1.4), now=1.5)
    assert {b.phase, w.phase} == {GamePhase.FINISHED} and b.result == "W+R"


def test_a_late_resignation_on_our_turn_still_loses_on_time() -> None:
    b, w = pair(main=10, increment=0)
    out = b.resign(now=10.9)  # in time in black's view
    replies = send(w, out, now=11.2)  # past 10 s + 1 s grace in white's view
    assert isinstance(replies[0], GameMoveRejected) and w.result == "W+Time"
    send(w, send(b, replies, now=11.3), now=11.4)
    assert {b.phase, w.phase} == {GamePhase.FINISHED} and b.result == "W+Time"
