"""Rules from ASCII-art boards: captures, snapback, ko, superko, suicide, turns, passes."""

from __future__ import annotations

import pytest

from engine import (
    Color,
    IllegalMove,
    IllegalReason,
    Move,
    Position,
    Rules,
    SuperkoRule,
    fixed_handicap_points,
    to_gtp,
)

B, W = Color.BLACK, Color.WHITE


def board(text: str, to_play: Color = B, rules: Rules | None = None) -> Position:
    return Position.from_ascii(text, to_play, rules)


def test_single_stone_capture_counts_prisoner() -> None:
    p = board(
        """
        . X .
        X O X
        . . .
        """
    )
    q = p.play(Move.play(B, (2, 1)))
    assert q[(1, 1)] is Color.EMPTY
    assert q.captures == (1, 0)
    assert q.to_play is W


def test_group_capture_on_edge_and_liberties() -> None:
    p = board(
        """
        O O X .
        X X . .
        . . . .
        . . . .
        """
    )
    assert p.liberties((0, 0)) == frozenset({(1, 0)}) - {(1, 0)} | frozenset()  # no liberty left
    q = board(
        """
        O O X .
        X . . .
        . . . .
        . . . .
        """
    )
    assert q.liberties((0, 0)) == frozenset({(1, 1)})
    r = q.play(Move.play(B, (1, 1)))
    assert r[(0, 0)] is Color.EMPTY and r[(0, 1)] is Color.EMPTY
    assert r.captures == (2, 0)


def test_snapback_recaptures_more_than_one_stone() -> None:
    p = board(
        """
        . . O X .
        O O O X .
        X X X X .
        . . . . .
        . . . . .
        """
    )
    p = p.play(Move.play(B, (0, 0)))  # throw-in
    p = p.play(Move.play(W, (0, 1)))  # white takes the stone...
    assert p[(0, 0)] is Color.EMPTY and p.captures == (0, 1)
    assert p.ko is None  # white's group took it, not a lone stone: no ko
    p = p.play(Move.play(B, (0, 0)))  # ...and black takes back five
    assert p.captures == (5, 1)
    assert all(p[pt] is Color.EMPTY for pt in [(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)])


KO = """
. X O . .
X O . O .
. X O . .
. . . . .
. . . . .
"""


@pytest.mark.parametrize("superko", list(SuperkoRule))
def test_ko_cannot_be_retaken_at_once(superko: SuperkoRule) -> None:
    p = board(KO, rules=Rules(superko=superko))
    q = p.play(Move.play(B, (1, 2)))
    assert q.ko == (1, 1)
    with pytest.raises(IllegalMove) as err:
        q.play(Move.play(W, (1, 1)))
    assert err.value.reason is IllegalReason.KO
    # After an exchange elsewhere, the ko may be retaken.
    r = q.play(Move.play(W, (4, 4))).play(Move.play(B, (4, 0)))
    s = r.play(Move.play(W, (1, 1)))
    assert s[(1, 2)] is Color.EMPTY and s.ko == (1, 2)


def _triple_ko_board() -> str:
    ko_o = [". X O . . . . . .", "X O . O . . . . .", ". X O . . . . . ."]
    ko_x = [". X O . . . . . .", "X . X O . . . . .", ". X O . . . . . ."]
    return "\n".join(ko_o + ko_x + ko_o)


def _triple_ko_cycle(rules: Rules) -> list[Position]:
    p = board(_triple_ko_board(), rules=rules)
    # Each ko: black takes at column 2 of its middle row, white at column 1.
    moves = [
        Move.play(B, (1, 2)),
        Move.play(W, (4, 1)),
        Move.play(B, (7, 2)),
        Move.play(W, (1, 1)),
        Move.play(B, (4, 2)),
    ]
    out = [p]
    for m in moves:
        out.append(out[-1].play(m))
    return out


def test_positional_superko_forbids_triple_ko_cycle() -> None:
    line = _triple_ko_cycle(Rules.named("chinese"))
    with pytest.raises(IllegalMove) as err:
        line[-1].play(Move.play(W, (7, 1)))
    assert err.value.reason is IllegalReason.SUPERKO


def test_simple_ko_rules_allow_triple_ko_cycle() -> None:
    line = _triple_ko_cycle(Rules.named("japanese"))
    back = line[-1].play(Move.play(W, (7, 1)))
    assert back.same_board(line[0])


def test_situational_superko_distinguishes_side_to_move() -> None:
    rules = Rules.named("aga")
    line = _triple_ko_cycle(rules)
    with pytest.raises(IllegalMove):
        line[-1].play(Move.play(W, (7, 1)))  # same board, black to move again: repeats
    # The repetition key includes the side to move only under situational superko.
    text = _triple_ko_board()
    assert board(text, B, rules)._key() != board(text, W, rules)._key()
    chinese = Rules.named("chinese")
    assert board(text, B, chinese)._key() == board(text, W, chinese)._key()


def test_superko_log_branches_independently() -> None:
    line = _triple_ko_cycle(Rules.named("chinese"))
    start = line[0]
    # Explore a sibling line from the start; the original line's check is unaffected.
    sib = start.play(Move.play(B, (8, 8))).play(Move.play(W, (8, 7)))
    assert sib.move_number == 2
    with pytest.raises(IllegalMove):
        line[-1].play(Move.play(W, (7, 1)))
    # And the sibling line does not see the other line's positions.
    assert sib.play(Move.play(B, (1, 2))).captures == (1, 0)


