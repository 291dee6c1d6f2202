"""Network benchmarks on loopback: gossip announce latency and blob throughput.

In one process (trio): `PEERS` nodes, each dialling the first node and its
predecessor, announce rounds from node 0; latency is publish-to-delivery per
receiver, p50/p95 over every (announcement, receiver) pair, after a warm-up round
that waits for every peer's ack (so the mesh is formed). Then an 8 MiB blob moves
between two nodes over /p2pgo/blob/1. All nodes share one CPU-bound process, so these
are upper bounds for separate machines. Prints JSON lines; runs in well under 30 s.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

import trio

from net import ANNOUNCE_TOPIC, MemoryBlobStore, Node, NodeConfig, Received, RoundAnnouncement

PEERS = 6
ANNOUNCEMENTS = 25
# py-libp2p spends ~10-20 ms of CPU per message per hop; all peers share this process.
PACING_S = 0.2
BLOB_BYTES = 8 * 1024 * 1024


async def _collect(
    inbox: trio.MemoryReceiveChannel[Received], arrivals: dict[int, list[float]]
) -> None:
    async for received in inbox:
        if isinstance(received.message, RoundAnnouncement):
            arrivals.setdefault(received.message.round_id, []).append(trio.current_time())


async def _ack_all(node: Node, inbox: trio.MemoryReceiveChannel[Received]) -> None:
    async for received in inbox:
        if isinstance(received.message, RoundAnnouncement) and received.message.round_id == 0:
            await node.ack(received)


def _rss_bytes() -> int:
    """Resident memory of this process (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _bench(root: Path) -> None:
    async with trio.open_nursery() as nursery:
        nodes = []
        rss: list[int] = []
        for i in range(PEERS):
            rss.append(_rss_bytes())
            node = Node(NodeConfig.load(data_dir=root / f"n{i}"), blob_store=MemoryBlobStore())
            await nursery.start(node.run)
            nodes.append(node)
        for i, node in enumerate(nodes[1:], start=1):
            await node.connect(nodes[0].listen_addrs[0])
            if i > 1:
                await node.connect(nodes[i - 1].listen_addrs[0])
        rss.append(_rss_bytes())
        # The first node pays for imports and shared state; later ones show the marginal cost.
        per_peer = (rss[-1] - rss[1]) / max(1, PEERS - 1)
        print(
            json.dumps(
                {
                    "bench": "net_memory_per_peer",
                    "peers": PEERS,
                    "first_node_mib": round((rss[1] - rss[0]) / 2**20, 1),
                    "per_additional_peer_mib": round(per_peer / 2**20, 2),
                    "process_rss_mib": round(rss[-1] / 2**20, 1),
                }
            ),
            flush=True,
        )
        arrivals: dict[int, list[float]] = {}
        await nodes[0].subscribe(ANNOUNCE_TOPIC)
        for node in nodes[1:]:
            nursery.start_soon(_collect, await node.subscribe(ANNOUNCE_TOPIC), arrivals)
            nursery.start_soon(_ack_all, node, await node.subscribe(ANNOUNCE_TOPIC))
        warm = RoundAnnouncement(0, b"\x00" * 32, 1)
        with trio.fail_after(20):
            await nodes[0].announce_until_acked(ANNOUNCE_TOPIC, warm, expected=PEERS - 1)
        sent: dict[int, float] = {}
        for round_id in range(1, ANNOUNCEMENTS + 1):
            sent[round_id] = trio.current_time()
            await nodes[0].publish(ANNOUNCE_TOPIC, RoundAnnouncement(round_id, b"\x01" * 32, 2))
            await trio.sleep(PACING_S)  # pacing, so one process's CPU is not saturated
        with trio.move_on_after(3):
            while any(len(arrivals.get(r, ())) < PEERS - 1 for r in sent):
                await trio.sleep(0.05)
        latencies = [(t - sent[r]) * 1000 for r in sent for t in arrivals.get(r, ())]
        delivered = len(latencies)
        expected = ANNOUNCEMENTS * (PEERS - 1)
        quantiles = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [0.0] * 19
        print(
            json.dumps(
                {
                    "bench": "net_announce_latency",
                    "peers": PEERS,
                    "announcements": ANNOUNCEMENTS,
                    "delivered": delivered,
                    "expected": expected,
                    "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
                    "p95_ms": round(quantiles[18], 2),
                    "processes": 1,
                    "interval_ms": PACING_S * 1000,
                }
            ),
            flush=True,
        )

        a, b = nodes[0], nodes[1]
        digest = a.blob_store.put(os.urandom(BLOB_BYTES))
        start = trio.current_time()
        await b.fetch_blob(a.peer_id, digest)
        elapsed = trio.current_time() - start
        print(
            json.dumps(
                {
                    "bench": "net_blob_transfer",
                    "bytes": BLOB_BYTES,
                    "seconds": round(elapsed, 3),
                    "mb_per_s": round(BLOB_BYTES / elapsed / 1e6, 1),
                    "chunk_bytes": a.config.blob_chunk_size,
                }
            ),
            flush=True,
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        trio.run(_bench, Path(root))


if __name__ == "__main__":
    main()
