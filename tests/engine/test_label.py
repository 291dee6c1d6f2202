"""p2pgo-label: an engine's move before every recorded move, as policy targets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine import Color, GameRecord, Move, dump_sgf, load_sgf
from engine._coords import from_gtp
from engine._gtp_client import GtpClient
from engine._search import Search, SearchConfig
from engine.label import LABEL_MARKER, LabelError, label_record, label_record_with_search, main
from engine.nn._dataset import examples_from_record, parse_visits
from engine.selfplay import play_engine_game, play_model_game


def _game(argv: list[str], seed: int) -> GameRecord:
    return play_engine_game(argv, size=5, random_plies=2, seed=seed, max_moves=30).record


def _check_labels(original: GameRecord, labelled: GameRecord) -> int:
    """Every label is a legal move of the position it labels; returns how many there are."""
    assert labelled.moves == original.moves and labelled.result == original.result
    positions = list(original.positions())
    count = 0
    for i, move in enumerate(original.moves):
        visits = parse_visits(labelled.comments.get(i + 1, ""), original.size)
        if visits is None:
            continue
        assert len(visits) == 1 and list(visits.values()) == [1]
        (point,) = visits
        position = positions[i]
        assert move.color is position.to_play
        if point is not None:
            assert position.is_legal(Move.play(position.to_play, point))
        count += 1
    return count


@pytest.mark.parametrize("use_reg_genmove", [True, False])
def test_labels_every_position_with_a_legal_move(
    p2pgo_gtp_argv: list[str], use_reg_genmove: bool
) -> None:
    record = _game(p2pgo_gtp_argv, seed=4)
    with GtpClient(p2pgo_gtp_argv, timeout=60) as client:
        game = label_record(
            record, client, engine_name="heuristic", use_reg_genmove=use_reg_genmove
        )
        # The engine followed the recorded game to its end (undo restored each position).
        final = client.send("showboard")
    assert game.labelled == _check_labels(record, game.record) == len(record.moves)
    assert 0 <= game.agreed <= game.labelled
    assert f"{LABEL_MARKER} engine=heuristic labelled={game.labelled}" in game.record.comments[0]
    assert "p2pgo-selfplay: random-plies=" in game.record.comments[0]  # kept
    assert final  # the engine is still answering
    # The labels survive SGF and become the training targets (value: the real result).
    again = load_sgf(dump_sgf(game.record))
    examples = examples_from_record(again)
    plain = examples_from_record(record)
    assert len(examples) == len(plain)
    np.testing.assert_array_equal(examples.value, plain.value)
    for i in range(len(examples)):
        label = parse_visits(again.comments[i + 1], again.size)
        assert label is not None
        (point,) = label
        index = 25 if point is None else point[0] * 5 + point[1]
        assert examples.policy[i, index] == 1.0
        assert examples.policy_weight[i] == 1.0  # random opening plies too: the label counts


def test_setup_stones_are_refused(p2pgo_gtp_argv: list[str]) -> None:
    stone = from_gtp("C3", 5)
    assert stone is not None
    record = GameRecord(size=5, setup_black=(stone,)).with_move(Move.play(Color.WHITE, (0, 0)))
    with GtpClient(p2pgo_gtp_argv, timeout=60) as client, pytest.raises(LabelError, match="setup"):
        label_record(record, client, engine_name="heuristic")


def test_cli_labels_a_directory_skips_bad_files_and_resumes(
    p2pgo_gtp_argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "games"
    src.mkdir()
    record = _game(p2pgo_gtp_argv, seed=9)
    (src / "a.sgf").write_bytes(dump_sgf(record))
    (src / "broken.sgf").write_bytes(b"(;FF[4]SZ[5];B[zz")
    out = tmp_path / "out"
    engine = " ".join(p2pgo_gtp_argv)
    assert main([str(src), "--engine", engine, "--name", "h", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 games labelled (1 skipped)" in captured.out
    assert "broken.sgf: skipped: cannot read it" in captured.err
    labelled = out / "games-a.sgf"
    first = labelled.read_bytes()
    assert _check_labels(record, load_sgf(first)) == len(record.moves)
    # A second run finds the labelled game done and only retries the broken one.
    assert main([str(src), "--engine", engine, "--out", str(out)]) == 1
    assert "1 games to label" in capsys.readouterr().err
    assert labelled.read_bytes() == first


def test_cli_rejects_an_empty_engine(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--engine", " ", "--out", str(tmp_path / "o")])


@pytest.mark.gnugo
def test_gnugo_labels_its_own_level_zero_game(gnugo: str) -> None:
    argv = [gnugo, "--mode", "gtp", "--level", "0", "--chinese-rules", "--capture-all-dead"]
    record = play_engine_game(argv, size=9, random_plies=2, seed=7, max_moves=40).record
    with GtpClient(argv, timeout=60) as client:
        game = label_record(record, client, engine_name="gnugo")
    assert game.labelled == _check_labels(record, game.record) > 0
    # GnuGo at the same level mostly repeats its own moves (the random opening aside).
    assert game.agreed >= game.labelled // 2


def _search_for(weights: bytes) -> Search:
    from engine.nn import Predictor, load_weights
    from engine.nn._evaluator import NetworkEvaluator

    return Search(NetworkEvaluator(Predictor(load_weights(weights), threads=1)), SearchConfig())


def test_search_labels_are_visit_distributions_over_legal_moves(restore_threads: None) -> None:
    from engine.nn import save_weights

    from .nn.conftest import make_small_model

    weights = save_weights(make_small_model())
    record = play_model_game(weights, size=5, visits=4, temperature_moves=6, seed=3).record
    stripped = replace(record, comments={})  # the self-play visits are not labels here
    search = _search_for(weights)
    game = label_record_with_search(stripped, search, engine_name="net-search", visits=12)
    positions = list(record.positions())
    playable = [i for i, m in enumerate(record.moves) if not positions[i].is_game_over]
    assert game.labelled == len(playable) > 0
    assert 0 <= game.agreed <= game.labelled
    assert f"{LABEL_MARKER} engine=net-search labelled={game.labelled}" in game.record.comments[0]
    for i in playable:
        visits = parse_visits(game.record.comments[i + 1], 5)
        assert visits is not None
        # At least the new playouts, spread over moves that are legal where they stand
        # (the tree kept from the previous position adds its visits).
        assert sum(visits.values()) >= 12
        for point in visits:
            assert point is None or positions[i].is_legal(Move.play(positions[i].to_play, point))
    # Soft targets: the training example's policy is the normalised visit distribution.
    examples = examples_from_record(load_sgf(dump_sgf(game.record)))
    first = parse_visits(game.record.comments[1], 5)
    assert first is not None
    total = sum(first.values())
    for point, n in first.items():
        index = 25 if point is None else point[0] * 5 + point[1]
        assert examples.policy[0, index] == pytest.approx(n / total, abs=1e-6)
    with pytest.raises(ValueError, match="visits"):
        label_record_with_search(stripped, search, engine_name="x", visits=0)


def test_cli_labels_with_a_model_in_worker_processes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_threads: None
) -> None:
    from engine.nn import save_weights

    from .nn.conftest import make_small_model

    weights = save_weights(make_small_model(seed=1))
    model = tmp_path / "m.cbor"
    model.write_bytes(weights)
    src = tmp_path / "games"
    src.mkdir()
    for seed in (1, 2):
        game = play_model_game(weights, size=5, visits=2, seed=seed, max_moves=12).record
        (src / f"g{seed}.sgf").write_bytes(dump_sgf(replace(game, comments={})))
    out = tmp_path / "out"
    argv = [str(src), "--model", str(model), "--visits", "6", "--out", str(out), "--jobs", "2"]
    assert main(argv) == 0
    assert "2 games labelled (0 skipped)" in capsys.readouterr().out
    for seed in (1, 2):
        labelled = load_sgf((out / f"games-g{seed}.sgf").read_bytes())
        assert "engine=m-search6" in labelled.comments[0]
        assert any(parse_visits(c, 5) for c in labelled.comments.values())
    # A tampered model file is refused with a message before any game is touched.
    bad = tmp_path / "bad.cbor"
    bad.write_bytes(weights[:-7])
    again = [str(src), "--model", str(bad), "--out", str(tmp_path / "o2")]
    assert main(again) == 2
    assert "cannot load" in capsys.readouterr().err
    assert not list((tmp_path / "o2").glob("*.sgf"))


def test_cli_wants_exactly_one_teacher(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--engine", "x", "--model", "m", "--out", str(tmp_path / "o")])
