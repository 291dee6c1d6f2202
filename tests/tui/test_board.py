"""The board widget: geometry, hit testing, drawing, and resizing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.app import App, ComposeResult
from textual.geometry import Size

from engine import Color, Move, Position, from_gtp
from p2pgo_tui import BoardMode, GoBoard
from p2pgo_tui._board import _Geometry, star_points

from .conftest import run


@pytest.mark.parametrize(("size", "count"), [(5, 0), (9, 5), (13, 5), (19, 9)])
def test_star_points(size: int, count: int) -> None:
    stars = star_points(size)
    assert len(stars) == count
    if size == 19:
        assert (3, 3) in stars and (9, 9) in stars and (15, 9) in stars


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(2, 25),
    width=st.integers(10, 200),
    height=st.integers(5, 80),
)
def test_every_point_is_hit_at_its_own_glyph(size: int, width: int, height: int) -> None:
    g = _Geometry.fit(size, Size(width, height))
    for row in range(size):
        for col in range(size):
            o = g.offset_of((row, col))
            assert g.point_at(o.x, o.y, size) == (row, col)


def test_clicks_between_points_go_to_the_nearest_and_outside_to_none() -> None:
    g = _Geometry.fit(9, Size(120, 40))
    assert (g.cell_w, g.cell_h) == (4, 2)  # room for the large layout
    o = g.offset_of((4, 4))
    assert g.point_at(o.x + 1, o.y + 1, 9) == (4, 4)
    assert g.point_at(o.x - 1, o.y, 9) == (4, 4)
    assert g.point_at(o.x + 3, o.y, 9) == (4, 5)
    corner = g.offset_of((0, 0))
    assert g.point_at(corner.x - 3, corner.y, 9) is None
    assert g.point_at(corner.x, corner.y - 2, 9) is None


def test_the_layout_shrinks_to_fit_and_19x19_fits_80x24() -> None:
    assert (_Geometry.fit(19, Size(120, 45)).cell_w) == 4
    small = _Geometry.fit(19, Size(48, 23))
    assert small.cell_w == 2 and small.width <= 48 and small.height <= 23


class BoardApp(App[None]):
    def __init__(self, position: Position, mode: BoardMode = BoardMode.PLAY) -> None:
        super().__init__()
        self.position = position
        self.mode = mode
        self.chosen: list[tuple[int, int]] = []

    def compose(self) -> ComposeResult:
        yield GoBoard(self.position, mode=self.mode)

    def on_go_board_point_chosen(self, event: GoBoard.PointChosen) -> None:
        self.chosen.append(event.point)


def board_text(board: GoBoard) -> list[str]:
    return [board.render_line(y).text for y in range(board.size.height)]


def test_the_board_draws_coordinates_stones_and_the_last_move() -> None:
    pos = Position(9).play(Move.play(Color.BLACK, (4, 4))).play(Move.play(Color.WHITE, (2, 2)))

    async def scenario() -> None:
        app = BoardApp(pos)
        async with app.run_test(size=(60, 30)) as pilot:
            await pilot.pause()
            lines = board_text(app.query_one(GoBoard))
            text = "\n".join(lines)
            assert sum("A   B   C   D   E   F   G   H   J" in line for line in lines) == 2
            assert text.count("●") == 1 and text.count("◉") == 1  # white's last move is marked
            assert "╋" in text  # star points
            row5 = next(line for line in lines if line.lstrip().startswith("5 "))
            assert row5.rstrip().endswith("5") and "●" in row5

    run(scenario)


def test_keys_move_the_cursor_and_enter_chooses_and_the_cursor_stays_on_the_board() -> None:
    async def scenario() -> None:
        app = BoardApp(Position(5))
        async with app.run_test(size=(60, 20)) as pilot:
            board = app.query_one(GoBoard)
            assert board.cursor == (2, 2)
            await pilot.press("up", "k", "k", "left", "h", "h", "enter")
            assert board.cursor == (0, 0)
            await pilot.press("down", "j", "right", "l", "space")
            await pilot.pause()
            assert app.chosen == [(0, 0), (2, 2)]

    run(scenario)


def test_a_click_chooses_the_point_under_the_mouse() -> None:
    async def scenario() -> None:
        app = BoardApp(Position(9))
        async with app.run_test(size=(60, 24)) as pilot:
            board = app.query_one(GoBoard)
            target = from_gtp("C7", 9)
            assert target is not None
            await pilot.click(GoBoard, offset=board.offset_of(target))
            await pilot.pause()
            assert app.chosen == [target] and board.cursor == target

    run(scenario)


def test_a_review_board_ignores_keys_and_clicks() -> None:
    async def scenario() -> None:
        app = BoardApp(Position(9), mode=BoardMode.VIEW)
        async with app.run_test(size=(60, 24)) as pilot:
            board = app.query_one(GoBoard)
            await pilot.click(GoBoard, offset=board.offset_of((1, 1)))
            await pilot.press("enter")
            await pilot.pause()
            assert app.chosen == [] and not board.can_focus

    run(scenario)


def test_resizing_redraws_at_the_scale_that_fits() -> None:
    async def scenario() -> None:
        app = BoardApp(Position(19))
        async with app.run_test(size=(50, 24)) as pilot:
            board = app.query_one(GoBoard)
            await pilot.pause()
            assert board.geometry.cell_w == 2
            assert any(
                "A B C D E F G H J K L M N O P Q R S T" in line for line in board_text(board)
            )
            await pilot.resize_terminal(100, 45)
            await pilot.pause()
            assert board.geometry.cell_w == 4
            assert any("A   B   C" in line for line in board_text(board))

    run(scenario)


COMPACT_9X9 = """
      A B C D E F G H J
   9  ┌─┬─┬─┬─┬─┬─┬─┬─┐  9
   8  ├─┼─┼─┼─┼─┼─┼─┼─┤  8
   7  ├─┼─╋─┼─┼─┼─╋─┼─┤  7
   6  ├─┼─┼─┼─┼─┼─┼─┼─┤  6
   5  ├─┼─┼─┼─●─┼─┼─┼─┤  5
   4  ├─┼─┼─◉─┼─┼─┼─┼─┤  4
   3  ├─┼─●─┼─┼─┼─╋─┼─┤  3
   2  ├─┼─┼─┼─┼─┼─┼─┼─┤  2
   1  └─┴─┴─┴─┴─┴─┴─┴─┘  1
      A B C D E F G H J
