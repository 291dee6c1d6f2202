"""Peer-to-peer games as a sans-IO state machine: messages in, messages out.

Theory of operation
-------------------
A `GameSession` is one player's view of one game. It never touches a stream or a
clock: the shell (`net._game_service`) feeds it the opponent's messages
(`receive`) and our decisions (`accept`, `play`, `propose_dead`) and sends whatever
messages they return, in order, on the game's stream.

Phases::

    CHALLENGED --accept--> PLAYING --2 passes--> SCORING --same dead stones--> SIGNING
    OFFERED    --accept--> PLAYING --resign, flag fall---------------------> SIGNING
    CHALLENGED/OFFERED --decline--> DECLINED             SIGNING --their signature--> FINISHED

The challenge fixes the record header (`GameTerms.record`), so both sides start from
the same genesis link of the hash chain. Each `GameMove` names its number and the
chain head it is played on; the receiver checks number, colour, turn, head and then
the rules (`Position.play`), and answers `GameMoveAck(head after)` or
`GameMoveRejected(reason)`; a rejected move is not applied anywhere. The mover holds
its move as *pending* until the ack arrives and checks the ack's head against its own.

Resuming: after a new stream opens, both send `GameSync(moves, head)`. A side that
sees the other one move ahead with its pending move's head commits it (the ack was
lost); one move behind is fine when that move is the other side's (it will commit it
from our sync); equal means in step, and our pending move, dead-stone proposal and
signature are sent again. Anything else means the games diverged: a protocol error.
Every resent message is idempotent on arrival.

Resigning: a player may resign at any time during play, on the opponent's turn too
(`resign`): the resignation is a `GameMove` numbered after the last agreed move. If
it crosses the opponent's move in flight, the resignation wins: the opponent drops
its unacknowledged move and applies the resignation, and our side rejects the move
that crossed it. Two crossing resignations: black's stands. Either way both records
end with the same resignation, and both sign them as usual.

Clocks: `net._game_clock` keeps each side's remaining time as this player sees it
(Fischer time control from the terms; untimed when the main time is 0). Every call
takes ``now`` from the shell's clock (the session never reads one). A move arriving
after the mover's flag fell is rejected with a reason and the game ends ``B+Time`` /
``W+Time``; the shell calls `check_time` when `flag_deadline` passes, which ends it
the same way on either side. The side that flags first signs the time-loss record;
that signature doubles as the claim: the other side accepts it if the loser is the
sender, or if its own clock agrees within the grace (otherwise `GameProtocolError`).

Scoring: after two passes each side proposes dead stones (the shell starts from
`engine.estimate_dead`). Equal proposals fix the result; the final record (the game
plus its result) is signed by each side with `engine._store.sign_record` and the
signatures exchanged; both records are byte-identical, so both signatures cover the
same bytes and both players store one entry with two signatures. Unequal proposals are
a dispute the shell settles by proposing again.

Errors: an invalid *move* is answered with a rejection; anything else the opponent
sends that breaks the protocol raises `GameProtocolError` (the shell ends the
stream). Local misuse (playing out of turn, an illegal move) raises
`GameStateError` or `engine.IllegalMove`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import blake3
from nacl.signing import SigningKey

from engine import (
    Color,
    GameRecord,
    IllegalMove,
    Move,
    MoveKind,
    Point,
    Position,
    score,
)
from engine._store import sign_record, verify_signature
from net._game_clock import TIME_GRACE_S, ClockView, GameClock
from net._game_terms import (
    GameProtocolError,
    GameStateError,
    GameTerms,
    dead_points,
    engine_move,
    wire_move,
)
from net._wire import (
    GameAccept,
    GameDeadStones,
    GameDecline,
    GameMove,
    GameMoveAck,
    GameMoveRejected,
    GameSignature,
    GameSync,
    Message,
)

__all__ = [
    "GamePhase",
    "GameProtocolError",
    "GameSession",
    "GameStateError",
    "GameTerms",
    "dead_points",
]


class GamePhase(enum.Enum):
    CHALLENGED = "challenged"  # our challenge is out; waiting for the answer
    OFFERED = "offered"  # we were challenged; waiting for our decision
    PLAYING = "playing"
    SCORING = "scoring"  # two passes: agreeing on dead stones
    SIGNING = "signing"  # the final record is fixed; waiting for their signature
    FINISHED = "finished"  # both signatures held
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class _Pending:
    move: Move
    position: Position
    record: GameRecord


class GameSession:
    """One player's side of one game (see the module docstring)."""

    def __init__(
        self,
        terms: GameTerms,
        me: str,
        signing_key: SigningKey,
        opponent_key: bytes,
        *,
        challenger: bool,
        grace_s: float = TIME_GRACE_S,
    ) -> None:
        self.terms = terms
        self.me = me
        self.color = terms.color_of(me)
        self.opponent = terms.white if self.color is Color.BLACK else terms.black
        self._key = signing_key
        self.public_key = bytes(signing_key.verify_key)
        self.opponent_key = opponent_key
        self.phase = GamePhase.CHALLENGED if challenger else GamePhase.OFFERED
        self.record = terms.record()
        self.position = self.record.root_position()
        self.pending: _Pending | None = None
        self.rejected_incoming: list[str] = []  # reasons we refused their moves
        self.last_rejection: str | None = None  # why they refused our last move
        self.decline_reason: str | None = None
        self.our_dead: tuple[int, ...] | None = None
        self._their_dead: tuple[bytes, tuple[int, ...]] | None = None  # (head, points)
        self.final_record: GameRecord | None = None
        self.signatures: dict[bytes, bytes] = {}  # public key -> signature
        self._their_signature: GameSignature | None = None
        self.clock = GameClock(terms.main_time_s, terms.increment_s, grace_s=grace_s)
        self._resign_queued = False  # resign once our move in flight is settled

    # -- views -----------------------------------------------------------------

    @property
    def game_id(self) -> str:
        return self.terms.game_id

    @property
    def my_turn(self) -> bool:
        return (
            self.phase is GamePhase.PLAYING
            and self.pending is None
            and self.position.to_play is self.color
        )

    @property
    def their_dead(self) -> tuple[int, ...] | None:
        if self._their_dead is None or self._their_dead[0] != self.record.head:
            return None
        return self._their_dead[1]

    @property
    def disputed(self) -> bool:
        """Both proposals are in and differ (propose again to settle)."""
        theirs = self.their_dead
        return (
            self.phase is GamePhase.SCORING
            and self.our_dead is not None
            and theirs is not None
            and theirs != self.our_dead
        )

    @property
    def result(self) -> str:
        return self.final_record.result if self.final_record is not None else ""

    def clocks(self, now: float) -> ClockView | None:
        """Both sides' remaining time at `now` (None for an untimed game)."""
        return self.clock.view(now) if self.clock.timed else None

    def flag_deadline(self) -> float | None:
        """When the running clock's flag falls (call `check_time` then); None: no clock runs."""
        if self.phase is not GamePhase.PLAYING or self._resigning:
            return None
        return self.clock.flag_deadline()

    @property
    def _resigning(self) -> bool:
        return self.pending is not None and self.pending.move.is_resign

    # -- our decisions -----------------------------------------------------------

    def accept(self, now: float = 0.0) -> list[Message]:
        self._need(GamePhase.OFFERED)
        self.phase = GamePhase.PLAYING
        self.clock.start(self.position.to_play, now)  # the accept starts the first clock
        return [GameAccept(self.game_id)]

    def decline(self, reason: str) -> list[Message]:
        self._need(GamePhase.OFFERED)
        self.phase = GamePhase.DECLINED
        self.decline_reason = reason
        return [GameDecline(self.game_id, reason)]

    def play(self, move: Move, now: float = 0.0) -> list[Message]:
        """Send our move (checked with the engine first; `IllegalMove` if the rules forbid it).

        `GameStateError` if it is not our turn or our flag has fallen (call `check_time`).
        """
        if not self.my_turn:
            raise GameStateError(f"not our turn (phase {self.phase.value}, pending {self.pending})")
        if move.color is not self.color:
            raise GameStateError(f"we play {self.color.name}, not {move.color.name}")
        if not self.clock.in_time(now):
            raise GameStateError(f"out of time: {self.color.name.lower()}'s flag has fallen")
        position = self.position.play(move)
        self.pending = _Pending(move, position, self.record.with_move(move))
        self.last_rejection = None
        self.clock.freeze(now)
        return [self._pending_message()]

    def resign(self, now: float = 0.0) -> list[Message]:
        """Resign, on either side's turn (see the module docstring for crossing moves).

        With our own move in flight the resignation follows once it is acked or
        rejected (the messages then come out of `receive`); resigning twice is a no-op.
        """
        self._need(GamePhase.PLAYING)
        if self.pending is not None:
            self._resign_queued = not self._resigning
            return []
        out = self.check_time(now)
        if self.phase is not GamePhase.PLAYING:
            return out  # our flag had fallen already: the game ended on time
        move = Move.resign(self.color)
        self.pending = _Pending(move, self.position.play(move), self.record.with_move(move))
        self._resign_queued = False
        if self.clock.running is self.color:
            self.clock.freeze(now)
        return [self._pending_message()]

    def check_time(self, now: float) -> list[Message]:
        """End the game if the running clock's flag has fallen; our messages (a signature)."""
        if self.phase is not GamePhase.PLAYING or self._resigning:
            return []  # our resignation settles the game whatever the clocks say
        loser = self.clock.flagged(now)
        return [] if loser is None else self._lose_on_time(loser)

    def _lose_on_time(self, loser: Color) -> list[Message]:
        self.pending = None  # a move in flight no longer counts
        self._resign_queued = False
        self.clock.expire(loser)
        return self._finalise(f"{loser.opponent.letter}+Time")

    def _pending_message(self) -> GameMove:
        assert self.pending is not None
        number = len(self.record.moves) + 1
        return wire_move(self.game_id, number, self.pending.move, self.record.head)

    def propose_dead(self, points: frozenset[Point]) -> list[Message]:
        """Propose the dead stones (points holding stones in the final position)."""
        self._need(GamePhase.SCORING)
        self._check_dead(points, local=True)
        self.our_dead = dead_points(points, self.terms.size)
        return [GameDeadStones(self.game_id, self.record.head, self.our_dead), *self._agree()]

    def sync(self) -> list[Message]:
        """What to send first on a new (resumed) stream."""
        return [GameSync(self.game_id, len(self.record.moves), self.record.head)]

    # -- their messages ----------------------------------------------------------

    def receive(self, message: Message, now: float = 0.0) -> list[Message]:
        """Apply one message from the opponent (arrived at `now`); returns our replies."""
        if getattr(message, "game_id", self.game_id) != self.game_id:
            raise GameProtocolError(f"message for another game: {message!r:.80}")
        if isinstance(message, GameMove):
            return self._on_move(message, now)
        if isinstance(message, GameMoveAck):
            return self._on_ack(message, now)
        if isinstance(message, GameMoveRejected):
            if self.pending is not None and message.number == len(self.record.moves) + 1:
                self.pending = None
                self.last_rejection = message.reason
                self.clock.thaw()  # as they see it, our clock never stopped
                if self._resign_queued:
                    return self.resign(now)
            return []
        if isinstance(message, GameSync):
            return self._on_sync(message, now)
        if isinstance(message, GameDeadStones):
            return self._on_dead(message)
        if isinstance(message, GameSignature):
            return self._on_signature(message, now)
        if isinstance(message, GameAccept | GameDecline) and self.phase is GamePhase.CHALLENGED:
            if isinstance(message, GameAccept):
                self.phase = GamePhase.PLAYING
                self.clock.start(self.position.to_play, now)
            else:
                self.phase = GamePhase.DECLINED
                self.decline_reason = message.reason
            return []
        raise GameProtocolError(f"unexpected {message.KIND} in phase {self.phase.value}")

    def _on_move(self, message: GameMove, now: float) -> list[Message]:
        n = len(self.record.moves)
        chain = self.record.chain()
        move_or_reason = engine_move(message, self.terms.size)
        if message.number <= n and isinstance(move_or_reason, Move):
            # A resend after a lost ack: the same move on the same head is acked again.
            index = message.number
            if self.record.moves[index - 1] == move_or_reason and chain[index - 1] == (
                message.prev_head
            ):
                return [GameMoveAck(self.game_id, index, chain[index])]
        if self._resignation_wins(message, move_or_reason, n):
            self.pending = None  # never acked, so never part of their game either
            self._resign_queued = False
            self.clock.thaw()
        reason = self._refuse_move(message, move_or_reason, n)
        their_clock = self.clock.running is self.color.opponent
        late = reason is None and their_clock and not self.clock.in_time(now)
        if late:
            used = self.clock.used(now)
            left = self.clock.left(self.color.opponent, now) + used
            reason = (
                f"out of time: {self.color.opponent.name.lower()} used {used:.1f} s "
                f"of {left:.1f} s (+{self.clock.grace_s:g} s grace)"
            )
        if reason is not None:
            self.rejected_incoming.append(reason)
            out: list[Message] = [GameMoveRejected(self.game_id, message.number, reason)]
            return out + self._lose_on_time(self.color.opponent) if late else out
        assert isinstance(move_or_reason, Move)
        self.position = self.position.play(move_or_reason)  # checked in _refuse_move
        self.record = self.record.with_move(move_or_reason)
        ack = GameMoveAck(self.game_id, message.number, self.record.head)
        return [ack, *self._after_move(now)]

    def _resignation_wins(self, message: GameMove, move: Move | str, n: int) -> bool:
        """Their resignation crossed our unacked move: it wins (black's, if both resign)."""
        return (
            self.phase is GamePhase.PLAYING
            and self.pending is not None
            and isinstance(move, Move)
            and move.is_resign
            and message.number == n + 1
            and message.color == int(self.color.opponent)
            and message.prev_head == self.record.head
            and not (self._resigning and self.color is Color.BLACK)
        )

    def _refuse_move(self, message: GameMove, move: Move | str, n: int) -> str | None:
        if self.phase is not GamePhase.PLAYING:
            if self.result.endswith("+Time"):
                return f"the game is over: a flag fell ({self.result})"
            return f"the game is not in play ({self.phase.value})"
        if message.number != n + 1:
            return f"expected move {n + 1}, got move {message.number}"
        if message.color != int(self.color.opponent):
            return f"you play {self.color.opponent.name.lower()}"
        if self._resigning:
            return f"move {n + 1} is our resignation, which crossed yours and stands"
        if self.pending is not None:
            return f"out of turn: move {n + 1} is ours and awaits your ack"
        if message.prev_head != self.record.head:
            return "chain head mismatch: the move is not on top of our game"
        if isinstance(move, str):
            return move
        try:
            self.position.play(move)
        except IllegalMove as err:
            return err.reason.value
        return None

    def _on_ack(self, message: GameMoveAck, now: float) -> list[Message]:
        n = len(self.record.moves)
        if self.pending is None or message.number != n + 1:
            if message.number <= n and self.record.chain()[message.number] == message.head:
                return []  # a duplicate of an ack we already used
            raise GameProtocolError(f"unexpected ack for move {message.number}")
        if message.head != self.pending.record.head:
            raise GameProtocolError("the ack names another chain head: the games diverged")
        return self._commit_pending(now)

    def _commit_pending(self, now: float) -> list[Message]:
        assert self.pending is not None
        self.position, self.record = self.pending.position, self.pending.record
        self.pending = None
        out = self._after_move(now)
        if self._resign_queued and self.phase is GamePhase.PLAYING:
            out += self.resign(now)
        return out

    def _after_move(self, now: float) -> list[Message]:
        last = self.record.moves[-1]
        if self.clock.running is last.color:
            self.clock.charge(now)  # ours stopped when we sent it; theirs when it arrived
        if last.kind is MoveKind.RESIGN:
            self.clock.stop(now)
            return self._finalise(f"{last.color.opponent.letter}+R")
        if self.position.is_game_over:  # two passes
            self.clock.stop(now)
            self.phase = GamePhase.SCORING
            return self._agree()  # their proposal may have arrived early
        # The next clock starts now: we just sent the ack, or the ack just arrived.
        self.clock.start(self.position.to_play, now)
        return []

    def _on_sync(self, message: GameSync, now: float) -> list[Message]:
        n = len(self.record.moves)
        chain = self.record.chain()
        if message.moves == n and message.head == chain[-1]:
            out: list[Message] = [self._pending_message()] if self.pending is not None else []
        elif (
            message.moves == n + 1
            and self.pending is not None
            and message.head == self.pending.record.head
        ):
            out = self._commit_pending(now)  # they applied our move; its ack was lost
        elif (
            message.moves == n - 1
            and message.head == chain[-2]
            and self.record.moves[-1].color is not self.color
        ):
            out = []  # they hold their last move as pending and commit it on our sync
        else:
            raise GameProtocolError(
                f"cannot resume: they have {message.moves} moves, we have {n} (games diverged)"
            )
        scored = self.phase in (GamePhase.SCORING, GamePhase.SIGNING, GamePhase.FINISHED)
        if scored and self.our_dead is not None:
            out.append(GameDeadStones(self.game_id, self.record.head, self.our_dead))
        if self.final_record is not None:
            out.append(self._signature_message())
        return out

    def _check_dead(self, points: frozenset[Point], *, local: bool) -> None:
        cells = self.position.cells()
        size = self.terms.size
        for r, c in points:
            if not (0 <= r < size and 0 <= c < size) or cells[r * size + c] == Color.EMPTY:
                problem = f"dead stone {(r, c)} is not a stone on the board"
                raise GameStateError(problem) if local else GameProtocolError(problem)

    def _on_dead(self, message: GameDeadStones) -> list[Message]:
        size = self.terms.size
        if any(p >= size * size for p in message.points):
            raise GameProtocolError("dead stone off the board")
        if self.phase in (GamePhase.SIGNING, GamePhase.FINISHED):
            return []  # a resend after agreement
        if message.head == self.record.head and self.phase is GamePhase.SCORING:
            self._check_dead(frozenset(divmod(p, size) for p in message.points), local=False)
        self._their_dead = (message.head, message.points)
        return self._agree() if self.phase is GamePhase.SCORING else []

    def _agree(self) -> list[Message]:
        theirs = self.their_dead
        if self.our_dead is None or theirs is None or theirs != self.our_dead:
            return []
        dead = [divmod(p, self.terms.size) for p in self.our_dead]
        return self._finalise(score(self.position, dead).result())

    def _finalise(self, result: str) -> list[Message]:
        self.final_record = self.record.with_result(result)
        public, signature = sign_record(self.final_record, self._key)
        self.signatures[public] = signature
        self.phase = GamePhase.SIGNING
        early, self._their_signature = self._their_signature, None
        out: list[Message] = [self._signature_message()]
        if early is not None:
            out += self._check_signature(early)
        return out

    def _signature_message(self) -> GameSignature:
        assert self.final_record is not None
        data = self.final_record.to_cbor()
        return GameSignature(
            self.game_id, blake3.blake3(data).digest(), self.signatures[self.public_key]
        )

    def _on_signature(self, message: GameSignature, now: float) -> list[Message]:
        if self.final_record is None:
            claim = self._time_claim(message, now)
            if claim is not None:
                return claim
            self._their_signature = message  # checked once our final record is fixed
            return []
        return self._check_signature(message)

    def _check_signature(self, message: GameSignature) -> list[Message]:
        assert self.final_record is not None
        data = self.final_record.to_cbor()
        if message.record_digest != blake3.blake3(data).digest():
            raise GameProtocolError("their signature covers another final record")
        if not verify_signature(data, self.opponent_key, message.signature):
            raise GameProtocolError("their signature does not verify")
        self.signatures[self.opponent_key] = message.signature
        self.phase = GamePhase.FINISHED
        return []

    def _time_claim(self, message: GameSignature, now: float) -> list[Message] | None:
        """Their signature of a time-loss record while we still play: their flag call."""
        if self.phase is not GamePhase.PLAYING or not self.clock.timed:
            return None
        for loser in (Color.BLACK, Color.WHITE):
            claimed = self.record.with_result(f"{loser.opponent.letter}+Time")
            if blake3.blake3(claimed.to_cbor()).digest() == message.record_digest:
                break
        else:
            return None
        # They may always concede; a claim against us must match our own clock.
        if loser is self.color and not self.clock.claim_plausible(self.color, now):
            left = self.clock.left(self.color, now)
            raise GameProtocolError(f"premature time claim: our clock shows {left:.1f} s left")
        self._their_signature = message  # checked by _finalise like any early signature
        return self._lose_on_time(loser)

    def _need(self, phase: GamePhase) -> None:
        if self.phase is not phase:
            raise GameStateError(f"needs phase {phase.value}, the game is {self.phase.value}")
