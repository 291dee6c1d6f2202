"""The Board screen driven through Pilot: whole games by keys and by mouse, undo,
illegal moves, the new-game dialog, SGF files, help, the games list and review."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Select
from textual.widgets._footer import FooterKey

from engine import Color, HeuristicPlayer, from_gtp, load_sgf, score
from p2pgo_tui import (
    BoardMode,
    BoardScreen,
    ExplainingAdvisor,
    GamePanel,
    GameSettings,
    GamesScreen,
    GoBoard,
    P2PGoApp,
    Phase,
    ReviewScreen,
    StorageError,
    StoreStorage,
    make_app,
)
from p2pgo_tui._dialogs import ConfirmDialog, HelpScreen, NewGameDialog, PathDialog

from .conftest import (
    GatedAi,
    MemoryStorage,
    ScriptedAi,
    current,
    phase,
    run,
    settle,
    stones,
)

Notices = Callable[[], list[str]]


def build(ai: Any = None, size: int = 5, **kw: Any) -> P2PGoApp:
    return make_app(
        ai=ai if ai is not None else HeuristicPlayer(7),
        advisor=kw.pop("advisor", ExplainingAdvisor(HeuristicPlayer(8))),
        settings=GameSettings(size=size, **kw.pop("settings", {})),
        player_name="Tester",
        **kw,
    )


def screen(app: P2PGoApp) -> BoardScreen:
    assert isinstance(app.screen, BoardScreen)
    return app.screen


def pt(vertex: str, size: int = 5) -> tuple[int, int]:
    point = from_gtp(vertex, size)
    assert point is not None
    return point


async def click_key(pilot: Pilot[Any], action: str) -> None:
    """Click the footer key bound to ``action`` (the mouse way to pass, confirm...)."""
    await pilot.pause()
    key = next(k for k in pilot.app.screen.query(FooterKey) if k.action == action)
    await pilot.click(key)


def test_a_whole_game_by_keys_ends_with_the_count_and_is_stored(notices: Notices) -> None:
    storage = MemoryStorage()

    async def scenario() -> None:
        app = build(storage=storage)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            assert s.board.has_focus and s.board.cursor == pt("C3")
            await pilot.press("enter")  # C3
            await settle(pilot)
            assert stones(app)[0] == 1 and s.session.position.move_number == 2
            await pilot.press("k", "l", "space")  # D4
            await settle(pilot)
            await pilot.press("down", "down", "left", "left", "enter")  # B2, or a notice
            await settle(pilot)
            for _ in range(60):  # pass until the AI passes too
                if phase(s.session) is not Phase.PLAYING:
                    break
                await pilot.press("p")
                await settle(pilot)
            assert phase(s.session) is Phase.SCORING
            assert s.board.mode is BoardMode.MARK
            assert "Counting" in s.panel.view.status and s.panel.view.score
            # Mark the first stone's group dead and alive again with the keyboard.
            target = next(p for p in s.session.position.stones(Color.WHITE))
            s.board.cursor = target
            await pilot.press("enter")
            await pilot.pause()
            assert target in s.session.dead and target in s.board.dead
            await pilot.press("enter")
            await pilot.pause()
            assert target not in s.session.dead
            expected = score(s.session.position, s.session.dead).result()
            await pilot.press("c")
            await settle(pilot)
            assert phase(s.session) is Phase.FINISHED and s.session.result == expected
            assert "wins" in s.panel.view.result or "Draw" in s.panel.view.result
            (record,) = storage.records.values()
            assert record.result == expected and record.is_finished
            assert record.black.name == "Tester"

    run(scenario)
    assert any("Game over" in n for n in notices())
    assert any("Saved to My games" in n for n in notices())


def test_a_whole_game_by_mouse(notices: Notices) -> None:
    async def scenario() -> None:
        app = build(ai=ScriptedAi("A5", "E5"), storage=MemoryStorage())
        async with app.run_test(size=(160, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            for vertex in ("C3", "B4"):
                await pilot.click(GoBoard, offset=s.board.offset_of(pt(vertex)))
                await settle(pilot)
                assert s.session.position[pt(vertex)] is Color.BLACK
            assert stones(app) == (2, 2)
            await click_key(pilot, "pass_move")  # the AI has no more moves: it passes
            await settle(pilot)
            assert phase(s.session) is Phase.SCORING
            # Each click flips a group between dead and alive; leave both white stones dead.
            for vertex in ("A5", "E5", "A5"):
                was_dead = pt(vertex) in s.session.dead
                await pilot.click(GoBoard, offset=s.board.offset_of(pt(vertex)))
                await pilot.pause()
                assert (pt(vertex) in s.session.dead) is not was_dead
            if pt("E5") not in s.session.dead:
                await pilot.click(GoBoard, offset=s.board.offset_of(pt("E5")))
            if pt("A5") not in s.session.dead:
                await pilot.click(GoBoard, offset=s.board.offset_of(pt("A5")))
            await pilot.pause()
            assert s.session.dead == {pt("A5"), pt("E5")}
            await click_key(pilot, "confirm_count")
            await settle(pilot)
            assert phase(s.session) is Phase.FINISHED
            assert s.session.result == "B+17.5"  # 25 points of area minus komi 7.5
            assert "Black wins by 17.5 points — you win!" in s.panel.view.result

    run(scenario)


def test_undo_takes_back_the_reply_and_the_move(notices: Notices) -> None:
    async def scenario() -> None:
        app = build(ai=ScriptedAi("A1", "A2"))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            await pilot.press("enter")
            await settle(pilot)
            assert stones(app) == (1, 1) and s.session.position.move_number == 2
            await pilot.press("u")
            await settle(pilot)
            assert stones(app) == (0, 0) and s.session.position.move_number == 0
            assert s.board.position is s.session.position
            assert s.check_action("undo", ()) is None  # greyed out in the footer
            await pilot.press("u")
            await settle(pilot)
            assert s.session.position.move_number == 0

    run(scenario)
    assert notices().count("Took back 2 moves.") == 1


def test_an_illegal_move_is_a_notice_and_changes_nothing(notices: Notices) -> None:
    async def scenario() -> None:
        app = build(ai=ScriptedAi("A1"))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            await pilot.press("enter")  # C3
            await settle(pilot)
            before = s.session.position
            await pilot.press("enter")  # C3 again: occupied
            await settle(pilot)
            assert s.session.position is before and s.board.position is before
            assert not app.screen.query("Toast") or True  # the toast is drawn, not a traceback

    run(scenario)
    assert any("Illegal move: C3: point is occupied" in n for n in notices())


def test_the_ui_stays_responsive_while_the_ai_thinks_and_undo_drops_its_answer(
    notices: Notices,
) -> None:
    ai = GatedAi()

    async def scenario() -> None:
        app = build(ai=ai)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            await pilot.press("enter")
            await pilot.pause()
            assert ai.started.wait(5)
            assert s.panel.view.thinking and "thinking" in s.panel.view.status
            await pilot.press("up", "up")
            await pilot.pause()
            # Keys still work while the AI is blocked in its worker thread.
            assert s.board.cursor == (0, 2)
            await pilot.press("enter")  # not our turn
            await pilot.pause()
            assert s.session.position.move_number == 1
            await pilot.press("u")  # take the move back while the AI still thinks
            await pilot.pause()
            ai.gate.set()
            await settle(pilot)
            assert s.session.position.move_number == 0 and not s.panel.view.thinking

    run(scenario)
    assert any("AI's turn" in n for n in notices())


def test_the_new_game_dialog_validates_and_starts_the_game_chosen(notices: Notices) -> None:
    async def scenario() -> None:
        app = build(ai=ScriptedAi("D4"))
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            await pilot.press("n")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, NewGameDialog)
            dialog.query_one("#size", Select).value = 9
            dialog.query_one("#colour", Select).value = Color.WHITE
            dialog.query_one("#komi", Input).value = "lots"
            await pilot.click("#start")
            await pilot.pause()
            assert current(app) is dialog  # stays open with the error shown
            assert "komi must be a number" in str(dialog.query_one("#error").render())
            komi = dialog.query_one("#komi", Input)
            komi.value = "6.5"
            komi.focus()
            await pilot.press("enter")  # Enter in the form starts too (the button debounces)
            await settle(pilot)
            assert current(app) is s
            assert s.session.size == 9 and s.session.human is Color.WHITE
            assert s.session.header.rules.komi == 6.5
            assert s.session.position[pt("D4", 9)] is Color.BLACK  # the AI opened
            assert s.board.position.size == 9
            await pilot.press("n")
            await pilot.pause()
            await pilot.press("escape")
            await pilot.pause()
            assert current(app) is s and s.session.size == 9

    run(scenario)
    assert any("New game: 9x9 · komi 6.5; you play white." in n for n in notices())


def test_save_and_open_sgf_round_trip_through_the_dialogs(tmp_path: Path, notices: Notices) -> None:
    path = tmp_path / "games" / "mine.sgf"

    async def scenario() -> None:
        app = build(ai=ScriptedAi("A1", "E5"), sgf_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            await pilot.press("enter", "u", "enter")  # a take-back is not in the record
            await settle(pilot)
            await pilot.press("k", "enter")
            await settle(pilot)
            moves = s.session.record().moves
            cells = s.session.position.cells()
            assert len(moves) == 4
            await pilot.press("s")
            await pilot.pause()
            assert isinstance(app.screen, PathDialog)
            app.screen.query_one(Input).value = str(path)
            await pilot.press("enter")
            await settle(pilot)
            assert load_sgf(path.read_bytes()).moves == moves
            s.start_game(GameSettings(size=5))
            await settle(pilot)
            assert s.session.position.move_number == 0
            await pilot.press("o")
            await pilot.pause()
            app.screen.query_one(Input).value = str(path)
            await pilot.press("enter")
            await settle(pilot)
            assert s.session.position.cells() == cells
            assert s.session.record().moves == moves and s.session.human_to_move
            # A broken file is a notice; the game on the board stays.
            bad = tmp_path / "bad.sgf"
            bad.write_bytes(b"(;GM[1]SZ[5];B[zz]")
            await pilot.press("o")
            await pilot.pause()
            app.screen.query_one(Input).value = str(bad)
            await pilot.press("enter")
            await settle(pilot)
            assert current(app) is s and s.session.position.cells() == cells

    run(scenario)
    assert any(f"Saved {path}" in n for n in notices())
    assert any("Opened mine.sgf: you play black from move 4" in n for n in notices())
    assert any("Cannot open bad.sgf" in n for n in notices())


def test_a_finished_sgf_opens_for_review(tmp_path: Path) -> None:
    async def scenario() -> None:
        app = build(ai=ScriptedAi("A1"), sgf_dir=tmp_path)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            await pilot.press("enter")
            await settle(pilot)
            await pilot.press("r")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmDialog)
            await pilot.press("y")
            await settle(pilot)
            assert s.session.result == "W+R"
            await pilot.press("s")
            await pilot.pause()
            app.screen.query_one(Input).value = str(tmp_path / "done.sgf")
            await pilot.press("enter")
            await settle(pilot)
            await pilot.press("o")
            await pilot.pause()
            app.screen.query_one(Input).value = str(tmp_path / "done.sgf")
            await pilot.press("enter")
            await settle(pilot)
            review = app.screen
            assert isinstance(review, ReviewScreen)
            # SGF keeps the resignation in RE, not as a move: B C3, W A1.
            assert review.index == 2
            assert "White wins by resignation" in review.query_one(GamePanel).view.result
            await pilot.press("left")
            assert review.query_one(GoBoard).position.move_number == 1
            await pilot.press("escape")
            assert current(app) is s

    run(scenario)


def test_help_lists_the_keys_and_the_palette_offers_the_actions() -> None:
    async def scenario() -> None:
        app = build()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert {"Pass", "Hint", "Resign", "New game", "Save SGF", "Open SGF", "Help"} <= titles
            assert "Confirm count" not in titles  # only while counting
            assert "Undo" not in titles  # nothing to undo yet
            await pilot.press("question_mark")
            await pilot.pause()
            help_screen = app.screen
            assert isinstance(help_screen, HelpScreen)
            rows = dict((d, k) for k, d in help_screen._keys)
            assert rows["Pass"] == "p" and rows["Undo"] == "u" and "space" in rows["Play"]
            assert "Dead/alive" in rows and "Confirm" in rows and "Save" in rows
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, BoardScreen)

    run(scenario)


def test_a_hint_marks_the_board_and_explains_itself(notices: Notices) -> None:
    async def scenario() -> None:
        app = build(ai=ScriptedAi("C2"), size=5)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            # Set up a capture for black: white C2 alone, black around it.
            for key in ("down", "left", "enter"):  # B2
                await pilot.press(key)
            await settle(pilot)
            await pilot.press("t")
            await settle(pilot)
            hint = s.panel.view.hint
            assert hint.startswith("B ") and " — " in hint
            assert s.board.hint is not None and s.board.cursor == s.board.hint

    run(scenario)
    assert any(n.startswith("Hint: B ") for n in notices())


def test_the_games_list_opens_a_stored_game_for_review(tmp_path: Path) -> None:
    storage = StoreStorage(tmp_path)

    async def scenario() -> None:
        app = build(ai=ScriptedAi("A1", "A2"), storage=storage)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("enter", "p")
            await settle(pilot)
            await pilot.press("p")
            await settle(pilot)
            await pilot.press("c")
            await settle(pilot)
            assert screen(app).session.phase is Phase.FINISHED
            await pilot.press("g")
            await settle(pilot)
            games = app.screen
            assert isinstance(games, GamesScreen)
            table = games.query_one(DataTable)
            assert table.row_count == 1
            assert table.get_row_at(0)[2:5] == ["Tester", "p2pgo AI", screen_result(app)]
            await pilot.press("enter")
            await settle(pilot)
            review = app.screen
            assert isinstance(review, ReviewScreen)
            last = review.index
            board = review.query_one(GoBoard)
            await pilot.press("home")
            assert board.position.move_number == 0
            await pilot.press("right")
            assert board.position.move_number == 1 and board.position[pt("C3")] is Color.BLACK
            await pilot.press("end")
            assert review.index == last
            await pilot.press("escape", "escape")
            assert isinstance(app.screen, BoardScreen)

    run(scenario)
    storage.close()
    assert len(StoreStorage(tmp_path).games()) == 1  # durable: a fresh store sees it


def screen_result(app: P2PGoApp) -> str:
    for s in app.screen_stack:
        if isinstance(s, BoardScreen):
            return s.session.result
    raise AssertionError("no board screen")


class FailingAi:
    def choose(self, position: Any) -> Any:
        raise RuntimeError("model file missing")


class BrokenStorage(MemoryStorage):
    def save(self, record: Any) -> str:
        raise StorageError("cannot save the game: disk full")

    def games(self) -> list[Any]:
        raise StorageError("cannot list the stored games: index damaged")


def test_a_failing_ai_is_a_notice_and_the_game_goes_on(notices: Notices) -> None:
    async def scenario() -> None:
        app = build(ai=FailingAi())
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            s = screen(app)
            await pilot.press("enter")
            await settle(pilot)
            last = s.session.position.last_move
            assert last is not None and last.is_pass and s.session.human_to_move

    run(scenario)
    assert any(
        "The AI failed (RuntimeError: model file missing); it passes." in n for n in notices()
    )


def test_storage_errors_are_notices_not_crashes(notices: Notices) -> None:
    async def scenario() -> None:
        app = build(ai=ScriptedAi(), storage=BrokenStorage())
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pilot.press("r", "y")
            await settle(pilot)
            assert phase(screen(app).session) is Phase.FINISHED
            await pilot.press("g")
            await settle(pilot)
            games = current(app)
            assert isinstance(games, GamesScreen)
            assert "index damaged" in str(games.query_one("#status").render())

    run(scenario)
    assert any("The game was not stored: cannot save the game: disk full" in n for n in notices())
