"""p2pgo-eval: the SPRT on synthetic results, accuracy on games, a tiny match."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine._sprt import Sprt, SprtConfig, SprtDecision, elo_to_score, sprt_llr
from engine.eval import main, our_engine

HAND_MADE = b"(;FF[4]GM[1]SZ[5]KM[0.5]RE[W+R];B[cc];W[bb];B[];W[dd])"


def _run(p: float, seed: int, config: SprtConfig, limit: int = 5000) -> Sprt:
    rng = random.Random(seed)
    sprt = Sprt(config)
    while sprt.decision is SprtDecision.CONTINUE and sprt.games < limit:
        sprt.update(1.0 if rng.random() < p else 0.0)
    return sprt


def test_elo_and_llr_arithmetic() -> None:
    assert elo_to_score(0) == 0.5
    assert elo_to_score(400) == pytest.approx(10 / 11)
    assert elo_to_score(-100) == pytest.approx(1 - elo_to_score(100))
    p0, p1 = elo_to_score(0), elo_to_score(35)
    assert sprt_llr(3, 0, 1, 0, 35) == pytest.approx(
        3 * math.log(p1 / p0) + math.log((1 - p1) / (1 - p0))
    )
    # A draw is half a win and half a loss.
    assert sprt_llr(1, 2, 1, 0, 35) == pytest.approx(sprt_llr(2, 0, 2, 0, 35))
    assert sprt_llr(0, 0, 0, 0, 35) == 0.0
    with pytest.raises(ValueError):
        sprt_llr(-1, 0, 0, 0, 35)


def test_sprt_accepts_a_clearly_stronger_candidate() -> None:
    sprt = _run(elo_to_score(200), seed=1, config=SprtConfig())
    assert sprt.decision is SprtDecision.ACCEPT_H1
    assert sprt.llr >= sprt.config.upper
    assert sprt.games < 100
    assert "H1" in sprt.summary()


def test_sprt_rejects_a_weaker_candidate() -> None:
    sprt = _run(elo_to_score(-100), seed=2, config=SprtConfig())
    assert sprt.decision is SprtDecision.ACCEPT_H0
    assert sprt.llr <= sprt.config.lower


def test_sprt_stops_deciding_after_a_decision() -> None:
    sprt = Sprt(SprtConfig(elo0=0, elo1=200))
    while sprt.update(1.0) is SprtDecision.CONTINUE:
        pass
    decided = sprt.games
    assert sprt.update(0.0) is SprtDecision.ACCEPT_H1 and sprt.games == decided + 1
    assert sprt.losses == 1
    with pytest.raises(ValueError):
        sprt.update(0.7)


def test_sprt_error_rates_hold_on_synthetic_streams() -> None:
    # Wald's bounds: at the hypotheses themselves, wrong decisions happen at most about
    # alpha and beta of the time (here 10% each, 150 runs, a generous margin).
    config = SprtConfig(elo0=0, elo1=100, alpha=0.1, beta=0.1)
    at_h0 = [_run(elo_to_score(0), seed=s, config=config) for s in range(150)]
    at_h1 = [_run(elo_to_score(100), seed=1000 + s, config=config) for s in range(150)]
    false_accepts = sum(r.decision is SprtDecision.ACCEPT_H1 for r in at_h0) / 150
    false_rejects = sum(r.decision is SprtDecision.ACCEPT_H0 for r in at_h1) / 150
    assert false_accepts <= 0.18 and false_rejects <= 0.18
    assert all(r.decision is not SprtDecision.CONTINUE for r in at_h0 + at_h1)


@pytest.mark.parametrize(
    "bad",
    [
        {"elo0": 10, "elo1": 10},
        {"alpha": 0.0},
        {"beta": 0.5},
        {"elo1": float("inf")},
        {"elo0": True},
    ],
)
def test_sprt_config_is_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SprtConfig(**bad)


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """The network's Predictor sets torch's process-wide thread count; put it back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def model_file(tmp_path: Path, restore_threads: None) -> Path:
    from engine.nn import save_weights

    from .nn.conftest import make_small_model

    path = tmp_path / "m.cbor"
    path.write_bytes(save_weights(make_small_model()))
    return path


def test_accuracy_command(
    model_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    games = tmp_path / "games"
    games.mkdir()
    (games / "a.sgf").write_bytes(HAND_MADE)
    (games / "b.sgf").write_bytes(b"(;FF[4]SZ[5];B[cc])")  # no result: skipped
    assert main(["accuracy", str(games), "--model", str(model_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["games"] == 1 and report["skipped"] == 1 and report["positions"] == 4
    assert 0.0 <= report["top1"] <= report["top3"] <= 1.0
    assert report["value_loss"] > 0
    assert main(["accuracy", str(tmp_path / "none"), "--model", str(model_file)]) == 2


def test_match_against_our_heuristic_engine_with_sprt(
    model_file: Path, p2pgo_gtp_argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = our_engine(model_file, visits=0, seconds_per_move=0.5)
    assert "--model" in spec.argv and "0" in spec.argv
    opponent = " ".join([*p2pgo_gtp_argv, "--player", "heuristic"])
    args = ["match", "--opponent", opponent, "--model", str(model_file), "--games", "2"]
    args += ["--size", "5", "--visits", "0", "--sgf-dir", str(tmp_path / "sgf"), "--json"]
    code = main([*args, "--sprt", "--elo0", "0", "--elo1", "400", "--alpha", "0.3"])
    assert code in (0, 1, 3)
    report = json.loads(capsys.readouterr().out)
    assert 1 <= report["games"] <= 2 and report["forfeits"] == 0
    assert report["engines"][0] == "p2pgo" and report["visits"] == 0
    lo, hi = report["ci95_a"]
    assert 0.0 <= lo <= hi <= 1.0
    assert report["sprt"]["decision"] in ("continue", "H1: stronger", "H0: not stronger")
    assert len(list((tmp_path / "sgf").glob("*.sgf"))) == report["games"]
