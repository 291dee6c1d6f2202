"""Test helper: one process hosting several `Node`s for the ten-peer gossip test.

Prints JSON lines: ``listening`` per node, ``announcement`` when a node first receives
the round announcement, ``acked`` / ``announce_timeout`` for the announcing node.
Exits when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from net import Identity, Node, NodeConfig, Received, RoundAnnouncement
from net._node import ANNOUNCE_TOPIC


def _emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


async def _listen(index: int, node: Node, inbox: trio.MemoryReceiveChannel[Received]) -> None:
    seen = False
    async for received in inbox:
        message = received.message
        if received.sender == node.public_key or not isinstance(message, RoundAnnouncement):
            continue
        if not seen:
            seen = True
            _emit("announcement", node=index, round_id=message.round_id, peer_id=node.peer_id)
        await node.ack(received)  # every time: a re-announce means our ack was lost


async def _eof() -> None:
    stdin = trio.lowlevel.FdStream(sys.stdin.fileno())
    while await stdin.receive_some(1024):
        pass


async def _run(args: argparse.Namespace) -> None:
    async with trio.open_nursery() as nursery:
        nodes: list[Node] = []
        for i in range(args.nodes):
            data_dir = Path(args.data_dir) / f"node{i}"
            local = [str(a) for n in nodes for a in n.listen_addrs[:1]]
            config = NodeConfig.load(
                None,
                data_dir=data_dir,
                listen=("/ip4/127.0.0.1/tcp/0",),
                peers=tuple(args.connect) + tuple(local) or None,
            )
            node = Node(config, Identity.load_or_create(data_dir))
            await nursery.start(node.run)
            inbox = await node.subscribe(ANNOUNCE_TOPIC)
            nursery.start_soon(_listen, i, node, inbox)
            nodes.append(node)
            _emit("listening", node=i, peer_id=node.peer_id, addrs=list(node.listen_addrs))
        if args.announce is not None:
            message = RoundAnnouncement(args.announce, bytes(32), 1)
            with trio.move_on_after(args.timeout):
                ackers = await nodes[0].announce_until_acked(
                    ANNOUNCE_TOPIC, message, expected=args.expect_acks
                )
                _emit("acked", ackers=len(ackers))
            if not nodes[0].acks_for(message) or len(nodes[0].acks_for(message)) < args.expect_acks:
                _emit("announce_timeout", ackers=len(nodes[0].acks_for(message)))
        await _eof()
        nursery.cancel_scope.cancel()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, required=True)
    p.add_argument("--data-dir", required=True)
    p.add_argument("--connect", action="append", default=[])
    p.add_argument("--announce", type=int)
    p.add_argument("--expect-acks", type=int, default=1)
    p.add_argument("--timeout", type=float, default=45.0)
    p.add_argument(
        "--exit-on-stdin-eof", action="store_true"
    )  # always so; tests.net._procs passes it
    trio.run(_run, p.parse_args())


if __name__ == "__main__":
    main()
