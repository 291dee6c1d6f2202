"""One game against the AI: the moves, whose turn it is, undo, and the count at the end.

Pure state with no Textual in it: the board screen drives a :class:`GameSession` and
draws what it says, so the rules of the interaction (who may move, what undo takes
back, when counting starts, what the result is) are tested without a terminal.

Theory of operation
-------------------
The game is a header (a :class:`GameRecord` without moves) plus the current
:class:`Position`, whose ``history()`` is the move list. Undo walks back up the
position's parents, so nothing is recomputed. The phase is derived from the position
and the counting state:

========  =====================================================================
PLAYING   stones and passes; the AI moves whenever it is not the human's turn
SCORING   two passes ended play: dead stones are marked, then the count confirmed
FINISHED  a result exists (resignation or confirmed count); nothing more changes
========  =====================================================================
"""

from __future__ import annotations

import enum
from dataclasses import replace

from p2pgo_tui._engine import (
    Color,
    GameRecord,
    Move,
    Point,
    Position,
    RecordPlayer,
    Score,
    game_result,
    score,
    to_gtp,
)
from p2pgo_tui._settings import GameSettings

__all__ = ["GameSession", "Phase", "SessionError", "describe_move", "describe_result"]


class Phase(enum.Enum):
    PLAYING = "playing"
    SCORING = "scoring"
    FINISHED = "finished"


class SessionError(Exception):
    """An action the game's phase or turn does not allow; the message says why."""


