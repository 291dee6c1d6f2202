"""The Peers screen: who is out there, how we reach them, and a game against one of them.

The peer graph is a ``Tree`` (me -> relays -> the peers each relay's directory lists),
each node labelled with the link we hold to it (direct, relayed, or both while DCUtR's
grace period runs) and the ping round trip. The table lists the same peers with their
addresses and the gossip messages our node refused from them. Both are redrawn from a
:class:`~p2pgo_tui._netmodel.NetSnapshot` fetched every two seconds in an async worker
(the request runs on the network thread; the UI loop only awaits it).

Challenging a peer asks for a time control (:class:`~p2pgo_tui._dialogs.ChallengeDialog`)
and opens a :class:`NetGameScreen`: the Board screen with the peer as the opponent,
moves travelling over the game's stream (``/p2pgo/game/1``). In a timed game a
:class:`GameClocks` bar shows both clocks: the net reports them after every change
(a :class:`~p2pgo_tui._netmodel.ClockSnapshot` on the game link) and the screen counts
the running one down locally between reports. The net enforces the clocks (a flag
fall ends the game ``B+Time`` / ``W+Time`` on both sides); the screen only shows them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import ClassVar

from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.reactive import reactive
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Footer, Static, Tree

from p2pgo_tui._board_screen import BoardScreen
from p2pgo_tui._dialogs import ChallengeDialog, ConfirmDialog
from p2pgo_tui._engine import Color, Move, Position, Score
from p2pgo_tui._netmodel import (
    LOW_TIME_S,
    ClockSnapshot,
    GameResult,
    LinkKind,
    NetGameEnded,
    NetGameLink,
    NetSnapshot,
    NetworkError,
    NetworkHost,
    PeerView,
    TimeControl,
    describe_link,
    short_id,
)
from p2pgo_tui._panel import PanelView
from p2pgo_tui._polling import PollingScreen
from p2pgo_tui._services import AppServices
from p2pgo_tui._session import Phase, describe_result
from p2pgo_tui._settings import GameSettings

__all__ = ["ClockFace", "GameClocks", "NetGameScreen", "PeersScreen", "clock_face", "format_clock"]

log = logging.getLogger(__name__)

_CLOCK_TICK_S = 0.2  # how often a running clock is redrawn between the net's reports
_LINK_STYLE = {
    LinkKind.DIRECT: "green",
    LinkKind.BOTH: "green",
    LinkKind.RELAYED: "yellow",
    LinkKind.NONE: "dim",
}


def _link_text(peer: PeerView) -> Text:
    return Text(describe_link(peer.link, peer.latency_ms), style=_LINK_STYLE[peer.link])


class PeersScreen(PollingScreen[NetSnapshot]):
    """The peer graph and table; challenge the selected peer to a game."""

    POLL_S = 2.0
    POLL_GROUP = "peers"
    POLL_FAILED = "cannot list peers"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "challenge", "Challenge"),
        Binding("ctrl+r", "refresh", "Refresh"),
    ]
    HELP_NOTES: ClassVar[tuple[str, ...]] = (
        "The graph shows how we reach each peer: direct, relayed (through a relay's "
        "circuit), or both while a relayed link is being upgraded (DCUtR). Latency is "
        "the libp2p ping round trip.",
        "c challenges the selected peer: choose a time control (main time and an "
        "increment per move, or untimed); size, komi and colour are the Board "
        "screen's new-game settings. Whoever runs out of time loses the game.",
    )
    DEFAULT_CSS = """
    PeersScreen > #status { height: 1; padding: 0 1; background: $boost; }
    PeersScreen > #body { height: 1fr; }
    PeersScreen #graph { width: 1fr; border: round $foreground 30%; }
    PeersScreen #peers { width: 2fr; border: round $foreground 30%; }
    """

    def __init__(self, host: NetworkHost, services: AppServices) -> None:
        super().__init__(host)
        self.services = services
        self.snapshot: NetSnapshot | None = None
        self._time_control = TimeControl()

    def compose(self) -> ComposeResult:
        yield Static(self.host.describe(), id="status")
        with Horizontal(id="body"):
            tree: Tree[str] = Tree("me", id="graph")
            tree.show_root = True
            yield tree
            table: DataTable[str | Text] = DataTable(
                id="peers", cursor_type="row", zebra_stripes=True
            )
            table.add_columns("Name", "Peer", "Link", "Rejected", "Listed on", "Addresses")
            yield table
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#graph", Tree).border_title = "Peer graph"
        self.query_one("#peers", DataTable).border_title = "Peers"
        self.query_one("#peers", DataTable).focus()
        self.start_polling()

    # ---- fetching (PollingScreen) and drawing -----------------------------------------

    async def _poll(self) -> NetSnapshot:
        return await self.host.snapshot()

    def show(self, snapshot: NetSnapshot) -> None:
        """Redraw the graph and the table from ``snapshot``."""
        self.snapshot = snapshot
        connected = sum(p.link is not LinkKind.NONE for p in snapshot.peers)
        self._status(
            f"{self.host.describe()} · me {short_id(snapshot.me)} · "
            f"{len(snapshot.peers)} peers ({connected} connected) · "
            f"{snapshot.rejections} gossip messages refused"
        )
        self._draw_graph(snapshot)
        self._fill_table(snapshot)

    def _draw_graph(self, snapshot: NetSnapshot) -> None:
        tree = self.query_one("#graph", Tree)
        tree.clear()
        tree.root.set_label(Text.assemble(("me ", "bold"), short_id(snapshot.me)))
        for relay in snapshot.relays:
            label = Text.assemble(
                (f"{relay.name} ", "bold"),
                f"{short_id(relay.peer_id)} ",
                _link_text(relay),
                (" · reserved" if relay.reserved else " · no reservation", "dim"),
            )
            branch = tree.root.add(label, data=relay.peer_id, expand=True)
            for peer in snapshot.peers:
                if peer.relay_id == relay.peer_id:
                    branch.add_leaf(
                        Text.assemble(
                            (f"{peer.name} ", "bold"),
                            f"{short_id(peer.peer_id)} ",
                            _link_text(peer),
                        ),
                        data=peer.peer_id,
                    )
        tree.root.expand()

    def _fill_table(self, snapshot: NetSnapshot) -> None:
        table: DataTable[str | Text] = self.query_one("#peers", DataTable)
        selected = self.selected_peer()
        table.clear()
        relay_names = {r.peer_id: r.name for r in snapshot.relays}
        for peer in snapshot.peers:
            addrs = ", ".join(a.split("/p2p/")[0] or a for a in peer.addrs[:2])
            kinds = {"relayed" if "/p2p-circuit" in a else "direct" for a in peer.addrs}
            table.add_row(
                peer.name,
                short_id(peer.peer_id),
                _link_text(peer),
                str(peer.rejections),
                relay_names.get(peer.relay_id, short_id(peer.relay_id)),
                f"{addrs} ({'/'.join(sorted(kinds))})",
                key=peer.peer_id,
            )
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))

    def selected_peer(self) -> str | None:
        table: DataTable[str | Text] = self.query_one("#peers", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return key.value

    # ---- challenging ----------------------------------------------------------------

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_challenge()

    def action_challenge(self) -> None:
        peer_id = self.selected_peer()
        if peer_id is None or self.snapshot is None:
            self.notify("No peer to challenge yet.", severity="warning")
            return
        name = next((p.name for p in self.snapshot.peers if p.peer_id == peer_id), peer_id)
        settings = self._game_settings()

        def chosen(control: TimeControl | None) -> None:
            if control is not None:
                self._time_control = control  # offered again next time
                self.challenge(peer_id, name, settings, control)

        self.app.push_screen(ChallengeDialog(name, settings, self._time_control), chosen)

    def _game_settings(self, settings: GameSettings | None = None) -> GameSettings:
        settings = settings or self.services.settings
        if settings.handicap:  # the game protocol has no handicap yet
            settings = replace(settings, handicap=0)
        return settings

    def challenge(
        self,
        peer_id: str,
        name: str,
        settings: GameSettings | None = None,
        time_control: TimeControl | None = None,
    ) -> None:
        """Start a game against ``peer_id`` on a new board screen."""
        screen = NetGameScreen(
            self.host, self.services, peer_id, name, self._game_settings(settings), time_control
        )
        self.app.push_screen(screen)

    def commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand(
            "Challenge", "Play a game against the selected peer", self.action_challenge
        )
        yield SystemCommand("Refresh peers", "List the peers again now", self.action_refresh)


def format_clock(seconds: float) -> str:
    """``4:59``, ``1:02:03``; under `LOW_TIME_S` with tenths (``0:07.3``)."""
    seconds = max(0.0, seconds)
    if seconds < LOW_TIME_S:
        return f"0:{math.floor(seconds * 10) / 10:04.1f}"
    minutes, secs = divmod(int(seconds), 60)  # a clock shows the whole seconds left
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True, slots=True)
class ClockFace:
    """What the clock bar shows at one instant."""

    black_s: float
    white_s: float
    running: Color | None
    flagged: Color | None = None  # lost on time
    control: str = ""  # the time control, e.g. "5 min + 3 s"

    def remaining(self, color: Color) -> float:
        return self.black_s if color is Color.BLACK else self.white_s


def clock_face(
    snapshot: ClockSnapshot, now: float, *, flagged: Color | None = None, control: str = ""
) -> ClockFace:
    """The clocks at ``now`` (monotonic) from the net's last report; a fallen flag
    shows zero and stops everything."""
    black = snapshot.remaining(Color.BLACK, now)
    white = snapshot.remaining(Color.WHITE, now)
    running = snapshot.running
    if flagged is not None:
        running = None
        black, white = (0.0, white) if flagged is Color.BLACK else (black, 0.0)
    return ClockFace(black, white, running, flagged, control)


class GameClocks(Widget):
    """Both players' clocks on one line: the running one highlighted, low time in the
    warning colour, a fallen flag in the error colour. State flows down (``face``)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "game-clocks--running",
        "game-clocks--low",
        "game-clocks--flagged",
        "game-clocks--muted",
    }
    DEFAULT_CSS = """
    GameClocks {
        dock: top;
        height: 1;
        padding: 0 1;
        background: $boost;
        & > .game-clocks--running { text-style: bold reverse; }
        & > .game-clocks--low { color: $text-warning; text-style: bold; }
        & > .game-clocks--flagged { color: $text-error; text-style: bold; }
        & > .game-clocks--muted { color: $text-muted; }
    }
    """

    face: reactive[ClockFace | None] = reactive(None)

    def render(self) -> RenderableType:
        face = self.face
        text = Text(no_wrap=True, overflow="ellipsis")
        if face is None:
            return text

        def style(name: str) -> Style:
            return self.get_component_rich_style(f"game-clocks--{name}", partial=True)

        for color in (Color.BLACK, Color.WHITE):
            left = face.remaining(color)
            on_move = style("running") if color is face.running else Style()
            shown = Style()
            if color is face.flagged:
                shown = style("flagged")
            elif left < LOW_TIME_S:
                shown = style("low")
            text.append(f" {'▶' if color is face.running else ' '} {color.name.title()} ", on_move)
            text.append(f"{format_clock(left)} ", shown + on_move)
            if color is face.flagged:
                text.append(" lost on time", shown)
            text.append("   ")
        text.append(face.control, style("muted"))
        return text


