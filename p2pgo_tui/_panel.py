"""The side panel: players, whose turn, captures, move number, status and result.

It draws a :class:`PanelView` that the screen hands down; the only state of its own
is the spinner that shows the AI is thinking (animated only while it is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget

from p2pgo_tui._engine import Color

__all__ = ["GamePanel", "PanelView"]

_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


@dataclass(frozen=True, slots=True)
class PanelView:
    """Everything the panel shows; ``human`` is None when reviewing a game."""

    heading: str = ""
    black: str = "Black"
    white: str = "White"
    human: Color | None = Color.BLACK
    to_play: Color = Color.BLACK
    move_number: int = 0
    captures: tuple[int, int] = (0, 0)
    last_move: str = ""
    status: str = ""
    result: str = ""
    score: str = ""
    cursor: str = ""
    hint: str = ""
    thinking: bool = False
    comment: str = ""
    help_line: str = ""
    model: str = ""  # the AI's model, e.g. "model 1a2b3c4d5e (federated)"


class GamePanel(Widget):
    """Shows a :class:`PanelView`; animates a spinner while ``view.thinking``."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "game-panel--heading",
        "game-panel--label",
        "game-panel--turn",
        "game-panel--result",
        "game-panel--hint",
        "game-panel--muted",
        "game-panel--black-stone",
        "game-panel--white-stone",
    }

    DEFAULT_CSS = """
    GamePanel {
        width: 32;
        height: 1fr;
        padding: 1 1;
        border-left: vkey $foreground 20%;
        & > .game-panel--heading { text-style: bold; color: $text-primary; }
        & > .game-panel--label { color: $text-muted; }
        & > .game-panel--turn { text-style: bold; color: $text-accent; }
        & > .game-panel--result { text-style: bold; color: $text-success; }
        & > .game-panel--hint { color: $text-success; }
        & > .game-panel--muted { color: $text-muted; }
        & > .game-panel--black-stone { color: #0b0b0b; background: #d7a75a; text-style: bold; }
        & > .game-panel--white-stone { color: #ffffff; background: #d7a75a; text-style: bold; }
    }
    """

    view: reactive[PanelView] = reactive(PanelView)
    _frame: reactive[int] = reactive(0)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._spin: Timer | None = None

    def on_mount(self) -> None:
        self._spin = self.set_interval(0.1, self._advance, pause=not self.view.thinking)

    def _advance(self) -> None:
        self._frame = (self._frame + 1) % len(_SPINNER)

    def watch_view(self, view: PanelView) -> None:
        if self._spin is not None:
            if view.thinking:
                self._spin.resume()
            else:
                self._spin.pause()

    def render(self) -> RenderableType:
        v = self.view

        def style(name: str) -> Style:
            return self.get_component_rich_style(f"game-panel--{name}", partial=True)

        text = Text(no_wrap=False)
        text.append("p2pgo", style("heading"))
        text.append(f"  {v.heading}\n\n", style("muted"))
        for color, name, caught in (
            (Color.BLACK, v.black, v.captures[0]),
            (Color.WHITE, v.white, v.captures[1]),
        ):
            turn = v.to_play is color and not v.result
            text.append("▶ " if turn else "  ", style("turn"))
            text.append(" ● ", style(f"{color.name.lower()}-stone"))  # a swatch of the stone
            text.append(f" {color.name.title():<6}", style("turn") if turn else "")
            text.append(f"  captures {caught}\n", style("muted"))
            who = name + (" (you)" if v.human is color else "")
            text.append(f"    {who}\n")
        if v.model:
            text.append(f"{v.model}\n", style("muted"))
        text.append("\n")
        text.append("Move ", style("label"))
        text.append(f"{v.move_number}", "bold")
        if v.last_move:
            text.append("   last ", style("label"))
            text.append(v.last_move)
        text.append("\n")
        if v.cursor:
            text.append("Cursor ", style("label"))
            text.append(f"{v.cursor}\n")
        text.append("\n")
        if v.thinking:
            text.append(f"{_SPINNER[self._frame]} ", style("turn"))
        if v.status:
            text.append(f"{v.status}\n", style("turn"))
        if v.score:
            text.append(f"{v.score}\n")
        if v.result:
            text.append("Result ", style("label"))
            text.append(f"{v.result}\n", style("result"))
        if v.hint:
            text.append("\nHint ", style("label"))
            text.append(f"{v.hint}\n", style("hint"))
        if v.comment:
            text.append("\nComment\n", style("label"))
            text.append(f"{v.comment}\n")
        if v.help_line:
            text.append(f"\n{v.help_line}\n", style("muted"))
        return text