class GameSession:
    """A game between the human (``human``) and the AI, from a header record."""

    def __init__(self, record: GameRecord, human: Color) -> None:
        """Continue ``record`` (raises ``RecordError`` if a move in it is illegal)."""
        if human not in (Color.BLACK, Color.WHITE):
            raise SessionError("the human plays black or white")
        self.human = human
        self.position: Position = record.replay()
        self._header = replace(record, moves=(), result="", comments={})
        self._comments = dict(record.comments)
        self.dead: frozenset[Point] = frozenset()
        self.final_score: Score | None = None
        self.result = ""
        if record.result or self.position.resigned is not None:
            self.result = record.result or game_result(self.position)

    @classmethod
    def new(
        cls,
        settings: GameSettings,
        *,
        human_name: str = "You",
        ai_name: str = "AI",
        date: str = "",
    ) -> GameSession:
        black, white = (
            (human_name, ai_name) if settings.human is Color.BLACK else (ai_name, human_name)
        )
        record = GameRecord.new(
            settings.size,
            settings.rule_set,
            black=RecordPlayer(black),
            white=RecordPlayer(white),
            date=date,
            handicap_points=settings.handicap_points(),
        )
        return cls(record, settings.human)

    # ---- reading the state --------------------------------------------------------

    @property
    def phase(self) -> Phase:
        if self.result:
            return Phase.FINISHED
        if self.position.passes >= 2:
            return Phase.SCORING
        return Phase.PLAYING

    @property
    def ai_color(self) -> Color:
        return self.human.opponent

    @property
    def ai_to_move(self) -> bool:
        return self.phase is Phase.PLAYING and self.position.to_play is not self.human

    @property
    def human_to_move(self) -> bool:
        return self.phase is Phase.PLAYING and self.position.to_play is self.human

    @property
    def size(self) -> int:
        return self.position.size

    @property
    def header(self) -> GameRecord:
        return self._header

    def player_name(self, color: Color) -> str:
        player = self._header.black if color is Color.BLACK else self._header.white
        return player.name

    def can_undo(self) -> bool:
        return self.phase is not Phase.FINISHED and any(
            m.color is self.human for m in self.position.history()
        )

    def record(self) -> GameRecord:
        """The game so far as a record (with the result once there is one)."""
        moves = tuple(self.position.history())
        comments = {i: t for i, t in self._comments.items() if i <= len(moves)}
        return replace(self._header, moves=moves, result=self.result, comments=comments)

    def provisional_score(self) -> Score:
        """The count with the dead stones marked so far."""
        return score(self.position, self.dead)

    # ---- playing ------------------------------------------------------------------

    def _require_phase(self, phase: Phase) -> None:
        current = self.phase
        if current is phase:
            return
        if current is Phase.FINISHED:
            raise SessionError(f"the game is over ({self.result}); start a new game")
        if current is Phase.SCORING:
            raise SessionError("play has ended: mark the dead stones and confirm the count")
        raise SessionError("the game is still being played")

    def play(self, point: Point | None) -> Move:
        """The human plays a stone at ``point`` (``None`` passes).

        Raises :class:`SessionError` out of turn and ``IllegalMove`` for a move the
        rules forbid; either way nothing changes.
        """
        self._require_phase(Phase.PLAYING)
        if self.position.to_play is not self.human:
            raise SessionError("it is the AI's turn: wait for its move")
        move = Move.pass_(self.human) if point is None else Move.play(self.human, point)
        self.position = self.position.play(move)
        return move

    def apply_ai(self, move: Move) -> None:
        """Play the AI's move (``IllegalMove`` if the AI broke the rules)."""
        self._require_phase(Phase.PLAYING)
        if self.position.to_play is self.human or move.color is self.human:
            raise SessionError("it is not the AI's turn")
        self.position = self.position.play(move)
        if self.position.resigned is not None:
            self.result = game_result(self.position)

    def resign(self) -> str:
        """The human resigns; returns the result (``W+R`` / ``B+R``)."""
        self._require_phase(Phase.PLAYING)
        self.position = self.position.play(Move.resign(self.human), strict_turn=False)
        self.dead = frozenset()
        self.result = game_result(self.position)
        return self.result

    def undo(self) -> int:
        """Take back the human's last move and every AI move after it.

        Against the AI that means "my move and its reply", or just "my move" while the
        AI is still thinking. In counting it resumes play. Returns the number of moves
        taken back; raises :class:`SessionError` when there is no move of the human's
        to take back or the game is over.
        """
        if self.phase is Phase.FINISHED:
            raise SessionError(f"the game is over ({self.result}); start a new game")
        pos = self.position
        taken = 0
        while pos.parent is not None and pos.last_move is not None:
            move = pos.last_move
            pos = pos.parent
            taken += 1
            if move.color is self.human:
                break
        else:
            raise SessionError("nothing to undo: you have not moved yet")
        self.position = pos
        self.dead = frozenset()
        return taken

    # ---- counting -----------------------------------------------------------------

    def set_dead(self, dead: frozenset[Point]) -> None:
        """Replace the dead stones (the estimator's proposal)."""
        self._require_phase(Phase.SCORING)
        cells = self.position.cells()
        size = self.size
        self.dead = frozenset(p for p in dead if cells[p[0] * size + p[1]] != Color.EMPTY)

    def toggle_dead(self, point: Point) -> frozenset[Point]:
        """Mark the group at ``point`` dead, or alive again; returns that group."""
        self._require_phase(Phase.SCORING)
        group = self.position.group(point)
        if not group:
            raise SessionError("there is no stone there: choose a group to mark")
        self.dead = self.dead - group if group & self.dead else self.dead | group
        return group

    def confirm(self) -> Score:
        """Accept the count: the game is finished with its result."""
        self._require_phase(Phase.SCORING)
        self.final_score = self.provisional_score()
        self.result = self.final_score.result()
        return self.final_score


def describe_result(result: str, human: Color | None = None) -> str:
    """``"W+R"`` -> ``"White wins by resignation"`` (and who that is, given ``human``)."""
    text = result.strip().upper()
    if text in ("0", "DRAW", "JIGO"):
        return "Draw (jigo)"
    if len(text) < 3 or text[0] not in "BW" or text[1] != "+":
        return result or "no result"
    winner = Color.BLACK if text[0] == "B" else Color.WHITE
    margin = text[2:]
    if margin in ("R", "RESIGN"):
        how = "by resignation"
    elif margin in ("T", "TIME"):
        how = "on time"
    else:
        how = f"by {margin} points"
    line = f"{winner.name.title()} wins {how}"
    if human is not None:
        line += " — you win!" if winner is human else " — the AI wins"
    return line


def describe_move(move: Move | None, size: int) -> str:
    """``B D4``, ``W pass``, ``B resigns`` (empty for no move)."""
    if move is None:
        return ""
    if move.is_pass:
        return f"{move.color.letter} pass"
    if move.is_resign:
        return f"{move.color.letter} resigns"
    return f"{move.color.letter} {to_gtp(move.point, size)}"