class NetGameScreen(BoardScreen):
    """The Board screen against a network peer: our moves go out, theirs come in.

    The peer is the board's opponent through a :class:`NetGameLink` (its ``choose``
    waits for the peer's move); the game itself runs on the network thread
    (``GameService.challenge``) in this screen's worker and ends with both players'
    signatures; its result (a loss on time included) is the one the screen shows.
    Resigning works on either player's turn (the resignation goes straight to the
    net). Undo, new game and opening files make no sense against a peer and are off;
    Escape leaves (resigning a game still in play).
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "leave", "Leave")]
    _OFF = ("undo", "new_game", "open_sgf", "games")

    def __init__(
        self,
        host: NetworkHost,
        services: AppServices,
        peer_id: str,
        peer_name: str,
        settings: GameSettings,
        time_control: TimeControl | None = None,
    ) -> None:
        self.link = NetGameLink(settings.human, opponent_name=peer_name, time_control=time_control)
        super().__init__(
            replace(services, ai=self.link, ai_name=peer_name, storage=None, settings=settings)
        )
        self.host = host
        self.peer_id = peer_id
        self.peer_name = peer_name
        self.time_control = self.link.time_control
        self.result: GameResult | None = None
        self.failure = ""
        self._resign_sent = False
        self._clock_timer: Timer | None = None

    def compose(self) -> ComposeResult:
        yield from super().compose()
        if self.time_control.timed:
            yield GameClocks(id="clocks")

    def on_mount(self) -> None:
        # BoardScreen's own on_mount runs too (Textual calls each class's handler).
        control = f" ({self.time_control.describe()})" if self.time_control.timed else ""
        self.notify(f"Challenging {self.peer_name} ({short_id(self.peer_id)}){control}…")
        if self.time_control.timed:
            self._clock_timer = self.set_interval(_CLOCK_TICK_S, self._tick_clocks)
            self._tick_clocks()
        self._play_over_network()

    # ---- the game on the network ------------------------------------------------

    @work(group="net-game", exit_on_error=False)
    async def _play_over_network(self) -> None:
        try:
            self.result = await self.host.challenge(self.peer_id, self.settings, self.link)
        except Exception as exc:  # shown to the player; the board stays for review
            log.warning("network game against %s failed: %r", self.peer_id, exc)
            self.failure = str(exc) if isinstance(exc, NetworkError) else repr(exc)
            self._stop_clocks()
            self.notify(f"The game with {self.peer_name} ended: {self.failure}", severity="error")
            return
        result = self.result
        session = self.session
        if result.result and session.phase is Phase.PLAYING:
            # Ended on the net without a move of the board's (a flag fell, a resignation
            # crossed a move): the signed result is the game's.
            session.result = result.result
            self._changed()
        self._stop_clocks()
        stored = f"; stored as {result.record_id[:8]}" if result.record_id else ""
        self.notify(
            f"{self.end_line() if result.result else result.phase} after {result.moves} "
            f"moves, signed by both players{stored}",
            title=f"Game with {self.peer_name} over",
            timeout=10,
        )

    @work(thread=True, exclusive=True, group="ai", exit_on_error=False)
    def _think(self, position: Position, generation: int) -> None:
        # The peer's move arrives through the link; when the game ends first (a flag
        # fell, we resigned on its turn) the link closes and the result comes with
        # `_play_over_network`, so there is no move to report.
        try:
            move: Move = self.link.choose(position)
        except NetGameEnded:
            return
        self.post_message(self.AiMoved(generation, move))

    def _changed(self) -> None:
        # Every change of the game passes through here: hand our new moves to the net
        # (including a pass that ends play and a resignation, which need no reply).
        self.link.push_human_moves(self.session.position)
        if self.session.position.resigned is self.session.human and not self._resign_sent:
            # On the peer's turn no move of ours is awaited: resign through the net now.
            # The app runs it, so leaving the screen does not cancel it.
            self._resign_sent = True
            self.app.run_worker(self._resign(), group="net-resign", exit_on_error=False)
        super()._changed()

    async def _resign(self) -> None:
        try:
            await self.host.resign(self.link)
        except NetworkError as exc:  # the network is gone: so is the game
            log.warning("resigning the game against %s failed: %s", self.peer_id, exc)

    # ---- clocks ---------------------------------------------------------------

    def flagged(self) -> Color | None:
        """The side that lost on time (None if nobody has)."""
        result = self.session.result.upper()
        if not result.endswith("+TIME") and not result.endswith("+T"):
            return None
        return Color.WHITE if result.startswith("B") else Color.BLACK

    def clock_face(self) -> ClockFace | None:
        """The clocks as shown now (None in an untimed game)."""
        snapshot = self.link.clock
        if snapshot is None:
            return None
        return clock_face(
            snapshot,
            time.monotonic(),
            flagged=self.flagged(),
            control=self.time_control.describe(),
        )

    def _tick_clocks(self) -> None:
        face = self.clock_face()
        if face is not None:
            for clocks in self.query(GameClocks):  # none once the screen has closed
                clocks.face = face

    def _stop_clocks(self) -> None:
        if self._clock_timer is not None:
            self._clock_timer.stop()
            self._clock_timer = None
            self._tick_clocks()  # the final report (a fallen flag shows zero)

    # ---- what the panel says ----------------------------------------------------

    def end_line(self) -> str:
        """How the game ended, for the player: ``White lost on time — you win!``."""
        s = self.session
        loser = self.flagged()
        if loser is not None:
            line = f"{loser.name.title()} lost on time"
        else:
            line = describe_result(s.result)
        text = s.result.strip().upper()
        winner = {"B+": Color.BLACK, "W+": Color.WHITE}.get(text[:2])  # None for a draw
        if winner is None:
            return line
        return line + (" — you win!" if winner is s.human else f" — {self.peer_name} wins")

    def _status(self) -> str:
        phase = self.session.phase
        if phase is Phase.FINISHED:
            return f"Game over: {self.end_line()}. Escape leaves."
        if phase is Phase.PLAYING and not self.session.human_to_move:
            return f"Waiting for {self.peer_name}'s move…"
        return super()._status()

    def _sync_panel(self, count: Score | None) -> None:
        super()._sync_panel(count)
        if self.session.phase is Phase.FINISHED:
            view: PanelView = self.panel.view
            self.panel.view = replace(view, result=self.end_line())

    def _game_over(self) -> None:
        self.notify(self.end_line(), title="Game over", timeout=8)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self._OFF:
            return False
        return super().check_action(action, parameters)

    def action_leave(self) -> None:
        if self.session.phase is not Phase.PLAYING or self.result is not None:
            self.link.close("the player left")
            self.dismiss()
            return

        def answered(yes: bool | None) -> None:
            if not yes:
                return
            if self.session.phase is Phase.PLAYING:
                self.session.resign()
                self._changed()
            self.dismiss()

        self.app.push_screen(ConfirmDialog("Resign this game and leave?", yes="Resign"), answered)
