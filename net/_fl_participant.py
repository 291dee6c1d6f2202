"""The participant service a peer runs: join federated rounds over ``/p2pgo/fl/1``.

Theory of operation. `FlParticipantService` is a `NodeService`. For each coordinator it
trusts (by peer id) it keeps a session: a persistent ``/p2pgo/fl/1`` stream it opens
itself (peers may sit behind NAT; the relay is reachable), re-opened with backoff when
it drops. It says `FlHello` with the model it holds (and again whenever that changes);
the coordinator answers with its current model (`FlModel`), which the peer fetches over
``/p2pgo/blob/1`` if it lacks it. That session (dialling, reconnecting, moving frames)
is `net._fl_link`.

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

Opting in. A headless peer joins every round (`auto_join`). A person's app does not:
with ``auto_join=False`` the peer follows the model but takes part only in the next
round after `join_next(max_epsilon)`, and only if that round leaves its total epsilon
at most `max_epsilon` (what the person confirmed; the ledger's budget holds as
always); `leave` withdraws a pending join or drops out of the round in progress.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
from net._fl_link import Link, follow
from net._fl_local import (
    LEDGER_FILE,
    GoTrainer,
    LocalTrainer,
    ParticipantStats,
    ParticipantView,
    epsilon_after,
    load_ledger,
    saved_model,
)
from net._fl_protocol import (
    MAX_MODEL_BLOB,
    AnchoredClock,
    EphemeralBlobStore,
    EventSink,
    FlFrame,
    FlHello,
    FlModel,
    FlRound,
    ModelCodec,
    ModelError,
    atomic_write,
    blob_version,
    codec_for,
    encode_frame,
    fetch_blob_bytes,
    key_of_peer,
)
from net._fl_records import MODEL_FILE
from net._node import ANNOUNCE_TOPIC, Node, Received
from net._wire import RoundAnnouncement

__all__ = ["FlParticipantService", "GoTrainer", "LocalTrainer", "ParticipantStats"]

log = logging.getLogger(__name__)


class _TrainingFailed(Exception):
    """Local training raised; the peer goes silent for the round (a cheap dropout)."""


class FlParticipantService:
    """Joins the rounds of `coordinators` (peer ids); see the module docstring.

    `codec` is the model format (learnt from the first model when None); the ledger's
    budget and delta come from `epsilon_budget`/`delta` (a saved ledger keeps its
    events). `freeze_round` is a test hook: in that round the peer stops answering
    right after submitting its masked input (so a test can kill it at a known point).
    With ``auto_join=False`` it takes part only after `join_next` (module docstring).
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
        auto_join: bool = True,
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
        self._auto_join = auto_join
        self._budget_lock = trio.Lock()
        self._join_cap: float | None = None  # the confirmed epsilon of a pending join
        self._latest: Link | None = None  # whose RoundStart came last
        self._ledger = load_ledger(state_dir / LEDGER_FILE, epsilon_budget, delta)
        self._epsilon: float | None = None
        self._weights: NamedTensors | None = None
        self._version = ""
        saved = saved_model(state_dir / MODEL_FILE, codec)
        if saved is not None:
            self._codec, self._weights, self._version = saved
        self._epsilon_after = functools.lru_cache(maxsize=64)(epsilon_after)
        self._node: Node | None = None
        self._clock: AnchoredClock | None = None
        self._by_key: dict[bytes, Link] = {}
        self.stats = ParticipantStats()
        self._model_changed = trio.Event()

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

    @property
    def joining(self) -> bool:
        """True while the peer will take part in the next round it can."""
        return self._auto_join or self._join_cap is not None

    def view(self) -> ParticipantView:
        """Where the peer stands now (call on the trio thread)."""
        latest = self._latest
        participant = latest.participant if latest is not None else None
        if participant is not None:
            status, reason = participant.status.value, participant.reason
        else:
            status = latest.last_status if latest is not None else ""
            reason = latest.last_reason if latest is not None else ""
        start = latest.last_start if latest is not None else None
        return ParticipantView(
            round_id=latest.round_id if latest is not None else -1,
            status=status,
            reason=reason,
            active=participant is not None,
            joining=self.joining,
            auto_join=self._auto_join,
            model_version=self._version,
            epsilon_spent=self._epsilon,
            epsilon_budget=self._ledger.epsilon_budget,
            delta=self._ledger.delta,
            last_seen_round=start.round_id if start is not None else -1,
        )

    def planned_event(self) -> PrivacyEvent | None:
        """What one more round costs, from the newest RoundStart seen (None before one)."""
        latest = self._latest
        start = latest.last_start if latest is not None else None
        return None if start is None else start.params.privacy_event()

    def epsilon_after(self, event: PrivacyEvent) -> float:
        """Total epsilon after `event` from the ledger (CPU work: call in a worker thread)."""
        return float(self._epsilon_after(self._ledger, event))

    def join_next(self, max_epsilon: float) -> None:
        """Take part in the next round whose cost keeps the total at most `max_epsilon`."""
        if not max_epsilon > 0:
            raise ConfigError("max_epsilon must be positive")
        self._join_cap = max_epsilon
        self._emit("fl_join", max_epsilon=max_epsilon)

    def leave(self) -> None:
        """Withdraw a pending join and drop out of the round in progress (if any).

        Spent budget stays spent; a round left mid-way absorbs us as a dropout.
        """
        self._join_cap = None
        for coordinator in self._by_key.values():
            participant = coordinator.participant
            if participant is not None:
                self._finish(coordinator, participant, note="left", status="left")
        self._emit("fl_leave")

    async def wait_model(self, version: str) -> None:
        """Return once the peer holds model `version` (tests, the TUI)."""
        while self._version != version:
            await self._model_changed.wait()

    def _hello(self) -> FlHello:
        return FlHello(self._version, self._codec.kind if self._codec else "")

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
                coordinator = Link(peer_id, key, frames_send, frames, outbox_send, outbox)
                self._by_key[key] = coordinator
                nursery.start_soon(follow, node, coordinator, self.stats, self._hello)
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

    # -- processing --------------------------------------------------------------------

    async def _process(self, coordinator: Link) -> None:
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

    async def _on_frame(self, coordinator: Link, frame: FlFrame) -> None:
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
            # One budget decision at a time: with several coordinators, two RoundStarts
            # checked against the same ledger could each fit and together overspend.
            async with self._budget_lock:
                await self._on_start(coordinator, message)
                participant = coordinator.participant
                if participant is not None and message.round_id == coordinator.round_id:
                    await self._drive(coordinator, participant, message)
                    return
        participant = coordinator.participant
        if participant is None or message.round_id != coordinator.round_id:
            self.stats.ignored_messages += 1
            return
        await self._drive(coordinator, participant, message)

    async def _on_start(self, coordinator: Link, start: RoundStart) -> None:
        if start == coordinator.last_start:
            return  # the same RoundStart again (sent on hello and broadcast)
        # The stream is ordered, so any other RoundStart is the coordinator's newest
        # round, even with a lower id (a coordinator restarted without its state).
        old = coordinator.participant
        if old is not None:
            self._finish(coordinator, old, note="abandoned for a newer round")
        coordinator.last_start = start
        self._latest = coordinator
        node = self._node
        assert node is not None
        if not self.joining:
            coordinator.round_id, coordinator.last_status = start.round_id, ""
            coordinator.last_reason = "not joining"
            self._emit("fl_round", round_id=start.round_id, status="skipped", reason="not joining")
            return
        games, data_hash = self._trainer.data_summary()
        if self._weights is None or self._codec is None or games < self._min_games:
            why = "no model yet" if self._weights is None else f"{games} games stored"
            self._emit("fl_round", round_id=start.round_id, status="skipped", reason=why)
            return
        cap = self._join_cap
        if not self._auto_join and cap is not None:
            self._join_cap = None  # a join is for one round
            planned = start.params.privacy_event()
            after = await trio.to_thread.run_sync(self._epsilon_after, self._ledger, planned)
            if after > cap + 1e-9:
                why = (
                    f"the round would spend epsilon {after:.3f}, more than the {cap:.3f} confirmed"
                )
                coordinator.round_id, coordinator.last_status = start.round_id, "refused"
                coordinator.last_reason = why
                self._emit("fl_round", round_id=start.round_id, status="refused", reason=why)
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
        self, coordinator: Link, participant: RoundParticipant, message: RoundMessage
    ) -> None:
        clock, node = self._clock, self._node
        assert clock is not None and node is not None
        round_id = coordinator.round_id
        if isinstance(message, Selection) and node.public_key in message.selected:
            self._emit("fl_selected", round_id=round_id, selected=len(message.selected))
        status, ledger = participant.status, participant.ledger
        try:
            sends = await trio.to_thread.run_sync(participant.receive, message, clock.now())
        except Exception as err:  # a coordinator's message must not take the peer down
            if not isinstance(err, _TrainingFailed):
                log.exception("round %d: the participant failed on %s", round_id, message.kind)
            reason = str(err) if isinstance(err, _TrainingFailed) else repr(err)
            if coordinator.participant is participant:
                coordinator.participant = None
                coordinator.last_status, coordinator.last_reason = "failed", reason
            self._emit("fl_round", round_id=round_id, status="failed", reason=reason)
            return
        charged = participant.charged
        if participant.ledger is not ledger and charged is not None:
            # Saved before anything leaves this peer. The round began from a copy of the
            # ledger; merge its one event into ours (another coordinator's round may
            # have charged ours since) rather than taking the copy.
            self._ledger = self._ledger.record(charged)
            self._epsilon = await trio.to_thread.run_sync(self._ledger.spent)
            data = cbor2.dumps(self._ledger.to_dict(), canonical=True)
            atomic_write(self._state_dir / LEDGER_FILE, data)
        if coordinator.participant is not participant:
            return  # left (or replaced by a newer round) while it ran: send nothing
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

    async def _adopt(self, coordinator: Link, participant: RoundParticipant) -> None:
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

    async def _sync(self, coordinator: Link, frame: FlModel) -> None:
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

    async def _fetch_model(self, coordinator: Link, version: str) -> bytes:
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
        self,
        coordinator: Link,
        participant: RoundParticipant,
        note: str = "",
        status: str = "",
    ) -> None:
        node = self._node
        if node is not None and isinstance(node.blob_store, EphemeralBlobStore):
            for digest in coordinator.masked:
                node.blob_store.forget(digest)
        coordinator.masked.clear()
        coordinator.participant = None
        verdict = participant.verdict
        coordinator.last_status = status or participant.status.value
        coordinator.last_reason = note or participant.reason
        self._emit(
            "fl_round",
            round_id=coordinator.round_id,
            status=coordinator.last_status,
            reason=coordinator.last_reason,
            train_metrics=dict(participant.train_metrics),
            selected=participant.selected,
            epsilon=self._epsilon,
            adopted=bool(verdict and verdict.adopt and verdict.new_version == self._version),
            model_version=self._version,
        )
