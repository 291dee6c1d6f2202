"""The Board screen: a game against the local AI, from the first move to the count.

The screen owns a :class:`GameSession` and pushes its state down to the board and
the panel (:meth:`BoardScreen.sync`). Everything slow runs in thread workers (the
AI's move, hints, the dead-stone estimate, files and the store) and reports back with
a message; each carries the *generation* it was started in, and the screen drops
results from an older one (after an undo or a new game), so a late answer never
lands on the wrong position.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer

from p2pgo_tui._board import BoardMode, GoBoard
from p2pgo_tui._dialogs import ConfirmDialog, NewGameDialog, PathDialog
from p2pgo_tui._engine import (
    Color,
    GameRecord,
    IllegalMove,
    Move,
    Point,
    Position,
    RecordError,
    Score,
    SgfError,
    estimate_dead,
    to_gtp,
)
from p2pgo_tui._files import read_sgf, write_sgf
from p2pgo_tui._games_screen import GamesScreen, ReviewScreen
from p2pgo_tui._panel import GamePanel, PanelView
from p2pgo_tui._protocols import StorageError, Suggestion
from p2pgo_tui._services import AppServices
from p2pgo_tui._session import (
    GameSession,
    Phase,
    SessionError,
    describe_move,
    describe_result,
)
from p2pgo_tui._settings import GameSettings

__all__ = ["BoardScreen"]

log = logging.getLogger(__name__)


class BoardScreen(Screen[None]):
    """Play against the AI: moves, pass, undo, hints, resign, counting, SGF files."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "pass_move", "Pass"),
        Binding("u", "undo", "Undo"),
        Binding("t", "hint", "Hint"),
        Binding("c", "confirm_count", "Confirm"),
        Binding("r", "resign", "Resign"),
        Binding("n", "new_game", "New"),
        Binding("s", "save_sgf", "Save"),
        Binding("o", "open_sgf", "Open"),
        Binding("g", "games", "Games"),
    ]
    _ACTIONS = ("pass_move", "undo", "hint", "confirm_count", "resign", "games")
    HELP_NOTES: ClassVar[tuple[str, ...]] = (
        "Mouse: click a point to play there; while counting, click a group to mark it "
        "dead or alive.",
        "Board: ● stones (○ for white without colour), ◉ the last move, □ the ko point, ◆ a hint; while "
        "counting × marks dead stones and ▪ / ▫ black and white territory.",
        "After both players pass the game is counted: check the dead stones, then "
        "confirm the count. Undo resumes play.",
    )

    DEFAULT_CSS = """
    BoardScreen > #main { height: 1fr; }
    """

    class AiMoved(Message):
        def __init__(self, generation: int, move: Move | None, error: str = "") -> None:
            super().__init__()
            self.generation = generation
            self.move = move
            self.error = error

    class HintReady(Message):
        def __init__(self, generation: int, suggestions: list[Suggestion], error: str = "") -> None:
            super().__init__()
            self.generation = generation
            self.suggestions = suggestions
            self.error = error

    class DeadEstimated(Message):
        def __init__(self, generation: int, dead: frozenset[Point], error: str = "") -> None:
            super().__init__()
            self.generation = generation
            self.dead = dead
            self.error = error

    class FileDone(Message):
        """A file or store operation finished: ``text`` to tell the player, or ``error``."""

        def __init__(self, text: str, error: str = "") -> None:
            super().__init__()
            self.text = text
            self.error = error

    class SgfOpened(Message):
        def __init__(self, path: Path, record: GameRecord) -> None:
            super().__init__()
            self.path = path
            self.record = record

    def __init__(self, services: AppServices) -> None:
        super().__init__()
        self.services = services
        self.settings: GameSettings = services.settings
        self.session = self._new_session(services.settings)
        self._generation = 0
        self._thinking = False
        self._estimating = False
        self._hint: Suggestion | None = None
        self._notice = ""
        self._keys_shown: tuple[bool | None, ...] = ()
        self._ai_lock = threading.Lock()

    def _new_session(self, settings: GameSettings) -> GameSession:
        return GameSession.new(
            settings,
            human_name=self.services.player_name,
            ai_name=self.services.ai_name,
            date=self.services.today(),
        )

    # ---- layout and state flowing down --------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield GoBoard(self.session.position, id="board")
            yield GamePanel(id="panel")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.board.focus()
        self._changed()

    @property
    def board(self) -> GoBoard:
        return self.query_one("#board", GoBoard)

    @property
    def panel(self) -> GamePanel:
        return self.query_one("#panel", GamePanel)

    def sync(self) -> None:
        """Hand the session's state down to the board and the panel."""
        s = self.session
        phase = s.phase
        board = self.board
        board.position = s.position
        board.mode = {
            Phase.PLAYING: BoardMode.PLAY,
            Phase.SCORING: BoardMode.MARK,
            Phase.FINISHED: BoardMode.VIEW,
        }[phase]
        board.dead = s.dead
        count = self._count()
        board.black_area = count.black_area if count else frozenset()
        board.white_area = count.white_area if count else frozenset()
        hint = self._hint
        board.hint = hint.move.point if hint is not None and phase is Phase.PLAYING else None
        if phase is Phase.PLAYING and board.mode is BoardMode.PLAY and not board.has_focus:
            board.focus()
        self._sync_panel(count)
        # Redrawing the footer is the costliest part of a move: only when keys change.
        keys = tuple(self.check_action(a, ()) for a in self._ACTIONS)
        if keys != self._keys_shown:
            self._keys_shown = keys
            self.refresh_bindings()

    def _status(self) -> str:
        s = self.session
        phase = s.phase
        if phase is Phase.FINISHED:
            return "Game over. n starts a new game."
        if phase is Phase.SCORING:
            if self._estimating:
                return "Both passed: finding dead stones…"
            return "Counting: Enter/click marks a group dead or alive; c confirms."
        if self._thinking or s.ai_to_move:
            return "The AI is thinking…"
        return f"Your move. {self._notice}".strip()

    def _count(self) -> Score | None:
        """The count to show: while marking dead stones, and after a counted game."""
        s = self.session
        if s.phase is Phase.SCORING and not self._estimating:
            return s.provisional_score()
        return s.final_score if s.phase is Phase.FINISHED else None

    def _sync_panel(self, count: Score | None) -> None:
        s = self.session
        pos = s.position
        hint = self._hint
        hint_text = ""
        if hint is not None and s.phase is Phase.PLAYING:
            hint_text = f"{describe_move(hint.move, pos.size)} — {hint.reason}"
            if hint.win_rate is not None:
                hint_text += f" (win rate {hint.win_rate:.0%})"
        score = f"Black {count.black:g} · White {count.white:g}" if count else ""
        result = describe_result(s.result, s.human) if s.result else ""
        if s.phase is Phase.SCORING and count is not None:
            result = f"{count.result()} if confirmed"
        self.panel.view = PanelView(
            heading=self.settings_line(),
            black=s.player_name(Color.BLACK),
            white=s.player_name(Color.WHITE),
            human=s.human,
            to_play=pos.to_play,
            move_number=pos.move_number,
            captures=pos.captures,
            last_move=describe_move(pos.last_move, pos.size),
            status=self._status(),
            result=result,
            score=score,
            cursor=to_gtp(self.board.cursor, pos.size) if s.phase is not Phase.FINISHED else "",
            hint=hint_text,
            thinking=self._thinking or self._estimating,
            help_line="? keys · ctrl+p commands",
            model=self._model_line(),
        )

    def _model_line(self) -> str:
        """The AI's model, under the players (the federated one once installed)."""
        models = self.services.models
        current = models.current if models is not None else None
        return current.describe() if current is not None else ""

    def settings_line(self) -> str:
        header = self.session.header
        text = f"{header.size}x{header.size} · komi {header.rules.komi:g}"
        return text + (f" · H{header.handicap}" if header.handicap else "")

    def _changed(self) -> None:
        """After any change to the game: drop stale work, redraw, start what is next."""
        self._generation += 1
        self._hint = None
        self._thinking = self.session.ai_to_move
        # Play only enters counting through a pass, which always lands here.
        self._estimating = self.session.phase is Phase.SCORING
        self.sync()
        if self._thinking:
            self._think(self.session.position, self._generation)
        elif self._estimating:
            self._estimate(self.session.position, self._generation)

    # ---- the player's moves -------------------------------------------------------

    @on(GoBoard.PointChosen)
    def _point_chosen(self, event: GoBoard.PointChosen) -> None:
        if event.mode is BoardMode.MARK:
            self._mark(event.point)
        else:
            self._play(event.point)

    @on(GoBoard.CursorMoved)
    def _cursor_moved(self) -> None:
        self._sync_panel(self._count())

    def _play(self, point: Point | None) -> None:
        where = "Pass" if point is None else to_gtp(point, self.session.size)
        try:
            self.session.play(point)
        except IllegalMove as exc:
            self.notify(f"{where}: {exc.reason.value}", title="Illegal move", severity="warning")
            return
        except SessionError as exc:
            self.notify(str(exc), title="Not now", severity="warning")
            return
        self._notice = ""
        self._changed()

    def _mark(self, point: Point) -> None:
        if self._estimating:
            self.notify("Still finding the dead stones: a moment.", severity="warning")
            return
        try:
            self.session.toggle_dead(point)
        except SessionError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.sync()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys change with the phase only, not with every turn: the footer is costly
        # to redraw and flickers. A key pressed while the AI thinks gets a notice.
        s = self.session
        phase = s.phase
        if action in ("pass_move", "resign"):
            return phase is Phase.PLAYING
        if action == "hint":
            return self.services.advisor is not None and phase is Phase.PLAYING
        if action == "undo":
            return True if s.can_undo() else (False if phase is Phase.FINISHED else None)
        if action == "confirm_count":
            return (not self._estimating or None) if phase is Phase.SCORING else False
        if action == "games":
            return self.services.storage is not None
        return True

    def action_pass_move(self) -> None:
        self._play(None)

    def action_undo(self) -> None:
        try:
            taken = self.session.undo()
        except SessionError as exc:
            self.notify(str(exc), severity="warning")
            return
        self._notice = ""
        self.notify(f"Took back {taken} move{'s' if taken != 1 else ''}.")
        self._changed()

    def action_resign(self) -> None:
        def answered(yes: bool | None) -> None:
            if not yes or self.session.phase is not Phase.PLAYING:
                return
            self.session.resign()
            self._changed()
            self._game_over()

        self.app.push_screen(ConfirmDialog("Resign this game?", yes="Resign"), answered)

    def action_confirm_count(self) -> None:
        if self.session.phase is not Phase.SCORING or self._estimating:
            return
        self.session.confirm()
        self._changed()
        self._game_over()

    def _game_over(self) -> None:
        s = self.session
        self.notify(describe_result(s.result, s.human), title="Game over", timeout=8)
        if self.services.storage is not None:
            self._store(s.record())

    # ---- the AI, hints and counting (worker threads) --------------------------------

    @work(thread=True, exclusive=True, group="ai", exit_on_error=False)
    def _think(self, position: Position, generation: int) -> None:
        try:
            # A cancelled worker's thread runs on to its end: one AI call at a time.
            with self._ai_lock:
                move = self.services.ai.choose(position)
        except Exception as exc:  # any AI failure is shown and logged, never a crash
            log.exception("the AI failed to choose a move")
            self.post_message(self.AiMoved(generation, None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.AiMoved(generation, move))

    @on(AiMoved)
    def _ai_moved(self, event: AiMoved) -> None:
        if event.generation != self._generation:
            return  # an undo or a new game overtook this answer
        s = self.session
        move = event.move
        if move is None:
            self.notify(f"The AI failed ({event.error}); it passes.", severity="error")
            move = Move.pass_(s.ai_color)
        try:
            s.apply_ai(move)
        except (IllegalMove, SessionError) as exc:
            log.error("the AI chose an illegal move %s: %s", move, exc)
            self.notify(f"The AI chose an illegal move ({exc}); it passes.", severity="error")
            s.apply_ai(Move.pass_(s.ai_color))
            move = Move.pass_(s.ai_color)
        if move.is_pass and s.phase is Phase.PLAYING:
            self._notice = "The AI passed: pass too to end the game."
            self.notify("The AI passes. Pass too to end the game and count.", title="Pass")
        self._changed()
        if s.phase is Phase.FINISHED:
            self._game_over()

    def action_hint(self) -> None:
        if self.services.advisor is None:
            return
        if not self.session.human_to_move:
            self.notify("Wait for the AI's move, then ask for a hint.", severity="warning")
            return
        self._hint_work(self.session.position, self._generation)

    @work(thread=True, exclusive=True, group="hint", exit_on_error=False)
    def _hint_work(self, position: Position, generation: int) -> None:
        advisor = self.services.advisor
        assert advisor is not None
        try:
            suggestions = list(advisor.suggest(position))
        except Exception as exc:  # a failing advisor is shown and logged, never a crash
            log.exception("the hint failed")
            self.post_message(self.HintReady(generation, [], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(self.HintReady(generation, suggestions))

    @on(HintReady)
    def _hint_ready(self, event: HintReady) -> None:
        if event.generation != self._generation:
            return
        if event.error:
            self.notify(f"No hint: {event.error}", severity="error")
            return
        if not event.suggestions:
            self.notify("No hint for this position.")
            return
        self._hint = best = event.suggestions[0]
        size = self.session.size
        if best.move.point is not None:
            self.board.cursor = best.move.point
        self.sync()
        self.notify(f"{describe_move(best.move, size)}: {best.reason}", title="Hint")

    @work(thread=True, exclusive=True, group="count", exit_on_error=False)
    def _estimate(self, position: Position, generation: int) -> None:
        try:
            dead = estimate_dead(position)
        except Exception as exc:  # the count still works: every stone starts alive
            log.exception("estimating dead stones failed")
            self.post_message(self.DeadEstimated(generation, frozenset(), str(exc)))
            return
        self.post_message(self.DeadEstimated(generation, dead))

    @on(DeadEstimated)
    def _dead_estimated(self, event: DeadEstimated) -> None:
        if event.generation != self._generation or self.session.phase is not Phase.SCORING:
            return
        self._estimating = False
        self.session.set_dead(event.dead)
        if event.error:
            self.notify(f"Could not guess the dead stones ({event.error}): mark them yourself.")
        n = len(self.session.dead)
        self.notify(
            f"{n} stone{'s' if n != 1 else ''} marked dead (×). Enter or click toggles a "
            "group; c confirms the count; u resumes play.",
            title="Both passed",
            timeout=8,
        )
        self.sync()

    # ---- new game, files and the store ---------------------------------------------

    def action_new_game(self) -> None:
        def chosen(settings: GameSettings | None) -> None:
            if settings is None:
                return
            self.start_game(settings)

        self.app.push_screen(NewGameDialog(self.settings, self.services.ai_name), chosen)

    def start_game(self, settings: GameSettings) -> None:
        """Abandon the current game and start a new one with ``settings``."""
        self.settings = settings
        self.session = self._new_session(settings)
        self._notice = ""
        self._changed()
        colour = settings.human.name.lower()
        self.notify(f"New game: {self.settings_line()}; you play {colour}.")

    def _default_sgf_path(self) -> Path:
        header = self.session.header
        stem = f"p2pgo-{header.date or self.services.today()}-{header.game_id[:8] or 'game'}"
        return self.services.sgf_dir / f"{stem}.sgf"

    def action_save_sgf(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self._save_sgf(self.session.record(), path)

        dialog = PathDialog(
            "Save the game as SGF", self._default_sgf_path(), "Save", must_exist=False
        )
        self.app.push_screen(dialog, chosen)

    @work(thread=True, group="files", exit_on_error=False)
    def _save_sgf(self, record: GameRecord, path: Path) -> None:
        try:
            write_sgf(record, path)
        except (OSError, SgfError) as exc:
            log.warning("cannot save %s: %s", path, exc)
            self.post_message(self.FileDone("", f"Cannot save {path}: {exc}"))
            return
        self.post_message(self.FileDone(f"Saved {path}"))

    def action_open_sgf(self) -> None:
        def chosen(path: Path | None) -> None:
            if path is not None:
                self._open_sgf(path)

        start = self.services.sgf_dir
        self.app.push_screen(PathDialog("Open an SGF file", start, "Open", must_exist=True), chosen)

    @work(thread=True, group="files", exit_on_error=False)
    def _open_sgf(self, path: Path) -> None:
        try:
            record = read_sgf(path)
        except (OSError, SgfError, RecordError) as exc:
            log.warning("cannot open %s: %s", path, exc)
            self.post_message(self.FileDone("", f"Cannot open {path.name}: {exc}"))
            return
        self.post_message(self.SgfOpened(path, record))

    @on(SgfOpened)
    def _sgf_opened(self, event: SgfOpened) -> None:
        record = event.record
        if record.is_finished:
            self.app.push_screen(ReviewScreen(record, title=event.path.name))
            return
        position = record.replay()
        self.session = GameSession(record, human=position.to_play)
        self._notice = ""
        self._changed()
        colour = position.to_play.name.lower()
        self.notify(
            f"Opened {event.path.name}: you play {colour} from move {position.move_number}."
        )

    @on(FileDone)
    def _file_done(self, event: FileDone) -> None:
        if event.error:
            self.notify(event.error, title="File error", severity="error", timeout=10)
        else:
            self.notify(event.text)

    @work(thread=True, group="store", exit_on_error=False)
    def _store(self, record: GameRecord) -> None:
        storage = self.services.storage
        assert storage is not None
        try:
            storage.save(record)
        except StorageError as exc:
            self.post_message(self.FileDone("", f"The game was not stored: {exc}"))
            return
        self.post_message(self.FileDone("Saved to My games (g)."))

    def action_games(self) -> None:
        if self.services.storage is None:
            return
        self.app.push_screen(GamesScreen(self.services.storage))

    # ---- the command palette ------------------------------------------------------

    def commands(self) -> Iterator[SystemCommand]:
        """The screen's actions for the command palette (those possible now)."""
        entries = [
            ("Pass", "Pass your turn", "pass_move"),
            ("Undo", "Take back your last move and the AI's reply", "undo"),
            ("Hint", "Ask the AI what it would play here", "hint"),
            ("Confirm count", "Accept the dead stones and finish the game", "confirm_count"),
            ("Resign", "Resign this game", "resign"),
            ("New game", "Start a new game against the AI", "new_game"),
            ("Save SGF", "Save this game as an SGF file", "save_sgf"),
            ("Open SGF", "Open an SGF file to continue or review it", "open_sgf"),
            ("My games", "List stored games and review one move by move", "games"),
        ]
        for title, help_text, action in entries:
            if self.check_action(action, ()):
                yield SystemCommand(title, help_text, getattr(self, f"action_{action}"))
