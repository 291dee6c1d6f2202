"""The participant service a peer runs: join federated rounds over ``/p2pgo/fl/1``.

Theory of operation. `FlParticipantService` is a `NodeService`. For each coordinator it
trusts (by peer id) it keeps a session: a persistent ``/p2pgo/fl/1`` stream it opens
itself (peers may sit behind NAT; the relay is reachable), re-opened with backoff when
it drops. It says `FlHello` with the model it holds (and again whenever that changes);
the coordinator answers with its current model (`FlModel`), which the peer fetches over
``/p2pgo/blob/1`` if it lacks it.

Round messages from a coordinator go, in order, through one processing task per
coordinator that drives an `fl.RoundParticipant` for the current round:

* a RoundStart makes a new participant (if the peer has a model and at least
  `min_games` stored games); local training happens inside its handling of the
  Selection, so every `receive` runs in a worker thread;
* its `Send`s go back on the session, except the masked-input `Blob`, which is put in
  the node's blob store for the coordinator to fetch (`EphemeralBlobStore` keeps it in
  memory and forgets it after the round);
* once the signed ModelUpdate is verified, the new weights are fetched by version,
  checked (`accept_weights`), adopted and saved; a peer that could not take part
  (refused, no data, joined late) still follows the coordinator's model through the
  `FlModel` it sends after every round.

The privacy ledger is saved (canonical CBOR, atomic replace) whenever the round records
an event, before anything else happens, so a crash cannot forget spent budget; the
adopted model is saved as its blob, so its file's BLAKE3 is its version. Both live in
`state_dir` (``<data dir>/fl`` for `p2pgo-peer`). Gossip: round announcements from a
trusted coordinator are acked and wake a session that is waiting to reconnect.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import blake3
import cbor2
import trio

from fl import (
    DEFAULT_DELTA,
    DEFAULT_EPSILON,
    Blob,
    FlError,
    NamedTensors,
    ParticipantStage,
    ParticipantStatus,
    PrivacyEvent,
    PrivacyLedger,
    RemoteProtocolError,
    RoundMessage,
    RoundParticipant,
    RoundStart,
    Selection,
    decode_round_message,
    encode_round_message,
)
from net._errors import BlobError, ConfigError
from net._fl_protocol import (
    FL_PROTOCOL,
    GONE,
    MAX_FRAME_TO_PARTICIPANT,
    MAX_MODEL_BLOB,
    AnchoredClock,
    EphemeralBlobStore,
    EventSink,
    FlFrame,
    FlFrameError,
    FlHello,
    FlModel,
    FlRound,
    FlStream,
    ModelCodec,
    ModelError,
    atomic_write,
    blob_version,
    codec_for,
    encode_frame,
    fetch_blob_bytes,
    key_of_peer,
    load_model,
)
from net._fl_records import MODEL_FILE
from net._node import ANNOUNCE_TOPIC, Node, Received
from net._wire import RoundAnnouncement

log = logging.getLogger(__name__)
LEDGER_FILE = "ledger.cbor"


class LocalTrainer(Protocol):
    """A peer's local data and training (`GoTrainer` for the Go network)."""

    def data_summary(self) -> tuple[int, bytes]:
        """(games held, BLAKE3 over them) for PeerReady; called in the trio thread."""
        ...

    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        """(delta, examples, metrics) from the round's weights; runs in a worker thread."""
        ...


class GoTrainer:
    """Trains the Go network on the peer's own finished games with
    `engine.nn.train_local` (the architecture comes from `codec`, learnt from the
    coordinator's model). `config` is an `engine.nn.TrainConfig` (CPU, 1 epoch by
    default); the round's FedProx coefficient overrides its ``prox_mu``.

    The game store is read in `data_summary` (trio thread, where the game service
    writes it too) and the records it found are what `train` uses.
    """

    def __init__(self, store: Any, codec: Any, config: Any = None) -> None:
        self._store = store  # engine.GameStore
        self._codec = codec  # net.GoModelCodec
        self._config = config
        self._records: list[Any] = []
        self._rounds = 0

    def data_summary(self) -> tuple[int, bytes]:
        from engine.nn import records_from_store

        self._records = records_from_store(self._store)
        hasher = blake3.blake3()
        for record_id in sorted(r.record_id for r in self._records):
            hasher.update(bytes.fromhex(record_id))
        return len(self._records), hasher.digest()

    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        from engine.nn import TrainConfig, train_local

        if self._codec.config is None:
            raise ModelError("the model architecture is not known yet")
        base = self._config if self._config is not None else TrainConfig(device="cpu")
        self._rounds += 1
        config = replace(
            base,
            prox_mu=float(hyperparams.get("proximal_mu", base.prox_mu)),
            seed=base.seed + self._rounds,  # another batch order each round
        )
        result = train_local((self._codec.config, weights), self._records, config)
        metrics = {k: float(v) for k, v in result.metrics.to_dict().items()}
        return result.delta, result.num_examples, metrics


