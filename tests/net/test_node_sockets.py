"""A node closes every TCP socket it opened or accepted when it stops, including
connections still in their handshake (py-libp2p leaves those to the garbage collector
when its tasks are cancelled: a ResourceWarning, and the peer waits for nothing)."""

from __future__ import annotations

from pathlib import Path

import trio

from net import MemoryBlobStore, Node, NodeConfig
from tests.net._helpers import run_trio


def _tcp_port(addr: str) -> int:
    parts = addr.split("/")
    return int(parts[parts.index("tcp") + 1])


def test_a_connection_stuck_in_its_handshake_is_closed_when_the_node_stops(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        node = Node(NodeConfig.load(data_dir=tmp_path / "n"), blob_store=MemoryBlobStore())
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            port = _tcp_port(node.listen_addrs[0])
            # A client that connects and never says a word: the node's side waits in
            # its protocol negotiation.
            clients = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(3)]
            await trio.sleep(0.2)  # let the node accept them
            nursery.cancel_scope.cancel()
        # The node has stopped: every client sees its connection closed (end of
        # stream or a reset), not silence.
        for client in clients:
            with trio.fail_after(5):
                try:
                    while await client.receive_some(4096):
                        pass  # what the node sent before it closed (its negotiation)
                except trio.BrokenResourceError:
                    pass  # a reset is a close too
            await client.aclose()

    run_trio(main)
