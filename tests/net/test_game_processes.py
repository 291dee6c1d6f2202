"""Peer-to-peer games between real `p2pgo-peer` processes on loopback."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trio

from engine import GameStore
from net import Identity, MemoryBlobStore, Node, NodeConfig
from net._blob import FramedStream
from net._game import GameTerms
from net._game_service import GAME_PROTOCOL
from net._wire import (
    GameAccept,
    GameMove,
    GameMoveAck,
    GameMoveRejected,
    GameSignature,
)
from tests.net._helpers import run_trio
from tests.net.test_relay_processes import Proc, processes

GAME = ["--size", "5", "--max-moves", "14"]


def stored_signers(data_dir: Path, record_id: str) -> set[bytes]:
    identity = Identity.load(data_dir / "identity.key")
    with GameStore(data_dir / "gamestore", identity.signing_key) as store:
        return {key for key, _ in store.signatures(record_id)}


@pytest.mark.slow
def test_two_peers_play_a_whole_game_directly_and_both_store_it(tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    with processes() as started:
        host = Proc("net.peer", tmp_path / "host", *GAME, "--play")
        started.append(host)
        up = host.wait_for("listening", deadline)
        guest = Proc(
            "net.peer",
            tmp_path / "guest",
            *GAME,
            "--challenge",
            up["peer_id"],
            "--challenge-addr",
            up["addrs"][0],
        )
        started.append(guest)
        done = guest.wait_for("challenge_done", deadline)
        theirs = host.wait_for("game_finished", deadline)
        ours = guest.wait_for("game_finished", deadline)
        assert done["phase"] == "finished" and done["resumes"] == 0
        assert ours["record_id"] == theirs["record_id"] == done["record_id"]
        assert ours["result"] == theirs["result"] and ours["result"][:2] in ("B+", "W+")
        assert ours["connections"] == ["direct"]
        assert ours["moves"] >= 14
        assert all(p.stop() == 0 for p in started)
    keys = {Identity.load(tmp_path / d / "identity.key").public_key for d in ("host", "guest")}
    for d in ("host", "guest"):
        assert stored_signers(tmp_path / d, done["record_id"]) == keys


@pytest.mark.slow
def test_a_dropped_connection_mid_game_resumes_by_chain_head(tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    with processes() as started:
        # The host cuts the whole connection once the game has 6 moves.
        host = Proc("net.peer", tmp_path / "host", *GAME, "--play", "--drop-after-moves", "6")
        started.append(host)
        up = host.wait_for("listening", deadline)
        guest = Proc(
            "net.peer",
            tmp_path / "guest",
            *GAME,
            "--challenge",
            up["peer_id"],
            "--challenge-addr",
            up["addrs"][0],
        )
        started.append(guest)
        assert host.wait_for("game_dropping", deadline)["moves"] >= 6
        resuming = guest.wait_for("game_resuming", deadline)
        resumed = host.wait_for("game_resumed", deadline)
        assert abs(resuming["moves"] - resumed["moves"]) <= 1  # one move may be in flight
        done = guest.wait_for("challenge_done", deadline)
        theirs = host.wait_for("game_finished", deadline)
        assert done["phase"] == "finished" and done["resumes"] >= 1
        assert theirs["record_id"] == done["record_id"] and theirs["resumes"] >= 1
        assert all(p.stop() == 0 for p in started)
    assert len(stored_signers(tmp_path / "host", done["record_id"])) == 2


@pytest.mark.slow
def test_illegal_and_out_of_turn_moves_are_rejected_by_a_real_peer(tmp_path: Path) -> None:
    deadline = time.monotonic() + 60
    with processes() as started:
        host = Proc("net.peer", tmp_path / "host", *GAME, "--play")
        started.append(host)
        up = host.wait_for("listening", deadline)
        replies: list[object] = []

        async def hostile() -> None:
            node = Node(
                NodeConfig.load(data_dir=tmp_path / "hostile"), blob_store=MemoryBlobStore()
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                await node.connect(up["addrs"][0])
                # The host plays black and moves first; we play white.
                terms = GameTerms("hostile-game", 5, "chinese", 0.5, up["peer_id"], node.peer_id)
                stream = await node.new_stream(up["peer_id"], GAME_PROTOCOL)
                framed = FramedStream(stream)
                await framed.send(terms.challenge_message(node.peer_id))
                assert await framed.receive() == GameAccept("hostile-game")
                first = await framed.receive()
                assert isinstance(first, GameMove) and first.move_kind == 0
                record = terms.record()
                await framed.send(GameMoveAck("hostile-game", 1, _after(record, first)))
                head = _after(record, first)
                for bad in (
                    GameMove("hostile-game", 2, 2, 0, first.row, first.col, head),  # occupied
                    GameMove("hostile-game", 2, 1, 0, 0, 0, head),  # black's stone: not ours
                    GameMove("hostile-game", 3, 2, 0, 0, 0, head),  # skips a move
                    GameMove("hostile-game", 2, 2, 0, 0, 0, bytes(32)),  # off our chain
                ):
                    await framed.send(bad)
                    replies.append(await framed.receive())
                # Still in play: a resignation (legal) ends it and the host signs.
                await framed.send(GameMove("hostile-game", 2, 2, 2, 0, 0, head))
                assert isinstance(await framed.receive(), GameMoveAck)
                assert isinstance(await framed.receive(), GameSignature)
                await stream.reset()
                nursery.cancel_scope.cancel()

        run_trio(hostile, timeout=40)
        reasons = [r.reason for r in replies if isinstance(r, GameMoveRejected)]
        assert len(reasons) == 4
        assert "occupied" in reasons[0]
        assert "you play white" in reasons[1]
        assert "expected move 2" in reasons[2]
        assert "chain head" in reasons[3]
        events = [host.wait_for("game_move_rejected", deadline)["reason"] for _ in range(4)]
        assert events == reasons
        assert host.stop() == 0


def _after(record: object, move: GameMove) -> bytes:
    from engine import Color, GameRecord
    from engine import Move as EngineMove

    assert isinstance(record, GameRecord)
    return record.with_move(EngineMove.play(Color(move.color), (move.row, move.col))).head
