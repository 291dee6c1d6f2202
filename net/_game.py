"""Peer-to-peer games as a sans-IO state machine: messages in, messages out.

Theory of operation
-------------------
A `GameSession` is one player's view of one game. It never touches a stream or a
clock: the shell (`net._game_service`) feeds it the opponent's messages
(`receive`) and our decisions (`accept`, `play`, `propose_dead`) and sends whatever
messages they return, in order, on the game's stream.

Phases::

    CHALLENGED --accept--> PLAYING --2 passes--> SCORING --same dead stones--> SIGNING
    OFFERED    --accept--> PLAYING --resign----------------------------------> SIGNING
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
    Player,
    Point,
    Position,
    Rules,
    score,
)
from engine._store import sign_record, verify_signature
from net._errors import NetError, ProtocolError
from net._wire import (
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
)

_KIND_CODE = {MoveKind.PLAY: 0, MoveKind.PASS: 1, MoveKind.RESIGN: 2}


class GameProtocolError(ProtocolError):
    """The opponent broke the game protocol (the shell ends the stream)."""


class GameStateError(NetError):
    """We asked the session for something the game's state does not allow."""


class GamePhase(enum.Enum):
    CHALLENGED = "challenged"  # our challenge is out; waiting for the answer
    OFFERED = "offered"  # we were challenged; waiting for our decision
    PLAYING = "playing"
    SCORING = "scoring"  # two passes: agreeing on dead stones
    SIGNING = "signing"  # the final record is fixed; waiting for their signature
    FINISHED = "finished"  # both signatures held
    DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class GameTerms:
    """What a challenge fixes: everything in the record header, plus time control."""

    game_id: str
    size: int
    rules: str
    komi: float
    black: str  # peer ids
    white: str
    main_time_s: int = 0  # 0: untimed
    increment_s: int = 0
    date: str = ""

    def __post_init__(self) -> None:
        if self.black == self.white:
            raise ValueError("black and white must be different peers")
        if (self.komi * 2) != int(self.komi * 2):
            raise ValueError(f"komi must be a multiple of 0.5, got {self.komi}")
        Rules.named(self.rules)  # ValueError for an unknown rule set
        self.challenge_message(self.black)  # the wire record checks the remaining ranges

    def color_of(self, peer_id: str) -> Color:
        if peer_id == self.black:
            return Color.BLACK
        if peer_id == self.white:
            return Color.WHITE
        raise ValueError(f"{peer_id} does not play in game {self.game_id}")

    def challenge_message(self, challenger: str) -> GameChallenge:
        return GameChallenge(
            game_id=self.game_id,
            size=self.size,
            rules=self.rules,
            komi_halves=int(self.komi * 2),
            challenger_color=int(self.color_of(challenger)),
            main_time_s=self.main_time_s,
            increment_s=self.increment_s,
            date=self.date,
            black=self.black,
            white=self.white,
        )

    @classmethod
    def from_challenge(cls, message: GameChallenge, challenger: str) -> GameTerms:
        """The terms a challenge from `challenger` proposes; `GameProtocolError` if unsound."""
        try:
            terms = cls(
                message.game_id,
                message.size,
                message.rules,
                message.komi_halves / 2,
                message.black,
                message.white,
                message.main_time_s,
                message.increment_s,
                message.date,
            )
            claimed = terms.color_of(challenger)
        except ValueError as err:
            raise GameProtocolError(f"unacceptable challenge: {err}") from None
        if int(claimed) != message.challenger_color:
            raise GameProtocolError("the challenge names the challenger in the wrong colour")
        return terms

    def record(self) -> GameRecord:
        """The empty game both players build; equal terms give byte-identical records."""
        comments = {}
        if self.main_time_s:
            comments[0] = f"time control: {self.main_time_s} s + {self.increment_s} s per move"
        return GameRecord(
            size=self.size,
            rules=Rules.named(self.rules, self.komi),
            black=Player(self.black),
            white=Player(self.white),
            date=self.date,
            comments=comments,
            game_id=self.game_id,
        )


def _wire_move(game_id: str, number: int, move: Move, prev_head: bytes) -> GameMove:
    row, col = move.point if move.point is not None else (0, 0)
    return GameMove(game_id, number, int(move.color), _KIND_CODE[move.kind], row, col, prev_head)


def _engine_move(message: GameMove, size: int) -> Move | str:
    """The engine move a wire move stands for, or why it cannot be one."""
    color = Color(message.color)
    if message.move_kind == 0:
        if not (message.row < size and message.col < size):
            return "point is off the board"
        return Move.play(color, (message.row, message.col))
    if (message.row, message.col) != (0, 0):
        return "a pass or resignation has no point"
    return Move.pass_(color) if message.move_kind == 1 else Move.resign(color)


