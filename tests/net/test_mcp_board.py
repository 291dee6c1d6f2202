"""Board states for the MCP server: the compact string and SGF, and their errors."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Color, GameRecord, Move, Position, Rules, dump_sgf, from_gtp
from net._mcp_board import BoardStateError, format_board_state, parse_board_state

KO_EXAMPLE = (
    "........./........./........./..XO...../.XO.O..../..XO...../........./........./"
    ".........;b;ko=D5;komi=7.5"
)


def _random_game(size: int, moves: int, seed: int) -> Position:
    rng = random.Random(seed)
    pos = Position(size)
    for _ in range(moves):
        legal = pos.legal_points()
        pos = pos.play_at(rng.choice(legal) if legal else None)
        if pos.is_game_over:
            break
    return pos


def test_the_documented_example_has_a_ko_that_forbids_the_retake() -> None:
    pos = parse_board_state(KO_EXAMPLE)
    d5 = from_gtp("D5", 9)
    assert d5 is not None
    assert pos.to_play is Color.BLACK and pos.ko == d5
    assert not pos.is_legal(Move.play(Color.BLACK, d5))
    # The capture that made the ko is the last move; the stones are as written.
    assert pos.last_move == Move.play(Color.WHITE, (4, 2))  # C5
    assert format_board_state(pos) == KO_EXAMPLE
    without = parse_board_state(KO_EXAMPLE.replace(";ko=D5", ""))
    assert without.is_legal(Move.play(Color.BLACK, d5))


def test_komi_rules_and_side_to_move() -> None:
    pos = parse_board_state(" .X./.../O.. ; white ; komi=-3 ; rules=japanese ")
    assert pos.size == 3 and pos.to_play is Color.WHITE
    assert pos.rules == Rules.named("japanese", -3.0)
    assert pos[(0, 1)] is Color.BLACK and pos[(2, 0)] is Color.WHITE
    assert parse_board_state(".../.../...;b").rules.komi == 7.5


def test_sgf_gives_the_end_of_the_main_line_with_its_history() -> None:
    pos = _random_game(9, 30, seed=4)
    sgf = dump_sgf(GameRecord.from_position(pos)).decode()
    got = parse_board_state(sgf)
    assert got.same_board(pos) and got.to_play is pos.to_play
    assert got.history() == pos.history() and got.ko == pos.ko


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from([2, 3, 5, 9, 13]),
    moves=st.integers(0, 60),
    seed=st.integers(0, 10**6),
)
def test_format_then_parse_keeps_stones_side_ko_and_komi(size: int, moves: int, seed: int) -> None:
    pos = _random_game(size, moves, seed)
    if pos.is_game_over:
        return
    got = parse_board_state(format_board_state(pos))
    assert got.same_board(pos)
    assert (got.to_play, got.ko, got.rules.komi) == (pos.to_play, pos.ko, pos.rules.komi)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("XO", "ROWS;TO_PLAY"),
        (".../...;b", "row 1 has 3 points"),
        ("./.;b;", "row"),  # 2 rows of 1 point
        (".;b", "a board is 2 to 25 rows"),
        ("/".join(["." * 26] * 26) + ";b", "2 to 25 rows"),
        (".../.Z./...;b", "row 2 has 'Z'"),
        (".../.../...;x", "side to move"),
        (".../.../...;b;komi=abc", "komi must be a number"),
        (".../.../...;b;komi=nan", "finite"),
        (".../.../...;b;komi=1e9", "finite"),
        (".../.../...;b;rules=klingon", "unknown rules"),
        (".../.../...;b;colour=b", "unknown board_state field"),
        (".../.../...;b;komi=1;komi=2", "twice"),
        (".../.../...;b;ko=Z9", "ko:"),
        (".../.../...;b;ko=pass", "not pass"),
        (".X./.../...;b;ko=B3", "must be empty"),
        (".../.../...;b;ko=B2", "is not a ko"),
        ("XO./O../...;b", "no liberties"),
        ("(;GM[1]SZ[9];B[zz])", "not a usable SGF"),
        ("(;GM[1]SZ[9];B[aa];W[aa])", "not a usable SGF"),
        ("(;GM[4])", "not a usable SGF"),
        ("x" * 1_000_001, "the limit is"),
    ],
)
def test_bad_board_states_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(BoardStateError) as info:
        parse_board_state(text)
    assert message in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="XO.xo+/;=bwkomiD5 (GM[]SZ9)", max_size=60))
def test_any_text_parses_or_raises_board_state_error(text: str) -> None:
    # Anything but BoardStateError escaping here fails the test.
    with contextlib.suppress(BoardStateError):
        parse_board_state(text)
