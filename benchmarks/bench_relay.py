"""Relay benchmarks on loopback: blob MB/s direct vs via relay; game move round trips.

In one process (trio): a relay node (hop + directory), a peer B reachable through it,
a peer A that dials B's circuit address (DCUtR off, so it stays relayed) and a peer C
that dials B directly. A 4 MiB blob moves from B over ``/p2pgo/blob/1`` to A (via
the relay) and to C (direct).
Then a 9x9 game is played on one persistent ``/p2pgo/game/1`` stream, relayed and
then direct, against the heuristic AI, and each of our moves is timed from sending
``GameMove`` to receiving its ``GameMoveAck`` (p50/p95). All three nodes share one
CPU-bound process (the relay copies every byte through py-libp2p), so the numbers
are upper bounds for separate machines. Prints JSON lines; runs in about 30 s.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

import trio
from libp2p.peer.id import ID

from net import MemoryBlobStore, Node, NodeConfig
from net._blob import FramedStream
from net._directory import DirectoryService
from net._game import GamePhase, GameSession
from net._game_service import GAME_PROTOCOL, AiPolicy, GameService
from net._relay import RelayClient, RelayService
from net._wire import GameMove, GameMoveAck

BLOB_BYTES = 4 * 1024 * 1024
GAME_MOVES = 60  # per game; about half are ours


async def _timed_game(client: Node, server: Node, games: GameService) -> list[float]:
    """Play one game on one stream; milliseconds from each of our moves to its ack."""
    terms = games.new_terms(client.peer_id, size=9)  # the server's view: it plays black
    terms = type(terms)(terms.game_id, 9, "chinese", 7.5, server.peer_id, client.peer_id)
    key = ID.from_base58(server.peer_id).extract_public_key()
    assert key is not None
    session = GameSession(
        terms, client.peer_id, client.identity.signing_key, key.to_bytes(), challenger=True
    )
    policy = AiPolicy(seed=1, max_moves=GAME_MOVES, playouts=8)
    stream = await client.new_stream(server.peer_id, GAME_PROTOCOL)
    framed = FramedStream(stream)
    await framed.send(terms.challenge_message(client.peer_id))
    rtts: list[float] = []
    sent_at = 0.0
    while session.phase not in (GamePhase.FINISHED, GamePhase.DECLINED):
        message = await framed.receive()
        assert message is not None
        if isinstance(message, GameMoveAck):
            rtts.append((trio.current_time() - sent_at) * 1000)
        for reply in session.receive(message):
            await framed.send(reply)
        if session.my_turn:
            move = policy.choose(session)
            (out,) = session.play(move)
            assert isinstance(out, GameMove)
            sent_at = trio.current_time()
            await framed.send(out)
        elif session.phase is GamePhase.SCORING and session.our_dead is None:
            for reply in session.propose_dead(policy.dead_stones(session)):
                await framed.send(reply)
    await stream.close()
    return rtts


def _summary(name: str, rtts: list[float], path: str) -> str:
    q = statistics.quantiles(rtts, n=20)
    return json.dumps(
        {
            "bench": name,
            "path": path,
            "moves": len(rtts),
            "p50_ms": round(statistics.median(rtts), 2),
            "p95_ms": round(q[18], 2),
        }
    )


async def _bench(root: Path) -> None:
    async with trio.open_nursery() as nursery:
        relay = Node(
            NodeConfig.load(data_dir=root / "relay"),
            blob_store=MemoryBlobStore(),
            services=[RelayService(), DirectoryService()],
        )
        await nursery.start(relay.run)
        relay_addr = relay.listen_addrs[0]
        games = GameService(None, AiPolicy(seed=2, max_moves=GAME_MOVES, playouts=8))
        b_relays = RelayClient([relay_addr], dcutr=False)
        a = Node(
            NodeConfig.load(data_dir=root / "a"),
            blob_store=MemoryBlobStore(),
            services=[RelayClient([relay_addr], dcutr=False)],
        )
        b = Node(
            NodeConfig.load(data_dir=root / "b"),
            blob_store=MemoryBlobStore(),
            services=[b_relays, games],
        )
        # A separate direct peer: `host.connect` returns at once when *any* connection
        # (a relayed one included) exists, so `a` could never add a direct one.
        c = Node(NodeConfig.load(data_dir=root / "c"), blob_store=MemoryBlobStore())
        for node in (a, b, c):
            await nursery.start(node.run)
        await a.connect(b_relays.circuit_addrs[0])
        await c.connect(b.listen_addrs[0])
        for path, client in (("relay", a), ("direct", c)):
            kinds = {
                conn.get_connection_type().value
                for conn in client.host.get_network().get_connections(ID.from_base58(b.peer_id))
            }
            assert kinds == {"relayed" if path == "relay" else "direct"}, kinds
            digest = b.blob_store.put(os.urandom(BLOB_BYTES))
            start = trio.current_time()
            await client.fetch_blob(b.peer_id, digest)
            elapsed = trio.current_time() - start
            print(
                json.dumps(
                    {
                        "bench": "relay_blob_transfer",
                        "path": path,
                        "bytes": BLOB_BYTES,
                        "seconds": round(elapsed, 3),
                        "mb_per_s": round(BLOB_BYTES / elapsed / 1e6, 1),
                    }
                ),
                flush=True,
            )
            rtts = await _timed_game(client, b, games)
            print(_summary("relay_move_round_trip", rtts, path), flush=True)
        nursery.cancel_scope.cancel()


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        trio.run(_bench, Path(root))


if __name__ == "__main__":
    main()