def dead_points(points: frozenset[Point], size: int) -> tuple[int, ...]:
    return tuple(sorted(r * size + c for r, c in points))


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

    # -- our decisions -----------------------------------------------------------

    def accept(self) -> list[Message]:
        self._need(GamePhase.OFFERED)
        self.phase = GamePhase.PLAYING
        return [GameAccept(self.game_id)]

    def decline(self, reason: str) -> list[Message]:
        self._need(GamePhase.OFFERED)
        self.phase = GamePhase.DECLINED
        self.decline_reason = reason
        return [GameDecline(self.game_id, reason)]

    def play(self, move: Move) -> list[Message]:
        """Send our move (checked with the engine first; `IllegalMove` if the rules forbid it)."""
        if not self.my_turn:
            raise GameStateError(f"not our turn (phase {self.phase.value}, pending {self.pending})")
        if move.color is not self.color:
            raise GameStateError(f"we play {self.color.name}, not {move.color.name}")
        position = self.position.play(move)
        self.pending = _Pending(move, position, self.record.with_move(move))
        self.last_rejection = None
        return [self._pending_message()]

    def _pending_message(self) -> GameMove:
        assert self.pending is not None
        number = len(self.record.moves) + 1
        return _wire_move(self.game_id, number, self.pending.move, self.record.head)

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

    def receive(self, message: Message) -> list[Message]:
        """Apply one message from the opponent; returns our replies, in order."""
        if getattr(message, "game_id", self.game_id) != self.game_id:
            raise GameProtocolError(f"message for another game: {message!r:.80}")
        if isinstance(message, GameMove):
            return self._on_move(message)
        if isinstance(message, GameMoveAck):
            return self._on_ack(message)
        if isinstance(message, GameMoveRejected):
            if self.pending is not None and message.number == len(self.record.moves) + 1:
                self.pending = None
                self.last_rejection = message.reason
            return []
        if isinstance(message, GameSync):
            return self._on_sync(message)
        if isinstance(message, GameDeadStones):
            return self._on_dead(message)
        if isinstance(message, GameSignature):
            return self._on_signature(message)
        if isinstance(message, GameAccept | GameDecline) and self.phase is GamePhase.CHALLENGED:
            if isinstance(message, GameAccept):
                self.phase = GamePhase.PLAYING
            else:
                self.phase = GamePhase.DECLINED
                self.decline_reason = message.reason
            return []
        raise GameProtocolError(f"unexpected {message.KIND} in phase {self.phase.value}")

    def _on_move(self, message: GameMove) -> list[Message]:
        n = len(self.record.moves)
        chain = self.record.chain()
        move_or_reason = _engine_move(message, self.terms.size)
        if message.number <= n and isinstance(move_or_reason, Move):
            # A resend after a lost ack: the same move on the same head is acked again.
            index = message.number
            if self.record.moves[index - 1] == move_or_reason and chain[index - 1] == (
                message.prev_head
            ):
                return [GameMoveAck(self.game_id, index, chain[index])]
        reason = self._refuse_move(message, move_or_reason, n)
        if reason is not None:
            self.rejected_incoming.append(reason)
            return [GameMoveRejected(self.game_id, message.number, reason)]
        assert isinstance(move_or_reason, Move)
        self.position = self.position.play(move_or_reason)  # checked in _refuse_move
        self.record = self.record.with_move(move_or_reason)
        return [GameMoveAck(self.game_id, message.number, self.record.head), *self._after_move()]

    def _refuse_move(self, message: GameMove, move: Move | str, n: int) -> str | None:
        if self.phase is not GamePhase.PLAYING:
            return f"the game is not in play ({self.phase.value})"
        if message.number != n + 1:
            return f"expected move {n + 1}, got move {message.number}"
        if message.color != int(self.color.opponent):
            return f"you play {self.color.opponent.name.lower()}"
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

    def _on_ack(self, message: GameMoveAck) -> list[Message]:
        n = len(self.record.moves)
        if self.pending is None or message.number != n + 1:
            if message.number <= n and self.record.chain()[message.number] == message.head:
                return []  # a duplicate of an ack we already used
            raise GameProtocolError(f"unexpected ack for move {message.number}")
        if message.head != self.pending.record.head:
            raise GameProtocolError("the ack names another chain head: the games diverged")
        return self._commit_pending()

    def _commit_pending(self) -> list[Message]:
        assert self.pending is not None
        self.position, self.record = self.pending.position, self.pending.record
        self.pending = None
        return self._after_move()

    def _after_move(self) -> list[Message]:
        last = self.record.moves[-1]
        if last.kind is MoveKind.RESIGN:
            return self._finalise(f"{last.color.opponent.letter}+R")
        if self.position.is_game_over:  # two passes
            self.phase = GamePhase.SCORING
            return self._agree()  # their proposal may have arrived early
        return []

    def _on_sync(self, message: GameSync) -> list[Message]:
        n = len(self.record.moves)
        chain = self.record.chain()
        if message.moves == n and message.head == chain[-1]:
            out: list[Message] = [self._pending_message()] if self.pending is not None else []
        elif (
            message.moves == n + 1
            and self.pending is not None
            and message.head == self.pending.record.head
        ):
            out = self._commit_pending()  # they applied our move; its ack was lost
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
            out += self._on_signature(early)
        return out

    def _signature_message(self) -> GameSignature:
        assert self.final_record is not None
        data = self.final_record.to_cbor()
        return GameSignature(
            self.game_id, blake3.blake3(data).digest(), self.signatures[self.public_key]
        )

    def _on_signature(self, message: GameSignature) -> list[Message]:
        if self.final_record is None:
            self._their_signature = message  # checked once our final record is fixed
            return []
        data = self.final_record.to_cbor()
        if message.record_digest != blake3.blake3(data).digest():
            raise GameProtocolError("their signature covers another final record")
        if not verify_signature(data, self.opponent_key, message.signature):
            raise GameProtocolError("their signature does not verify")
        self.signatures[self.opponent_key] = message.signature
        self.phase = GamePhase.FINISHED
        return []

    def _need(self, phase: GamePhase) -> None:
        if self.phase is not phase:
            raise GameStateError(f"needs phase {phase.value}, the game is {self.phase.value}")
