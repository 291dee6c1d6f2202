"""``/p2pgo/fl/1`` framing, model codecs and the coordinator's defences against bad peers."""

from __future__ import annotations

import struct
from pathlib import Path

import blake3
import cbor2
import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from fl import Sampling, encode_tensors
from net import ConfigError, Identity, MemoryBlobStore, Node, NodeConfig
from net._fl_coordinator import FlCoordinatorService
from net._fl_participant import FlParticipantService
from net._fl_protocol import (
    FL_PROTOCOL,
    EphemeralBlobStore,
    FlFrameError,
    FlHello,
    FlModel,
    FlRound,
    FlStream,
    GoModelCodec,
    ModelError,
    TensorCodec,
    blob_version,
    decode_frame,
    encode_frame,
    key_of_peer,
    load_model,
    peer_of_key,
)
from net._fl_records import RoundSettings, load_coordinator_state
from tests.net._helpers import run_trio
from tests.net.test_fl_round import PullTrainer

VERSION = "ab" * 32
FRAMES = [
    FlHello("", ""),
    FlHello(VERSION, "p2pgo-model"),
    FlModel(VERSION, "p2pgo-tensors"),
    FlRound(b"\xa1ax\x01"),
]


@pytest.mark.parametrize("frame", FRAMES)
def test_frames_round_trip_in_one_canonical_form(frame: FlHello | FlModel | FlRound) -> None:
    data = encode_frame(frame)
    assert decode_frame(data) == frame
    assert cbor2.dumps(cbor2.loads(data), canonical=True) == data


@pytest.mark.parametrize(
    "doc",
    [
        {"v": 2, "kind": "fl_round", "msg": b"x"},
        {"v": True, "kind": "fl_round", "msg": b"x"},
        {"v": 1, "kind": "fl_round", "msg": "text"},
        {"v": 1, "kind": "fl_round", "msg": b""},
        {"v": 1, "kind": "fl_round", "msg": b"x", "extra": 1},
        {"v": 1, "kind": "fl_model", "model": "", "format": "p2pgo-model"},
        {"v": 1, "kind": "fl_model", "model": "AB" * 32, "format": "p2pgo-model"},
        {"v": 1, "kind": "fl_hello", "model": VERSION, "format": "x" * 33},
        {"v": 1, "kind": "fl_nope"},
        [1, 2, 3],
    ],
)
def test_malformed_frames_are_one_error_type(doc: object) -> None:
    with pytest.raises(FlFrameError):
        decode_frame(cbor2.dumps(doc, canonical=True))


def test_non_canonical_frames_are_refused() -> None:
    data = cbor2.dumps({"msg": b"x", "kind": "fl_round", "v": 1})  # keys out of order
    assert data != encode_frame(FlRound(b"x"))
    with pytest.raises(FlFrameError, match="canonical"):
        decode_frame(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.sampled_from(FRAMES).map(encode_frame)), st.data())
def test_the_frame_decoder_returns_a_frame_or_raises_its_error(
    data: bytes, draw: st.DataObject
) -> None:
    if data and draw.draw(st.booleans()):
        at = draw.draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([draw.draw(st.integers(0, 255))]) + data[at + 1 :]
    try:
        frame = decode_frame(data)
    except FlFrameError:
        return
    assert encode_frame(frame) == data


def _header(n: int) -> bytes:
    return struct.pack(">I", n)


def test_the_stream_reader_bounds_splits_and_truncation() -> None:
    async def main() -> None:
        a, b = trio.testing.memory_stream_pair()
        sender, receiver = (
            FlStream(_Adapter(a), max_frame=200),
            FlStream(_Adapter(b), max_frame=200),
        )
        # Two frames in one write, then one frame dribbled a byte at a time.
        one, two = encode_frame(FRAMES[1]), encode_frame(FRAMES[3])
        await a.send_all(_header(len(one)) + one + _header(len(two)) + two)
        assert await receiver.receive() == FRAMES[1]
        assert await receiver.receive() == FRAMES[3]
        for byte in _header(len(two)) + two:
            await a.send_all(bytes([byte]))
        assert await receiver.receive() == FRAMES[3]
        await sender.send(FRAMES[0])
        assert await receiver.receive() == FRAMES[0]
        assert sender.bytes_out == 4 + len(encode_frame(FRAMES[0]))
        # A length over the limit is refused before any of the body is read.
        await a.send_all(_header(201))
        with pytest.raises(FlFrameError, match="exceeds"):
            await receiver.receive()

    run_trio(main)


