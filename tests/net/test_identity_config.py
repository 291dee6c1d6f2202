"""Identity key files and node configuration."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from libp2p.peer.id import ID
from nacl.signing import VerifyKey

from net._config import LOOPBACK_LISTEN, NodeConfig
from net._errors import ConfigError, IdentityError
from net._identity import KEY_FILE, Identity


def test_identity_is_created_private_and_reloaded(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = Identity.load_or_create(data)
    path = data / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes() == first.seed
    assert [p.name for p in data.iterdir()] == [KEY_FILE]  # no temporary left behind
    again = Identity.load_or_create(data)
    assert again.seed == first.seed
    assert again.peer_id == first.peer_id


def test_one_key_for_libp2p_and_nacl(tmp_path: Path) -> None:
    ident = Identity.load_or_create(tmp_path)
    pair = ident.libp2p_key_pair()
    assert pair.public_key.to_bytes() == ident.public_key
    sig = pair.private_key.sign(b"msg")
    VerifyKey(ident.public_key).verify(b"msg", sig)  # raises if the keys differ
    assert ident.peer_id == ID.from_pubkey(pair.public_key).to_base58()
    assert ident.peer_id.startswith("12D3KooW")  # an Ed25519 peer id


def test_a_readable_key_file_is_refused(tmp_path: Path) -> None:
    Identity.load_or_create(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        Identity.load_or_create(tmp_path)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_key_file_of_the_wrong_length_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / KEY_FILE
    path.write_bytes(b"\x01" * size)
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="expected 32"):
        Identity.load_or_create(tmp_path)


def test_a_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere"
    real.write_bytes(b"\x01" * 32)
    os.chmod(real, 0o600)
    (tmp_path / KEY_FILE).symlink_to(real)
    with pytest.raises(IdentityError, match="cannot open"):
        Identity.load_or_create(tmp_path)


def test_config_defaults_work_on_loopback(tmp_path: Path) -> None:
    cfg = NodeConfig.load(data_dir=tmp_path)
    assert cfg.listen == (LOOPBACK_LISTEN,)
    assert cfg.peers == ()
    assert cfg.heartbeat_interval == 1
    assert cfg.data_dir == tmp_path


def test_config_from_toml_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "p2pgo.toml"
    path.write_text(
        "[net]\n"
        'data_dir = "node-a"\n'
        'listen = ["/ip4/127.0.0.1/tcp/4001"]\n'
        "gossip_degree = 4\n"
        "gossip_degree_high = 8\n"
        "clock_skew_s = 30\n"
        "[relay]\n"
        "anything = 1\n"
    )
    cfg = NodeConfig.load(path, gossip_degree=None, blob_streams_per_peer=2)
    assert cfg.data_dir == tmp_path / "node-a"
    assert cfg.listen == ("/ip4/127.0.0.1/tcp/4001",)
    assert (cfg.gossip_degree, cfg.gossip_degree_high) == (4, 8)
    assert cfg.clock_skew_s == 30.0
    assert cfg.blob_streams_per_peer == 2


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"colour": "blue"}, "unknown config keys"),
        ({"listen": []}, "at least one"),
        ({"listen": ["not an address"]}, "not a multiaddr"),
        ({"listen": ["/ip4/127.0.0.1/udp/1"]}, "TCP address"),
        ({"peers": ["/ip4/127.0.0.1/tcp/1"]}, "/p2p/"),
        ({"listen": "/ip4/127.0.0.1/tcp/0"}, "list of multiaddr"),
        ({"gossip_degree": 10}, "gossip degrees"),
        ({"gossip_degree": True}, "integer"),
        ({"clock_skew_s": "soon"}, "number"),
        ({"heartbeat_interval": 0}, "positive"),
        ({"blob_bytes_per_s": -1}, ">= 0"),
        ({"blob_chunk_size": 4 * 1024 * 1024}, "at most"),
    ],
)
def test_bad_config_values_are_named(
    tmp_path: Path, values: dict[str, object], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle):
        NodeConfig.from_mapping({"data_dir": str(tmp_path), **values})


def test_bad_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        NodeConfig.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[net\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        NodeConfig.load(bad)
    bad.write_text("net = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        NodeConfig.load(bad)
