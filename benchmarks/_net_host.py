"""Benchmark helper: one OS process hosting several `Node`s for the announce-latency run.

`benchmarks/bench_net.py` starts two or three of these on loopback. Each prints JSON
lines on stdout: ``listening`` per node; every node acks round 0 (the warm-up that
proves the mesh reaches everyone) and records the wall-clock arrival time
(`time.time()`: all processes share the machine's clock) of every later round. A
stdin line ``publish N INTERVAL ACKS`` makes node 0 announce round 0 until ACKS peers
acked it (``warm``), then publish rounds 1..N every INTERVAL seconds (``sent``, with
the publish times). On stdin EOF every process prints ``arrivals`` (per node: round
id -> time, how many peers it is connected to by then and how many gossip messages
its validator rejected, by reason) and exits; printing only
then keeps stdout writes out of the measured path. With ``--profile PATH`` a stdin line
``profile`` starts cProfile (after the warm-up, so only the measured run is profiled)
and the stats go to PATH at EOF.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import sys
import time
from pathlib import Path

import trio

from net import (
    Identity,
    MemoryBlobStore,
    Node,
    NodeConfig,
    Received,
    Rejection,
    RoundAnnouncement,
)
from net._node import ANNOUNCE_TOPIC

ACK_EVERY_S = 2.0
SETTLE_S = 2.0  # after the warm-up, so its gossip has drained before we measure


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _listen(
    node: Node, inbox: trio.MemoryReceiveChannel[Received], arrivals: dict[int, float]
) -> None:
    last_ack = -ACK_EVERY_S
    async for received in inbox:
        now = time.time()  # first thing: the delivery time is what we measure
        message = received.message
        if received.sender == node.public_key or not isinstance(message, RoundAnnouncement):
            continue
        arrivals.setdefault(message.round_id, now)
        # Re-announces mean an ack was lost, but acking each one floods a slow mesh
        # with acks (each costs every node CPU) and the backlog spills into the run.
        if message.round_id == 0 and now - last_ack >= ACK_EVERY_S:
            last_ack = now
            await node.ack(received)


async def _commands(node: Node, nursery: trio.Nursery, profiler: cProfile.Profile | None) -> None:
    """Read stdin lines until EOF; ``publish N INTERVAL ACKS`` starts the publisher,
    ``profile`` starts the profiler (if any)."""
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    buffer = b""
    while chunk := await stdin.receive_some(1024):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            verb, *rest = line.decode().split()
            if verb == "publish":
                count, interval, acks = int(rest[0]), float(rest[1]), int(rest[2])
                nursery.start_soon(_publish, node, count, interval, acks)
            elif verb == "profile" and profiler is not None:
                profiler.enable()


async def _publish(node: Node, count: int, interval: float, acks: int) -> None:
    warm = RoundAnnouncement(0, bytes(32), 1)
    started = time.time()
    with trio.move_on_after(60):
        await node.announce_until_acked(ANNOUNCE_TOPIC, warm, expected=acks, interval=2.0)
    ackers = len(node.acks_for(warm))
    _emit("warm", ackers=ackers, seconds=round(time.time() - started, 3), publisher=node.peer_id)
    await trio.sleep(SETTLE_S)
    sent: dict[int, float] = {}
    returned: dict[int, float] = {}  # when publish() came back (signing + sends to the mesh)
    for round_id in range(1, count + 1):
        sent[round_id] = time.time()
        await node.publish(ANNOUNCE_TOPIC, RoundAnnouncement(round_id, b"\x01" * 32, 2))
        returned[round_id] = time.time()
        await trio.sleep(interval)  # the publishing rate under test, not sequencing
    _emit("sent", times=sent, returned=returned)


async def _run(args: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        arrivals: list[dict[int, float]] = []
        for i in range(args.nodes):
            data_dir = Path(args.data_dir) / f"node{i}"
            local = [str(a) for n in nodes for a in n.listen_addrs[:1]]
            config = NodeConfig.load(
                None,
                data_dir=data_dir,
                listen=("/ip4/127.0.0.1/tcp/0",),
                peers=tuple(args.connect) + tuple(local) or None,
                gossip_degree=args.degree,
                gossip_degree_low=args.degree_low,
                gossip_degree_high=args.degree_high,
            )
            node = Node(config, Identity.load_or_create(data_dir), blob_store=MemoryBlobStore())
            await nursery.start(node.run)
            arrivals.append({})
            nursery.start_soon(_listen, node, await node.subscribe(ANNOUNCE_TOPIC), arrivals[i])
            nodes.append(node)
            _emit("listening", node=i, peer_id=node.peer_id, addrs=list(node.listen_addrs))
        profiler = cProfile.Profile() if args.profile else None
        async with trio.open_nursery() as publishers:
            await _commands(nodes[0], publishers, profiler)
            publishers.cancel_scope.cancel()
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        _emit(
            "arrivals",
            nodes=[
                {
                    "peer_id": n.peer_id,
                    "times": a,
                    "peers": len(n.connected_peers()),
                    # Gossip our validator refused, by reason (a REPLAY is a late copy).
                    "rejected": {r.value: n.stats.rejections.total(r) for r in Rejection},
                }
                for n, a in zip(nodes, arrivals, strict=True)
            ],
        )
        nursery.cancel_scope.cancel()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--connect", action="append", default=[])
    p.add_argument("--degree", type=int)
    p.add_argument("--degree-low", type=int)
    p.add_argument("--degree-high", type=int)
    p.add_argument("--profile", help="write cProfile stats of the measured run here")
    trio.run(_run, p.parse_args())


if __name__ == "__main__":
    main()
