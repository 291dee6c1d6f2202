"""The application: one Textual ``App`` whose modes are the screens, built by :func:`make_app`.

Each screen lives in its own module and is registered as a *mode* here ("board"
today; the rounds, peers and relay-health screens join the same way when the network
exists). The app itself only owns what is global: help, quit, the command palette
(which asks the current screen for its actions via :class:`CommandSource`) and
notifications, which it also writes to the log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import Screen

from p2pgo_tui._board import GoBoard
from p2pgo_tui._board_screen import BoardScreen
from p2pgo_tui._dialogs import HelpScreen
from p2pgo_tui._keys import key_rows
from p2pgo_tui._netmodel import NetworkHost, NetworkPlan
from p2pgo_tui._peers_screen import PeersScreen
from p2pgo_tui._protocols import Advisor, AiOpponent, GameStorage
from p2pgo_tui._relay_screen import RelayScreen
from p2pgo_tui._services import AppServices
from p2pgo_tui._settings import GameSettings

__all__ = ["CommandSource", "P2PGoApp", "make_app"]

log = logging.getLogger(__name__)

_LOG_LEVELS = {"information": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


@runtime_checkable
class CommandSource(Protocol):
    """A screen that offers its actions to the command palette."""

    def commands(self) -> Iterator[SystemCommand]: ...


class P2PGoApp(App[None]):
    """The p2pgo terminal app (build it with :func:`make_app`)."""

    TITLE = "p2pgo"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark,f1", "help", "Keys"),
        Binding("q", "quit", "Quit"),
        Binding("f2", "switch_mode('board')", "Board"),
        Binding("f3", "switch_mode('peers')", "Peers"),
        Binding("f5", "switch_mode('relay')", "Relay health"),
    ]

    def __init__(
        self, services: AppServices, *, network: NetworkPlan | None = None, operator: bool = False
    ) -> None:
        super().__init__()
        self.services = services
        # The network starts after the first frame, in the background (see NetworkHost).
        self.network = NetworkHost(network)
        self.operator = operator

    def on_mount(self) -> None:
        self.add_mode("board", lambda: BoardScreen(self.services))
        self.add_mode("peers", lambda: PeersScreen(self.network, self.services))
        self.add_mode("relay", lambda: RelayScreen(self.network))
        self.switch_mode("relay" if self.operator else "board")
        if self.network.enabled:
            self.call_after_refresh(self.network.begin)

    async def on_unmount(self) -> None:
        await self.network.stop()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        if isinstance(screen, CommandSource):
            yield from screen.commands()
        yield SystemCommand("Help", "Every key of this screen and how to play", self.action_help)
        for mode, title, text in (
            ("board", "Board", "Play Go (F2)"),
            ("peers", "Peers", "The peer graph; challenge a peer (F3)"),
            ("relay", "Relay health", "The relay federation's metrics (F5)"),
        ):
            if self.current_mode != mode:
                yield SystemCommand(title, text, lambda m=mode: self.switch_mode(m))
        yield from super().get_system_commands(screen)

    def action_help(self) -> None:
        screen = self.screen
        if isinstance(screen, HelpScreen):
            return
        sources = [screen.BINDINGS]
        if isinstance(screen, BoardScreen):
            sources.append(GoBoard.BINDINGS)
        sources.append(self.BINDINGS)
        sources.append([Binding("ctrl+p", "command_palette", "Command palette")])
        notes = getattr(screen, "HELP_NOTES", ())
        self.push_screen(HelpScreen("Keys", key_rows(self, *sources), notes))

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        # What the player was told is what a bug report needs: keep it in the log too.
        # Markup stays off: messages carry file names and SGF text ("B[zz]"), which
        # Rich would read as (broken) markup.
        log.log(
            _LOG_LEVELS.get(severity, logging.INFO),
            "notice: %s%s",
            f"{title}: " if title else "",
            message,
        )
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)


def make_app(
    *,
    ai: AiOpponent,
    ai_name: str = "p2pgo AI",
    advisor: Advisor | None = None,
    storage: GameStorage | None = None,
    settings: GameSettings | None = None,
    player_name: str = "Player",
    sgf_dir: Path | None = None,
    network: NetworkPlan | None = None,
    operator: bool = False,
) -> P2PGoApp:
    """Build the app from its collaborators (tests pass fakes that fit the protocols).

    ``advisor`` gives hints (none: the hint action is hidden); ``storage`` keeps
    finished games (none: they are not stored and "My games" is hidden).
    ``network`` is the network to run (none: the network screens say so);
    ``operator`` opens the relay-health view first.
    """
    services = AppServices(
        ai=ai,
        ai_name=ai_name,
        advisor=advisor,
        storage=storage,
        settings=settings or GameSettings(),
        player_name=player_name,
        sgf_dir=sgf_dir or Path.cwd(),
    )
    return P2PGoApp(services, network=network, operator=operator)
