"""Stored games: a list to pick from, and a review screen to step through one.

The list comes from the :class:`~p2pgo_tui.GameStorage` in a worker thread (opening
the store reads and verifies files); the review screen replays a record once and
then moves through its positions with the arrow keys.
"""

from __future__ import annotations

import logging
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label, Static

from p2pgo_tui._board import BoardMode, GoBoard
from p2pgo_tui._engine import GameRecord, Position, RecordError
from p2pgo_tui._panel import GamePanel, PanelView
from p2pgo_tui._protocols import GameStorage, StorageError, StoredGame
from p2pgo_tui._session import describe_move, describe_result

__all__ = ["GamesScreen", "ReviewScreen"]

log = logging.getLogger(__name__)


class GamesScreen(Screen[None]):
    """The stored games, newest first; Enter opens one for review."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,b", "back", "Back to the board"),
        Binding("f5,ctrl+r", "reload", "Reload"),
    ]
    DEFAULT_CSS = """
    GamesScreen > Vertical { padding: 1 2; }
    GamesScreen .title { text-style: bold; margin-bottom: 1; }
    GamesScreen #status { color: $text-muted; height: auto; margin-top: 1; }
    GamesScreen DataTable { height: 1fr; }
    """

    class Listed(Message):
        def __init__(self, games: list[StoredGame], error: str = "") -> None:
            super().__init__()
            self.games = games
            self.error = error

    class Loaded(Message):
        def __init__(self, record: GameRecord | None, title: str, error: str = "") -> None:
            super().__init__()
            self.record = record
            self.title = title
            self.error = error

    def __init__(self, storage: GameStorage) -> None:
        super().__init__()
        self._storage = storage
        self._games: dict[str, StoredGame] = {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("My games", classes="title")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="games")
            yield Static("Loading…", id="status")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("Date", "Size", "Black", "White", "Result", "Moves")
        table.focus()
        self.action_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_reload(self) -> None:
        self._list()

    @work(thread=True, exclusive=True, group="list", exit_on_error=False)
    def _list(self) -> None:
        try:
            games = self._storage.games()
        except StorageError as exc:
            self.post_message(self.Listed([], str(exc)))
            return
        self.post_message(self.Listed(games))

    @on(Listed)
    def _listed(self, event: Listed) -> None:
        table = self.query_one(DataTable)
        table.clear()
        self._games = {g.record_id: g for g in event.games}
        for g in event.games:
            size = f"{g.size}x{g.size}"
            table.add_row(g.date, size, g.black, g.white, g.result, str(g.moves), key=g.record_id)
        status = self.query_one("#status", Static)
        if event.error:
            status.update(f"⚠ {event.error}")
            self.notify(event.error, title="My games", severity="error")
        elif not event.games:
            status.update("No stored games yet: finished games are stored here.")
        else:
            status.update(f"{len(event.games)} games · Enter opens one for review")

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        record_id = event.row_key.value
        if record_id is not None:
            self._load(record_id)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self, record_id: str) -> None:
        game = self._games.get(record_id)
        title = f"{game.date} {game.black} vs {game.white}" if game else record_id[:12]
        try:
            record = self._storage.load(record_id)
        except StorageError as exc:
            self.post_message(self.Loaded(None, title, str(exc)))
            return
        self.post_message(self.Loaded(record, title))

    @on(Loaded)
    def _loaded(self, event: Loaded) -> None:
        if event.record is None:
            self.notify(event.error, title="Cannot open the game", severity="error")
            return
        try:
            screen = ReviewScreen(event.record, title=event.title)
        except RecordError as exc:
            self.notify(str(exc), title="Cannot replay the game", severity="error")
            return
        self.app.push_screen(screen)


class ReviewScreen(Screen[None]):
    """One game, move by move (raises ``RecordError`` if the record does not replay)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left,h", "step(-1)", "Back"),
        Binding("right,l", "step(1)", "Forward"),
        Binding("pageup", "step(-10)", "-10", show=False),
        Binding("pagedown", "step(10)", "+10", show=False),
        Binding("home", "go(0)", "Start"),
        Binding("end", "go(-1)", "End"),
        Binding("escape,b", "back", "Close"),
    ]
    DEFAULT_CSS = """
    ReviewScreen > #main { height: 1fr; }
    """

    index: reactive[int] = reactive(0, init=False)

    def __init__(self, record: GameRecord, *, title: str) -> None:
        super().__init__()
        self.record = record
        self.positions: list[Position] = list(record.positions())
        self._title = title

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield GoBoard(self.positions[0], mode=BoardMode.VIEW, id="board")
            yield GamePanel(id="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.index = len(self.positions) - 1  # open on the final position, like a game list
        self.watch_index(self.index)

    def validate_index(self, index: int) -> int:
        return min(max(index, 0), len(self.positions) - 1)

    def action_step(self, delta: int) -> None:
        self.index += delta

    def action_go(self, index: int) -> None:
        self.index = index if index >= 0 else len(self.positions) - 1

    def action_back(self) -> None:
        self.app.pop_screen()

    def watch_index(self, index: int) -> None:
        position = self.positions[index]
        record = self.record
        self.query_one("#board", GoBoard).position = position
        last = len(self.positions) - 1
        result = ""
        if index == last and record.result:
            result = describe_result(record.result)
        self.query_one("#panel", GamePanel).view = PanelView(
            heading=f"{self._title} · {record.size}x{record.size} · komi {record.rules.komi:g}",
            black=record.black.name or "Black",
            white=record.white.name or "White",
            human=None,
            to_play=position.to_play,
            move_number=position.move_number,
            captures=position.captures,
            last_move=describe_move(position.last_move, position.size),
            status=f"Reviewing: move {index} of {last}",
            result=result,
            comment=record.comments.get(index, ""),
            help_line="←/→ step · Home/End · Esc closes",
        )