"""


def test_layout_snapshot_of_a_small_terminal() -> None:
    """A text snapshot guarding the compact layout (pytest-textual-snapshot would
    downgrade pytest, so the board's own text is compared)."""
    pos = Position(9)
    for vertex in ("E5", "C3", "D4"):
        pos = pos.play_at(from_gtp(vertex, 9))

    async def scenario() -> None:
        app = BoardApp(pos)
        async with app.run_test(size=(30, 12)) as pilot:
            await pilot.pause()
            lines = [line.rstrip() for line in board_text(app.query_one(GoBoard))]
            assert "\n".join(lines).strip("\n") == COMPACT_9X9.strip("\n")

    run(scenario)


def test_ko_dead_stones_territory_and_hint_have_their_marks() -> None:
    pos = Position.from_ascii(
        """
        . X O . .
        X O . O .
        . X O . .
        . . . . .
        . . . . .
        """
    ).play(Move.play(Color.BLACK, (1, 2)))  # takes the white stone at (1, 1): a ko
    assert pos.ko == (1, 1)

    async def scenario() -> None:
        app = BoardApp(pos, mode=BoardMode.MARK)
        async with app.run_test(size=(40, 14)) as pilot:
            board = app.query_one(GoBoard)
            board.dead = frozenset({(0, 2)})
            board.black_area = frozenset({(4, 0)})
            board.white_area = frozenset({(4, 4)})
            board.hint = (3, 3)
            await pilot.pause()
            rows = {
                line.split()[0]: line for line in board_text(board) if line.strip()[:1].isdigit()
            }
            assert "□" in rows["4"] and "×" in rows["5"]
            assert "◆" in rows["2"] and "▪" in rows["1"] and "▫" in rows["1"]

    run(scenario)
