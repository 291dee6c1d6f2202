"""The Go board widget, drawn with the Line API (one :class:`Strip` per terminal row).

One widget draws the whole board: a grid of 361 widgets takes ~1.1 s to start and
~160 ms to repaint, the Line API ~90 ms and ~35 ms (see DESIGN.md). The drawn rows are
cached and rebuilt only when the position, the marks or the size change.

Geometry: each point is a glyph ``cell_w`` columns apart and ``cell_h`` rows apart.
The widget picks the largest layout that fits (4x2 cells when there is room, else
2x1, else 2x1 with less wooden margin) and centres it, so resizing the terminal
redraws the board at the best scale. GTP coordinates (letters without ``I``, row 1
at the bottom) run along all four sides.

State flows down (the screen sets ``position``, ``mode``, ``dead``, ``hint``...);
the widget posts :class:`GoBoard.PointChosen` when the player presses Enter/space on
a point or clicks one, and :class:`GoBoard.CursorMoved` as the keyboard cursor moves.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Offset, Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from p2pgo_tui._engine import GTP_COLUMNS, Color, Point, Position

__all__ = ["BoardMode", "GoBoard", "star_points"]

_LABEL_W = 2  # row numbers up to 25
_STONE, _WHITE_STONE, _LAST_STONE, _DEAD_STONE = "●", "○", "◉", "×"
_KO, _HINT, _BLACK_AREA, _WHITE_AREA, _STAR = "□", "◆", "▪", "▫", "╋"


class BoardMode(enum.Enum):
    PLAY = "play"  # Enter / click proposes a move
    MARK = "mark"  # counting: Enter / click marks a group dead or alive
    VIEW = "view"  # reviewing a game: no cursor, nothing to choose


def star_points(size: int) -> frozenset[Point]:
    """The hoshi: 4-4 (3-3 below 13x13) corners, the centre, and the sides from 15x15."""
    if size < 7:
        return frozenset()
    edge = 2 if size < 13 else 3
    lo, hi, mid = edge, size - 1 - edge, size // 2
    points = {(lo, lo), (lo, hi), (hi, lo), (hi, hi)}
    if size % 2:
        points.add((mid, mid))
        if size >= 15:
            points |= {(lo, mid), (hi, mid), (mid, lo), (mid, hi)}
    return frozenset(points)


@dataclass(frozen=True, slots=True)
class _Geometry:
    """Where the board sits in the widget's content area."""

    cell_w: int
    cell_h: int
    pad_x: int  # wooden margin around the grid, in cells
    pad_y: int
    x0: int  # content column of point (0, 0)'s glyph
    y0: int  # content row of point (0, 0)'s glyph
    top: int  # content row of the upper coordinate labels
    left: int  # content column where each drawn row starts
    width: int  # columns the drawn block takes
    height: int

    @classmethod
    def fit(cls, size: int, room: Size) -> _Geometry:
        # Largest layout first; the last one is used (clipped) when nothing fits.
        layouts = ((4, 2, 2, 1), (2, 1, 1, 1), (2, 1, 1, 0), (2, 1, 0, 0))
        for cell_w, cell_h, pad_x, pad_y in layouts:
            width = 2 * (_LABEL_W + 1 + pad_x) + (size - 1) * cell_w + 1
            height = 2 * (1 + pad_y) + (size - 1) * cell_h + 1
            if width <= room.width and height <= room.height:
                break
        left = max(0, (room.width - width) // 2)
        top = max(0, (room.height - height) // 2)
        return cls(
            cell_w,
            cell_h,
            pad_x,
            pad_y,
            x0=left + _LABEL_W + 1 + pad_x,
            y0=top + 1 + pad_y,
            top=top,
            left=left,
            width=width,
            height=height,
        )

    def point_at(self, x: int, y: int, size: int) -> Point | None:
        """The point nearest to content offset ``(x, y)``, if it is on the board."""
        # Nearest glyph, ties towards the upper left: (2d + cell - 1) // (2 cell).
        col = (2 * (x - self.x0) + self.cell_w - 1) // (2 * self.cell_w)
        row = (2 * (y - self.y0) + self.cell_h - 1) // (2 * self.cell_h)
        if 0 <= row < size and 0 <= col < size:
            return (row, col)
        return None

    def offset_of(self, point: Point) -> Offset:
        row, col = point
        return Offset(self.x0 + col * self.cell_w, self.y0 + row * self.cell_h)


class GoBoard(Widget, can_focus=True):
    """A Go board with coordinates, marks, a keyboard cursor and mouse selection."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move_cursor(-1, 0)", "Up", show=False),
        Binding("down,j", "move_cursor(1, 0)", "Down", show=False),
        Binding("left,h", "move_cursor(0, -1)", "Left", show=False),
        Binding("right,l", "move_cursor(0, 1)", "Right", show=False),
        Binding("enter,space", "choose", "Play"),
        Binding("enter,space", "mark", "Dead/alive"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "go-board--wood",
        "go-board--coord",
        "go-board--black",
        "go-board--white",
        "go-board--star",
        "go-board--cursor",
        "go-board--last",
        "go-board--ko",
        "go-board--hint",
        "go-board--dead",
        "go-board--black-area",
        "go-board--white-area",
    }

    DEFAULT_CSS = """
    GoBoard {
        width: 1fr;
        height: 1fr;
        min-width: 20;
        min-height: 8;
        & > .go-board--wood { background: #d7a75a; color: #5b4320; }
        & > .go-board--coord { color: $text-muted; }
        & > .go-board--black { color: #0b0b0b; text-style: bold; }
        & > .go-board--white { color: #ffffff; text-style: bold; }
        & > .go-board--star { color: #3a2a10; text-style: bold; }
        & > .go-board--cursor { background: #3f7fd0; }
        & > .go-board--last { color: #c0392b; }
        & > .go-board--ko { color: #b03020; text-style: bold; }
        & > .go-board--hint { color: #1e7d32; text-style: bold; }
        & > .go-board--dead { color: #9b6b2a; text-style: bold; }
        & > .go-board--black-area { color: #1a1a1a; }
        & > .go-board--white-area { color: #fbfbfb; }
        &:blur > .go-board--cursor { background: #7a8fa8; }
    }
    """

    position: reactive[Position] = reactive(Position(9), always_update=True, layout=False)
    """The position drawn (state flows down from the screen)."""
    cursor: reactive[Point] = reactive((4, 4))
    """The keyboard cursor, kept on the board."""
    mode: reactive[BoardMode] = reactive(BoardMode.PLAY, bindings=True)
    dead: reactive[frozenset[Point]] = reactive(frozenset())
    """Stones marked dead (counting)."""
    black_area: reactive[frozenset[Point]] = reactive(frozenset())
    white_area: reactive[frozenset[Point]] = reactive(frozenset())
    hint: reactive[Point | None] = reactive(None)

    class PointChosen(Message):
        """The player chose ``point`` (Enter/space on the cursor, or a click)."""

        def __init__(self, board: GoBoard, point: Point, mode: BoardMode) -> None:
            super().__init__()
            self.board = board
            self.point = point
            self.mode = mode

        @property
        def control(self) -> GoBoard:
            return self.board

    class CursorMoved(Message):
        """The keyboard cursor moved to ``point``."""

        def __init__(self, board: GoBoard, point: Point) -> None:
            super().__init__()
            self.board = board
            self.point = point

        @property
        def control(self) -> GoBoard:
            return self.board

    def __init__(
        self,
        position: Position | None = None,
        *,
        mode: BoardMode = BoardMode.PLAY,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._rows: list[Strip] | None = None
        self._stars: frozenset[Point] = frozenset()
        if position is not None:
            self.set_reactive(GoBoard.position, position)
            self.set_reactive(GoBoard.cursor, self._centre(position.size))
        self._stars = star_points(self.position.size)
        self.set_reactive(GoBoard.mode, mode)
        self.can_focus = mode is not BoardMode.VIEW

    # ---- state flowing down -------------------------------------------------------

    @staticmethod
    def _centre(size: int) -> Point:
        return (size // 2, size // 2)

    def validate_cursor(self, cursor: Point) -> Point:
        last = self.position.size - 1
        return (min(max(cursor[0], 0), last), min(max(cursor[1], 0), last))

    def watch_position(self, old: Position, new: Position) -> None:
        if old.size != new.size:
            self.cursor = self._centre(new.size)
        self._stars = star_points(new.size)
        self._invalidate()

    def _watch_any(self) -> None:
        self._invalidate()

    watch_cursor = _watch_any
    watch_dead = _watch_any
    watch_black_area = _watch_any
    watch_white_area = _watch_any
    watch_hint = _watch_any

    def watch_mode(self, mode: BoardMode) -> None:
        self.can_focus = mode is not BoardMode.VIEW
        self._invalidate()

    def _invalidate(self) -> None:
        self._rows = None
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._invalidate()

    def notify_style_update(self) -> None:
        super().notify_style_update()  # a theme change: the cached rows hold old colours
        self._rows = None

    def on_focus(self) -> None:
        self._invalidate()

    def on_blur(self) -> None:
        self._invalidate()

    # ---- input --------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "choose":
            return self.mode is BoardMode.PLAY
        if action == "mark":
            return self.mode is BoardMode.MARK
        if action == "move_cursor":
            return self.mode is not BoardMode.VIEW
        return True

    def action_move_cursor(self, rows: int, cols: int) -> None:
        self.cursor = (self.cursor[0] + rows, self.cursor[1] + cols)
        self.post_message(self.CursorMoved(self, self.cursor))

    def action_choose(self) -> None:
        self.post_message(self.PointChosen(self, self.cursor, self.mode))

    def action_mark(self) -> None:
        self.post_message(self.PointChosen(self, self.cursor, self.mode))

    def on_click(self, event: events.Click) -> None:
        if self.mode is BoardMode.VIEW:
            return
        offset = event.get_content_offset(self)
        if offset is None:
            return
        point = self.geometry.point_at(offset.x, offset.y, self.position.size)
        if point is None:
            return
        event.stop()
        self.cursor = point
        self.post_message(self.CursorMoved(self, point))
        self.post_message(self.PointChosen(self, point, self.mode))

    # ---- geometry -----------------------------------------------------------------

    @property
    def geometry(self) -> _Geometry:
        return _Geometry.fit(self.position.size, self.size)

    def offset_of(self, point: Point) -> Offset:
        """The content offset of ``point``'s glyph (what a click there hits)."""
        return self.geometry.offset_of(point)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return _Geometry.fit(self.position.size, Size(0, 0)).width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return _Geometry.fit(self.position.size, Size(0, 0)).height

    # ---- drawing ------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        rows = self._rows
        if rows is None:
            rows = self._rows = self._build()
        if 0 <= y < len(rows):
            return rows[y]
        return Strip.blank(self.size.width, self.rich_style)

    def _styles(self) -> dict[str, Style]:
        wood = self.get_component_rich_style("go-board--wood")
        out = {"wood": wood, "base": self.rich_style}
        out["coord"] = self.rich_style + self.get_component_rich_style(
            "go-board--coord", partial=True
        )
        for name in (
            "black",
            "white",
            "star",
            "last",
            "ko",
            "hint",
            "dead",
            "black-area",
            "white-area",
        ):
            out[name] = wood + self.get_component_rich_style(f"go-board--{name}", partial=True)
        out["cursor"] = self.get_component_rich_style("go-board--cursor", partial=True)
        return out

    def _glyph(self, point: Point, value: int, st: dict[str, Style]) -> tuple[str, Style]:
        size = self.position.size
        if value:
            stone = "black" if value == Color.BLACK else "white"
            if point in self.dead:
                return _DEAD_STONE, st[stone] + st["dead"]
            last = self.position.last_move
            if last is not None and last.point == point:
                return _LAST_STONE, st[stone]
            if value == Color.WHITE and self.app.no_color:
                return _WHITE_STONE, st[stone]  # without colour a white stone needs its own shape
            return _STONE, st[stone]
        if point == self.position.ko:
            return _KO, st["ko"]
        if point == self.hint:
            return _HINT, st["hint"]
        if point in self.black_area:
            return _BLACK_AREA, st["black-area"]
        if point in self.white_area:
            return _WHITE_AREA, st["white-area"]
        row, col = point
        if point in self._stars:
            return _STAR, st["star"]
        top, bottom, west, east = row == 0, row == size - 1, col == 0, col == size - 1
        if top:
            return ("┌" if west else "┐" if east else "┬"), st["wood"]
        if bottom:
            return ("└" if west else "┘" if east else "┴"), st["wood"]
        return ("├" if west else "┤" if east else "┼"), st["wood"]

    def _point_row(
        self, row: int, cells: bytes, g: _Geometry, st: dict[str, Style]
    ) -> list[tuple[str, Style]]:
        """The segments of the grid between the margins on the row of points ``row``."""
        size = self.position.size
        wide = g.cell_w > 2
        cursor_col = (
            self.cursor[1] if self.mode is not BoardMode.VIEW and self.cursor[0] == row else -1
        )
        connector = "─" * (g.cell_w - 1)
        out: list[tuple[str, Style]] = [(" " * g.pad_x, st["wood"])]
        for col in range(size):
            glyph, style = self._glyph((row, col), cells[row * size + col], st)
            after = connector if col < size - 1 else " " * g.pad_x
            if col == cursor_col:
                style = style + st["cursor"]
                if wide:  # a wide cursor also covers the cell either side of the glyph
                    text, before_style = out[-1]
                    out[-1] = (text[:-1], before_style)
                    out.append((text[-1], before_style + st["cursor"]))
                    out.append((glyph, style))
                    out.append((after[0], st["wood"] + st["cursor"]))
                    out.append((after[1:], st["wood"]))
                    continue
            out.append((glyph, style))
            out.append((after, st["wood"]))
        return out

    def _build(self) -> list[Strip]:
        """Every row of the widget, from the current state."""
        size = self.position.size
        width, height = self.size
        g = self.geometry
        st = self._styles()
        cells = self.position.cells()
        span = (size - 1) * g.cell_w + 1
        letters = [" "] * span
        for col in range(size):
            letters[col * g.cell_w] = GTP_COLUMNS[col]
        margin = (" " * (g.left + _LABEL_W + 1), st["base"])
        letter_row = [margin, (" " * g.pad_x + "".join(letters), st["coord"])]
        wood_row = [margin, (" " * (span + 2 * g.pad_x), st["wood"])]
        between_row = [
            margin,
            (" " * g.pad_x, st["wood"]),
            ("".join("│" if x % g.cell_w == 0 else " " for x in range(span)), st["wood"]),
            (" " * g.pad_x, st["wood"]),
        ]
        rows: list[list[tuple[str, Style]]] = [[] for _ in range(g.top)]
        rows.append(letter_row)
        rows.extend(wood_row for _ in range(g.pad_y))
        for row in range(size):
            if row:
                rows.extend(between_row for _ in range(g.cell_h - 1))
            number = str(size - row)
            rows.append(
                [
                    (" " * g.left + f"{number:>{_LABEL_W}} ", st["coord"]),
                    *self._point_row(row, cells, g, st),
                    (f" {number}", st["coord"]),
                ]
            )
        rows.extend(wood_row for _ in range(g.pad_y))
        rows.append(letter_row)
        strips = [
            Strip([Segment(text, style) for text, style in segments if text]).adjust_cell_length(
                width, st["base"]
            )
            for segments in rows[:height]
        ]
        strips.extend(Strip.blank(width, st["base"]) for _ in range(height - len(strips)))
        return strips