def test_suicide_forbidden_by_default_and_allowed_by_tromp_taylor() -> None:
    text = """
    . X . .
    O X . .
    X . . .
    . . . .
    """
    p = board(text, to_play=W)
    with pytest.raises(IllegalMove) as err:
        p.play(Move.play(W, (0, 0)))
    assert err.value.reason is IllegalReason.SUICIDE
    tt = board(text, to_play=W, rules=Rules.named("tromp-taylor"))
    q = tt.play(Move.play(W, (0, 0)))
    # Multi-stone suicide removes white's own group; black is credited the prisoners.
    assert q[(0, 0)] is Color.EMPTY and q[(1, 0)] is Color.EMPTY
    assert q.captures == (2, 0)


def test_capture_is_not_suicide() -> None:
    p = board(
        """
        . O X .
        O X . .
        X . . .
        . . . .
        """
    )
    q = p.play(Move.play(B, (0, 0)))  # no liberty of its own, but it takes two stones
    assert q[(0, 1)] is Color.EMPTY and q[(1, 0)] is Color.EMPTY
    assert q.captures == (2, 0)


def test_occupied_wrong_turn_off_board() -> None:
    p = Position(9).play_at((4, 4))
    with pytest.raises(IllegalMove) as e1:
        p.play(Move.play(W, (4, 4)))
    assert e1.value.reason is IllegalReason.OCCUPIED
    with pytest.raises(IllegalMove) as e2:
        p.play(Move.play(B, (0, 0)))
    assert e2.value.reason is IllegalReason.WRONG_TURN
    assert p.play(Move.play(B, (0, 0)), strict_turn=False).to_play is W
    with pytest.raises(IllegalMove) as e3:
        p.play(Move.play(W, (9, 0)))
    assert e3.value.reason is IllegalReason.OFF_BOARD


def test_two_passes_end_the_game_and_resign() -> None:
    p = Position(9).play_at((2, 2)).play_at(None)
    assert not p.is_game_over
    q = p.play_at(None)
    assert q.is_game_over and q.passes == 2
    with pytest.raises(IllegalMove) as err:
        q.play_at((0, 0))
    assert err.value.reason is IllegalReason.GAME_OVER
    # A stone between passes resets the count.
    r = Position(9).play_at(None).play_at((1, 1)).play_at(None)
    assert not r.is_game_over
    s = Position(9).play(Move.resign(B))
    assert s.is_game_over and s.resigned is B
    assert s.history() == [Move.resign(B)]


def test_positions_are_immutable_values() -> None:
    p = Position(9)
    q = p.play_at((4, 4))
    assert p[(4, 4)] is Color.EMPTY and q[(4, 4)] is Color.BLACK
    assert p.move_number == 0 and q.move_number == 1 and q.parent is p
    assert q.history() == [Move.play(B, (4, 4))]


def test_legal_points_excludes_ko_suicide_and_stones() -> None:
    q = board(KO).play(Move.play(B, (1, 2)))
    legal = set(q.legal_points())
    assert (1, 1) not in legal  # ko
    assert (1, 2) not in legal  # occupied
    assert (0, 0) not in legal  # suicide for white
    assert (4, 4) in legal
    assert len(legal) == 25 - 7 - 2


def test_fixed_handicap_matches_gtp_table_on_19x19() -> None:
    names = [to_gtp(pt, 19) for pt in fixed_handicap_points(19, 9)]
    assert names == ["D4", "Q16", "D16", "Q4", "D10", "Q10", "K4", "K16", "K10"]
    assert [to_gtp(pt, 9) for pt in fixed_handicap_points(9, 2)] == ["C3", "G7"]
    assert [to_gtp(pt, 13) for pt in fixed_handicap_points(13, 5)] == [
        "D4",
        "K10",
        "D10",
        "K4",
        "G7",
    ]
    with pytest.raises(ValueError):
        fixed_handicap_points(19, 10)
    with pytest.raises(ValueError):
        fixed_handicap_points(10, 5)  # even boards have no centre: at most 4
    with pytest.raises(ValueError):
        fixed_handicap_points(5, 2)


def test_handicap_setup_gives_white_the_move() -> None:
    p = Position(19).with_setup(black=fixed_handicap_points(19, 4), to_play=W)
    assert p.to_play is W and len(p.stones(B)) == 4
    assert p.move_number == 0 and p.history() == []


def test_eye_like_points() -> None:
    p = board(
        """
        . X . O .
        X . X . .
        . X . . .
        . . . . .
        . . . . .
        """
    )
    assert p.is_eye_like((0, 0), B)
    assert p.is_eye_like((1, 1), B)
    assert not p.is_eye_like((1, 1), W)
    assert not p.is_eye_like((0, 2), B)  # an O on the edge diagonal makes it false


def test_from_ascii_rejects_bad_boards() -> None:
    with pytest.raises(ValueError):
        Position.from_ascii(". .\n. . .")
    with pytest.raises(ValueError):
        Position.from_ascii(". ?\n. .")


def test_rules_presets() -> None:
    assert Rules.named("Japanese").komi == 6.5
    assert Rules.named("chinese", komi=5.5).komi == 5.5
    assert Rules.named("tromp_taylor").suicide_allowed
    with pytest.raises(ValueError):
        Rules.named("martian")
