"""What a game challenge fixes (`GameTerms`), the game's error types, and the
conversions between engine moves and `GameMove` wire records (used by `net._game`)."""

from __future__ import annotations

from dataclasses import dataclass

from engine import Color, GameRecord, Move, MoveKind, Player, Point, Rules
from net._errors import NetError, ProtocolError
from net._wire import GameChallenge, GameMove

_KIND_CODE = {MoveKind.PLAY: 0, MoveKind.PASS: 1, MoveKind.RESIGN: 2}


class GameProtocolError(ProtocolError):
    """The opponent broke the game protocol (the shell ends the stream)."""


class GameStateError(NetError):
    """We asked the session for something the game's state does not allow."""


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


def wire_move(game_id: str, number: int, move: Move, prev_head: bytes) -> GameMove:
    row, col = move.point if move.point is not None else (0, 0)
    return GameMove(game_id, number, int(move.color), _KIND_CODE[move.kind], row, col, prev_head)


def engine_move(message: GameMove, size: int) -> Move | str:
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
