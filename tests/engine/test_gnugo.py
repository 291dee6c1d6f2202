"""Our rules, scoring, handicap and match runner checked against a real GnuGo 3.8.

GnuGo plays itself to the end (never resigning; with ``--capture-all-dead`` it
removes every dead stone before passing, so area scoring needs no dead-stone
marking). Every GnuGo move must be legal for our engine, our score of the final
position must equal GnuGo's ``final_score``, and at sampled positions the set of
legal points must equal GnuGo's (``all_legal``, plus ``is_legal`` around each capture,
where ko lives). One game per board size: the 19x19 game takes about half a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from engine import Color, Move, Position, Rules, fixed_handicap_points, from_gtp, to_gtp
from engine._gtp_client import GtpClient
from engine._scoring import estimate_dead, score
from engine._sgf import load_sgf
from engine.gtp import GtpEngine
from engine.match import EngineSpec, GameEnd, parse_result, run_match

pytestmark = [pytest.mark.gnugo, pytest.mark.slow]

KOMI = 7.5
GNUGO_FLAGS = (
    "--mode",
    "gtp",
    "--level",
    "0",
    "--chinese-rules",
    "--capture-all-dead",
    "--positional-superko",
    "--never-resign",
    # Fixed seed: the same games every run. Without the opening databases the 19x19
    # game is shorter (about 25 s of CPU instead of 30-40 s).
    "--seed",
    "3",
    "--nofusekidb",
    "--nojosekidb",
)
# Legality is compared at every n-th move (and after every capture).
SAMPLE_EVERY = {9: 5, 13: 10, 19: 25}


@dataclass
class PlayedGame:
    size: int
    final: Position
    gnugo_score: str
    samples: int = 0
    capture_samples: int = 0
    legality_mismatches: list[str] = field(default_factory=list)


def _vertices(text: str, size: int) -> set[tuple[int, int]]:
    points = {from_gtp(v, size) for v in text.split()}
    return {p for p in points if p is not None}


def _compare_legality(game: PlayedGame, gnugo: GtpClient, pos: Position, captured: bool) -> None:
    size = pos.size
    color = pos.to_play
    letter = color.letter.lower()
    ours = set(pos.legal_points(color))
    theirs = _vertices(gnugo.send(f"all_legal {letter}"), size)
    where = f"{size}x{size} after move {pos.move_number} ({letter} to play)\n{pos.to_ascii()}"
    for point in sorted(ours ^ theirs):
        side = "we allow" if point in ours else "gnugo allows"
        game.legality_mismatches.append(f"{side} {to_gtp(point, size)} at {where}")
    game.samples += 1
    if captured and pos.last_move is not None and pos.last_move.point is not None:
        # Ask is_legal point by point where a ko would be: next to the capturing stone.
        game.capture_samples += 1
        for point in pos.neighbours(pos.last_move.point):
            if pos[point] is not Color.EMPTY:
                continue
            answer = gnugo.send(f"is_legal {letter} {to_gtp(point, size)}")
            if (answer == "1") != (point in ours):
                game.legality_mismatches.append(
                    f"is_legal {to_gtp(point, size)} says {answer} at {where}"
                )


def _self_play(gnugo_path: str, size: int) -> PlayedGame:
    rules = Rules.named("chinese", komi=KOMI)
    with GtpClient([gnugo_path, *GNUGO_FLAGS], timeout=120) as gnugo:
        for command in (f"boardsize {size}", "clear_board", f"komi {KOMI}"):
            gnugo.send(command)
        pos = Position(size, rules)
        game = PlayedGame(size, pos, "")
        # A cap far above any real game: it only stops a runaway loop.
        while not pos.is_game_over and pos.move_number < 3 * size * size:
            color = pos.to_play
            reply = gnugo.send(f"genmove {color.letter.lower()}")
            point = from_gtp(reply, size)
            move = Move.pass_(color) if point is None else Move.play(color, point)
            before = sum(pos.captures)
            pos = pos.play(move)  # raises IllegalMove if we disagree with a GnuGo move
            captured = sum(pos.captures) > before
            sample = captured or pos.move_number % SAMPLE_EVERY[size] == 0
            if sample and not pos.is_game_over:
                _compare_legality(game, gnugo, pos, captured)
        game.final = pos
        game.gnugo_score = gnugo.send("final_score")
    return game


@pytest.fixture(scope="module", params=[9, 13, 19], ids=lambda s: f"{s}x{s}")
def played(request: pytest.FixtureRequest, gnugo: str) -> PlayedGame:
    return _self_play(gnugo, request.param)


def test_gnugo_self_play_is_legal_for_us_and_ends_with_two_passes(played: PlayedGame) -> None:
    assert played.final.passes == 2, f"game stopped at move {played.final.move_number}"
    assert played.final.move_number > played.size * 2


def test_our_area_score_agrees_with_gnugo(played: PlayedGame) -> None:
    rules = Rules.named("chinese", komi=KOMI)
    exact = score(played.final, rules=rules)  # every dead stone has been captured
    assert parse_result(played.gnugo_score) == exact.margin, (
        f"gnugo {played.gnugo_score}, ours {exact.result()}\n{played.final.to_ascii()}"
    )
    # The dead-stone estimate (what our final_score uses) must find nothing to remove.
    estimated = score(played.final, estimate_dead(played.final), rules)
    assert estimated.margin == exact.margin


def test_our_legal_points_agree_with_gnugo(played: PlayedGame) -> None:
    assert played.samples >= 5
    assert played.legality_mismatches == []


def test_capture_positions_were_checked(played: PlayedGame) -> None:
    if played.size < 13:
        pytest.skip("a 9x9 level-0 game need not capture anything")
    assert played.capture_samples > 0


def test_fixed_handicap_agrees_with_gnugo(gnugo: str) -> None:
    ours = GtpEngine()
    with GtpClient([gnugo, "--mode", "gtp"], timeout=30) as theirs:
        for size in (7, 8, 9, 10, 13, 19):
            for stones in range(1, 11):
                answers = []
                for engine in (ours, theirs):
                    commands = (f"boardsize {size}", "clear_board", f"fixed_handicap {stones}")
                    if isinstance(engine, GtpEngine):
                        replies = [engine.handle(c) for c in commands]
                        ok = replies[-1].startswith("=")
                        answers.append(replies[-1][1:].strip() if ok else None)
                    else:
                        for c in commands[:-1]:
                            engine.send(c)
                        answers.append(engine.try_send(commands[-1]))
                mine, gnugos = answers
                where = f"{stones} stones on {size}x{size}"
                assert (mine is None) == (gnugos is None), f"{where}: {mine} vs {gnugos}"
                if mine is not None and gnugos is not None:
                    assert _vertices(mine, size) == _vertices(gnugos, size), where
                    assert _vertices(mine, size) == set(fixed_handicap_points(size, stones))


def test_match_p2pgo_against_gnugo(gnugo: str, p2pgo_gtp_argv: list[str], tmp_path: Path) -> None:
    ours = EngineSpec("p2pgo", (*p2pgo_gtp_argv, "--seed", "1"))
    theirs = EngineSpec(
        "gnugo", (gnugo, "--mode", "gtp", "--level", "0", "--chinese-rules", "--capture-all-dead")
    )
    seen = []
    match = run_match(
        ours,
        theirs,
        2,
        size=9,
        komi=KOMI,
        timeout=60,
        check_scores=True,
        sgf_dir=tmp_path,
        stderr_dir=tmp_path,
        on_game=seen.append,
    )
    assert [g.index for g in seen] == [0, 1]
    assert [(g.black, g.white) for g in match.games] == [("p2pgo", "gnugo"), ("gnugo", "p2pgo")]
    assert match.wins("p2pgo") + match.wins("gnugo") + match.draws == 2
    for game in match.games:
        # Neither engine forfeits: GnuGo's moves are legal for us and ours for GnuGo.
        assert game.end in (GameEnd.PASSES, GameEnd.RESIGNATION), game.message
        assert game.winner in ("p2pgo", "gnugo")
        assert game.score_disagreements == ()
        assert game.sgf_path is not None
        record = load_sgf(Path(game.sgf_path).read_bytes())
        assert record.result == game.result
        assert len(record.moves) == game.moves
        final = record.replay()
        if game.end is GameEnd.PASSES:
            assert final.passes == 2
            assert parse_result(game.result) == score(final).margin
    lo, hi = match.interval_of_a()
    assert 0.0 <= lo <= match.score_of_a() / 2 <= hi <= 1.0
