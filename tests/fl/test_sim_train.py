"""`p2pgo-sim --train`: peers train the Go network on non-IID slices of real SGF games."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from engine import GameRecord, Move, Position, dump_sgf, load_sgf
from fl._errors import FlInputError
from fl._sim_train import deal_games
from fl.sim import main


def _random_game(seed: int, size: int = 5, moves: int = 14) -> GameRecord:
    """Random legal moves; the result alternates so the slices get both winners."""
    rng = random.Random(seed)
    pos = Position(size)
    record = GameRecord.new(size)
    for _ in range(moves):
        legal = pos.legal_points()
        if not legal:
            break
        move = Move.play(pos.to_play, rng.choice(legal))
        pos = pos.play(move)
        record = record.with_move(move)
    return record.with_result("B+3.5" if seed % 2 else "W+R")


@pytest.fixture
def games(tmp_path: Path) -> Path:
    for i in range(6):
        (tmp_path / f"g{i}.sgf").write_bytes(dump_sgf(_random_game(i)))
    (tmp_path / "broken.sgf").write_bytes(b"(;GM[1]SZ[5];B[zz]")
    return tmp_path


@pytest.fixture(autouse=True)
def restore_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    assert torch.get_num_threads() == before  # the CLI puts its 1-thread setting back


def _argv(games: Path, *extra: str) -> list[str]:
    base = ["--peers", "3", "--per-round", "3", "--rounds", "2", "--dropout", "0"]
    return [*base, "--train", "--games", str(games), "--batch-size", "8", *extra]


def test_train_json_reports_both_models_each_round(
    games: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_argv(games, "--json", "--seed", "1")) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["round"] for line in lines] == [0, 1]
    for line in lines:
        assert line["completed"], line["abort_reason"]
        assert line["max_abs_error"] is not None and 0 <= line["max_abs_error"] < 0.05
        assert line["train_mean_s"] > 0 and line["train_steps"] >= line["survivors"]
        for side in ("federated", "central"):
            score = line[side]
            assert 0 <= score["top1"] <= score["top3"] <= 1
            assert math.isfinite(score["value_loss"]) and score["value_loss"] > 0
        # Plain training from a near-uniform start stays near log(2); the federated model
        # may be far off: DP noise calibrated to the clip norm swamps 3 peers' signal.
        assert line["central"]["value_loss"] < 2
    assert lines[0]["model_version"] != lines[1]["model_version"]
    assert lines[0]["central"] != lines[1]["central"]


def test_train_human_readable(games: Path, capsys: pytest.CaptureFixture[str]) -> None:
    noise = ["--noise-multiplier", "0.3", "--epsilon-budget", "1000"]
    assert main(_argv(games, "--local-steps", "2", *noise)) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("training:") and "held-out games" in out[0]
    assert "1 files skipped" in out[0]
    rounds = out[1:]
    assert len(rounds) == 2
    for k, line in enumerate(rounds):
        assert line.startswith(f"round {k}: ok;")
        assert "Go model training" in line and "max |secure - plain|" in line
        assert "federated top1" in line and "centralised top1" in line
        assert "(6 steps)" in line  # 3 participants x 2 local steps, mirrored centrally
        # With less noise the aggregated update carries the training signal, not garbage.
        found = re.search(r"federated top1 [\d.]+ top3 [\d.]+ value loss ([\d.]+)", line)
        assert found is not None and 0 < float(found[1]) < 2


def test_train_without_games_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--peers", "3", "--per-round", "3", "--train"]) == 2
    assert "--train needs --games" in capsys.readouterr().err


def test_train_with_empty_or_missing_games_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--peers", "3", "--per-round", "3", "--train", "--games"]
    assert main([*base, str(tmp_path)]) == 2
    assert "no SGF games" in capsys.readouterr().err
    assert main([*base, str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_too_few_games_for_the_peers(games: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--peers", "8", "--per-round", "3", "--train", "--games", str(games)]) == 2
    assert "each peer needs at least one game" in capsys.readouterr().err


def test_dealing_is_non_iid_and_disjoint() -> None:
    records = [load_sgf(dump_sgf(_random_game(i))) for i in range(12)]
    slices, held = deal_games(records, 3, 0.25)
    assert len(held) == 3 and [len(s) for s in slices] == [3, 3, 3]
    ids = [r.record_id for s in slices for r in s] + [r.record_id for r in held]
    assert sorted(ids) == sorted(r.record_id for r in records)
    # Sorted by winner first: the first peer holds only black wins, the last only white.
    assert {r.result for r in slices[0]} == {"B+3.5"}
    assert {r.result for r in slices[-1]} == {"W+R"}
    first_ids = sorted(r.record_id for r in records)[:3]
    assert {r.record_id for r in held} == set(first_ids)
    with pytest.raises(FlInputError):
        deal_games(records[:3], 3, 0.25)
