"""GameSession: turns, undo, counting and results, without a terminal."""

from __future__ import annotations

import pytest

from engine import Color, GameRecord, IllegalMove, Move, from_gtp, score
from p2pgo_tui import GameSession, GameSettings, Phase, SessionError, SettingsError, describe_result

from .conftest import phase


def pt(vertex: str, size: int = 9) -> tuple[int, int]:
    point = from_gtp(vertex, size)
    assert point is not None
    return point


def new(**kw: object) -> GameSession:
    return GameSession.new(GameSettings(**kw), human_name="me", ai_name="ai")  # type: ignore[arg-type]


def test_a_new_game_starts_empty_with_the_human_to_move() -> None:
    s = new(size=9)
    assert phase(s) is Phase.PLAYING and s.human_to_move and not s.ai_to_move
    assert s.position.move_number == 0 and s.record().black.name == "me"


def test_the_human_cannot_move_out_of_turn_and_nothing_changes() -> None:
    s = new(size=9)
    s.play(pt("E5"))
    before = s.position
    with pytest.raises(SessionError, match="AI's turn"):
        s.play(pt("D4"))
    assert s.position is before


def test_an_illegal_move_raises_and_changes_nothing() -> None:
    s = new(size=9)
    s.play(pt("E5"))
    s.apply_ai(Move.play(Color.WHITE, pt("D4")))
    before = s.position
    with pytest.raises(IllegalMove):
        s.play(pt("D4"))
    assert s.position is before


def test_undo_takes_back_the_ai_reply_and_the_human_move() -> None:
    s = new(size=9)
    s.play(pt("E5"))
    s.apply_ai(Move.play(Color.WHITE, pt("D4")))
    s.play(pt("C3"))
    s.apply_ai(Move.play(Color.WHITE, pt("F6")))
    assert s.undo() == 2
    assert s.position.move_number == 2 and s.human_to_move
    assert s.undo() == 2
    assert s.position.move_number == 0
    with pytest.raises(SessionError, match="nothing to undo"):
        s.undo()


def test_undo_while_the_ai_thinks_takes_back_only_the_human_move() -> None:
    s = new(size=9)
    s.play(pt("E5"))
    assert s.ai_to_move
    assert s.undo() == 1 and s.human_to_move and s.position.move_number == 0


def test_as_white_the_ai_opens_and_its_first_move_cannot_be_undone() -> None:
    s = new(size=9, human=Color.WHITE)
    assert s.ai_to_move
    s.apply_ai(Move.play(Color.BLACK, pt("E5")))
    assert not s.can_undo()
    with pytest.raises(SessionError):
        s.undo()


def test_handicap_stones_are_placed_and_white_moves_first() -> None:
    s = new(size=9, handicap=2, komi=0.5)
    assert s.position.cells().count(Color.BLACK) == 2
    assert s.position.to_play is Color.WHITE and s.ai_to_move
    assert s.record().handicap == 2


def test_two_passes_start_counting_and_confirm_finishes_with_the_score() -> None:
    s = new(size=5)
    s.play(pt("C3", 5))
    s.apply_ai(Move.play(Color.WHITE, pt("A1", 5)))
    s.play(None)
    s.apply_ai(Move.pass_(Color.WHITE))
    assert phase(s) is Phase.SCORING
    group = s.toggle_dead(pt("A1", 5))
    assert group == {pt("A1", 5)} and s.dead == group
    expected = score(s.position, s.dead)
    final = s.confirm()
    assert phase(s) is Phase.FINISHED and s.result == expected.result() == final.result()
    assert s.record().result == s.result and s.record().is_finished
    with pytest.raises(SessionError, match="game is over"):
        s.play(pt("B2", 5))


def test_toggling_twice_brings_a_group_back_and_empty_points_are_refused() -> None:
    s = new(size=5)
    s.play(pt("C3", 5))
    s.apply_ai(Move.pass_(Color.WHITE))
    s.play(None)
    assert phase(s) is Phase.SCORING
    s.toggle_dead(pt("C3", 5))
    s.toggle_dead(pt("C3", 5))
    assert s.dead == frozenset()
    with pytest.raises(SessionError, match="no stone"):
        s.toggle_dead(pt("A1", 5))


def test_undo_in_counting_resumes_play() -> None:
    s = new(size=5)
    s.play(None)
    s.apply_ai(Move.pass_(Color.WHITE))
    assert phase(s) is Phase.SCORING
    s.undo()
    assert phase(s) is Phase.PLAYING and s.human_to_move


def test_resigning_gives_the_ai_the_win() -> None:
    s = new(size=9)
    assert s.resign() == "W+R"
    assert phase(s) is Phase.FINISHED
    assert describe_result(s.result, s.human) == "White wins by resignation — the AI wins"


def test_a_record_continues_where_it_stopped() -> None:
    record = GameRecord.new(9).with_move(Move.play(Color.BLACK, pt("E5")))
    s = GameSession(record, human=Color.WHITE)
    assert s.human_to_move and s.position.move_number == 1
    assert s.record().moves == record.moves


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"size": 1}, "board size"),
        ({"komi": float("nan")}, "komi"),
        ({"handicap": 1}, "2 stones"),
        ({"size": 5, "handicap": 2}, "handicap"),
        ({"rules": "chess"}, "unknown rules"),
    ],
)
def test_bad_settings_say_what_is_wrong(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        GameSettings(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "text"),
    [
        ("B+3.5", "Black wins by 3.5 points"),
        ("W+R", "White wins by resignation"),
        ("0", "Draw (jigo)"),
        ("?", "?"),
    ],
)
def test_results_read_as_words(result: str, text: str) -> None:
    assert describe_result(result) == text
