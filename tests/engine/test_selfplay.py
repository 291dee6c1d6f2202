"""p2pgo-selfplay: engine games with random openings, and network self-play with visits."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from engine import Color, Position, load_sgf
from engine.selfplay import (
    SelfplayError,
    main,
    play_engine_game,
    play_model_game,
    random_opening_move,
)

GNUGO_FLAGS = ("--mode", "gtp", "--level", "0", "--chinese-rules", "--capture-all-dead")


def _heuristic(argv: list[str]) -> list[str]:
    return [*argv, "--player", "heuristic"]


def test_random_opening_moves_stay_off_the_edge() -> None:
    rng = random.Random(1)
    pos = Position(9)
    for _ in range(20):
        move = random_opening_move(pos, rng)
        assert move.point is not None and all(2 <= x <= 6 for x in move.point)
        pos = pos.play(move)
    tiny = Position(3)
    assert random_opening_move(tiny, rng).point is not None  # small boards: anywhere


def test_engine_game_with_our_own_gtp_engine(p2pgo_gtp_argv: list[str]) -> None:
    game = play_engine_game(
        _heuristic(p2pgo_gtp_argv), size=5, random_plies=4, seed=3, max_moves=40, name="p2pgo"
    )
    record = game.record
    assert 2 <= game.random_plies <= 4
    assert record.comments[0] == f"p2pgo-selfplay: random-plies={game.random_plies}"
    assert record.result[:2] in ("B+", "W+") or record.result == "0"
    assert record.black.name == record.white.name == "p2pgo"
    assert 0 < len(record.moves) <= 40
    final = record.replay()
    assert final.is_game_over or len(record.moves) == 40
    colors = [m.color for m in record.moves[:4]]
    assert colors == [Color.BLACK, Color.WHITE, Color.BLACK, Color.WHITE]


def test_a_failing_engine_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SelfplayError):
        play_engine_game([str(tmp_path / "no-such-engine")], size=5)


def test_selfplay_command_writes_sgf_files(
    p2pgo_gtp_argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = " ".join(_heuristic(p2pgo_gtp_argv))
    out = tmp_path / "games"
    argv = ["--engine", engine, "--games", "2", "--size", "5", "--out", str(out), "--jobs", "2"]
    assert main([*argv, "--max-moves", "30"]) == 0
    files = sorted(out.glob("*.sgf"))
    assert [f.name for f in files] == ["selfplay-0-00000.sgf", "selfplay-0-00001.sgf"]
    records = [load_sgf(f.read_bytes()) for f in files]
    assert all(r.result and r.size == 5 for r in records)
    assert records[0].moves != records[1].moves  # seeded per game
    assert "2 games saved" in capsys.readouterr().out


def test_model_selfplay_records_visit_counts(tmp_path: Path, restore_threads: None) -> None:
    from engine.nn import examples_from_record, parse_visits, save_weights

    from .nn.conftest import make_small_model

    weights = save_weights(make_small_model())
    game = play_model_game(weights, size=5, visits=8, temperature_moves=4, seed=2, max_moves=16)
    record = game.record
    assert record.result and 0 < len(record.moves) <= 16
    annotated = [i for i in range(1, len(record.moves) + 1) if i in record.comments]
    assert annotated == list(range(1, len(record.moves) + 1))
    for i in annotated:
        visits = parse_visits(record.comments[i], 5)
        assert visits is not None and sum(visits.values()) >= 1
    ex = examples_from_record(record)
    assert (ex.policy.max(axis=1) < 1.0).any()  # distributions, not just the move played
    # The CLI path with a model file.
    model = tmp_path / "m.cbor"
    model.write_bytes(weights)
    out = tmp_path / "games"
    args = ["--model", str(model), "--games", "1", "--size", "5", "--visits", "4"]
    assert main([*args, "--out", str(out), "--max-moves", "10"]) == 0
    assert len(list(out.glob("*.sgf"))) == 1


@pytest.mark.gnugo
def test_engine_game_with_gnugo(gnugo: str) -> None:
    game = play_engine_game([gnugo, *GNUGO_FLAGS], size=9, random_plies=4, seed=5, name="gnugo")
    record = game.record
    assert record.result[:2] in ("B+", "W+")
    assert len(record.moves) > 20
    record.replay()  # every move legal for us