@pytest.mark.parametrize(("tail", "expected"), [(b"", None), (b"\x00\x00", "inside a frame")])
def test_a_closed_stream_is_clean_between_frames_and_an_error_inside_one(
    tail: bytes, expected: str | None
) -> None:
    async def main() -> None:
        a, b = trio.testing.memory_stream_pair()
        receiver = FlStream(_Adapter(b), max_frame=100)
        await a.send_all(tail)
        await a.send_eof()
        if expected is None:
            assert await receiver.receive() is None
        else:
            with pytest.raises(FlFrameError, match=expected):
                await receiver.receive()

    run_trio(main)


class _Adapter:
    """A trio stream with the libp2p stream methods FlStream uses."""

    def __init__(self, stream: trio.testing.MemoryStapledStream) -> None:  # type: ignore[type-arg]
        self._stream = stream

    async def read(self, n: int | None = None) -> bytes:
        return bytes(await self._stream.receive_some(n))

    async def write(self, data: bytes) -> None:
        await self._stream.send_all(data)

    async def close(self) -> None:
        await self._stream.send_eof()


# -- codecs, identities, stores ---------------------------------------------------------


def test_tensor_and_go_codecs_name_models_by_their_blob() -> None:
    weights = {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}
    codec = TensorCodec()
    blob = codec.encode(weights)
    assert codec.version(weights) == blob_version(blob) == blake3.blake3(blob).hexdigest()
    assert load_model(blob)[0].kind == "p2pgo-tensors"
    with pytest.raises(ModelError):
        codec.decode(blob[:-1])

    from engine.nn import ModelConfig, PolicyValueNet, model_to_arrays, save_weights, weights_id

    tiny = ModelConfig(blocks=1, channels=8, head_channels=4, value_hidden=8, global_pool_every=0)
    data = save_weights(PolicyValueNet(tiny))
    go, arrays = load_model(data)
    assert isinstance(go, GoModelCodec) and go.config == tiny
    assert go.version(arrays) == weights_id(data) == blob_version(go.encode(arrays))
    other = ModelConfig(blocks=1, channels=16, head_channels=4, value_hidden=8, global_pool_every=0)
    with pytest.raises(ModelError, match="architecture"):
        go.decode(save_weights(PolicyValueNet(other)))
    with pytest.raises(ModelError):
        go.decode(encode_tensors(model_to_arrays(PolicyValueNet(tiny))))
    with pytest.raises(ModelError):
        load_model(b"\xff not cbor")


def test_peer_ids_and_keys_convert_both_ways() -> None:
    identity = Identity.generate()
    assert key_of_peer(identity.peer_id) == identity.public_key
    assert peer_of_key(identity.public_key) == identity.peer_id


def test_ephemeral_blobs_are_served_then_forgotten() -> None:
    inner = MemoryBlobStore()
    store = EphemeralBlobStore(inner)
    kept = store.put(b"model")
    temporary = store.put_ephemeral(b"masked vector")
    assert store.read(temporary, 0, 6) == b"masked"
    assert inner.size(temporary) is None and store.size(kept) == 5
    store.forget(temporary)
    assert store.size(temporary) is None


def test_settings_and_saved_state_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        RoundSettings(per_round=3, min_participants=4)
    with pytest.raises(ConfigError):
        RoundSettings(sampling_rate=0.0)
    assert RoundSettings(sampling=Sampling.NONE).params(10).sampling is Sampling.NONE
    assert load_coordinator_state(tmp_path) is None
    (tmp_path / "coordinator.json").write_text("{}")
    with pytest.raises(ConfigError, match="cannot resume"):
        load_coordinator_state(tmp_path)
    (tmp_path / "fl").mkdir()
    (tmp_path / "fl" / "ledger.cbor").write_bytes(b"\x00 damaged")
    with pytest.raises(ConfigError, match="refusing to guess"):
        FlParticipantService(
            PullTrainer(0), state_dir=tmp_path / "fl", coordinators=[Identity.generate().peer_id]
        )


