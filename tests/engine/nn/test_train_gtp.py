"""The network with search behind GTP: legal moves, time management, lz-analyze output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import Color, Move, Position, from_gtp
from engine.gtp import DEFAULT_MODEL, GtpEngine, format_analysis
from engine.nn import ALL_SYMMETRIES, NetworkEvaluator, Predictor, SearchPlayer, save_weights

from .conftest import make_small_model, random_game

INFO = re.compile(
    r"info move (?P<move>[A-HJ-Z]\d+|pass) visits (?P<visits>\d+) winrate (?P<winrate>\d+) "
    r"prior (?P<prior>\d+) order (?P<order>\d+) pv (?P<pv>(?:(?:[A-HJ-Z]\d+|pass) ?)+)"
)


def _parse_info(line: str) -> list[dict[str, str]]:
    """Split a Leela Zero analysis line into its moves, checking nothing is left over."""
    parts = [m.groupdict() for m in INFO.finditer(line)]
    assert "".join(INFO.sub("", line).split()) == "", line
    return parts


@pytest.fixture
def player(restore_threads: None) -> SearchPlayer:
    return SearchPlayer(Predictor(make_small_model(), threads=1), visits=16, batch_size=4)


def test_evaluator_gives_a_distribution_and_a_probability(restore_threads: None) -> None:
    evaluator = NetworkEvaluator(Predictor(make_small_model(), threads=1), random_symmetry=True)
    positions = [random_game(9, 10, 1), random_game(7, 5, 2), Position(9)]
    out = evaluator.evaluate(positions)
    assert len(out) == 3
    for (policy, value), pos in zip(out, positions, strict=True):
        assert policy.shape == (pos.size * pos.size + 1,)
        assert abs(float(policy.sum()) - 1.0) < 1e-4 and (policy >= 0).all()
        assert 0.0 <= value <= 1.0
    # Random symmetries change the orientation, not the meaning: the empty board's
    # policy is the same under every symmetry up to the network's own asymmetry.
    assert evaluator.positions_evaluated == 3


def test_evaluator_averages_all_eight_symmetries_like_the_predictor(
    restore_threads: None,
) -> None:
    predictor = Predictor(make_small_model(), threads=1)
    evaluator = NetworkEvaluator(predictor, all_symmetries=True)
    one = NetworkEvaluator(predictor)
    empty = Position(9)  # every point legal, so the Predictor's masking changes nothing
    ((policy, value),) = evaluator.evaluate([empty])
    expected = predictor.predict(empty, ALL_SYMMETRIES)
    np.testing.assert_allclose(policy, expected.policy, atol=1e-6)
    assert value == pytest.approx(expected.value, abs=1e-6)
    ((identity, _),) = one.evaluate([empty])
    assert not np.allclose(identity, policy, atol=1e-6)  # averaging changed something


def test_genmove_with_search_plays_legal_moves(player: SearchPlayer) -> None:
    engine = GtpEngine(size=7, player=player)
    assert "lz-analyze" in engine.handle("list_commands")
    for i in range(12):
        color = "b" if i % 2 == 0 else "w"
        before = engine.position
        reply = engine.handle(f"genmove {color}")
        assert reply.startswith("= "), reply
        point = from_gtp(reply[2:].strip(), 7)
        if point is not None:
            assert before.is_legal(Move.play(Color.parse(color), point), strict_turn=False)
        if engine.position.is_game_over:
            break
    assert player.last_result is not None and player.last_result.visits >= 1


def test_tree_is_kept_when_the_game_follows_our_move(player: SearchPlayer) -> None:
    pos = Position(7)
    move = player.choose(pos)
    pos = pos.play(move)
    reply = pos.legal_points()[0]
    pos = pos.play_at(reply)
    player.choose(pos)
    assert player.last_result is not None
    # The root kept the visits spent below the opponent's reply (if it had any), so the
    # total is at least this move's budget.
    assert player.last_result.visits >= 16


def test_lz_analyze_output_parses(player: SearchPlayer) -> None:
    engine = GtpEngine(size=9, player=player)
    engine.handle("play b E5")
    reply = engine.handle("lz-analyze w 5")
    assert reply.startswith("= \ninfo move ")
    (line,) = reply.strip().splitlines()[1:]
    moves = _parse_info(line)
    assert moves and [int(m["order"]) for m in moves] == list(range(len(moves)))
    visits = [int(m["visits"]) for m in moves]
    assert visits == sorted(visits, reverse=True)
    for m in moves:
        assert 0 <= int(m["winrate"]) <= 10000 and 0 <= int(m["prior"]) <= 10000
        assert m["pv"].split()[0] == m["move"]
        assert m["move"] != "E5"
    assert engine.handle("lz-analyze b interval 5 minmoves 2").startswith("= \ninfo")
    assert engine.handle("lz-analyze x").startswith("? ")
    assert engine.handle("lz-analyze b -3").startswith("? ")
    assert engine.handle("lz-genmove_analyze b 5").startswith("= \nplay ")


def test_analysis_streams_until_input_arrives(player: SearchPlayer) -> None:
    engine = GtpEngine(size=9, player=player)
    written: list[str] = []
    checks = iter([False, False, True])
    engine.analyze_stream(["b", "2"], written.append, lambda timeout: next(checks), ident="7")
    assert written[0] == "=7\n" and written[-1] == "\n"
    infos = written[1:-1]
    assert len(infos) == 3 and all(_parse_info(line) for line in infos)
    # The tree grows between reports.
    first, last = (sum(int(m["visits"]) for m in _parse_info(x)) for x in (infos[0], infos[-1]))
    assert last >= first
    # Without the network, analysis is an error reply, not a crash.
    plain = GtpEngine(size=9)
    out: list[str] = []
    plain.analyze_stream([], out.append, lambda t: True)
    assert out[0].startswith("? ") and "lz-analyze" not in plain.handle("list_commands")


def test_format_analysis_of_a_search_result(player: SearchPlayer) -> None:
    result = player.analyze(Position(5), seconds=0.05, max_visits=20)
    moves = _parse_info(format_analysis(result, 5))
    assert sum(int(m["visits"]) for m in moves) <= result.visits


def test_move_time_follows_the_clock() -> None:
    engine = GtpEngine(size=9)
    assert engine.move_time(Color.BLACK) is None
    engine.handle("time_settings 300 0 0")  # 5 minutes sudden death
    start = engine.move_time(Color.BLACK)
    assert start is not None and 5.0 < start < 10.0  # 300 s over ~36 expected moves
    engine.handle("time_left b 30 0")
    low = engine.move_time(Color.BLACK)
    assert low is not None and low < start
    engine.handle("time_settings 0 30 5")  # byo-yomi only: 30 s per 5 stones
    engine.handle("time_left w 20 4")
    assert engine.move_time(Color.WHITE) == pytest.approx(0.9 * 5 - 0.1)
    engine.handle("time_settings 0 0 0")  # absolute zero: move at once
    assert engine.move_time(Color.WHITE) == pytest.approx(0.05)
    engine.handle("time_settings 60 10 0")  # byo-yomi time with no stones: no limit
    assert engine.move_time(Color.WHITE) is None


def test_p2pgo_gtp_process_with_a_model_streams_analysis(tmp_path: Path) -> None:
    model = tmp_path / "m.cbor"
    model.write_bytes(save_weights(make_small_model()))
    script = b"boardsize 7\ngenmove b\n2 lz-analyze 1\n"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.gtp", "--model", str(model), "--visits", "8"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(script)
    proc.stdin.flush()
    lines = [proc.stdout.readline() for _ in range(6)]  # "=", "", "= X", "", "=2", info
    proc.stdin.write(b"name\nquit\n")
    proc.stdin.flush()
    rest, _ = proc.communicate(timeout=60)
    assert lines[0] == b"=\n" and lines[2].startswith(b"= ") and lines[4] == b"=2\n"
    assert _parse_info(lines[5].decode())
    # The analysis reply ends with a blank line, then the next command is answered.
    assert b"\n\n= p2pgo\n\n=\n\n" in b"".join(lines[5:]) + rest
    assert proc.returncode == 0


def test_p2pgo_gtp_refuses_a_bad_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(b"\xa0")
    done = subprocess.run(
        [sys.executable, "-m", "engine.gtp", "--model", str(bad)],
        input=b"quit\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and b"not a p2pgo model" in done.stderr


def test_the_shipped_model_if_present_loads_and_plays() -> None:
    if not DEFAULT_MODEL.is_file():
        pytest.skip("no shipped model in this checkout")
    from engine.nn import load_weights

    data = DEFAULT_MODEL.read_bytes()
    assert len(data) < 5 * 1024 * 1024
    model = load_weights(data)
    policy = Predictor(model, threads=1).predict(Position(9)).policy
    assert np.isclose(policy.sum(), 1.0)


def _pass_loving_player(*, pass_guard: bool) -> SearchPlayer:
    model = make_small_model()
    with torch.no_grad():
        model.pass_out.bias.fill_(50.0)  # the policy puts almost everything on pass
    return SearchPlayer(Predictor(model, threads=1), visits=0, pass_guard=pass_guard)


def test_the_pass_guard_answers_dame_that_a_pass_loving_network_would_leave(
    restore_threads: None,
) -> None:
    dame = Position.from_ascii(
        """
        . X . O .
        . X . O .
        . X . O .
        . X . O .
        . X . O .
        """
    )
    assert _pass_loving_player(pass_guard=False).choose(dame) == Move.pass_(Color.BLACK)
    move = _pass_loving_player(pass_guard=True).choose(dame)
    assert move.color is Color.BLACK and move.point is not None and move.point[1] == 2
    # With the dame filled the same player passes.
    settled = Position.from_ascii(
        """
        . X X O .
        . X X O .
        . X O O .
        . X X O .
        . X O O .
        """
    )
    assert _pass_loving_player(pass_guard=True).choose(settled) == Move.pass_(Color.BLACK)


@pytest.mark.parametrize(
    ("flags", "guarded", "averaged"),
    [
        ([], True, False),
        (["--early-pass"], False, False),
        # On, but engine.pass_alternative never acts under territory scoring (the
        # position's rules; tests/engine/test_pass_guard.py).
        (["--rules", "japanese"], True, False),
        # The 8 orientations are averaged only when asked, policy-only or not.
        (["--visits", "0"], True, False),
        (["--visits", "0", "--symmetries", "all"], True, True),
        (["--symmetries", "all", "--early-pass"], False, True),
    ],
)
def test_p2pgo_gtp_player_follows_its_flags(
    tmp_path: Path, restore_threads: None, flags: list[str], guarded: bool, averaged: bool
) -> None:
    from engine._gtp_main import _network_player, _parser

    model = tmp_path / "m.cbor"
    model.write_bytes(save_weights(make_small_model()))
    player = _network_player(_parser().parse_args(["--model", str(model), *flags]))
    assert isinstance(player, SearchPlayer) and player.pass_guard is guarded
    assert player.evaluator.all_symmetries is averaged
