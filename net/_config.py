"""Node configuration: a TOML file's ``[net]`` table plus overrides (flags).

Defaults work on one machine: listen on loopback with an OS-chosen port, no peers,
no relays, gossipsub tuned for small networks. Every value is checked when the
config is built and a bad one raises `ConfigError` naming the key. Other tables in
the same file (``[relay]``, ``[tui]``) belong to other components and are ignored.

Configured ``peers`` are kept connected: whenever the node holds no connection to
one, it redials it after ``redial_initial_s`` (jittered), doubling the wait after
every attempt up to ``redial_max_s``; the wait starts over once a connection has
lasted ``redial_max_s``. Gossipsub peer exchange (``gossip_px``) is off: a PRUNE's
peer list would otherwise make us dial whatever addresses the pruning peer chose.
For example::

    [net]
    peers = ["/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW..."]
    redial_initial_s = 1.0
    redial_max_s = 60.0
    gossip_px = false
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import multiaddr

from net._errors import ConfigError
from net._wire import MAX_MESSAGE_BYTES

LOOPBACK_LISTEN = "/ip4/127.0.0.1/tcp/0"


def default_data_dir() -> Path:
    """Where a node keeps its key and blobs unless told otherwise (XDG data home)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "p2pgo"


def _multiaddrs(key: str, values: tuple[str, ...], *, need_peer: bool) -> None:
    for value in values:
        try:
            addr = multiaddr.Multiaddr(value)
        except Exception as err:  # the multiaddr parser raises several types
            raise ConfigError(f"{key}: {value!r} is not a multiaddr ({err})") from None
        protocols = {p.name for p in addr.protocols()}
        if need_peer and "p2p" not in protocols:
            raise ConfigError(f"{key}: {value!r} must end with /p2p/<peer id>")
        if not need_peer and "tcp" not in protocols:
            raise ConfigError(f"{key}: {value!r} must be a TCP address, e.g. {LOOPBACK_LISTEN}")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a `Node` needs to know before it starts."""

    data_dir: Path
    listen: tuple[str, ...] = (LOOPBACK_LISTEN,)
    peers: tuple[str, ...] = ()  # multiaddrs with /p2p/ to dial at start
    relays: tuple[str, ...] = ()  # circuit-relay v2 servers (used by the relay layer)
    # Gossipsub: small meshes (2-10 peers) and a 1 s heartbeat (py-libp2p default 120 s).
    # degree_high 6: with a handful of connections per node every peer stays in the
    # mesh. 4 cost ~15% less CPU per announcement (benchmarks/bench_net.py), but a hub
    # with 5-6 peers then prunes some, and a peer whose only link is that hub is left
    # to IHAVE/IWANT gossip on the 1 s heartbeat: p95 630 ms in 1 of 6 quiet runs,
    # against 39-42 ms in 6 of 6 with 6 (docs/benchmarks.md). 3 partitioned the mesh.
    gossip_degree: int = 3
    gossip_degree_low: int = 2
    gossip_degree_high: int = 6
    heartbeat_interval: int = 1
    # py-libp2p drops more than 10 msg/s per *forwarding* peer per topic (own publishes
    # included), which a hub forwarding ten peers' acks exceeds at once.
    gossip_rate_limit: float = 200.0
    max_gossip_bytes: int = 64 * 1024
    clock_skew_s: float = 120.0
    blob_chunk_size: int = 256 * 1024
    blob_streams_per_peer: int = 4
    blob_bytes_per_s: int = 0  # per peer; 0 means unlimited
    # Connection policy. We only dial what we are asked to (configured peers, relays,
    # DCUtR upgrades, games); py-libp2p's background dialer is switched off (see
    # `Node`). These bound what others open to us: above `conn_prune_above`
    # connections the swarm closes the least useful ones (older than its 20 s grace)
    # down to `conn_prune_to`, at `max_connections` it refuses new ones, and one peer
    # may hold `max_connections_per_peer` (relayed + direct + a simultaneous dial).
    max_connections: int = 256
    conn_prune_above: int = 192
    conn_prune_to: int = 128
    max_connections_per_peer: int = 3
    # Redialing configured peers (see the module docstring). `redial_check_s` is only
    # a backstop: a disconnect wakes the keeper at once through the swarm's notifee.
    redial_initial_s: float = 1.0
    redial_max_s: float = 60.0
    redial_check_s: float = 10.0
    # Gossipsub peer exchange, off: with it a PRUNE names up to 16 peers that we then
    # dial, so any peer would choose whom we connect to (see `Node`).
    gossip_px: bool = False

    def __post_init__(self) -> None:
        if not self.listen:
            raise ConfigError("listen: at least one address is needed")
        _multiaddrs("listen", self.listen, need_peer=False)
        _multiaddrs("peers", self.peers, need_peer=True)
        _multiaddrs("relays", self.relays, need_peer=True)
        if not 1 <= self.gossip_degree_low <= self.gossip_degree <= self.gossip_degree_high:
            raise ConfigError(
                "gossip degrees must satisfy 1 <= gossip_degree_low <= gossip_degree "
                f"<= gossip_degree_high, got {self.gossip_degree_low}, "
                f"{self.gossip_degree}, {self.gossip_degree_high}"
            )
        positive: dict[str, float] = {
            "heartbeat_interval": self.heartbeat_interval,
            "gossip_rate_limit": self.gossip_rate_limit,
            "max_gossip_bytes": self.max_gossip_bytes,
            "clock_skew_s": self.clock_skew_s,
            "blob_chunk_size": self.blob_chunk_size,
            "blob_streams_per_peer": self.blob_streams_per_peer,
            "redial_initial_s": self.redial_initial_s,
            "redial_check_s": self.redial_check_s,
        }
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        if not 0 <= self.conn_prune_to <= self.conn_prune_above <= self.max_connections:
            raise ConfigError(
                "connection limits must satisfy 0 <= conn_prune_to <= conn_prune_above "
                f"<= max_connections, got {self.conn_prune_to}, {self.conn_prune_above}, "
                f"{self.max_connections}"
            )
        if self.max_connections < 1 or self.max_connections_per_peer < 1:
            raise ConfigError(
                "max_connections and max_connections_per_peer must be at least 1, got "
                f"{self.max_connections}, {self.max_connections_per_peer}"
            )
        for key in ("redial_initial_s", "redial_max_s", "redial_check_s"):
            if not math.isfinite(getattr(self, key)):
                raise ConfigError(f"{key} must be a finite number of seconds")
        if not self.redial_initial_s <= self.redial_max_s:
            raise ConfigError(
                "redial_max_s must be at least redial_initial_s, got "
                f"{self.redial_max_s} < {self.redial_initial_s}"
            )
        if self.blob_bytes_per_s < 0:
            raise ConfigError(f"blob_bytes_per_s must be >= 0, got {self.blob_bytes_per_s}")
        if self.max_gossip_bytes > MAX_MESSAGE_BYTES // 2:
            raise ConfigError(f"max_gossip_bytes must be at most {MAX_MESSAGE_BYTES // 2}")
        if self.blob_chunk_size > MAX_MESSAGE_BYTES // 2:
            raise ConfigError(f"blob_chunk_size must be at most {MAX_MESSAGE_BYTES // 2}")

    @classmethod
    def load(cls, path: Path | None = None, **overrides: Any) -> NodeConfig:
        """Build from the file at `path` (if any), then `overrides`; None values are skipped.

        A relative ``data_dir`` in the file is taken relative to the file's folder.
        """
        values: dict[str, Any] = {}
        if path is not None:
            try:
                with open(path, "rb") as f:
                    document = tomllib.load(f)
            except OSError as err:
                raise ConfigError(f"cannot read config {path}: {err.strerror}") from None
            except tomllib.TOMLDecodeError as err:
                raise ConfigError(f"config {path} is not valid TOML: {err}") from None
            table = document.get("net", {})
            if not isinstance(table, dict):
                raise ConfigError(f"config {path}: [net] must be a table")
            values.update(table)
            if "data_dir" in values and isinstance(values["data_dir"], str):
                values["data_dir"] = path.parent / Path(values["data_dir"]).expanduser()
        values.update({k: v for k, v in overrides.items() if v is not None})
        values.setdefault("data_dir", default_data_dir())
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NodeConfig:
        """Type-check plain values (as TOML gives them) and build the config."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known: {sorted(fields)}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            default = fields[key].default
            if key == "data_dir":
                if not isinstance(value, str | Path):
                    raise ConfigError("data_dir must be a path string")
                kwargs[key] = Path(value)
            elif isinstance(default, tuple):
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise ConfigError(f"{key} must be a list of multiaddr strings")
                kwargs[key] = tuple(value)
            elif isinstance(default, bool):  # before int: a bool is an int to Python
                if not isinstance(value, bool):
                    raise ConfigError(f"{key} must be true or false, got {value!r}")
                kwargs[key] = value
            elif isinstance(default, float):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{key} must be a number, got {value!r}")
                kwargs[key] = float(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ConfigError(f"{key} must be an integer, got {value!r}")
                kwargs[key] = value
        return cls(**kwargs)