def test_relay_and_peer_flags_fail_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    from net import peer, relay

    assert relay.main(["--coordinate-rounds", "--data-dir", "/nonexistent/x"]) == 2
    assert "--model-file" in capsys.readouterr().err
    assert peer.main(["--bots", "2", "--data-dir", "/nonexistent/x"]) == 2
    assert "--join-rounds" in capsys.readouterr().err


# -- a coordinator under abuse ----------------------------------------------------------


def test_bad_sessions_are_dropped_and_the_host_keeps_serving(tmp_path: Path) -> None:
    model = {"w": np.zeros(8, np.float32)}
    coordinator = FlCoordinatorService(
        TensorCodec(), model, RoundSettings(rounds=0, wait_for_peers=99), hello_timeout=1.0
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            relay = Node(
                NodeConfig.load(data_dir=tmp_path / "relay"),
                blob_store=MemoryBlobStore(),
                services=[coordinator],
            )
            await nursery.start(relay.run)
            client = Node(
                NodeConfig.load(data_dir=tmp_path / "client"), blob_store=MemoryBlobStore()
            )
            await nursery.start(client.run)
            await client.connect(relay.listen_addrs[0])
            target = ID.from_base58(relay.peer_id)

            async def session(payload: bytes, *, reset: bool = False) -> bytes:
                stream = await client.host.new_stream(target, [TProtocol(FL_PROTOCOL)])
                await stream.write(payload)
                if reset:
                    await stream.reset()
                    return b""
                got = b""
                with trio.move_on_after(5):
                    while True:
                        try:
                            chunk = await stream.read(65536)
                        except Exception:  # reset or EOF: the coordinator hung up
                            break
                        if not chunk:
                            break
                        got += chunk
                await stream.reset()
                return got

            hello = encode_frame(FlHello("", ""))
            garbage = b"\x81\x82\x83"
            await session(_header(len(garbage)) + garbage)  # not a frame
            await session(_header(10_000_000))  # oversize: refused unread
            await session(_header(50) + b"half a fr", reset=True)  # vanishes mid-frame
            await session(b"")  # never says hello
            await session(_header(len(hello)) + hello + _header(len(garbage)) + garbage)
            # Hello: the coordinator answers with its model. Then a frame a participant
            # must not send: the session is dropped.
            current = encode_frame(FlModel(coordinator.version, "p2pgo-tensors"))
            stream = await client.host.new_stream(target, [TProtocol(FL_PROTOCOL)])
            await stream.write(_header(len(hello)) + hello)
            answer = b""
            with trio.fail_after(5):
                while len(answer) < 4 + len(current):
                    answer += await stream.read(65536)
            assert answer == _header(len(current)) + current
            wrong = encode_frame(FlModel(VERSION, "p2pgo-tensors"))
            await stream.write(_header(len(wrong)) + wrong)
            with trio.fail_after(5):
                while coordinator.sessions:
                    await trio.sleep(0.05)
            await stream.reset()
            with trio.fail_after(10):
                while sum(coordinator.stats.sessions_closed.values()) < 6:
                    await trio.sleep(0.05)
            closed = coordinator.stats.sessions_closed
            assert closed["malformed"] >= 3 and closed["no_hello"] == 1
            assert not relay.stats.handler_errors
            # Still serving: a real participant syncs the model afterwards.
            peer = FlParticipantService(
                PullTrainer(0),
                state_dir=tmp_path / "peer" / "fl",
                coordinators=[relay.peer_id],
                codec=TensorCodec(),
            )
            node = Node(
                NodeConfig.load(data_dir=tmp_path / "peer", peers=(relay.listen_addrs[0],)),
                blob_store=EphemeralBlobStore(MemoryBlobStore()),
                services=[peer],
            )
            await nursery.start(node.run)
            with trio.fail_after(10):
                await peer.wait_model(coordinator.version)
            assert coordinator.sessions == (node.peer_id,)
            nursery.cancel_scope.cancel()

    run_trio(main, timeout=40)
