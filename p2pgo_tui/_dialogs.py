"""Modal dialogs: new game, a challenge's time control, a file path (save/load SGF),
yes/no, and the key help.

Each is a :class:`ModalScreen` that returns its answer through ``dismiss`` (``None``
when cancelled with Escape); validation errors are shown inside the dialog.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from rich.table import Table
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from p2pgo_tui._engine import Color
from p2pgo_tui._netmodel import TimeControl
from p2pgo_tui._settings import BOARD_SIZES, HANDICAP_KOMI, GameSettings, SettingsError

__all__ = [
    "ChallengeDialog",
    "ConfirmDialog",
    "HelpScreen",
    "NewGameDialog",
    "PathDialog",
    "parse_main_time",
]

_DIALOG_CSS = """
    align: center middle;
    & > Vertical {
        width: 64;
        height: auto;
        max-height: 90%;
        border: thick $primary 60%;
        background: $surface;
        padding: 1 2;
    }
    & .title { text-style: bold; margin-bottom: 1; }
    & .error { color: $text-error; height: auto; }
    & .buttons { height: auto; align-horizontal: right; margin-top: 1; }
    & .buttons Button { margin-left: 1; }
"""


class NewGameDialog(ModalScreen[GameSettings | None]):
    """Size, komi, handicap, colour and opponent for a new game against the AI."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = (
        "NewGameDialog {"
        + _DIALOG_CSS
        + """
    & Grid { grid-size: 2; grid-columns: 14 1fr; grid-rows: 3; height: auto; }
    & Grid Label { padding-top: 1; }
    }"""
    )

    def __init__(self, current: GameSettings, opponent: str) -> None:
        super().__init__()
        self._current = current
        self._opponent = opponent

    def compose(self) -> ComposeResult:
        c = self._current
        sizes = sorted({*BOARD_SIZES, c.size}, reverse=True)
        with Vertical():
            yield Label("New game", classes="title")
            with Grid():
                yield Label("Board size")
                yield Select(
                    [(f"{n}x{n}", n) for n in sizes], value=c.size, allow_blank=False, id="size"
                )
                yield Label("Komi")
                yield Input(f"{c.komi:g}", type="number", id="komi")
                yield Label("Handicap")
                yield Select(
                    [("none", 0), *((f"{n} stones", n) for n in range(2, 10))],
                    value=c.handicap,
                    allow_blank=False,
                    id="handicap",
                )
                yield Label("You play")
                yield Select(
                    [("Black (moves first)", Color.BLACK), ("White", Color.WHITE)],
                    value=c.human,
                    allow_blank=False,
                    id="colour",
                )
                yield Label("Opponent")
                yield Select([(self._opponent, "ai")], value="ai", allow_blank=False, id="opponent")
            yield Static("", classes="error", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Start", variant="primary", id="start")

    @on(Select.Changed, "#handicap")
    def _handicap_changed(self, event: Select.Changed) -> None:
        komi = self.query_one("#komi", Input)
        # Follow the custom when the player has not typed a komi of their own.
        if event.value and komi.value == f"{self._current.komi:g}":
            komi.value = f"{HANDICAP_KOMI:g}"

    def settings(self) -> GameSettings:
        """The settings as entered; raises :class:`SettingsError` with what is wrong."""
        text = self.query_one("#komi", Input).value.strip()
        try:
            komi = float(text)
        except ValueError:
            raise SettingsError(f"komi must be a number such as 7.5, not {text!r}") from None
        return GameSettings(
            size=int(self._chosen("#size")),
            komi=komi,
            handicap=int(self._chosen("#handicap")),
            human=Color(self._chosen("#colour")),
            rules=self._current.rules,
        )

    def _chosen(self, selector: str) -> int:
        value = self.query_one(selector, Select).value
        if not isinstance(value, int):  # the selects have no blank entry; kept for the type
            raise SettingsError(f"choose a value for {selector.lstrip('#')}")
        return value

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def _start(self) -> None:
        try:
            settings = self.settings()
        except SettingsError as exc:
            self.query_one("#error", Static).update(f"⚠ {exc}")
            return
        self.dismiss(settings)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def parse_main_time(text: str) -> int:
    """Main time as typed: minutes (``5``, ``0.5``), seconds (``30s``) or ``m:ss``.

    Returns whole seconds (0: untimed); :class:`SettingsError` says what is wrong.
    """
    raw = text.strip().lower()
    try:
        if not raw:
            return 0
        if raw.endswith("s"):
            seconds = float(raw[:-1])
        elif ":" in raw:
            minutes, _, secs = raw.partition(":")
            if not secs.isdigit() or int(secs) >= 60:
                raise ValueError(raw)
            seconds = int(minutes) * 60 + int(secs)
        else:
            seconds = float(raw) * 60
    except ValueError:
        raise SettingsError(
            f"main time: {text.strip()!r} is not minutes (5), seconds (30s) or m:ss (1:30)"
        ) from None
    if seconds == float("inf"):
        raise SettingsError("main time is too long")
    if not seconds >= 0:  # also catches nan
        raise SettingsError("main time cannot be negative")
    if 0 < seconds < 1:
        raise SettingsError("main time must be at least 1 second (0 for untimed)")
    return round(seconds)


class ChallengeDialog(ModalScreen[TimeControl | None]):
    """The time control of a challenge (the rest comes from the new-game settings)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = (
        "ChallengeDialog {"
        + _DIALOG_CSS
        + """
    & Grid { grid-size: 2; grid-columns: 22 1fr; grid-rows: 3; height: auto; }
    & Grid Label { padding-top: 1; }
    & .muted { color: $text-muted; }
    }"""
    )

    def __init__(self, peer_name: str, settings: GameSettings, current: TimeControl) -> None:
        super().__init__()
        self._peer_name = peer_name
        self._settings = settings
        self._current = current

    def compose(self) -> ComposeResult:
        c = self._current
        colour = self._settings.human.name.lower()
        with Vertical():
            yield Label(f"Challenge {self._peer_name}", classes="title")
            yield Static(
                f"{self._settings.describe()} · you play {colour} (n on the Board screen "
                "changes these)",
                classes="muted",
            )
            with Grid():
                yield Label("Main time (minutes)")
                main = f"{c.main_time_s / 60:g}" if c.main_time_s % 60 == 0 else f"{c.main_time_s}s"
                yield Input(main, placeholder="0 = untimed; 30s, 1:30", id="main-time")
                yield Label("Increment (seconds)")
                yield Input(str(c.increment_s), type="integer", id="increment")
            yield Static(
                "Each player starts with the main time and gains the increment after "
                "each move; whoever runs out loses on time. 0 plays untimed.",
                classes="muted",
            )
            yield Static("", classes="error", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Challenge", variant="primary", id="start")

    def on_mount(self) -> None:
        self.query_one("#main-time", Input).focus()

    def time_control(self) -> TimeControl:
        """The time control as entered; raises :class:`SettingsError` with what is wrong."""
        main = parse_main_time(self.query_one("#main-time", Input).value)
        text = self.query_one("#increment", Input).value.strip() or "0"
        try:
            increment = int(text)
        except ValueError:
            raise SettingsError(f"increment must be whole seconds, not {text!r}") from None
        return TimeControl(main, increment if main else 0)

    @on(Button.Pressed, "#start")
    @on(Input.Submitted)
    def _start(self) -> None:
        try:
            control = self.time_control()
        except SettingsError as exc:
            self.query_one("#error", Static).update(f"⚠ {exc}")
            return
        self.dismiss(control)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class PathDialog(ModalScreen[Path | None]):
    """Asks for a file path (``~`` is expanded); returns it, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = "PathDialog {" + _DIALOG_CSS + "}"

    def __init__(self, title: str, initial: Path, action: str, *, must_exist: bool) -> None:
        super().__init__()
        self._title = title
        self._initial = initial
        self._action = action
        self._must_exist = must_exist

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._title, classes="title")
            yield Input(str(self._initial), id="path")
            yield Static("", classes="error", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button(self._action, variant="primary", id="ok")

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def _ok(self) -> None:
        text = self.query_one("#path", Input).value.strip()
        error = self.query_one("#error", Static)
        if not text:
            error.update("⚠ enter a file path")
            return
        path = Path(text).expanduser()
        if self._must_exist and not path.is_file():
            error.update(f"⚠ no such file: {path}")
            return
        if not self._must_exist and path.is_dir():
            error.update(f"⚠ {path} is a directory: add a file name")
            return
        self.dismiss(path)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDialog(ModalScreen[bool]):
    """A yes/no question; ``y``/``n`` answer it too."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,n", "answer(False)", "No"),
        Binding("y", "answer(True)", "Yes"),
    ]
    DEFAULT_CSS = "ConfirmDialog {" + _DIALOG_CSS + "}"

    def __init__(self, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self._question = question
        self._yes = yes

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._question, classes="title")
            with Horizontal(classes="buttons"):
                yield Button("No", id="no")
                yield Button(self._yes, variant="error", id="yes")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class HelpScreen(ModalScreen[None]):
    """The keys of the screen underneath, with what they do."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark,f1", "close", "Close")]
    DEFAULT_CSS = (
        "HelpScreen {"
        + _DIALOG_CSS
        + """
    & VerticalScroll { height: auto; max-height: 30; }
    }"""
    )

    def __init__(
        self, title: str, keys: Sequence[tuple[str, str]], notes: Sequence[str] = ()
    ) -> None:
        super().__init__()
        self._title = title
        self._keys = keys
        self._notes = notes

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for keys, description in self._keys:
            table.add_row(keys, description)
        with Vertical():
            yield Label(self._title, classes="title")
            with VerticalScroll():
                yield Static(table, id="keys")
                for note in self._notes:
                    yield Static(f"\n{note}")
            with Horizontal(classes="buttons"):
                yield Button("Close", variant="primary", id="close")

    @on(Button.Pressed, "#close")
    def action_close(self) -> None:
        self.dismiss(None)
