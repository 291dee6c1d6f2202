"""The application: one Textual ``App`` whose modes are the screens, built by :func:`make_app`.

Each screen lives in its own module and is registered as a *mode* here: board (F2),
peers (F3), rounds (F4) and relay health (F5). The app itself only owns what is global: help, quit, the command palette
(which asks the current screen for its actions via :class:`CommandSource`) and
notifications, which it also writes to the log.

Start-up order (measured on a loaded 2-core machine, where everything competes for
CPU): the board is drawn first; then the AI's model server starts; the network (libp2p,
and torch for the embedded round coordinator) starts once the model server is ready, or
as soon as the player opens a network screen.

The federated model: when the player's round participant adopts a verified model, the
network thread says so (``NetworkHost``'s ``on_model``) and the app installs it as the
AI's model (:class:`~p2pgo_tui._model_choice.ModelChoice`, validated in a worker
thread); the next AI move and hint come from it. A file that does not load leaves the
model in use and tells the player.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import Screen

from p2pgo_tui._board import GoBoard
from p2pgo_tui._board_screen import BoardScreen
from p2pgo_tui._dialogs import HelpScreen
from p2pgo_tui._keys import key_rows
from p2pgo_tui._model_choice import ModelChoice, ModelInstallError, ModelRef
from p2pgo_tui._netmodel import NetworkHost, NetworkPlan
from p2pgo_tui._peers_screen import PeersScreen
from p2pgo_tui._protocols import Advisor, AiOpponent, GameStorage
from p2pgo_tui._relay_screen import RelayScreen
from p2pgo_tui._rounds_screen import RoundsScreen
from p2pgo_tui._services import AppServices, BackgroundAi
from p2pgo_tui._settings import GameSettings

__all__ = ["CommandSource", "P2PGoApp", "make_app"]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=Screen[None])
# The network waits at most this long for the AI before it starts anyway.
_NETWORK_AFTER_AI_S = 30.0

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
        Binding("f4", "switch_mode('rounds')", "Rounds"),
        Binding("f5", "switch_mode('relay')", "Relay health"),
    ]

    def __init__(
        self, services: AppServices, *, network: NetworkPlan | None = None, operator: bool = False
    ) -> None:
        super().__init__()
        self.services = services
        # The network starts in the background (see NetworkHost), once the AI is ready.
        on_model = self._model_offered if services.models is not None else None
        self.network = NetworkHost(network, services.storage, on_model)
        self.operator = operator
        self._board: BoardScreen | None = None
        self._refused: set[str] = set()  # model versions that did not load: said once

    def on_mount(self) -> None:
        self.add_mode("board", self._board_screen)
        self.add_mode("peers", lambda: self._on_network(PeersScreen(self.network, self.services)))
        self.add_mode(
            "rounds", lambda: self._on_network(RoundsScreen(self.network, self.services.models))
        )
        self.add_mode("relay", lambda: self._on_network(RelayScreen(self.network)))
        self.switch_mode("relay" if self.operator else "board")
        self.call_after_refresh(self._after_first_frame)

    def _board_screen(self) -> BoardScreen:
        self._board = BoardScreen(self.services)
        return self._board

    def _on_network(self, screen: S) -> S:
        """A network screen is opening: the network starts now if it has not yet."""
        if self.network.enabled:
            self.network.begin()
        return screen

    def _after_first_frame(self) -> None:
        # Both start only now, so that drawing the board does not compete with them:
        # the model server's imports take seconds of CPU, and so does the network's.
        ai = self.services.background_ai
        if ai is not None:
            ai.start()
        if not self.network.enabled:
            return
        if ai is None or self.operator:
            self.network.begin()
        else:
            self._network_after_ai(ai)

    @work(group="network-start", exit_on_error=False)
    async def _network_after_ai(self, ai: BackgroundAi) -> None:
        """Start the network once the AI answers (or gives up, or after a while).

        Measured on the loaded 2-core machine: the network's start (libp2p, torch for
        the round coordinator and the bots) while the model server starts delayed the
        AI's first move by seconds; the player sees the board first, the peers later.
        """
        await asyncio.to_thread(ai.wait_ready, _NETWORK_AFTER_AI_S)
        self.network.begin()

    # ---- the federated model becomes the AI's ------------------------------------------

    def _model_offered(self, version: str, path: Path) -> None:
        """The player's participant holds model ``version`` (in ``path``): install it."""
        models = self.services.models
        if models is None or version == models.version or version in self._refused:
            return
        self._install_model(version, path)

    @work(thread=True, group="model", exit_on_error=False)
    def _install_model(self, version: str, path: Path) -> None:
        models = self.services.models
        assert models is not None
        before = models.current
        try:
            ref = models.install_file(path)
        except ModelInstallError as exc:
            log.error("federated model %s refused: %s", version[:12], exc)
            self.call_from_thread(self._model_refused, version, str(exc), before)
            return
        self.call_from_thread(self._model_installed, ref)

    def _model_refused(self, version: str, reason: str, kept: ModelRef | None) -> None:
        self._refused.add(version)
        keeps = f"the AI keeps {kept.describe()}" if kept is not None else "the AI is unchanged"
        self.notify(
            f"The federated model {version[:10]} could not be used ({reason}); {keeps}.",
            title="Model",
            severity="warning",
        )

    def _model_installed(self, ref: ModelRef) -> None:
        self.notify(f"The AI now plays with {ref.describe()}.", title="Model")
        board = self._board
        if board is not None and board.is_mounted:
            board.sync()

    async def on_unmount(self) -> None:
        # The model server and the network stop side by side: each takes a second or
        # more (the server's exit, the network's cancellation), and quitting waits.
        ai = self.services.background_ai
        if ai is None:
            await self.network.stop()
        else:
            await asyncio.gather(self.network.stop(), asyncio.to_thread(ai.close))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        if isinstance(screen, CommandSource):
            yield from screen.commands()
        yield SystemCommand("Help", "Every key of this screen and how to play", self.action_help)
        for mode, title, text in (
            ("board", "Board", "Play Go (F2)"),
            ("peers", "Peers", "The peer graph; challenge a peer (F3)"),
            ("rounds", "Rounds", "Federated rounds: join one, your privacy budget (F4)"),
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
    models: ModelChoice | None = None,
    background_ai: BackgroundAi | None = None,
) -> P2PGoApp:
    """Build the app from its collaborators (tests pass fakes that fit the protocols).

    ``advisor`` gives hints (none: the hint action is hidden); ``storage`` keeps
    finished games (none: they are not stored and "My games" is hidden).
    ``network`` is the network to run (none: the network screens say so);
    ``operator`` opens the relay-health view first. ``models`` is the AI's model
    choice (the federated model is installed into it); ``background_ai`` (the MCP
    client) starts after the first frame, and the network once it is ready.
    """
    services = AppServices(
        ai=ai,
        ai_name=ai_name,
        advisor=advisor,
        storage=storage,
        settings=settings or GameSettings(),
        player_name=player_name,
        sgf_dir=sgf_dir or Path.cwd(),
        models=models,
        background_ai=background_ai,
    )
    return P2PGoApp(services, network=network, operator=operator)
