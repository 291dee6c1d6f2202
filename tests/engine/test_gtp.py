"""The GTP engine: every command in-process, the heuristic player, and the real process."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import Color, Move, Position, fixed_handicap_points, from_gtp, to_gtp
from engine._gtp_client import GtpClient, GtpCommandFailed
from engine._players import HeuristicPlayer, Player
from engine._record import GameRecord
from engine._sgf import dump_sgf, load_sgf
from engine.gtp import GtpEngine, main

REQUIRED = {
    "protocol_version",
    "name",
    "version",
    "known_command",
    "list_commands",
    "quit",
    "boardsize",
    "clear_board",
    "komi",
    "play",
    "genmove",
    "undo",
    "showboard",
    "final_score",
    "final_status_list",
    "fixed_handicap",
    "place_free_handicap",
    "set_free_handicap",
    "time_settings",
    "time_left",
    "loadsgf",
    "printsgf",
    "kgs-genmove_cleanup",
    "reg_genmove",
}

# Black: alive with four one-point eyes, and a 3x3 area holding one dead white stone.
# White: alive with four eyes. Area: black 28 (15 stones + 4 eyes + 9), white 21.
SETTLED = """
. X . X O . O
X X X X O O O
. . . X O . O
. O . X O O O
. . . X O . O
X X X X O O O
. X . X O . O
"""


def ok(engine: GtpEngine, command: str) -> str:
    reply = engine.handle(command)
    assert reply.startswith("="), f"{command!r} -> {reply!r}"
    assert reply.endswith("\n\n") and "\n\n" not in reply[:-2]
    return reply[1:].strip()


def fail(engine: GtpEngine, command: str) -> str:
    reply = engine.handle(command)
    assert reply.startswith("?"), f"{command!r} -> {reply!r}"
    assert reply.endswith("\n\n")
    return reply[1:].strip()


def setup(engine: GtpEngine, ascii_board: str) -> Position:
    """Play the stones of ``ascii_board`` with GTP ``play`` (either colour, any order)."""
    target = Position.from_ascii(ascii_board)
    ok(engine, f"boardsize {target.size}")
    for color in (Color.BLACK, Color.WHITE):
        for point in target.stones(color):
            ok(engine, f"play {color.letter} {to_gtp(point, target.size)}")
    assert engine.position.same_board(target)
    return engine.position


# ---- protocol basics ---------------------------------------------------------------------


def test_identity_commands() -> None:
    e = GtpEngine()
    assert ok(e, "protocol_version") == "2"
    assert ok(e, "name") == "p2pgo"
    assert ok(e, "version")


def test_list_and_known_commands() -> None:
    e = GtpEngine()
    listed = set(ok(e, "list_commands").split("\n"))
    assert listed >= REQUIRED
    for name in listed:
        assert ok(e, f"known_command {name}") == "true"
    assert ok(e, "known_command frobnicate") == "false"
    assert fail(e, "frobnicate") == "unknown command"


def test_ids_comments_blank_lines_and_control_characters() -> None:
    e = GtpEngine()
    assert e.handle("12 name") == "=12 p2pgo\n\n"
    assert e.handle("7 frobnicate") == "?7 unknown command\n\n"
    assert e.handle("3 boardsize 9") == "=3\n\n"
    assert e.handle("") == ""
    assert e.handle("   \t ") == ""
    assert e.handle("# just a comment") == ""
    assert e.handle("name # trailing comment") == "= p2pgo\n\n"
    assert e.handle("\tna\x01me\r\n") == "= p2pgo\n\n"
    assert e.handle("4").startswith("?4 ")


def test_quit_sets_the_flag() -> None:
    e = GtpEngine()
    assert not e.quit_requested
    assert ok(e, "quit") == ""
    assert e.quit_requested


def test_boardsize_and_clear_board() -> None:
    e = GtpEngine()
    ok(e, "boardsize 9")
    ok(e, "play b E5")
    ok(e, "boardsize 13")
    assert e.size == 13 and e.position.stones(Color.BLACK) == []
    ok(e, "play b D4")
    ok(e, "clear_board")
    assert e.size == 13 and e.position.stones(Color.BLACK) == []
    for bad in ("1", "26", "0", "-5", "x", "9" * 5000):
        fail(e, f"boardsize {bad}")
    fail(e, "boardsize")
    fail(e, "boardsize 9 9")
    assert e.size == 13


def test_komi_changes_the_score() -> None:
    e = GtpEngine(size=5)
    ok(e, "komi 0.5")
    assert ok(e, "final_score") == "W+0.5"
    ok(e, "komi -3")
    assert ok(e, "final_score") == "B+3"
    for bad in ("nan", "inf", "-inf", "1e999", "abc", ""):
        fail(e, f"komi {bad}")
    assert e.rules.komi == -3


# ---- play, genmove, undo -----------------------------------------------------------------


def test_play_is_case_insensitive_and_allows_either_colour() -> None:
    e = GtpEngine(size=19)
    ok(e, "play B d4")
    ok(e, "play black Q16")  # the same colour twice: GTP allows it
    ok(e, "play WHITE k10")
    ok(e, "play w pass")
    pos = e.position
    assert pos[from_gtp("D4", 19)] is Color.BLACK
    assert pos[from_gtp("Q16", 19)] is Color.BLACK
    assert pos[from_gtp("K10", 19)] is Color.WHITE


def test_play_rejects_illegal_moves_and_bad_syntax() -> None:
    e = GtpEngine(size=9)
    ok(e, "play b E5")
    assert fail(e, "play w E5") == "illegal move"
    setup(e, ". X .\nX . .\n. . .")
    assert fail(e, "play w A3") == "illegal move"  # suicide
    for bad in ("play x E5", "play b I5", "play b Z1", "play b A0", "play b", "play b A1 A2"):
        fail(e, bad)
    assert e.position.move_number == 2


def test_ko_recapture_is_illegal_until_a_move_elsewhere() -> None:
    e = GtpEngine()
    setup(e, ". X O . .\nX O . O .\n. X O . .\n. . . . .\n. . . . .")
    ok(e, "play b C4")  # captures the white stone at B4
    assert fail(e, "play w B4") == "illegal move"
    ok(e, "play w E1")
    ok(e, "play b E2")
    ok(e, "play w B4")  # the ko threat was answered: the recapture is legal now


def test_genmove_plays_a_legal_move_and_undo_takes_it_back() -> None:
    e = GtpEngine(size=9, seed=4)
    reply = ok(e, "genmove b")
    point = from_gtp(reply, 9)
    assert point is not None and e.position[point] is Color.BLACK
    reply = ok(e, "7 genmove W")
    assert e.position.move_number == 2
    ok(e, "undo")
    ok(e, "undo")
    assert e.position.move_number == 0 and e.position.stones(Color.BLACK) == []
    assert fail(e, "undo") == "cannot undo"
    fail(e, "genmove")
    fail(e, "genmove purple")


def test_reg_genmove_does_not_change_the_game() -> None:
    e = GtpEngine(size=9)
    before = e.position
    reply = ok(e, "reg_genmove b")
    assert from_gtp(reply, 9) is not None
    assert e.position is before


def test_genmove_for_the_side_not_to_move() -> None:
    e = GtpEngine(size=9)
    ok(e, "play b E5")
    reply = ok(e, "genmove b")  # black again: allowed, as in GTP
    point = from_gtp(reply, 9)
    assert point is not None and e.position[point] is Color.BLACK


def test_genmove_passes_when_only_eyes_are_left() -> None:
    e = GtpEngine()
    setup(e, ". X . X X\nX X X X X\nX X . X X\nX X X X X\nX X X X .")
    assert ok(e, "genmove b") == "pass"
    assert ok(e, "genmove w") == "pass"  # every point is suicide for white


def test_cleanup_keeps_playing_where_genmove_would_pass() -> None:
    e = GtpEngine()
    setup(e, ". X . X X\nX X X X X\nX X X X X\nX X X X X\n. . X X X")
    # White's only legal moves are self-atari in black's two-point area.
    assert ok(e, "genmove w") == "pass"
    ok(e, "undo")
    assert ok(e, "kgs-genmove_cleanup w") in ("A1", "B1")


def test_play_continues_after_two_passes() -> None:
    e = GtpEngine(size=9)
    ok(e, "play b E5")
    ok(e, "play w pass")
    ok(e, "play b pass")
    assert e.position.is_game_over
    ok(e, "play w C3")
    assert ok(e, "genmove b") != ""
    record = load_sgf(ok(e, "printsgf").encode())
    assert record.replay().same_board(e.position)


def test_resigning_player_answers_resign_and_leaves_the_board() -> None:
    class Resigner:
        def choose(self, position: Position) -> Move:
            return Move.resign(position.to_play)

    assert isinstance(Resigner(), Player)
    e = GtpEngine(size=9, player=Resigner())
    assert ok(e, "genmove w") == "resign"
    assert e.position.move_number == 0


def test_self_play_with_genmove_ends_with_two_passes() -> None:
    e = GtpEngine(size=7, seed=11)
    colors = "bw"
    for i in range(400):
        ok(e, f"genmove {colors[i % 2]}")
        if e.position.is_game_over:
            break
    assert e.position.passes == 2
    assert ok(e, "final_score")[0] in "BW0"


# ---- display and scoring -----------------------------------------------------------------


def test_showboard_draws_the_stones() -> None:
    e = GtpEngine(size=9)
    ok(e, "play b C3")
    ok(e, "play w G7")
    reply = e.handle("showboard")
    assert reply.startswith("= \n")
    lines = reply.strip("= \n").splitlines()
    assert lines[0].split() == list("ABCDEFGHJ")
    row3 = next(line for line in lines if line.startswith(" 3 "))
    row7 = next(line for line in lines if line.startswith(" 7 "))
    assert row3.split()[1:10] == [".", ".", "X", ".", ".", ".", ".", ".", "."]
    assert row7.split()[7] == "O"


def test_final_score_and_status_under_area_and_territory_rules() -> None:
    area = GtpEngine(rules="chinese", komi=0.5)
    pos = setup(area, SETTLED)
    assert ok(area, "final_score") == "B+6.5"
    dead = ok(area, "final_status_list dead").split()
    alive = ok(area, "final_status_list alive").split()
    assert dead == ["B4"]
    assert len(alive) == len(pos.stones(Color.BLACK)) + len(pos.stones(Color.WHITE)) - 1
    assert ok(area, "final_status_list seki") == ""
    fail(area, "final_status_list maybe")
    fail(area, "final_status_list")

    territory = GtpEngine(rules="japanese")  # komi 6.5: black 4 + 9 + 1 prisoner, white 4
    setup(territory, SETTLED)
    assert ok(territory, "final_score") == "B+3.5"

    tromp = GtpEngine(rules="tromp-taylor")  # komi 7.5
    setup(tromp, SETTLED)
    assert ok(tromp, "final_score") == "W+0.5"


# ---- handicap ----------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "stones"), [(9, 2), (9, 5), (13, 4), (19, 9)])
def test_fixed_handicap(size: int, stones: int) -> None:
    e = GtpEngine(size=size)
    vertices = ok(e, f"fixed_handicap {stones}").split()
    points = [from_gtp(v, size) for v in vertices]
    assert points == fixed_handicap_points(size, stones)
    assert sorted(e.position.stones(Color.BLACK)) == sorted(points)
    assert e.position.to_play is Color.WHITE
    assert fail(e, "fixed_handicap 2") == "board not empty"


def test_fixed_handicap_rejects_bad_counts() -> None:
    e = GtpEngine(size=19)
    for bad in ("0", "1", "10", "x", "9" * 100):
        fail(e, f"fixed_handicap {bad}")
    fail(GtpEngine(size=5), "fixed_handicap 2")  # no star points on 5x5
    ok(e, "play b D4")
    assert fail(e, "fixed_handicap 4") == "board not empty"


def test_place_free_handicap() -> None:
    e = GtpEngine(size=19)
    assert ok(e, "place_free_handicap 4").split() == ["D4", "Q16", "D16", "Q4"]
    small = GtpEngine(size=9, seed=2)
    vertices = ok(small, "place_free_handicap 12").split()
    assert len(set(vertices)) == 12 and len(small.position.stones(Color.BLACK)) == 12
    tiny = GtpEngine(size=5)
    assert len(ok(tiny, "place_free_handicap 3").split()) == 3
    fail(tiny, "place_free_handicap 25")
    fail(GtpEngine(size=5), "place_free_handicap 1")


def test_set_free_handicap() -> None:
    e = GtpEngine(size=9)
    for bad in ("A1", "A1 A1", "A1 pass", "A1 Z9", "", "A1 B2 " + "C3 " * 90):
        fail(e, f"set_free_handicap {bad}")
    ok(e, "set_free_handicap a1 E5 j9")
    assert sorted(e.position.stones(Color.BLACK)) == [(0, 8), (4, 4), (8, 0)]
    assert e.position.to_play is Color.WHITE
    assert fail(e, "set_free_handicap B2 C3") == "board not empty"
    assert "HA[3]" in ok(e, "printsgf")


# ---- time --------------------------------------------------------------------------------


def test_time_commands() -> None:
    e = GtpEngine()
    ok(e, "time_settings 300 30 5")
    assert e.time_settings == (300, 30, 5)
    ok(e, "time_left b 120 0")
    ok(e, "time_left WHITE 25 3")
    assert e.time_left == {Color.BLACK: (120, 0), Color.WHITE: (25, 3)}
    for bad in ("time_settings 1 2", "time_settings -1 0 0", "time_settings a b c"):
        fail(e, bad)
    for bad in ("time_left x 1 1", "time_left b -1 0", "time_left b 1"):
        fail(e, bad)


# ---- SGF ---------------------------------------------------------------------------------


def test_printsgf_writes_the_whole_game_and_loadsgf_reads_it(tmp_path: Path) -> None:
    e = GtpEngine(size=9, komi=5.5)
    ok(e, "fixed_handicap 2")
    for command in ("play w E5", "play b D5", "play w pass", "genmove b"):
        ok(e, command)
    text = ok(e, "printsgf")
    assert text.startswith("(;") and "KM[5.5]" in text and "HA[2]" in text
    record = load_sgf(text.encode())
    assert len(record.moves) == 4 and record.replay().same_board(e.position)

    path = tmp_path / "game.sgf"
    ok(e, f"printsgf {path}")
    other = GtpEngine(size=19)
    ok(other, f"loadsgf {path}")
    assert other.position.same_board(e.position) and other.rules.komi == 5.5
    ok(other, "undo")  # loaded moves can be taken back
    ok(other, f"loadsgf {path} 3")  # the position before move 3: after two moves
    assert other.position.move_number == 2 and other.size == 9


def test_loadsgf_failures(tmp_path: Path) -> None:
    e = GtpEngine(size=9)
    ok(e, "play b E5")
    assert fail(e, f"loadsgf {tmp_path / 'missing.sgf'}").startswith("cannot load file")
    junk = tmp_path / "junk.sgf"
    junk.write_bytes(b"\x00\xff not sgf (;(")
    assert fail(e, f"loadsgf {junk}").startswith("cannot load file")
    illegal = tmp_path / "illegal.sgf"
    illegal.write_bytes(b"(;FF[4]SZ[9];B[ee];W[ee])")
    assert fail(e, f"loadsgf {illegal}").startswith("cannot load file")
    fail(e, "loadsgf")
    fail(e, f"loadsgf {junk} 0")
    assert e.position.move_number == 1  # failures leave the game alone


def test_loadsgf_of_a_setup_record(tmp_path: Path) -> None:
    record = GameRecord.new(9, handicap_points=fixed_handicap_points(9, 4))
    path = tmp_path / "h.sgf"
    path.write_bytes(dump_sgf(record))
    e = GtpEngine()
    ok(e, f"loadsgf {path}")
    assert len(e.position.stones(Color.BLACK)) == 4 and e.position.to_play is Color.WHITE


# ---- robustness --------------------------------------------------------------------------

# Not printsgf/loadsgf: random file names would write and read files in the checkout.
_WORDS = [
    *sorted(REQUIRED - {"printsgf", "loadsgf"}),
    *["b", "w", "pass", "A1", "T19", "-1", "0", "1e9", "#", "\x00", "é"],
]


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(max_size=60),
        st.binary(max_size=60).map(lambda b: b.decode("utf-8", errors="replace")),
        st.lists(st.sampled_from(_WORDS), min_size=1, max_size=4).map(" ".join),
    )
)
def test_any_input_gets_a_reply_and_never_kills_the_engine(line: str) -> None:
    e = GtpEngine(size=7, dead_playouts=4)
    reply = e.handle(line)
    assert reply == "" or (reply[0] in "=?" and reply.endswith("\n\n"))
    assert "\n\n" not in reply[:-2]
    assert e.handle("name") == "= p2pgo\n\n"


def test_huge_numbers_are_refused_cleanly() -> None:
    e = GtpEngine(size=9)
    for command in (
        "boardsize 123456789012345678901234567890",
        "fixed_handicap 99999999999999999999",
        "place_free_handicap -99999999999999999999",
        "komi 1e400",
        "loadsgf x 99999999999999999999999999" + "9" * 5000,
        "time_settings 1" + "0" * 5000 + " 0 0",
    ):
        fail(e, command)
    ok(e, "time_left b 99999999999999999999 0")
    assert ok(e, "name") == "p2pgo"


# ---- the heuristic player ----------------------------------------------------------------


def test_player_prefers_the_largest_capture() -> None:
    pos = Position.from_ascii(
        """
        . . . . . . .
        . X . . . X X
        X O X . X O O
        . . . . . X .
        . . . . . . .
        . . . . . . .
        . . . . . . .
        """
    )
    # Black can capture one stone at B4 or two at G4: the pair is the larger capture.
    assert pos.liberties((2, 1)) == {(3, 1)} and pos.liberties((2, 5)) == {(3, 6)}
    for seed in range(5):
        assert HeuristicPlayer(seed=seed).choose(pos) == Move.play(Color.BLACK, (3, 6))


def test_player_escapes_atari() -> None:
    pos = Position.from_ascii(
        """
        . . . . .
        . O X O .
        . . O . .
        . . . . .
        . . . . .
        """
    )
    move = HeuristicPlayer(seed=3).choose(pos)  # black X at C4 has one liberty: C5
    assert move == Move.play(Color.BLACK, (0, 2))


def test_player_never_fills_its_own_eyes_or_plays_self_atari() -> None:
    pos = Position.from_ascii(
        """
        . X . X .
        X X X X X
        O O O O O
        . O . O .
        . O . O .
        """
    )
    for seed in range(20):
        move = HeuristicPlayer(seed=seed).choose(pos)
        # Black's eyes are A5, C5 and E5; white's area would be suicide or self-atari.
        assert move.is_pass, (seed, move)


def test_player_is_reproducible() -> None:
    def game(seed: int) -> list[Move]:
        player = HeuristicPlayer(seed)
        pos = Position(9)
        for _ in range(30):
            pos = pos.play(player.choose(pos))
        return pos.history()

    assert game(5) == game(5)
    assert game(5) != game(6)


# ---- the real process --------------------------------------------------------------------


def test_help_describes_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--rules", "--seed", "--size", "--komi"):
        assert flag in out


def test_process_speaks_gtp_over_pipes(p2pgo_gtp_argv: list[str]) -> None:
    argv = [*p2pgo_gtp_argv, "--size", "9", "--komi", "5.5", "--seed", "3"]
    with GtpClient(argv, timeout=30) as client:
        assert client.send("name") == "p2pgo"
        assert client.send("showboard").count("\n") == 11  # 9 rows, 2 letter rows, a footer
        move = client.send("genmove b")
        assert from_gtp(move, 9) is not None
        with pytest.raises(GtpCommandFailed):
            client.send(f"play w {move}")
        assert client.send("final_score").startswith(("B+", "W+"))
        client.send("quit")
        assert client.wait(timeout=10) == 0


def test_process_survives_junk_bytes_and_answers_ids(p2pgo_gtp_argv: list[str]) -> None:
    junk = b"\xff\xfe\x00garbage\x80\n5 boardsize 5\n\x1b[31m\n# c\n\n6 name\nplay b \xc3\n7 quit\n"
    done = subprocess.run(
        [*p2pgo_gtp_argv], input=junk, capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 0
    replies = done.stdout.decode().split("\n\n")
    assert replies[0].startswith("? ")
    assert replies[1:4] == ["=5", "? unknown command", "=6 p2pgo"]
    assert replies[4].startswith("? ") and replies[5] == "=7"
