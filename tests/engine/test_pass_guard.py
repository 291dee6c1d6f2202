"""The pass guard (area scoring): no pass while an empty region touches both colours,
and the move it plays instead is in such a region and safe."""

from __future__ import annotations

from engine import Color, Position, Rules
from engine._pass_guard import contested_points, pass_alternative

SETTLED = """
. X O .
X X O O
. X O .
X X O O
"""

DAME = """
. X . O .
. X . O .
. X . O .
. X . O .
. X . O .
"""

# White to play. (0,2) would leave its stone one liberty (a self-atari); (1,3)
# joins the white wall. (1,1) borders black only, so it is not contested.
SELF_ATARI = """
. X . . O
X . X . O
. X . . O
X . X . O
. X . . O
"""

# The only contested point, (0,2), is a self-atari for white (its group keeps one
# liberty, its own eye at (0,0)) but a good move for black (white goes into atari).
ONE_POINT = """
. O . X .
O O X . .
X X . . .
. . . . .
. . . . .
"""


def test_a_settled_board_has_no_contested_points_and_passing_is_fine() -> None:
    pos = Position.from_ascii(SETTLED)
    assert contested_points(pos) == frozenset()
    assert pass_alternative(pos, [(0, 0), (2, 3), None]) is None


def test_a_column_of_dame_is_contested_and_the_best_ranked_point_in_it_is_played() -> None:
    pos = Position.from_ascii(DAME)
    assert contested_points(pos) == frozenset((r, 2) for r in range(5))
    # Points in one's own area are skipped however well they rank.
    assert pass_alternative(pos, [None, (0, 0), (3, 2), (1, 2)]) == (3, 2)
    # Nothing in the contested region ranked: pass.
    assert pass_alternative(pos, [None, (0, 0), (4, 4)]) is None


def test_an_invasion_makes_the_whole_area_contested() -> None:
    pos = Position.from_ascii(
        """
        . . . X O
        . O . X O
        . . . X O
        X X X X O
        O O O O O
        """,
        to_play=Color.BLACK,
    )
    assert contested_points(pos) == {
        (0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)
    }  # fmt: skip
    assert pass_alternative(pos, [None, (1, 2)]) == (1, 2)


def test_a_self_atari_is_skipped_for_a_safe_point() -> None:
    pos = Position.from_ascii(SELF_ATARI, to_play=Color.WHITE)
    contested = contested_points(pos)
    assert {(0, 2), (1, 3)} <= contested and (1, 1) not in contested
    assert len(pos.play_at((0, 2)).liberties((0, 2))) == 1
    assert pass_alternative(pos, [None, (0, 2), (1, 3)]) == (1, 3)


def test_with_only_a_self_atari_left_the_player_passes_and_the_other_side_plays_it() -> None:
    white = Position.from_ascii(ONE_POINT, to_play=Color.WHITE)
    assert contested_points(white) == {(0, 2)}
    assert pass_alternative(white, [None, *white.legal_points()]) is None
    black = Position.from_ascii(ONE_POINT, to_play=Color.BLACK)
    assert pass_alternative(black, [None, *black.legal_points()]) == (0, 2)


def test_territory_scoring_never_overrides_a_pass() -> None:
    pos = Position.from_ascii(DAME, rules=Rules.named("japanese"))
    assert contested_points(pos)  # the dame are there ...
    assert pass_alternative(pos, [None, (1, 2)]) is None  # ... but a stone costs a point
