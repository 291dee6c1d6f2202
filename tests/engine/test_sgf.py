"""SGF load/save: coordinates, round trips, real-world style files, malformed input."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sgfmill import sgf

from engine._coords import to_gtp
from engine._record import GameRecord, Player
from engine._rules import Color, Move, Rules, ScoringRule, SuperkoRule, fixed_handicap_points
from engine._sgf import SgfError, dump_sgf, load_sgf
from tests.engine.test_record import legal_games

# ---- coordinates -----------------------------------------------------------------------


def test_dd_on_19x19_is_engine_3_3_and_gtp_d16() -> None:
    record = load_sgf(b"(;GM[1]FF[4]SZ[19];B[dd];W[pp];B[ds])")
    assert record.moves[0] == Move.play(Color.BLACK, (3, 3))
    assert to_gtp(record.moves[0].point, 19) == "D16"
    assert to_gtp(record.moves[1].point, 19) == "Q4"
    assert record.moves[2].point == (18, 3) and to_gtp((18, 3), 19) == "D1"
    assert record.replay()[(3, 3)] is Color.BLACK


def test_rows_match_sgfmill_which_counts_from_the_bottom() -> None:
    record = GameRecord(size=9, moves=(Move.play(Color.BLACK, (0, 8)),))  # top right
    game = sgf.Sgf_game.from_bytes(dump_sgf(record))
    assert game.get_main_sequence()[1].get_move() == ("b", (8, 8))
    assert b"B[ia]" in dump_sgf(record)  # SGF's own letters: column i, row a (top)


# ---- a real-world style game -----------------------------------------------------------


def sgfmill_game() -> bytes:
    """A handicap game as another program would write it (sgfmill's serialiser)."""
    game = sgf.Sgf_game(19)
    root = game.get_root()
    root.set("KM", 0.5)
    root.set("HA", 4)
    root.set("RU", "Japanese")
    root.set("PB", "Kuwabara Ryōko")
    root.set("BR", "2k")
    root.set("PW", "Tanaka")
    root.set("WR", "4d")
    root.set("DT", "2019-03-02")
    root.set("RE", "W+12.5")
    root.set("C", "A teaching game.\nWhite gives four stones.")
    root.set_setup_stones([(3, 3), (3, 15), (15, 3), (15, 15)], [])
    seq = [("w", (16, 13)), ("b", (16, 15)), ("w", None), ("b", (2, 2)), ("w", None), ("b", None)]
    for i, (colour, move) in enumerate(seq):
        node = game.extend_main_sequence()
        node.set_move(colour, move)
        if i == 1:
            node.set("C", "Hane at the 3-3.")
    return bytes(game.serialise())


def test_load_a_real_world_style_handicap_game() -> None:
    record = load_sgf(sgfmill_game())
    assert record.size == 19
    assert record.rules == Rules.named("japanese", komi=0.5)
    assert record.rules.scoring is ScoringRule.TERRITORY
    assert record.handicap == 4
    # sgfmill (3, 3) is the fourth row from the bottom: GTP D4, engine row 15.
    assert set(record.setup_black) == {(15, 3), (15, 15), (3, 3), (3, 15)}
    assert record.first_player is Color.WHITE
    assert record.black == Player("Kuwabara Ryōko", "2k")
    assert record.white == Player("Tanaka", "4d")
    assert (record.date, record.result) == ("2019-03-02", "W+12.5")
    assert record.comments == {
        0: "A teaching game.\nWhite gives four stones.",
        2: "Hane at the 3-3.",
    }
    assert [m.is_pass for m in record.moves] == [False, False, True, False, True, True]
    assert record.moves[0] == Move.play(Color.WHITE, (2, 13))
    final = record.replay()
    assert final.is_game_over and final[(15, 3)] is Color.BLACK
    assert load_sgf(dump_sgf(record)) == record


def test_save_then_load_preserves_the_game_and_is_stable() -> None:
    record = load_sgf(sgfmill_game())
    once = dump_sgf(record)
    assert load_sgf(once) == record
    assert dump_sgf(load_sgf(once)) == once
    assert b"CA[UTF-8]" in once and "Ryōko".encode() in once


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(legal_games())
def test_round_trip_of_random_legal_games(record: GameRecord) -> None:
    data = dump_sgf(record)
    again = load_sgf(data)
    assert again == record
    assert again.replay().same_board(record.replay())
    assert dump_sgf(again) == data


@pytest.mark.parametrize("size", [5, 19, 21, 25])
def test_passes_round_trip_on_every_size(size: int) -> None:
    record = GameRecord(
        size=size, moves=(Move.pass_(Color.BLACK), Move.play(Color.WHITE, (size - 1, 0)))
    )
    data = dump_sgf(record)
    assert load_sgf(data) == record
    assert load_sgf(data).moves[1].point == (size - 1, 0)


def test_out_of_turn_moves_still_load() -> None:
    record = load_sgf(b"(;SZ[9];B[aa];B[bb];W[cc];W[dd])")
    assert [m.color for m in record.moves] == [Color.BLACK, Color.BLACK, Color.WHITE, Color.WHITE]
    assert load_sgf(dump_sgf(record)) == record


def test_white_first_without_handicap_writes_pl() -> None:
    record = GameRecord(size=9, first_player=Color.WHITE)
    data = dump_sgf(record)
    assert b"PL[W]" in data
    assert load_sgf(data) == record
    assert load_sgf(b"(;SZ[9]PL[W])").first_player is Color.WHITE
    assert load_sgf(b"(;SZ[9]HA[2]AB[cc][gg])").first_player is Color.WHITE


def test_setup_with_ae_and_setup_in_a_node_before_the_first_move() -> None:
    record = load_sgf(b"(;SZ[9]AB[aa][bb]AW[cc];AE[aa]AW[dd];B[ee])")
    assert record.setup_black == ((1, 1),)
    assert record.setup_white == ((2, 2), (3, 3))
    assert record.moves == (Move.play(Color.BLACK, (4, 4)),)


@pytest.mark.parametrize(
    ("ru", "name", "superko"),
    [
        ("Chinese", "chinese", SuperkoRule.POSITIONAL),
        ("japanese", "japanese", SuperkoRule.NONE),
        ("NZ", "new-zealand", SuperkoRule.SITUATIONAL),
        ("Tromp Taylor", "tromp-taylor", SuperkoRule.POSITIONAL),
        ("AGA", "aga", SuperkoRule.SITUATIONAL),
        ("Korean", "Korean", SuperkoRule.POSITIONAL),
    ],
)
def test_rules_names(ru: str, name: str, superko: SuperkoRule) -> None:
    record = load_sgf(f"(;SZ[9]KM[5.5]RU[{ru}])".encode())
    assert record.rules.name == name
    assert record.rules.komi == 5.5
    assert record.rules.superko is superko
    assert load_sgf(dump_sgf(record)) == record


def test_missing_rules_and_komi_default_to_chinese_with_no_komi() -> None:
    record = load_sgf(b"(;SZ[9])")
    assert record.rules == Rules.named("chinese", komi=0.0)
    assert record.moves == () and record.comments == {}


def test_only_the_main_line_is_read() -> None:
    record = load_sgf(b"(;SZ[9];B[aa](;W[bb];B[cc])(;W[ii]))")
    assert [m.point for m in record.moves] == [(0, 0), (1, 1), (2, 2)]


def test_comment_on_a_node_without_a_move_joins_the_previous_index() -> None:
    record = load_sgf(b"(;SZ[9]C[root];B[aa]C[one];C[more])")
    assert record.comments == {0: "root", 1: "one\nmore"}


def test_final_resignation_is_left_to_the_result() -> None:
    record = dataclasses.replace(
        GameRecord(size=9, moves=(Move.play(Color.BLACK, (4, 4)), Move.resign(Color.WHITE))),
        result="B+R",
    )
    again = load_sgf(dump_sgf(record))
    assert again.moves == record.moves[:1] and again.result == "B+R"
    mid = GameRecord(size=9, moves=(Move.resign(Color.WHITE), Move.pass_(Color.BLACK)))
    with pytest.raises(SgfError, match="resignation"):
        dump_sgf(mid)


def test_game_id_travels_in_a_private_property() -> None:
    record = GameRecord.new(9)
    data = dump_sgf(record)
    assert f"GAMEID[{record.game_id}]".encode() in data
    assert load_sgf(data).game_id == record.game_id


def test_latin1_sgf_without_ca_loads() -> None:
    record = load_sgf(b"(;SZ[9]PB[Jos\xe9])")
    assert record.black.name == "José"


# ---- malformed input -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not readable as SGF"),
        (b"\x00\xff garbage \x13", "not readable as SGF"),
        (b"(;SZ[26])", "board size 26"),
        (b"(;SZ[30])", "not readable as SGF"),
        (b"(;SZ[1])", "board size 1"),
        (b"(;SZ[19:13])", "not readable as SGF"),
        (b"(;SZ[9];B[jj])", "move 1 is not a point"),
        (b"(;SZ[9];B[ee];W[zz])", "move 2 is not a point"),
        (b"(;SZ[9];B[aa];W[aa])", r"move 2 \(W A9\) is illegal: point is occupied"),
        (b"(;SZ[9];B[ab];W[ii];B[ba];W[aa])", r"move 4 \(W A9\) is illegal: suicide"),
        (b"(;SZ[9];B[];W[];B[aa])", r"move 3 .* the game is over"),
        (b"(;SZ[9]KM[lots])", "bad komi"),
        (b"(;SZ[9]KM[nan])", "bad komi"),
        (b"(;SZ[9]HA[x])", "bad SGF property"),
        (b"(;SZ[9]HA[-1])", "bad handicap"),
        (b"(;SZ[9]PL[X])", "bad SGF property"),
        (b"(;GM[2]SZ[9])", "not a game of Go"),
        (b"(;SZ[9];B[aa];AB[bb])", "setup stones after move 1"),
        (b"(;SZ[9]AB[jj])", "bad SGF property"),
        (b"(;SZ[9]CA[klingon]PB[x])", "not readable as SGF"),
        (b"(;SZ[9]CA[UTF-8]PB[\xff\xfe])", "bad SGF property"),
        (b"(;SZ[9];B[aa]", "not readable as SGF"),
    ],
)
def test_malformed_sgf_is_a_clear_sgf_error(data: bytes, message: str) -> None:
    with pytest.raises(SgfError, match=message):
        load_sgf(data)


def test_sgf_error_is_one_value_error_type() -> None:
    assert issubclass(SgfError, ValueError)
    with pytest.raises(SgfError):
        load_sgf("(;SZ[9])")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_give_a_record_or_sgf_error(data: bytes) -> None:
    try:
        record = load_sgf(data)
    except SgfError:
        return
    record.replay()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_sgf_gives_a_record_or_sgf_error(data: st.DataObject) -> None:
    original = sgfmill_game()
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.integers(0, len(original) - 1))
        mutated[where] = data.draw(st.sampled_from(b"();[]\\:ABWCEKSZ0123456789abcdst \n\xff"))
    try:
        record = load_sgf(bytes(mutated))
    except SgfError:
        return
    record.replay()
    assert load_sgf(dump_sgf(record)).replay().same_board(record.replay())


def test_handicap_positions_from_the_engine_round_trip() -> None:
    record = GameRecord.new(13, Rules.named("aga"), handicap_points=fixed_handicap_points(13, 5))
    again = load_sgf(dump_sgf(record))
    assert again == record and again.handicap == 5 and again.first_player is Color.WHITE