class _TrainingFailed(Exception):
    """Local training raised; the peer goes silent for the round (a cheap dropout)."""


@dataclass
class ParticipantStats:
    sessions_opened: int = 0
    sessions_lost: int = 0
    bad_frames: int = 0
    ignored_messages: int = 0
    rounds_joined: int = 0
    models_adopted: int = 0
    models_synced: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    model_bytes: int = 0  # model blobs fetched


@dataclass
class _Coordinator:
    peer_id: str
    key: bytes
    frames_send: trio.MemorySendChannel[FlFrame]
    frames: trio.MemoryReceiveChannel[FlFrame]
    outbox_send: trio.MemorySendChannel[bytes]
    outbox: trio.MemoryReceiveChannel[bytes]
    wake: trio.Event = field(default_factory=trio.Event)
    participant: RoundParticipant | None = None
    round_id: int = -1
    last_start: RoundStart | None = None
    adopt_tried: bool = False
    masked: list[bytes] = field(default_factory=list)


class FlParticipantService:
    """Joins the rounds of `coordinators` (peer ids); see the module docstring.

    `codec` is the model format (learnt from the first model when None); the ledger's
    budget and delta come from `epsilon_budget`/`delta` (a saved ledger keeps its
    events). `freeze_round` is a test hook: in that round the peer stops answering
    right after submitting its masked input (so a test can kill it at a known point).
    """

    def __init__(
        self,
        trainer: LocalTrainer,
        *,
        state_dir: Path,
        coordinators: Sequence[str],
        codec: ModelCodec | None = None,
        epsilon_budget: float = DEFAULT_EPSILON,
        delta: float = DEFAULT_DELTA,
        min_games: int = 1,
        on_event: EventSink | None = None,
        freeze_round: int | None = None,
        tick_s: float = 0.5,
        max_model_bytes: int = MAX_MODEL_BLOB,
    ) -> None:
        if not coordinators:
            raise ConfigError("joining rounds needs at least one coordinator peer id")
        try:
            self._keys = {peer: key_of_peer(peer) for peer in coordinators}
        except ValueError as err:
            raise ConfigError(f"coordinator: {err}") from None
        self._trainer = trainer
        self._state_dir = state_dir
        self._codec = codec
        self._min_games = min_games
        self._on_event = on_event
        self._freeze_round = freeze_round
        self._tick_s = tick_s
        self._max_model = max_model_bytes
        self._ledger = _load_ledger(state_dir / LEDGER_FILE, epsilon_budget, delta)
        self._epsilon: float | None = None
        self._weights: NamedTensors | None = None
        self._version = ""
        self._load_model()
        self._epsilon_after = functools.lru_cache(maxsize=64)(_epsilon_after)
        self._node: Node | None = None
        self._clock: AnchoredClock | None = None
        self._by_key: dict[bytes, _Coordinator] = {}
        self.stats = ParticipantStats()
        self._model_changed = trio.Event()

    def _load_model(self) -> None:
        path = self._state_dir / MODEL_FILE
        if not path.exists():
            return
        data = path.read_bytes()
        try:
            if self._codec is None:
                self._codec, weights = load_model(data)
            else:
                weights = self._codec.decode(data)
        except ModelError as err:
            log.warning("ignoring the saved model %s: %s", path, err)
            return
        self._weights, self._version = weights, blob_version(data)

    # -- views -------------------------------------------------------------------------

    @property
    def model_version(self) -> str:
        """The version of the model held ("" for none)."""
        return self._version

    @property
    def weights(self) -> NamedTensors | None:
        return None if self._weights is None else dict(self._weights)

    @property
    def ledger(self) -> PrivacyLedger:
        return self._ledger

    async def wait_model(self, version: str) -> None:
        """Return once the peer holds model `version` (tests, the TUI)."""
        while self._version != version:
            await self._model_changed.wait()

    def _emit(self, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            node = self._node
            self._on_event(event, {"peer_id": node.peer_id if node else "", **fields})

    # -- service -----------------------------------------------------------------------

    async def run(self, node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._node = node
        self._clock = AnchoredClock()
        self._epsilon = await trio.to_thread.run_sync(self._ledger.spent)
        announcements = await node.subscribe(ANNOUNCE_TOPIC)
        async with trio.open_nursery() as nursery:
            for peer_id, key in self._keys.items():
                frames_send, frames = trio.open_memory_channel[FlFrame](64)
                outbox_send, outbox = trio.open_memory_channel[bytes](64)
                coordinator = _Coordinator(peer_id, key, frames_send, frames, outbox_send, outbox)
                self._by_key[key] = coordinator
                nursery.start_soon(self._follow, coordinator)
                nursery.start_soon(self._process, coordinator)
            nursery.start_soon(self._watch_announcements, announcements)
            task_status.started()
            self._emit(
                "fl_joined",
                model_version=self._version,
                epsilon=self._epsilon,
                epsilon_budget=self._ledger.epsilon_budget,
            )

    async def _watch_announcements(self, inbox: trio.MemoryReceiveChannel[Received]) -> None:
        node = self._node
        assert node is not None
        async for received in inbox:
            coordinator = self._by_key.get(received.sender)
            if coordinator is None or not isinstance(received.message, RoundAnnouncement):
                continue
            await node.ack(received)  # every time: a re-announce means our ack was lost
            coordinator.wake.set()

    # -- the session -------------------------------------------------------------------

    async def _follow(self, coordinator: _Coordinator) -> None:
        """Keep a session open to `coordinator`, reconnecting with backoff."""
        node = self._node
        assert node is not None
        backoff = 0.25
        while True:
            stream = None
            try:
                stream = await node.new_stream(coordinator.peer_id, FL_PROTOCOL)
            except Exception as err:  # dial and negotiation failures come in many types
                log.debug("no fl session with %s yet: %r", coordinator.peer_id, err)
            if stream is not None:
                self.stats.sessions_opened += 1
                framed = FlStream(stream, max_frame=MAX_FRAME_TO_PARTICIPANT)
                try:
                    with trio.CancelScope() as scope:
                        hello = FlHello(self._version, self._codec.kind if self._codec else "")
                        await framed.send(hello)
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._guard, scope, self._read, coordinator, framed)
                            nursery.start_soon(self._guard, scope, self._write, coordinator, framed)
                except GONE as err:
                    log.debug("fl session with %s failed: %r", coordinator.peer_id, err)
                finally:
                    self.stats.sessions_lost += 1
                    with trio.CancelScope(shield=True):
                        await _reset(stream)
                if framed.bytes_in:  # it worked for a while: reconnect quickly
                    backoff = 0.25
            coordinator.wake = trio.Event()
            with trio.move_on_after(backoff):  # reconnect pacing; an announcement wakes us
                await coordinator.wake.wait()
            backoff = min(backoff * 2, 2.0)

    async def _guard(
        self,
        scope: trio.CancelScope,
        body: Callable[[_Coordinator, FlStream], Any],
        coordinator: _Coordinator,
        framed: FlStream,
    ) -> None:
        try:
            await body(coordinator, framed)
        except FlFrameError as err:
            self.stats.bad_frames += 1
            log.info("fl session with %s dropped: %s", coordinator.peer_id, err)
        except GONE as err:
            log.debug("fl session with %s ended: %r", coordinator.peer_id, err)
        finally:
            scope.cancel()

    async def _read(self, coordinator: _Coordinator, framed: FlStream) -> None:
        while True:
            before = framed.bytes_in
            frame = await framed.receive()
            if frame is None:
                return
            self.stats.bytes_received += framed.bytes_in - before
            await coordinator.frames_send.send(frame)

    async def _write(self, coordinator: _Coordinator, framed: FlStream) -> None:
        async for body in coordinator.outbox:
            await framed.send_raw(body)
            self.stats.bytes_sent += len(body) + 4

    # -- processing --------------------------------------------------------------------

    async def _process(self, coordinator: _Coordinator) -> None:
        while True:
            frame: FlFrame | None = None
            with trio.move_on_after(self._tick_s):  # the participant's timeouts need ticks
                frame = await coordinator.frames.receive()
            if frame is not None:
                await self._on_frame(coordinator, frame)
            participant = coordinator.participant
            if participant is not None and self._clock is not None:
                participant.tick(self._clock.now())
                if participant.stage is ParticipantStage.FINISHED:
                    self._finish(coordinator, participant)

    async def _on_frame(self, coordinator: _Coordinator, frame: FlFrame) -> None:
        if isinstance(frame, FlModel):
            await self._sync(coordinator, frame)
            return
        if isinstance(frame, FlHello):
            self.stats.bad_frames += 1
            return
        try:
            message = decode_round_message(frame.message)
        except RemoteProtocolError as err:
            self.stats.bad_frames += 1
            log.info("undecodable round message from %s: %s", coordinator.peer_id, err)
            return
        if isinstance(message, RoundStart):
            self._on_start(coordinator, message)
        participant = coordinator.participant
        if participant is None or message.round_id != coordinator.round_id:
            self.stats.ignored_messages += 1
            return
        await self._drive(coordinator, participant, message)

    def _on_start(self, coordinator: _Coordinator, start: RoundStart) -> None:
        if start == coordinator.last_start:
            return  # the same RoundStart again (sent on hello and broadcast)
        # The stream is ordered, so any other RoundStart is the coordinator's newest
        # round, even with a lower id (a coordinator restarted without its state).
        old = coordinator.participant
        if old is not None:
            self._finish(coordinator, old, note="abandoned for a newer round")
        coordinator.last_start = start
        node = self._node
        assert node is not None
        games, data_hash = self._trainer.data_summary()
        if self._weights is None or self._codec is None or games < self._min_games:
            why = "no model yet" if self._weights is None else f"{games} games stored"
            self._emit("fl_round", round_id=start.round_id, status="skipped", reason=why)
            return
        coordinator.participant = RoundParticipant(
            signing_key=node.identity.signing_key,
            coordinator_key=coordinator.key,
            model=self._weights,
            model_version=self._version,
            ledger=self._ledger,
            train=self._train,
            game_count=games,
            data_hash=data_hash,
            version_of=self._codec.version,
            epsilon_after=self._epsilon_after,
        )
        coordinator.round_id = start.round_id
        coordinator.adopt_tried = False
        self.stats.rounds_joined += 1
        self._emit("fl_round_start", round_id=start.round_id, model_version=start.model_version)

    def _train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        try:
            return self._trainer.train(weights, hyperparams)
        except Exception as exc:  # any failure of local training: sit this round out
            raise _TrainingFailed(f"{type(exc).__name__}: {exc}") from exc

    async def _drive(
        self, coordinator: _Coordinator, participant: RoundParticipant, message: RoundMessage
    ) -> None:
        clock, node = self._clock, self._node
        assert clock is not None and node is not None
        round_id = coordinator.round_id
        if isinstance(message, Selection) and node.public_key in message.selected:
            self._emit("fl_selected", round_id=round_id, selected=len(message.selected))
        status, ledger = participant.status, participant.ledger
        try:
            sends = await trio.to_thread.run_sync(participant.receive, message, clock.now())
        except _TrainingFailed as err:
            coordinator.participant = None
            self._emit("fl_round", round_id=round_id, status="failed", reason=str(err))
            return
        except Exception as err:  # a coordinator's message must not take the peer down
            log.exception("round %d: the participant failed on %s", round_id, message.kind)
            coordinator.participant = None
            self._emit("fl_round", round_id=round_id, status="failed", reason=repr(err))
            return
        if participant.ledger is not ledger:  # saved before anything leaves this peer
            self._ledger, self._epsilon = participant.ledger, participant.epsilon
            data = cbor2.dumps(self._ledger.to_dict(), canonical=True)
            atomic_write(self._state_dir / LEDGER_FILE, data)
        store = node.blob_store
        for send in sends:
            if isinstance(send.message, Blob):
                if isinstance(store, EphemeralBlobStore):
                    coordinator.masked.append(store.put_ephemeral(send.message.data))
                else:
                    store.put(send.message.data)
        for send in sends:
            if not isinstance(send.message, Blob):
                body = encode_frame(FlRound(encode_round_message(send.message)))
                await coordinator.outbox_send.send(body)
        if participant.status is not status and participant.status is ParticipantStatus.SUBMITTED:
            self._emit("fl_submitted", round_id=round_id, epsilon=self._epsilon)
            if self._freeze_round == round_id:
                self._emit("fl_frozen", round_id=round_id)
                await trio.sleep_forever()  # test hook: silent from here on
        if participant.verdict is not None and not coordinator.adopt_tried:
            coordinator.adopt_tried = True
            await self._adopt(coordinator, participant)
        if participant.stage is ParticipantStage.FINISHED:
            self._finish(coordinator, participant)

    async def _adopt(self, coordinator: _Coordinator, participant: RoundParticipant) -> None:
        verdict = participant.verdict
        assert verdict is not None and self._codec is not None
        if not verdict.adopt:
            self._emit("fl_update_rejected", round_id=coordinator.round_id, reason=verdict.reason)
            return
        if verdict.new_version == self._version:
            return
        try:
            data = await self._fetch_model(coordinator, verdict.new_version)
            weights = await trio.to_thread.run_sync(self._codec.decode, data)
            weights = await trio.to_thread.run_sync(participant.accept_weights, weights)
        except (BlobError, FlError, ModelError, trio.TooSlowError) as err:
            self._emit("fl_adopt_failed", round_id=coordinator.round_id, reason=str(err))
            return
        self._set_model(data, weights)
        self.stats.models_adopted += 1
        self._emit(
            "fl_adopted",
            round_id=coordinator.round_id,
            model_version=self._version,
            epsilon=self._epsilon,
        )

    async def _sync(self, coordinator: _Coordinator, frame: FlModel) -> None:
        """Follow the coordinator's current model (joined late, refused, or behind)."""
        if frame.model_version == self._version:
            return
        try:
            if self._codec is None:
                self._codec = codec_for(frame.model_format)
            elif frame.model_format != self._codec.kind:
                raise ModelError(f"model format {frame.model_format} is not {self._codec.kind}")
            data = await self._fetch_model(coordinator, frame.model_version)
            weights = await trio.to_thread.run_sync(self._codec.decode, data)
        except (BlobError, ModelError, trio.TooSlowError) as err:
            self._emit("fl_sync_failed", model_version=frame.model_version, reason=str(err))
            return
        self._set_model(data, weights)
        self.stats.models_synced += 1
        self._emit("fl_model", model_version=self._version, source="sync")

    async def _fetch_model(self, coordinator: _Coordinator, version: str) -> bytes:
        node = self._node
        assert node is not None
        with trio.fail_after(60):
            data = await fetch_blob_bytes(
                node.host, coordinator.peer_id, bytes.fromhex(version), max_size=self._max_model
            )
        self.stats.model_bytes += len(data)
        return data

    def _set_model(self, data: bytes, weights: NamedTensors) -> None:
        atomic_write(self._state_dir / MODEL_FILE, data)
        self._weights, self._version = dict(weights), blob_version(data)
        self._model_changed.set()
        self._model_changed = trio.Event()
        assert self._codec is not None
        hello = encode_frame(FlHello(self._version, self._codec.kind))
        for coordinator in self._by_key.values():  # tell every coordinator what we hold
            try:
                coordinator.outbox_send.send_nowait(hello)
            except trio.WouldBlock:
                log.debug(
                    "outbox to %s full; it learns our model on reconnect", coordinator.peer_id
                )

    def _finish(
        self, coordinator: _Coordinator, participant: RoundParticipant, note: str = ""
    ) -> None:
        node = self._node
        if node is not None and isinstance(node.blob_store, EphemeralBlobStore):
            for digest in coordinator.masked:
                node.blob_store.forget(digest)
        coordinator.masked.clear()
        coordinator.participant = None
        verdict = participant.verdict
        self._emit(
            "fl_round",
            round_id=coordinator.round_id,
            status=participant.status.value,
            reason=note or participant.reason,
            selected=participant.selected,
            epsilon=self._epsilon,
            adopted=bool(verdict and verdict.adopt and verdict.new_version == self._version),
            model_version=self._version,
        )


def _epsilon_after(ledger: PrivacyLedger, event: PrivacyEvent) -> float:
    return ledger.epsilon_after(event)


def _load_ledger(path: Path, budget: float, delta: float) -> PrivacyLedger:
    """The saved ledger with this run's budget and delta (a fresh one if none)."""
    if not (math.isfinite(budget) and budget > 0 and 0 < delta < 1):
        raise ConfigError("need a positive epsilon budget and 0 < delta < 1")
    if not path.exists():
        return PrivacyLedger(epsilon_budget=budget, delta=delta)
    try:
        saved = PrivacyLedger.from_dict(cbor2.loads(path.read_bytes()))
    except Exception as err:  # cbor2 and the ledger raise several types; all mean unusable
        raise ConfigError(
            f"privacy ledger {path} is unreadable ({err}); refusing to guess what was spent"
        ) from None
    return replace(saved, epsilon_budget=budget, delta=delta)


async def _reset(stream: Any) -> None:
    try:
        await stream.reset()
    except Exception as err:  # already closed or broken: nothing left to do
        log.debug("resetting an fl stream failed: %r", err)
