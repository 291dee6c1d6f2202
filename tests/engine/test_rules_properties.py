"""Hypothesis: random legal games keep the rules' invariants and agree with sgfmill."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st
from sgfmill import boards

from engine import Color, IllegalMove, Move, Position, Rules


def _random_game(size: int, choices: list[int], rules: Rules) -> list[Position]:
    """Play moves picked by `choices` among the legal points (index, or pass when 0)."""
    line = [Position(size, rules)]
    for pick in choices:
        pos = line[-1]
        if pos.is_game_over:
            break
        legal = pos.legal_points()
        if pick == 0 or not legal:
            line.append(pos.play(Move.pass_(pos.to_play)))
        else:
            line.append(pos.play(Move.play(pos.to_play, legal[pick % len(legal)])))
    return line


games = st.tuples(
    st.sampled_from([2, 3, 4, 5, 7, 9]),
    st.lists(st.integers(0, 10_000), min_size=1, max_size=120),
    st.sampled_from(["chinese", "japanese", "tromp-taylor", "aga"]),
)


@settings(max_examples=60, deadline=None)
@given(games)
def test_invariants_hold_along_random_games(args: tuple[int, list[int], str]) -> None:
    size, choices, name = args
    line = _random_game(size, choices, Rules.named(name))
    for before, after in itertools.pairwise(line):
        # Every group on the board has a liberty.
        assert all(libs for _, _, libs in after.groups())
        # Stones on the board = stones played - prisoners taken.
        played = [m for m in after.history() if not m.is_pass]
        on_board = len(after.stones(Color.BLACK)) + len(after.stones(Color.WHITE))
        assert on_board == len(played) - sum(after.captures)
        # Prisoners never decrease and the move alternates.
        assert after.captures[0] >= before.captures[0] and after.captures[1] >= before.captures[1]
        assert after.to_play is before.to_play.opponent
        assert (
            after.zobrist
            == Position(size)
            .with_setup(after.stones(Color.BLACK), after.stones(Color.WHITE))
            .zobrist
        )


@settings(max_examples=60, deadline=None)
@given(games)
def test_boards_agree_with_sgfmill(args: tuple[int, list[int], str]) -> None:
    size, choices, name = args
    line = _random_game(size, choices, Rules.named(name))
    ref = boards.Board(size)
    for pos in line[1:]:
        move = pos.last_move
        assert move is not None
        if move.point is not None:
            r, c = move.point
            ref.play(size - 1 - r, c, "b" if move.color is Color.BLACK else "w")
        for r in range(size):
            for c in range(size):
                theirs = ref.get(size - 1 - r, c)
                expected = {None: Color.EMPTY, "b": Color.BLACK, "w": Color.WHITE}[theirs]
                assert pos[(r, c)] is expected


@settings(max_examples=40, deadline=None)
@given(games)
def test_positional_superko_never_repeats_a_board(args: tuple[int, list[int], str]) -> None:
    size, choices, _ = args
    line = _random_game(size, choices, Rules.named("chinese"))
    seen: set[bytes] = set()
    for pos in line:
        if pos.last_move is not None and pos.last_move.is_pass:
            continue
        assert pos.cells() not in seen
        seen.add(pos.cells())


@settings(max_examples=40, deadline=None)
@given(games)
def test_legal_points_match_play(args: tuple[int, list[int], str]) -> None:
    size, choices, name = args
    pos = _random_game(size, choices, Rules.named(name))[-1]
    if pos.is_game_over:
        return
    legal = set(pos.legal_points())
    for r in range(size):
        for c in range(size):
            try:
                pos.play(Move.play(pos.to_play, (r, c)))
                ok = True
            except IllegalMove:
                ok = False
            assert ok == ((r, c) in legal)
