"""Two `GameService`s over real libp2p in one trio run: resigning on the opponent's
turn and a flag falling while the opponent's policy is still thinking."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import trio

from engine import Color, Move, Point
from net import MemoryBlobStore, Node, NodeConfig
from net._game import GamePhase, GameSession, GameTerms
from net._game_service import AiPolicy, GameOutcome, GameService
from tests.net._helpers import run_trio


class StuckPolicy:
    """Thinks until released: `thinking` is set once `choose` has been called."""

    def __init__(self) -> None:
        self.thinking = threading.Event()
        self.release = threading.Event()

    def decline_reason(self, terms: GameTerms) -> str | None:
        return None

    def choose(self, session: GameSession) -> Move:
        self.thinking.set()
        self.release.wait(30)
        return Move.pass_(session.color)

    def dead_stones(self, session: GameSession) -> frozenset[Point]:
        return frozenset()


async def play(
    tmp_path: Path, white: StuckPolicy, *, main_time_s: int, grace_s: float, body: Any
) -> tuple[GameOutcome, GameService, GameService, list[tuple[str, dict[str, Any]]]]:
    """Black (AiPolicy) challenges white; `body(black_games, game_id)` runs alongside."""
    events: list[tuple[str, dict[str, Any]]] = []
    both_finished = trio.Event()

    def record(name: str, fields: dict[str, Any]) -> None:
        events.append((name, fields))
        if sum(1 for n, _ in events if n == "game_finished") == 2:
            both_finished.set()

    games = [
        GameService(None, policy, grace_s=grace_s, on_event=record)
        for policy in (AiPolicy(seed=1), white)
    ]
    try:
        async with trio.open_nursery() as nursery:
            nodes = []
            for i, service in enumerate(games):
                config = NodeConfig.load(data_dir=tmp_path / f"n{i}")
                node = Node(config, blob_store=MemoryBlobStore(), services=[service])
                await nursery.start(node.run)
                nodes.append(node)
            terms = games[0].new_terms(nodes[1].peer_id, size=5, main_time_s=main_time_s)
            nursery.start_soon(body, games[0], terms.game_id)
            outcome = await games[0].challenge(nodes[1].listen_addrs[0], terms)
            await both_finished.wait()
            nursery.cancel_scope.cancel()
    finally:
        white.release.set()  # let the abandoned worker thread end
    return outcome, games[0], games[1], events


def test_resigning_on_the_opponents_turn_ends_the_game_for_both(tmp_path: Path) -> None:
    white = StuckPolicy()

    async def resign_while_white_thinks(black: GameService, game_id: str) -> None:
        await trio.to_thread.run_sync(white.thinking.wait, 20)
        await black.resign(game_id)  # queued if white's ack of black's move is in flight

    async def main() -> None:
        outcome, black, white_games, events = await play(
            tmp_path, white, main_time_s=0, grace_s=1.0, body=resign_while_white_thinks
        )
        (theirs,) = white_games.outcomes.values()
        assert outcome.phase is theirs.phase is GamePhase.FINISHED
        assert outcome.result == theirs.result == "W+R" and outcome.moves == 2
        b, w = black.sessions[outcome.game_id], white_games.sessions[outcome.game_id]
        assert b.final_record == w.final_record and len(b.signatures) == 2
        assert b.final_record is not None and b.final_record.moves[-1] == Move.resign(Color.BLACK)
        assert any(name == "game_resigning" for name, _ in events)
        assert not any(name == "game_clock" for name, _ in events)  # untimed

    run_trio(main, timeout=40)


def test_a_flag_falls_while_the_opponent_is_still_thinking(tmp_path: Path) -> None:
    white = StuckPolicy()

    async def nothing(black: GameService, game_id: str) -> None:
        return None

    async def main() -> None:
        outcome, black, white_games, events = await play(
            tmp_path, white, main_time_s=1, grace_s=0.1, body=nothing
        )
        (theirs,) = white_games.outcomes.values()
        assert outcome.result == theirs.result == "B+Time" and outcome.moves == 1
        b, w = black.sessions[outcome.game_id], white_games.sessions[outcome.game_id]
        assert b.final_record == w.final_record and len(w.signatures) == 2
        clocks = [fields for name, fields in events if name == "game_clock"]
        assert clocks and clocks[0]["running"] in ("B", "W")
        view = black.clocks(outcome.game_id)
        assert view is not None and view.white_s == 0.0 and view.running is None

    run_trio(main, timeout=40)
