"""engine.tactics: capture, liberty, atari and ladder facts per point, checked against
the rules engine (which plays the moves itself) and on hand-made ladders."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Color, Move, Position, Rules, SuperkoRule, tactics

# No superko, so a move is legal exactly when it is not occupied, not the ko point and
# not suicide: what tactics() computes.
SIMPLE_KO = Rules(superko=SuperkoRule.NONE)


def _random_position(size: int, moves: int, seed: int) -> Position:
    rng = random.Random(seed)
    pos = Position(size, SIMPLE_KO)
    for _ in range(moves):
        legal = pos.legal_points()
        pos = pos.play_at(rng.choice(legal) if legal else None)
        if pos.is_game_over:
            break
    return pos


def _points(flags: tuple[bool, ...], size: int) -> set[tuple[int, int]]:
    return {divmod(i, size) for i, flag in enumerate(flags) if flag}


@settings(max_examples=40, deadline=None)
@given(size=st.sampled_from([5, 7, 9]), moves=st.integers(0, 80), seed=st.integers(0, 10**6))
def test_captures_and_liberties_match_the_rules_engine(size: int, moves: int, seed: int) -> None:
    pos = _random_position(size, moves, seed)
    if pos.is_game_over:
        return
    t = tactics(pos)
    me = pos.to_play
    legal = set(pos.legal_points())
    for r in range(size):
        for c in range(size):
            i = r * size + c
            if (r, c) not in legal:
                assert t.liberties_after[i] == 0 and not t.ladder_capture[i]
                continue
            after = pos.play(Move.play(me, (r, c)))
            assert t.liberties_after[i] == len(after.liberties((r, c)))
            removed = len(pos.stones(me.opponent)) - len(after.stones(me.opponent))
            assert t.captures[i] == removed
            # The opponent there (pos with the other side to move) would capture these.
            threat = sum(
                len(pos.group(q))
                for q in {min(pos.group(n)) for n in pos.neighbours((r, c)) if pos[n] is me}
                if pos.liberties(q) == frozenset({(r, c)})
            )
            assert t.threatened[i] == threat


def test_self_atari_ko_and_suicide() -> None:
    pos = Position.from_ascii(
        """
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        . . . . .
        """,
        to_play=Color.BLACK,
    )
    t = tactics(pos)
    # Black at (1, 2) takes the white stone at (1, 1) and stands in atari: a ko.
    assert t.captures[1 * 5 + 2] == 1
    assert t.liberties_after[1 * 5 + 2] == 1
    # Black at (0, 0) joins (0, 1) and (1, 0): the chain's one liberty is (2, 0).
    assert t.liberties_after[0] == 1
    ko = pos.play(Move.play(Color.BLACK, (1, 2)))
    assert ko.ko == (1, 1)
    assert tactics(ko).liberties_after[1 * 5 + 1] == 0  # white may not retake
    assert tactics(ko).captures[1 * 5 + 1] == 1  # ... though it would capture
    suicide = Position.from_ascii(
        """
        . X . . .
        X . . . .
        . . . . .
        . . . . .
        . . . . .
        """,
        to_play=Color.WHITE,
    )
    assert tactics(suicide).liberties_after[0] == 0


def test_threatened_marks_the_last_liberty_of_a_group_in_atari() -> None:
    pos = Position.from_ascii(
        """
        . . . . .
        . O . . .
        O X X O .
        . O O . .
        . . . . .
        """,
        to_play=Color.BLACK,
    )
    t = tactics(pos)
    # The two black stones' one liberty is (1, 2): white there captures both.
    assert _points(tuple(v > 0 for v in t.threatened), 5) == {(1, 2)}
    assert t.threatened[1 * 5 + 2] == 2


LADDER = """
. . . . . . . . .
. . . . . . . . .
. . . . . . . . .
. . . . . . . . .
. . . . . . . . .
. . . . . . X . .
. . . . . X O . .
. . . . . . . X .
. . . . . . . . .
"""


def _with_stone(text: str, point: tuple[int, int], stone: str) -> str:
    rows = [line.split() for line in text.strip().splitlines()]
    rows[point[0]][point[1]] = stone
    return "\n".join(" ".join(row) for row in rows)


def test_a_ladder_toward_the_corner_works_for_the_attacker() -> None:
    # White's stone has two liberties; either atari drives it into the corner.
    black = tactics(Position.from_ascii(LADDER, to_play=Color.BLACK))
    assert _points(black.ladder_capture, 9) == {(6, 7), (7, 6)}
    # White to move: nothing is in atari, so no escape question and no ladder to start.
    white = tactics(Position.from_ascii(LADDER, to_play=Color.WHITE))
    assert not any(white.ladder_escape_fails) and not any(white.ladder_capture)


def test_a_ladder_breaker_saves_the_stone() -> None:
    # After black (6, 7), white runs to (7, 6) and joins a white stone at (7, 5): three
    # liberties, so that atari is no ladder any more.
    pos = Position.from_ascii(_with_stone(LADDER, (7, 5), "O"), to_play=Color.BLACK)
    assert (6, 7) not in _points(tactics(pos).ladder_capture, 9)


EDGE = """
. . . . . . .
. . . . . . .
. . . . . . .
. . . . . . .
. . X . . . .
. X O X . . .
. . . . . . .
"""


def test_escaping_along_the_edge_fails_unless_a_friend_waits() -> None:
    # White's stone at (5, 2) has one liberty, (6, 2), on the edge: extending there
    # leaves two liberties along the edge, and black ataris it to death.
    pos = Position.from_ascii(EDGE, to_play=Color.WHITE)
    assert pos.liberties((5, 2)) == frozenset({(6, 2)})
    assert _points(tactics(pos).ladder_escape_fails, 7) == {(6, 2)}
    # White stones at (5, 4) and (6, 4): black's atari at (6, 3) puts its own two
    # stones in atari (white captures them), and the atari at (6, 1) lets white join
    # the friends. The escape works.
    friends = _with_stone(_with_stone(EDGE, (5, 4), "O"), (6, 4), "O")
    saved = Position.from_ascii(friends, to_play=Color.WHITE)
    assert not any(tactics(saved).ladder_escape_fails)


def test_the_reader_gives_up_within_its_budget() -> None:
    # With no budget nothing can be read, so no ladder is claimed.
    pos = Position.from_ascii(LADDER, to_play=Color.BLACK)
    assert not any(tactics(pos, ladder_budget=0).ladder_capture)
    assert any(tactics(pos, ladder_budget=200).ladder_capture)
