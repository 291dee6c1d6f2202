"""The asyncio bridge, driven by a plain asyncio program (and a Textual app)."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

import pytest

from net import (
    ANNOUNCE_TOPIC,
    BridgeClosed,
    MemoryBlobStore,
    NetBridge,
    NetError,
    Node,
    NodeConfig,
    Received,
    RoundAnnouncement,
)

ROUND = RoundAnnouncement(round_id=1, model_version=b"\x22" * 32, min_participants=1)


def _node(tmp_path: Path, name: str) -> Node:
    return Node(NodeConfig.load(data_dir=tmp_path / name), blob_store=MemoryBlobStore())


def test_two_bridged_nodes_announce_and_ack_from_asyncio(tmp_path: Path) -> None:
    async def main() -> None:
        loop_thread = threading.get_ident()
        inbox: asyncio.Queue[Received] = asyncio.Queue()
        event_threads: set[int] = set()

        def on_event(received: Received) -> None:
            event_threads.add(threading.get_ident())
            inbox.put_nowait(received)

        a = NetBridge(_node(tmp_path, "a"))
        b = NetBridge(_node(tmp_path, "b"), on_event=on_event)
        await asyncio.gather(a.start(), b.start())
        try:
            addr = b.node.listen_addrs[0]
            assert await a.call(lambda n: n.connect(addr)) == b.node.peer_id
            await b.subscribe(ANNOUNCE_TOPIC)
            await a.call(lambda n: n.subscribe(ANNOUNCE_TOPIC))

            async def answer() -> None:
                while True:
                    received = await inbox.get()
                    if received.message == ROUND:
                        await b.call(functools.partial(Node.ack, received=received))

            answering = asyncio.create_task(answer())
            ackers = await asyncio.wait_for(
                a.call(lambda n: n.announce_until_acked(ANNOUNCE_TOPIC, ROUND, expected=1)), 20
            )
            answering.cancel()
            assert ackers == {b.node.public_key}
            assert event_threads == {loop_thread}  # events run on the asyncio loop

            async def boom(node: Node) -> None:
                raise ValueError("from trio")

            with pytest.raises(ValueError, match="from trio"):
                await a.call(boom)
            assert a.running
        finally:
            await asyncio.wait_for(asyncio.gather(a.stop(), b.stop()), 10)
        assert not a.running and not b.running
        with pytest.raises(BridgeClosed):
            await a.call(lambda n: n.connect(addr))
        await a.stop()  # idempotent

    asyncio.run(main())


def test_a_node_that_cannot_start_fails_start(tmp_path: Path) -> None:
    async def main() -> None:
        config = NodeConfig.load(data_dir=tmp_path, listen=("/ip4/192.0.2.1/tcp/1",))
        bridge = NetBridge(Node(config, blob_store=MemoryBlobStore()))
        with pytest.raises(NetError, match="could not listen"):
            await asyncio.wait_for(bridge.start(), 20)
        assert not bridge.running

    asyncio.run(main())


def test_a_textual_app_runs_a_bridge_under_pilot(tmp_path: Path) -> None:
    textual_app = pytest.importorskip("textual.app")
    from textual.widgets import Static

    class NetApp(textual_app.App[None]):  # type: ignore[name-defined,misc]
        def __init__(self, bridge: NetBridge) -> None:
            super().__init__()
            self.bridge = bridge

        def compose(self):  # type: ignore[no-untyped-def]
            yield Static("starting", id="status")

        async def on_mount(self) -> None:
            await self.bridge.start()
            self.query_one("#status", Static).update(f"peer {self.bridge.node.peer_id}")

        async def on_unmount(self) -> None:
            await self.bridge.stop()

    async def main() -> None:
        bridge = NetBridge(_node(tmp_path, "tui"))
        app = NetApp(bridge)
        async with app.run_test() as pilot:
            await pilot.pause()
            assert bridge.running
            peers = await bridge.call(lambda n: _connected(n))
            assert peers == ()
            status = app.query_one("#status", Static)
            assert bridge.node.peer_id in str(status.render())
        assert not bridge.running

    asyncio.run(main())


async def _connected(node: Node) -> tuple[str, ...]:
    return node.connected_peers()
