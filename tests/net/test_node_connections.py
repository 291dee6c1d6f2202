"""The node's connection policy: it dials only what it is asked to, within set limits."""

from __future__ import annotations

from pathlib import Path

import multiaddr
import pytest
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import info_from_p2p_addr

from net import NodeConfig
from net._errors import ConfigError
from tests.net._helpers import run_trio, running_nodes


def test_known_but_unrequested_peers_are_never_dialled(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_nodes(
            tmp_path, 3, max_connections=50, conn_prune_above=40, conn_prune_to=20
        ) as (a, b, c):
            await b.connect(a.listen_addrs[0])
            await c.connect(b.listen_addrs[0])
            # c knows a's address (as py-libp2p learns addresses from peer records on
            # gossip) but nobody asked c to connect to a.
            info = info_from_p2p_addr(multiaddr.Multiaddr(a.listen_addrs[0]))
            c.host.get_peerstore().add_addrs(info.peer_id, info.addrs, 3600)
            swarm = c.host.get_network()
            assert isinstance(swarm, Swarm)
            config = swarm.connection_config
            assert (config.max_connections, config.high_watermark, config.low_watermark) == (
                50,
                40,
                20,
            )
            # What the swarm runs every 30 s and after every disconnect; py-libp2p's own
            # connector would dial a here (1 connection, target ~200).
            await swarm.auto_connector.maybe_connect()
            assert c.connected_peers() == (b.peer_id,)
            # A dropped connection does not make it dial either.
            await c.host.disconnect(ID.from_base58(b.peer_id))
            await swarm.auto_connector.maybe_connect()
            assert c.connected_peers() == ()
            # Explicit dials still work.
            assert await c.connect(a.listen_addrs[0]) == a.peer_id
            assert c.connected_peers() == (a.peer_id,)

    run_trio(main)


def test_connection_limit_defaults_and_toml(tmp_path: Path) -> None:
    config = NodeConfig(data_dir=tmp_path)
    assert config.conn_prune_to <= config.conn_prune_above <= config.max_connections
    assert config.max_connections_per_peer >= 2  # a relayed and a direct connection
    path = tmp_path / "p2pgo.toml"
    path.write_text("[net]\nmax_connections = 64\nconn_prune_above = 48\nconn_prune_to = 32\n")
    loaded = NodeConfig.load(path)
    assert (loaded.max_connections, loaded.conn_prune_above, loaded.conn_prune_to) == (64, 48, 32)


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"conn_prune_to": 10, "conn_prune_above": 5}, "conn_prune_to <= conn_prune_above"),
        ({"conn_prune_above": 300}, "<= max_connections"),
        ({"conn_prune_to": -1}, "0 <= conn_prune_to"),
        (
            {"max_connections": 0, "conn_prune_above": 0, "conn_prune_to": 0},
            "at least 1",
        ),
        ({"max_connections_per_peer": 0}, "at least 1"),
        ({"max_connections": "many"}, "max_connections must be an integer"),
    ],
)
def test_bad_connection_limits_are_named(
    tmp_path: Path, values: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        NodeConfig.from_mapping({"data_dir": str(tmp_path), **values})
