"""The match runner and GTP client: refereeing, forfeits, crashes, timeouts, the CLI.

Misbehaving engines are a small fake GTP program (written to a temporary file) whose
first argument picks how it misbehaves; the well-behaved one is our real engine.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from engine._gtp_client import GtpClient, GtpCommandFailed, GtpEngineDied, GtpTimeout
from engine._sgf import load_sgf
from engine.match import (
    EngineSpec,
    GameEnd,
    main,
    parse_result,
    play_game,
    run_match,
    wilson_interval,
)

FAKE_ENGINE = textwrap.dedent(
    """
    import os, sys
    mode = sys.argv[1]
    if len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(str(os.getpid()))
    genmoves = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        reply = "= "
        if cmd == "quit":
            sys.stdout.write("= \\n\\n")
            sys.stdout.flush()
            break
        if cmd == "genmove":
            genmoves += 1
            if mode == "crash":
                sys.exit(3)
            if mode == "hang":
                sys.stdin.read()  # never answers: waits for its stdin to close
                sys.exit(0)
            reply = {
                "passer": "= pass",
                "illegal": "= A1",
                "garbage": "= banana",
                "nongtp": "hello there",
                "resign": "= resign",
                "rejecter": "= pass",
                "badscore": "= pass",
            }[mode]
        elif cmd == "play" and mode == "rejecter":
            reply = "? illegal move"
        elif cmd == "final_score":
            reply = "= B+999" if mode == "badscore" else "= W+7.5"
        sys.stdout.write(reply + "\\n\\n")
        sys.stdout.flush()
    """
)


@pytest.fixture
def fake(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    return (sys.executable, str(script))


def spec(fake: tuple[str, ...], mode: str, *extra: str) -> EngineSpec:
    return EngineSpec(mode, (*fake, mode, *extra))


# ---- statistics and parsing --------------------------------------------------------------


def test_wilson_interval_known_values() -> None:
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson_interval(0, 2)
    assert lo == 0.0 and hi == pytest.approx(0.6576, abs=1e-4)
    lo, hi = wilson_interval(2, 2)
    assert lo == pytest.approx(0.3424, abs=1e-4) and hi == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("text", "margin"),
    [("B+3.5", 3.5), ("W+0.5", -0.5), ("w+12", -12.0), ("0", 0.0), ("B+R", None), ("", None)],
)
def test_parse_result(text: str, margin: float | None) -> None:
    assert parse_result(text) == margin


# ---- the GTP client ----------------------------------------------------------------------


def test_client_reports_failures_death_and_timeouts(fake: tuple[str, ...]) -> None:
    with GtpClient([*fake, "rejecter"], timeout=10) as client:
        assert client.send("name") == ""
        with pytest.raises(GtpCommandFailed) as failed:
            client.send("play b A1")
        assert failed.value.message == "illegal move"
        assert client.try_send("play b A1") is None
        with pytest.raises(ValueError):
            client.send("name\nquit")
    with GtpClient([*fake, "crash"], timeout=10) as client, pytest.raises(GtpEngineDied):
        client.send("genmove b")
    started = time.monotonic()
    with GtpClient([*fake, "hang"], timeout=0.5) as client:
        with pytest.raises(GtpTimeout):
            client.send("genmove b")
        assert not client.alive
    assert time.monotonic() - started < 10
    with pytest.raises(GtpEngineDied):
        GtpClient(["/nonexistent/engine"])


# ---- refereed games ----------------------------------------------------------------------


def test_two_passers_play_an_empty_game(fake: tuple[str, ...], tmp_path: Path) -> None:
    a, b = spec(fake, "passer"), EngineSpec("other", (*fake, "passer"))
    match = run_match(a, b, 2, size=9, komi=7.5, sgf_dir=tmp_path / "sgf", check_scores=True)
    for game in match.games:
        assert game.end is GameEnd.PASSES and game.moves == 2
        assert game.result == "W+7.5" and game.score_disagreements == ()
        record = load_sgf(Path(game.sgf_path or "").read_bytes())
        assert record.result == "W+7.5" and record.size == 9 and len(record.moves) == 2
        assert (record.black.name, record.white.name) == (game.black, game.white)
    # White wins both; the engines swapped colours, so one game each.
    assert match.wins("passer") == match.wins("other") == 1
    summary = match.to_json()
    assert summary["wins"] == {"passer": 1, "other": 1} and summary["forfeits"] == 0
    assert summary["ci95_a"][0] < 0.5 < summary["ci95_a"][1]


@pytest.mark.parametrize(
    ("mode", "end", "words"),
    [
        ("crash", GameEnd.ENGINE_FAILURE, "crash"),
        ("illegal", GameEnd.ILLEGAL_MOVE, "illegal move A1 at move 3: point is occupied"),
        ("garbage", GameEnd.ILLEGAL_MOVE, "'banana', not a move"),
        ("nongtp", GameEnd.ENGINE_FAILURE, "not a GTP reply"),
    ],
)
def test_misbehaving_black_forfeits(
    fake: tuple[str, ...], mode: str, end: GameEnd, words: str
) -> None:
    game = play_game(spec(fake, mode), spec(fake, "passer"), size=9, timeout=10)
    assert game.end is end and words in game.message
    assert game.result == "W+F" and game.winner == "passer"


def test_timeout_forfeits_and_the_process_is_killed(fake: tuple[str, ...], tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    game = play_game(spec(fake, "passer"), spec(fake, "hang", str(pidfile)), size=9, timeout=0.5)
    assert time.monotonic() - started < 10
    assert game.end is GameEnd.ENGINE_FAILURE and "timeout" in game.message
    assert game.result == "B+F"
    with pytest.raises(ProcessLookupError):
        os.kill(int(pidfile.read_text()), 0)


def test_resignation_and_a_rejected_legal_move(fake: tuple[str, ...]) -> None:
    game = play_game(spec(fake, "resign"), spec(fake, "passer"), size=9)
    assert (game.end, game.result, game.moves) == (GameEnd.RESIGNATION, "W+R", 0)
    game = play_game(spec(fake, "passer"), spec(fake, "rejecter"), size=9)
    assert game.end is GameEnd.ENGINE_FAILURE and game.result == "B+F"
    assert "rejected the legal move b pass" in game.message


def test_missing_engine_forfeits(fake: tuple[str, ...]) -> None:
    game = play_game(spec(fake, "passer"), EngineSpec("ghost", ("/nonexistent/gtp",)), size=9)
    assert game.end is GameEnd.ENGINE_FAILURE and game.result == "B+F"
    assert "cannot start" in game.message


def test_score_disagreements_are_reported(fake: tuple[str, ...]) -> None:
    game = play_game(spec(fake, "badscore"), spec(fake, "passer"), size=9, check_scores=True)
    assert game.result == "W+7.5"
    assert game.score_disagreements == ("badscore (black) says B+999, referee says W+7.5",)


def test_match_needs_distinct_names_and_games(fake: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        run_match(spec(fake, "passer"), spec(fake, "passer"), 2)
    with pytest.raises(ValueError):
        run_match(spec(fake, "passer"), EngineSpec("b", (*fake, "passer")), 0)


def test_real_engines_reach_the_move_cap(p2pgo_gtp_argv: list[str], tmp_path: Path) -> None:
    a = EngineSpec("seed1", (*p2pgo_gtp_argv, "--seed", "1"))
    b = EngineSpec("seed2", (*p2pgo_gtp_argv, "--seed", "2"))
    game = play_game(a, b, size=9, max_moves=12, sgf_dir=tmp_path, dead_playouts=8)
    assert game.end is GameEnd.MOVE_CAP and game.moves == 12
    assert parse_result(game.result) is not None
    assert len(load_sgf(Path(game.sgf_path or "").read_bytes()).moves) == 12


# ---- the command line --------------------------------------------------------------------


def test_cli_json_and_text(
    fake: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command = " ".join([*fake, "passer"])
    assert main([command, command, "--games", "2", "--size", "7", "--komi", "0.5", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    # Same program twice: the runner tells them apart by suffix.
    program = Path(sys.executable).name
    assert data["engines"] == [f"{program}-a", f"{program}-b"]
    assert data["games"] == 2 and data["draws"] == 0
    assert [r["result"] for r in data["results"]] == ["W+0.5", "W+0.5"]
    assert captured.err.count("game ") == 2

    assert main([command, command, "--games", "1", "--name-a", "x", "--name-b", "y"]) == 0
    out = capsys.readouterr().out
    assert "game 1/1: x (B) vs y (W): W+7.5" in out and "1 games: x 0 wins, y 1 wins" in out


def test_cli_rejects_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["a", "b", "--games", "0"], ["", "b"], ["a", "b", "--size", "40"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    capsys.readouterr()
