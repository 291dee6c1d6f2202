"""Hints: an :class:`Advisor` that asks an AI for its move and says in words why.

The heuristic player cannot say why it picked a move or how likely it is to win, so
:func:`explain_move` reads the reason off the board (a capture, an escape from atari,
an atari, or a quiet move). The neural network will bring its own advisor with win
rates; this one works with any :class:`~p2pgo_tui.AiOpponent`.
"""

from __future__ import annotations

from collections.abc import Sequence

from p2pgo_tui._engine import IllegalMove, Move, Position
from p2pgo_tui._protocols import AiOpponent, Suggestion

__all__ = ["ExplainingAdvisor", "explain_move"]


def _stones(n: int) -> str:
    return f"{n} stone" if n == 1 else f"{n} stones"


def explain_move(position: Position, move: Move) -> str:
    """A short reason for ``move`` in ``position``, read off the board."""
    if move.is_pass:
        return "pass: every move left fills an own eye or puts own stones in atari"
    if move.is_resign:
        return "resign: the game looks lost"
    assert move.point is not None
    try:
        after = position.play(move)
    except IllegalMove as exc:
        return f"not playable: {exc.reason.value}"
    me = move.color
    reasons: list[str] = []
    taken = (after.captures[0] - position.captures[0]) + (after.captures[1] - position.captures[1])
    if taken:
        reasons.append(f"captures {_stones(taken)}")
    saved = sum(
        len(stones)
        for color, stones, libs in position.groups()
        if color is me and libs == {move.point}
    )
    if saved and len(after.liberties(move.point)) > 1:
        reasons.append(f"saves {_stones(saved)} from atari")
    threatened = sum(
        len(stones)
        for color, stones, libs in after.groups()
        if color is not me
        and len(libs) == 1
        and any(n in stones for n in after.neighbours(move.point))
    )
    if threatened:
        reasons.append(f"puts {_stones(threatened)} in atari")
    if not reasons:
        reasons.append(
            "a quiet move: no capture or atari here; it keeps its own eyes and avoids self-atari"
        )
    return "; ".join(reasons)


class ExplainingAdvisor:
    """Suggests what ``ai`` would play, with :func:`explain_move`'s reason.

    Give it its own AI instance: asking the opponent itself for hints would advance
    the opponent's random state and change the game it plays.
    """

    def __init__(self, ai: AiOpponent) -> None:
        self._ai = ai

    def suggest(self, position: Position) -> Sequence[Suggestion]:
        if position.is_game_over:
            return []
        move = self._ai.choose(position)
        return [Suggestion(move, explain_move(position, move))]
