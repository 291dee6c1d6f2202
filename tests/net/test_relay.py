"""Relay, reservations, directory and metrics between in-process nodes (fast)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from net import MemoryBlobStore, NetError, Node, NodeConfig
from net._directory import Directory, DirectoryClient, DirectoryError, DirectoryService
from net._errors import ConfigError, ProtocolError
from net._metrics import RelayMetrics
from net._relay import RelayClient, RelayError, RelayLimitsConfig, RelayService
from net._wire import DirectoryRegister
from tests.net._helpers import run_trio

CIRCUIT = "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWLRVLDBbjUqTUyRgBtvaEh7yu3tvHx7UgxMDAvtwHpUgJ"


def test_directory_entries_expire_and_are_bounded() -> None:
    now = [100.0]
    table = Directory(max_entries=2, max_ttl_s=60, clock=lambda: now[0])
    assert table.register("p1", DirectoryRegister((CIRCUIT,), "a", 10)).ttl_s == 10
    assert (
        table.register("p2", DirectoryRegister((f"{CIRCUIT}/p2p-circuit",), "b", 999)).ttl_s == 60
    )
    assert [e.peer_id for e in table.list(10)] == ["p2", "p1"]  # newest first
    with pytest.raises(DirectoryError, match="full"):
        table.register("p3", DirectoryRegister((CIRCUIT,), "c", 10))
    with pytest.raises(ProtocolError, match="not a multiaddr"):
        table.register("p1", DirectoryRegister(("nonsense",), "a", 10))
    with pytest.raises(ProtocolError, match="neither"):
        table.register("p1", DirectoryRegister(("/ip4/1.2.3.4/udp/5",), "a", 10))
    entry = table.lookup("p1")
    assert entry is not None and entry.addrs == (CIRCUIT,) and entry.expires_in_s == 10
    now[0] += 11
    assert table.lookup("p1") is None and len(table) == 1
    assert table.register("p3", DirectoryRegister((CIRCUIT,), "c", 10)).ttl_s == 10


def test_relay_limits_are_checked() -> None:
    with pytest.raises(ConfigError, match="max_reservations"):
        RelayLimitsConfig(max_reservations=0)
    with pytest.raises(ConfigError, match="circuit_bytes"):
        RelayLimitsConfig(circuit_bytes=-1)
    limits = RelayLimitsConfig(max_reservations=3, circuit_bytes=5).to_libp2p()
    assert (limits.max_reservations, limits.data) == (3, 5)


def test_reservations_circuits_directory_and_metrics(tmp_path: Path) -> None:
    data = os.urandom(600_000)

    async def main() -> None:
        relay_service = RelayService(RelayLimitsConfig(max_reservations=2, reservation_ttl_s=2))
        directory = DirectoryService()
        async with trio.open_nursery() as nursery:
            relay = Node(
                NodeConfig.load(data_dir=tmp_path / "relay"),
                blob_store=MemoryBlobStore(),
                services=[relay_service, directory],
            )
            await nursery.start(relay.run)
            metrics = RelayMetrics(relay, relay_service, directory)
            relay_addr = relay.listen_addrs[0]
            clients, nodes = [], []
            for name in ("a", "b", "c"):
                client = RelayClient([relay_addr], dcutr=False, check_interval=0.2)
                node = Node(
                    NodeConfig.load(data_dir=tmp_path / name),
                    blob_store=MemoryBlobStore(),
                    services=[client],
                )
                await nursery.start(node.run)
                clients.append(client)
                nodes.append(node)
            a, b, c = nodes
            # Two reservations fit; the third is refused (and retried in the background).
            assert len(clients[0].circuit_addrs) == len(clients[1].circuit_addrs) == 1
            assert clients[2].circuit_addrs == ()
            assert relay_service.stats.refused["reservation_limit"] >= 1
            assert relay_service.active_reservations() == 2
            # A 2 s TTL is refreshed every second, so b stays reachable past it.
            with trio.fail_after(10):
                while clients[1].refreshes < 3:
                    await trio.sleep(0.1)
            # b registers its circuit address; a finds it and dials through the relay.
            b_dir = DirectoryClient(b, relay.peer_id)
            assert await b_dir.register(clients[1].circuit_addrs, "test", 30) == 30
            with pytest.raises(DirectoryError, match="refused"):
                await b_dir.register(("garbage",), "test", 30)
            found = await DirectoryClient(a, relay.peer_id).lookup(b.peer_id)
            assert found is not None and "/p2p-circuit/" in found.addrs[0]
            assert await DirectoryClient(c, relay.peer_id).lookup("nobody") is None
            assert [e.peer_id for e in await DirectoryClient(c, relay.peer_id).list()] == [
                b.peer_id
            ]
            assert await a.connect(found.addrs[0]) == b.peer_id
            assert not clients[0].is_direct(b.peer_id)
            digest = b.blob_store.put(data)
            assert await a.fetch_blob(b.peer_id, digest) == len(data)
            assert relay_service.stats.circuits_opened == 1
            assert relay_service.stats.bytes_relayed > len(data)
            # Metrics read the same numbers (sampled on this thread).
            metrics.sample()
            value = metrics.registry.get_sample_value
            assert value("p2pgo_relay_circuits_opened_total") == 1
            assert (value("p2pgo_relay_bytes_relayed_total") or 0) > len(data)
            assert value("p2pgo_relay_reservations_active") == 2
            assert value("p2pgo_relay_rejections_total", {"reason": "reservation_limit"})
            assert value("p2pgo_relay_rejections_total", {"reason": "directory_bad_address"}) == 1
            assert value("p2pgo_relay_directory_entries") == 1
            count = value("p2pgo_relay_handler_seconds_count", {"handler": "directory_request"})
            assert count is not None and count >= 4
            # Circuit addresses need a relay client; a malformed one is a clear error.
            with pytest.raises(NetError, match="no relay client"):
                await relay.connect(found.addrs[0])
            with pytest.raises(RelayError, match="not <relay multiaddr>"):
                await a.connect(f"{relay_addr}/p2p-circuit")
            nursery.cancel_scope.cancel()

    run_trio(main, timeout=60)
