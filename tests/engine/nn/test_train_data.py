"""Training examples from game records: targets, annotations, the held-out split, augmentation."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import GameRecord, Move, Rules, load_sgf
from engine.nn import (
    ExampleSet,
    Plane,
    SkippedGame,
    Symmetry,
    augment_batch,
    build_examples,
    examples_from_record,
    format_visits,
    held_out,
    load_records,
    parse_opening,
    parse_visits,
    result_targets,
    split_records,
    transform_point,
)
from engine.nn._dataset import DatasetError

# 5x5: B C3, W B4, B passes, W D2; white wins by resignation.
HAND_MADE = b"(;FF[4]GM[1]SZ[5]KM[0.5]RE[W+R];B[cc];W[bb];B[];W[dd])"


def test_targets_from_a_hand_made_sgf() -> None:
    ex = examples_from_record(load_sgf(HAND_MADE))
    assert ex.size == 5 and len(ex) == 4
    # Policy targets: one-hot at row*5+col, pass at 25. SGF "cc" is row 2, col 2.
    assert [int(np.argmax(p)) for p in ex.policy] == [2 * 5 + 2, 1 * 5 + 1, 25, 3 * 5 + 3]
    assert np.all(ex.policy.sum(axis=1) == 1.0)
    # White won: black to move -> 0, white to move -> 1.
    assert ex.value.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert np.all(np.isnan(ex.score))  # a resignation has no margin
    assert ex.policy_weight.tolist() == [1.0] * 4
    # Features are from the side to move's view: before W B4, black's C3 is the opponent.
    assert ex.planes.dtype == np.float16
    assert ex.planes[1, Plane.OPPONENT, 2, 2] == 1 and ex.planes[1, Plane.OWN, 2, 2] == 0
    assert ex.planes[0, Plane.BLACK_TO_MOVE].all() and not ex.planes[1, Plane.BLACK_TO_MOVE].any()


def test_score_target_and_sign_for_each_side() -> None:
    record = replace(load_sgf(HAND_MADE), result="B+3.5")
    ex = examples_from_record(record)
    assert ex.value.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert ex.score.tolist() == [3.5, -3.5, 3.5, -3.5]
    draw = examples_from_record(replace(record, result="0"))
    assert draw.value.tolist() == [0.5] * 4 and draw.score.tolist() == [0.0] * 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B+R", ("B", math.nan)),
        ("W+Resign", ("W", math.nan)),
        ("W+T", ("W", math.nan)),
        ("B+12.5", ("B", 12.5)),
        ("W+0.5", ("W", -0.5)),
        ("Draw", (None, 0.0)),
        ("", None),
        ("Void", None),
        ("?", None),
        ("B+0", None),
        ("B+inf", None),
    ],
)
def test_result_targets(text: str, expected: tuple[str | None, float] | None) -> None:
    got = result_targets(text)
    if expected is None:
        assert got is None
        return
    assert got is not None
    winner, margin = got
    assert (winner.letter if winner else None) == expected[0]
    assert (math.isnan(margin) and math.isnan(expected[1])) or margin == expected[1]


def test_games_without_a_result_or_with_bad_annotations_are_skipped() -> None:
    record = load_sgf(HAND_MADE)
    with pytest.raises(DatasetError):
        examples_from_record(replace(record, result=""))
    bad = record.with_comment(1, "p2pgo-visits: Z99=3")
    data = build_examples([record, replace(record, result="?"), bad, SkippedGame("x.sgf", "bad")])
    assert data.games == 1 and len(data) == 4
    assert len(data.skipped) == 3
    assert any("vertex" in s.reason for s in data.skipped)


def test_random_opening_plies_get_no_policy_target() -> None:
    record = load_sgf(HAND_MADE).with_comment(0, "p2pgo-selfplay: random-plies=2")
    ex = examples_from_record(record)
    assert ex.policy_weight.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert ex.value.tolist() == [0.0, 1.0, 0.0, 1.0]  # values still count
    assert parse_opening("hello\np2pgo-selfplay: random-plies=7 source=x") == 7
    assert parse_opening("a human comment") == 0
    with pytest.raises(DatasetError):
        parse_opening("p2pgo-selfplay: random-plies=-1")


def test_visit_distributions_become_policy_targets() -> None:
    line = format_visits({(2, 2): 30, (1, 1): 10, None: 0, (0, 0): 0}, 5)
    assert line == "p2pgo-visits: C3=30 B4=10"
    assert parse_visits(line, 5) == {(2, 2): 30, (1, 1): 10}
    assert parse_visits("no visits here", 5) is None
    record = load_sgf(HAND_MADE).with_comment(1, line + "\nand a note")
    ex = examples_from_record(record)
    assert ex.policy[0, 12] == pytest.approx(0.75) and ex.policy[0, 6] == pytest.approx(0.25)
    one_hot = examples_from_record(record, use_visits=False)
    assert one_hot.policy[0, 12] == 1.0
    for bad in ("p2pgo-visits: C3=x", "p2pgo-visits: C3=0", "p2pgo-visits: K3=1"):
        with pytest.raises(DatasetError):
            parse_visits(bad, 5)


def test_load_records_reads_directories_and_reports_bad_files(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.sgf").write_bytes(HAND_MADE)
    (tmp_path / "b.sgf").write_bytes(b"(;FF[4]SZ[5];B[cc];W[cc])")  # illegal: occupied
    (tmp_path / "notes.txt").write_text("not a game")
    items = load_records([tmp_path])
    assert sum(isinstance(i, GameRecord) for i in items) == 1
    (skipped,) = [i for i in items if isinstance(i, SkippedGame)]
    assert skipped.source.endswith("b.sgf") and "illegal" in skipped.reason
    with pytest.raises(DatasetError):
        load_records([tmp_path / "missing"])


def _records(n: int) -> list[GameRecord]:
    base = GameRecord(size=5, rules=Rules.named("chinese", 0.5), result="B+1.5")
    moves = (Move.play(base.first_player, (2, 2)),)
    return [replace(base, game_id=f"game-{i}", moves=moves) for i in range(n)]


def test_held_out_split_is_deterministic_and_by_game() -> None:
    records = _records(400)
    train, test = split_records(records, 0.2)
    train2, test2 = split_records(list(reversed(records)), 0.2)
    assert {r.record_id for r in test} == {r.record_id for r in test2}  # type: ignore[union-attr]
    assert len(train) + len(test) == 400 and len(train2) == len(train)
    assert 40 <= len(test) <= 120  # about 20%
    assert all(held_out(r, 0.2) for r in test)  # type: ignore[arg-type]
    assert split_records(records, 0.0)[1] == [] and split_records(records, 1.0)[0] == []
    # A different salt is a different split.
    assert {r.record_id for r in split_records(records, 0.2, salt="x")[1]} != {  # type: ignore[union-attr]
        r.record_id  # type: ignore[union-attr]
        for r in test
    }
    with pytest.raises(ValueError):
        held_out(records[0], 1.5)


def test_augmentation_moves_features_and_targets_together() -> None:
    record = load_sgf(HAND_MADE)
    data = build_examples([record])
    assert isinstance(data, ExampleSet)
    group = data.groups[0]
    planes = torch.from_numpy(group.planes.astype(np.float32))
    policy = torch.from_numpy(group.policy)
    # Example 2 (black to move after two stones): the target is a pass, so use example 1
    # (white to move, target B4) and check every symmetry.
    syms = np.arange(8) % 8
    x = planes[1:2].repeat(8, 1, 1, 1)
    p = policy[1:2].repeat(8, 1)
    ax, ap = augment_batch(x, p, syms)
    for k in range(8):
        sym = Symmetry(k)
        moved_target = transform_point((1, 1), 5, sym)
        assert moved_target is not None
        assert int(ap[k].argmax()) == moved_target[0] * 5 + moved_target[1]
        stone = transform_point((2, 2), 5, sym)
        assert stone is not None and ax[k, Plane.OPPONENT, stone[0], stone[1]] == 1
        assert float(ax[k, Plane.OPPONENT].sum()) == 1.0
    assert torch.equal(ax[0], x[0]) and torch.equal(ap[0], p[0])


def test_records_from_a_game_store(tmp_path: Path) -> None:
    from nacl.signing import SigningKey

    from engine import GameStore
    from engine.nn import records_from_store

    key = SigningKey.generate()
    finished = replace(load_sgf(HAND_MADE), game_id="done")
    playing = replace(finished, game_id="playing", result="", moves=finished.moves[:2])
    with GameStore(tmp_path / "store", key) as store:
        store.save(finished)
        store.save_in_progress(playing)
    with GameStore(tmp_path / "store", key) as store:
        records = records_from_store(store)
        assert [r.game_id for r in records] == ["done"]
        assert records_from_store(store, size=9) == []
    # The same through p2pgo-train --store, with the key as hex.
    from engine.train import main

    key_file = tmp_path / "key"
    key_file.write_text(bytes(key).hex())
    out = tmp_path / "m.cbor"
    args = ["--store", str(tmp_path / "store"), "--store-key", str(key_file), "--out", str(out)]
    tiny = [
        "--blocks",
        "1",
        "--channels",
        "8",
        "--epochs",
        "1",
        "--held-out",
        "0",
        "--device",
        "cpu",
    ]
    assert main([*args, *tiny]) == 0 and out.is_file()
    key_file.write_text("nonsense")
    assert main([*args, *tiny]) == 2
