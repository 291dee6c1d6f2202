"""The Peers screen: who is out there, how we reach them, and a game against one of them.

The peer graph is a ``Tree`` (me -> relays -> the peers each relay's directory lists),
each node labelled with the link we hold to it (direct, relayed, or both while DCUtR's
grace period runs) and the ping round trip. The table lists the same peers with their
addresses and the gossip messages our node refused from them. Both are redrawn from a
:class:`~p2pgo_tui._netmodel.NetSnapshot` fetched every two seconds in an async worker
(the request runs on the network thread; the UI loop only awaits it).

Challenging a peer opens a :class:`NetGameScreen`: the Board screen with the peer as the
opponent, moves travelling over the game's stream (``/p2pgo/game/1``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, Tree

from p2pgo_tui._board_screen import BoardScreen
from p2pgo_tui._dialogs import ConfirmDialog
from p2pgo_tui._netmodel import (
    GameResult,
    LinkKind,
    NetGameLink,
    NetSnapshot,
    NetStatus,
    NetworkError,
    NetworkHost,
    PeerView,
    describe_link,
    short_id,
)
from p2pgo_tui._services import AppServices
from p2pgo_tui._session import Phase
from p2pgo_tui._settings import GameSettings

__all__ = ["NetGameScreen", "PeersScreen"]

log = logging.getLogger(__name__)

_REFRESH_S = 2.0
_LINK_STYLE = {
    LinkKind.DIRECT: "green",
    LinkKind.BOTH: "green",
    LinkKind.RELAYED: "yellow",
    LinkKind.NONE: "dim",
}


def _link_text(peer: PeerView) -> Text:
    return Text(describe_link(peer.link, peer.latency_ms), style=_LINK_STYLE[peer.link])


class PeersScreen(Screen[None]):
    """The peer graph and table; challenge the selected peer to a game."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "challenge", "Challenge"),
        Binding("ctrl+r", "refresh", "Refresh"),
    ]
    HELP_NOTES: ClassVar[tuple[str, ...]] = (
        "The graph shows how we reach each peer: direct, relayed (through a relay's "
        "circuit), or both while a relayed link is being upgraded (DCUtR). Latency is "
        "the libp2p ping round trip.",
        "c challenges the selected peer; the game uses the new-game settings (size, "
        "komi, colour) of the Board screen.",
    )
    DEFAULT_CSS = """
    PeersScreen > #status { height: 1; padding: 0 1; background: $boost; }
    PeersScreen > #body { height: 1fr; }
    PeersScreen #graph { width: 1fr; border: round $foreground 30%; }
    PeersScreen #peers { width: 2fr; border: round $foreground 30%; }
    """

    def __init__(self, host: NetworkHost, services: AppServices) -> None:
        super().__init__()
        self.host = host
        self.services = services
        self.snapshot: NetSnapshot | None = None
        self._refreshing = False

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
        self.set_interval(_REFRESH_S, self.action_refresh)
        self.action_refresh()

    # ---- fetching and drawing -------------------------------------------------------

    def action_refresh(self) -> None:
        if self._refreshing:
            return  # the last request is still on the network thread
        self._refreshing = True
        self._fetch()

    @work(group="peers", exit_on_error=False)
    async def _fetch(self) -> None:
        try:
            if self.host.status is not NetStatus.UP:
                self._status(self.host.describe())
                return
            try:
                snapshot = await self.host.snapshot()
            except Exception as exc:  # shown on the status line; the next refresh retries
                log.warning("peer snapshot failed: %r", exc)
                self._status(f"{self.host.describe()} · cannot list peers: {exc}")
                return
            self.show(snapshot)
        finally:
            self._refreshing = False

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

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
        self.challenge(peer_id, name)

    def challenge(self, peer_id: str, name: str, settings: GameSettings | None = None) -> None:
        """Start a game against ``peer_id`` on a new board screen."""
        settings = settings or self.services.settings
        if settings.handicap:  # the game protocol has no handicap yet
            settings = replace(settings, handicap=0)
        self.app.push_screen(NetGameScreen(self.host, self.services, peer_id, name, settings))

    def commands(self) -> Iterator[SystemCommand]:
        yield SystemCommand(
            "Challenge", "Play a game against the selected peer", self.action_challenge
        )
        yield SystemCommand("Refresh peers", "List the peers again now", self.action_refresh)


class NetGameScreen(BoardScreen):
    """The Board screen against a network peer: our moves go out, theirs come in.

    The peer is the board's opponent through a :class:`NetGameLink` (its ``choose``
    waits for the peer's move); the game itself runs on the network thread
    (``GameService.challenge``) in this screen's worker and ends with both players'
    signatures. Undo, new game and opening files make no sense against a peer and are
    off; Escape leaves (resigning a game still in play).
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
    ) -> None:
        self.link = NetGameLink(settings.human, opponent_name=peer_name)
        super().__init__(
            replace(services, ai=self.link, ai_name=peer_name, storage=None, settings=settings)
        )
        self.host = host
        self.peer_id = peer_id
        self.peer_name = peer_name
        self.result: GameResult | None = None
        self.failure = ""

    def on_mount(self) -> None:
        # BoardScreen's own on_mount runs too (Textual calls each class's handler).
        self.notify(f"Challenging {self.peer_name} ({short_id(self.peer_id)})…")
        self._play_over_network()

    @work(group="net-game", exit_on_error=False)
    async def _play_over_network(self) -> None:
        try:
            self.result = await self.host.challenge(self.peer_id, self.settings, self.link)
        except Exception as exc:  # shown to the player; the board stays for review
            log.warning("network game against %s failed: %r", self.peer_id, exc)
            self.failure = str(exc) if isinstance(exc, NetworkError) else repr(exc)
            self.notify(f"The game with {self.peer_name} ended: {self.failure}", severity="error")
            return
        result = self.result
        stored = f"; stored as {result.record_id[:8]}" if result.record_id else ""
        self.notify(
            f"{result.result or result.phase} after {result.moves} moves, signed by both "
            f"players{stored}",
            title=f"Game with {self.peer_name} over",
            timeout=10,
        )

    def _changed(self) -> None:
        # Every change of the game passes through here: hand our new moves to the net
        # (including a pass that ends play and a resignation, which need no reply).
        self.link.push_human_moves(self.session.position)
        super()._changed()

    def _status(self) -> str:
        if self.session.phase is Phase.PLAYING and not self.session.human_to_move:
            return f"Waiting for {self.peer_name}'s move…"
        return super()._status()

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
