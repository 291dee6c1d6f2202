"""The coordinator service a relay runs: federated rounds over ``/p2pgo/fl/1``.

Theory of operation. `FlCoordinatorService` is a `NodeService`. Participants open a
persistent ``/p2pgo/fl/1`` stream to it (a *session*, one per peer, keyed by the Ed25519
key the Noise handshake authenticated) and say `FlHello`; it answers with the current
model (`FlModel`). A participant says `FlHello` again whenever its model changes, so
the coordinator knows who is in step: before the first round it waits for
`wait_for_peers` sessions that hold the current model. Rounds then run one after
another, each driven by an `fl.RoundCoordinator` (pure state machine) and this loop:

* events: a decoded round message from a session, a masked-input blob fetched from a
  participant, or the stage deadline passing (`tick`);
* each event is handed to the state machine in a worker thread (SecAgg unmasking and
  aggregation are CPU work; one event at a time, so the machine needs no lock);
* the `Send`s it returns are encoded once and queued on the sessions' outboxes; a
  broadcast RoundStart is also announced on gossip (a small `RoundAnnouncement`,
  re-published until the known peers ack it or the ready deadline passes);
* an accepted GradientSubmission starts a fetch of its blob (``/p2pgo/blob/1``,
  bounded by the announced size) that comes back as an event;
* when the round is DONE the new model is put in the node's blob store *before* the
  signed ModelUpdate goes out, so every peer can fetch and verify it at once.

Pacing: `interval_s` between rounds (and `first_round_delay_s` before the first);
`request_round` (a peer's app asked to join now) cuts that wait short.

Time is `AnchoredClock` (trio's clock on the wall-clock scale). Peer failures are
normal: a malformed or oversize frame, a round message that does not decode, or a peer
that does not keep up with its outbox ends that session (counted in `stats`); the
state machine records rejections of well-formed but wrong messages; a silent peer is a
dropout the round absorbs.

What it keeps per session and per round, and the report and saved state made from
that, are in `net._fl_round_state`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from libp2p.abc import INetStream

from fl import (
    Blob,
    GradientSubmission,
    NamedTensors,
    RemoteProtocolError,
    RoundCoordinator,
    RoundStage,
    RoundStart,
    RoundTiming,
    Send,
    decode_round_message,
    encode_round_message,
    flatten,
)
from net._errors import BlobError
from net._fl_link import reset_stream
from net._fl_protocol import (
    FL_PROTOCOL,
    GONE,
    MAX_FRAME_TO_COORDINATOR,
    AnchoredClock,
    EventSink,
    FlFrameError,
    FlHello,
    FlModel,
    FlRound,
    FlStream,
    ModelCodec,
    atomic_write,
    blob_version,
    encode_frame,
    fetch_blob_bytes,
    key_of_peer,
    peer_of_key,
)
from net._fl_records import (
    MODEL_FILE,
    CoordinatorReport,
    CoordinatorStats,
    RoundSettings,
    StageClose,
    StageTiming,
)
from net._fl_round_state import (
    Inbound,
    InboundBlob,
    LiveRound,
    RoundState,
    Session,
    drain,
    live_round,
    round_report,
    save_state,
)
from net._node import ANNOUNCE_TOPIC, Node
from net._wire import RoundAnnouncement

log = logging.getLogger(__name__)


class FlCoordinatorService:
    """Runs federated rounds for the peers that open ``/p2pgo/fl/1`` sessions to us.

    `weights` (in `codec`'s format) is the model of the first round, `parent_version` the
    version it came from ("" for none), `first_round` its round id. With `state_dir`
    the model and round counter are saved after every round (see `load_coordinator_state`).
    `first_round_delay_s` paces the first round like `interval_s` paces the others.
    """

    def __init__(
        self,
        codec: ModelCodec,
        weights: NamedTensors,
        settings: RoundSettings,
        *,
        state_dir: Path | None = None,
        parent_version: str = "",
        first_round: int = 1,
        on_event: EventSink | None = None,
        outbox: int = 64,
        hello_timeout: float = 30.0,
        first_round_delay_s: float = 0.0,
    ) -> None:
        flatten(weights)  # validates the model before anything starts
        self._codec = codec
        self._weights = dict(weights)
        self._blob = codec.encode(self._weights)
        self._version = blob_version(self._blob)
        self._parent = parent_version
        self._next_round = first_round
        self.settings = settings
        self._state_dir = state_dir
        self._on_event = on_event
        self._outbox = outbox
        self._hello_timeout = hello_timeout
        self._node: Node | None = None
        self._clock: AnchoredClock | None = None
        self._sessions: dict[bytes, Session] = {}
        self._sessions_changed = trio.Event()
        self._inbox_send, self._inbox = trio.open_memory_channel[Inbound | InboundBlob](4096)
        self._round: RoundState | None = None
        self.reports: deque[CoordinatorReport] = deque(maxlen=256)  # the latest rounds
        self.rounds_ended = 0
        self.stats = CoordinatorStats()
        self._round_done = trio.Event()
        self._first_delay = first_round_delay_s
        self._round_requested = trio.Event()
        self.next_round_at: float | None = None  # wall-clock time of the next paced start

    # -- views -------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """The current model's version (BLAKE3 hex of its blob)."""
        return self._version

    @property
    def weights(self) -> NamedTensors:
        return dict(self._weights)

    @property
    def sessions(self) -> tuple[str, ...]:
        """Peer ids with an open session."""
        return tuple(sorted(s.peer_id for s in self._sessions.values()))

    def live_round(self) -> LiveRound | None:
        """The round in progress (None between rounds); call on the trio thread."""
        return live_round(self._round)

    def request_round(self) -> None:
        """Start the next round without waiting out the pacing (call on the trio thread)."""
        self._round_requested.set()

    async def wait_round(self, count: int) -> None:
        """Return once `count` rounds have ended (tests, the TUI)."""
        while self.rounds_ended < count:
            await self._round_done.wait()

    def _emit(self, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, fields)

    # -- service -----------------------------------------------------------------------

    async def run(self, node: Node, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._node = node
        self._clock = AnchoredClock()
        node.blob_store.put(self._blob)
        node.handle(FL_PROTOCOL, "fl", self._serve)
        announcements = await node.subscribe(ANNOUNCE_TOPIC)  # acks arrive there
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, announcements)
            task_status.started()
            self._emit("fl_coordinator", model_version=self._version, next_round=self._next_round)
            await self._wait_for_sessions(
                self.settings.wait_for_peers or self.settings.min_participants
            )
            done = 0
            while self.settings.rounds == 0 or done < self.settings.rounds:
                pause = self.settings.interval_s if done else self._first_delay
                if pause > 0 and not self._round_requested.is_set():
                    self.next_round_at = time.time() + pause
                    with trio.move_on_after(pause):  # the operator's pacing
                        await self._round_requested.wait()
                self.next_round_at = None
                self._round_requested = trio.Event()
                await self._run_round(self._next_round)
                self._next_round += 1
                done += 1
            self._emit("fl_rounds_finished", rounds=done, model_version=self._version)
            await trio.sleep_forever()  # keep serving sessions (late peers sync the model)

    async def _wait_for_sessions(self, count: int) -> None:
        while sum(s.model_version == self._version for s in self._sessions.values()) < count:
            await self._sessions_changed.wait()

    def _sessions_did_change(self) -> None:
        self._sessions_changed.set()
        self._sessions_changed = trio.Event()

    # -- sessions ----------------------------------------------------------------------

    async def _serve(self, stream: INetStream, peer_id: str) -> None:
        framed = FlStream(stream, max_frame=MAX_FRAME_TO_COORDINATOR)
        session: Session | None = None
        try:
            key = key_of_peer(peer_id)
            with trio.fail_after(self._hello_timeout):
                hello = await framed.receive()
            if not isinstance(hello, FlHello):
                raise FlFrameError("a session starts with fl_hello")
            session = Session(peer_id, key, framed, self._outbox)
            session.model_version = hello.model_version
            old = self._sessions.get(key)
            if old is not None:
                old.close("replaced")
            self._sessions[key] = session
            self.stats.sessions_opened += 1
            self._sessions_did_change()
            session.send.send_nowait(encode_frame(FlModel(self._version, self._codec.kind)))
            state = self._round
            if (
                state is not None
                and state.start_body is not None
                and state.coordinator.stage is RoundStage.COLLECT_READY
            ):
                session.send.send_nowait(state.start_body)  # a late joiner can still be ready
            with session.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._session_task, session, self._write_loop)
                    nursery.start_soon(self._session_task, session, self._read_loop)
            self.stats.sessions_closed[session.reason or "closed"] += 1
        except (FlFrameError, ValueError) as err:
            self.stats.sessions_closed["malformed"] += 1
            log.info("fl session with %s dropped: %s", peer_id, err)
        except trio.TooSlowError:
            self.stats.sessions_closed["no_hello"] += 1
        except GONE as err:
            self.stats.sessions_closed["gone"] += 1
            log.debug("fl session with %s ended: %r", peer_id, err)
        finally:
            if session is not None and self._sessions.get(session.key) is session:
                del self._sessions[session.key]
                self._sessions_did_change()
            with trio.CancelScope(shield=True):
                await reset_stream(stream)

    async def _session_task(self, session: Session, body: Callable[[Session], Any]) -> None:
        try:
            await body(session)
            session.close("closed")
        except FlFrameError as err:
            log.info("fl session with %s dropped: %s", session.peer_id, err)
            session.close("malformed")
        except GONE as err:
            log.debug("fl session with %s ended: %r", session.peer_id, err)
            session.close("gone")

    async def _write_loop(self, session: Session) -> None:
        async for body in session.receive:
            await session.framed.send_raw(body)
            self.stats.frames_out += 1

    async def _read_loop(self, session: Session) -> None:
        while True:
            before = session.framed.bytes_in
            frame = await session.framed.receive()
            if frame is None:
                return
            self.stats.frames_in += 1
            if isinstance(frame, FlHello):
                session.model_version = frame.model_version
                self._sessions_did_change()
                continue
            if not isinstance(frame, FlRound):
                raise FlFrameError(f"{frame.KIND} is not expected from a participant")
            try:
                message = decode_round_message(frame.message)
            except RemoteProtocolError as err:
                raise FlFrameError(str(err)) from None
            if self._round is not None:
                self._round.bytes_in[session.key] += session.framed.bytes_in - before
            try:
                self._inbox_send.send_nowait(Inbound(session.key, message))
            except trio.WouldBlock:
                self.stats.inbox_overflow += 1

    # -- rounds ------------------------------------------------------------------------

    async def _run_round(self, round_id: int) -> None:
        node, clock = self._node, self._clock
        assert node is not None and clock is not None
        _, spec = flatten(self._weights)
        settings = self.settings
        coordinator = RoundCoordinator(
            round_id=round_id,
            signing_key=node.identity.signing_key,
            model=self._weights,
            params=settings.params(spec.size),
            timing=RoundTiming(settings.ready_s, settings.train_s, settings.stage_s),
            strategy=settings.strategy(),
            parent_version=self._parent,
            version_of=self._codec.version,
            # q is fixed from the connected peers before anyone says ready
            # (fl._selection); counting only those already on the newest model would
            # count nobody right after a round, before they adopt it.
            eligible=len(self._sessions),
        )
        now = trio.current_time()
        state = RoundState(coordinator, stage_started=now, started=now)
        while True:  # messages for rounds that are over
            try:
                self._inbox.receive_nowait()
                self.stats.stale_messages += 1
            except trio.WouldBlock:
                break
        self._round = state
        parent = self._version
        self._emit("fl_round_started", round_id=round_id, model_version=parent)
        try:
            async with trio.open_nursery() as nursery:
                state.nursery = nursery
                await self._call(state, coordinator.start, tick=False)
                start = coordinator.round_start
                assert start is not None
                nursery.start_soon(self._announce, start)
                while coordinator.stage not in (RoundStage.DONE, RoundStage.ABORTED):
                    await self._step(state)
                nursery.cancel_scope.cancel()  # pending fetches, the announcement
        finally:
            self._round = None
        self._save_state(round_id)
        self._report(state, parent)

    async def _step(self, state: RoundState) -> None:
        """Wait for one event or the stage deadline and feed it to the state machine."""
        clock = self._clock
        assert clock is not None
        coordinator = state.coordinator
        deadline = coordinator.deadline
        event: Inbound | InboundBlob | None = None
        with trio.move_on_at(clock.to_trio(deadline) if deadline is not None else math.inf):
            event = await self._inbox.receive()
        if event is not None:
            await self._handle(state, event)
        deadline = coordinator.deadline
        if deadline is not None and clock.now() >= deadline:
            await self._call(state, coordinator.tick, tick=True)

    async def _handle(self, state: RoundState, event: Inbound | InboundBlob) -> None:
        clock = self._clock
        assert clock is not None and state.nursery is not None
        coordinator = state.coordinator
        start = coordinator.round_start
        assert start is not None
        if isinstance(event, InboundBlob):
            if event.round_id != start.round_id:
                self.stats.stale_messages += 1
                return
            try:
                await self._call(
                    state, lambda now: coordinator.receive_blob(event.key, event.data, now)
                )
            except Exception:  # a peer's input must never take the relay down, even via a bug
                self.stats.internal_errors += 1
                log.exception("round %d: the coordinator failed on a blob", start.round_id)
            return
        message = event.message
        if message.round_id != start.round_id:
            self.stats.stale_messages += 1
            return
        before = len(coordinator.rejections)
        try:
            await self._call(state, lambda now: coordinator.receive(event.key, message, now))
        except Exception:  # a peer's input must never take the relay down, even via a bug
            self.stats.internal_errors += 1
            log.exception("round %d: the coordinator failed on %s", start.round_id, message.kind)
            return
        if len(coordinator.rejections) > before:
            rejection = coordinator.rejections[-1]
            log.info("round %d: rejected %s: %s", start.round_id, rejection.kind, rejection.reason)
        elif isinstance(message, GradientSubmission):
            state.nursery.start_soon(self._fetch_submission, state, event.key, message)

    async def _call(
        self, state: RoundState, call: Callable[[float], list[Send]], *, tick: bool = False
    ) -> None:
        coordinator = state.coordinator
        before = coordinator.stage
        waiting = coordinator.pending()
        assert self._clock is not None
        sends = await trio.to_thread.run_sync(call, self._clock.now())
        after = coordinator.stage
        if after is not before and before is not RoundStage.NEW:
            now = trio.current_time()
            closed = StageClose.TIMEOUT if tick else StageClose.COMPLETE
            missing = tuple(sorted(peer_of_key(k) for k in waiting)) if tick else ()
            state.stages.append(
                StageTiming(before.value, now - state.stage_started, closed, missing)
            )
            state.stage_started = now
        if after is RoundStage.DONE:
            await self._adopt(state)  # the model blob is served before the update goes out
        self._dispatch(state, sends)
        if after is RoundStage.DONE:
            body = encode_frame(FlModel(self._version, self._codec.kind))
            for session in list(self._sessions.values()):
                self._enqueue(state, session, body)

    async def _adopt(self, state: RoundState) -> None:
        outcome = state.coordinator.outcome
        node = self._node
        assert outcome is not None and node is not None
        blob = await trio.to_thread.run_sync(self._codec.encode, outcome.weights)
        if blob_version(blob) != outcome.update.new_version:
            raise RuntimeError("the model codec does not name weights by their blob")
        node.blob_store.put(blob)
        self._parent, self._version = self._version, outcome.update.new_version
        self._weights, self._blob = dict(outcome.weights), blob
        if self._state_dir is not None:
            atomic_write(self._state_dir / MODEL_FILE, blob)

    def _save_state(self, round_id: int) -> None:
        if self._state_dir is not None:
            save_state(
                self._state_dir, round_id, self._blob, self._version, self._parent, self._codec.kind
            )

    def _dispatch(self, state: RoundState, sends: list[Send]) -> None:
        bodies: dict[int, bytes] = {}
        for send in sends:
            message = send.message
            body = bodies.get(id(message))
            if body is None:
                assert not isinstance(message, Blob)  # only participants send blobs
                body = encode_frame(FlRound(encode_round_message(message)))
                bodies[id(message)] = body
                if isinstance(message, RoundStart):
                    state.start_body = body
            if send.to is None:
                for session in list(self._sessions.values()):
                    self._enqueue(state, session, body)
            else:
                target = self._sessions.get(send.to)
                if target is None:
                    self.stats.undeliverable += 1
                else:
                    self._enqueue(state, target, body)

    def _enqueue(self, state: RoundState, session: Session, body: bytes) -> None:
        try:
            session.send.send_nowait(body)
            state.bytes_out[session.key] += len(body) + 4
        except trio.WouldBlock:
            session.close("slow")  # it cannot keep up: a dropout, not a reason to wait
        except trio.ClosedResourceError:
            self.stats.undeliverable += 1

    async def _announce(self, start: RoundStart) -> None:
        node, clock = self._node, self._clock
        assert node is not None and clock is not None
        announcement = RoundAnnouncement(
            start.round_id, bytes.fromhex(start.model_version), start.params.min_participants
        )
        with trio.move_on_at(clock.to_trio(start.ready_deadline)):
            await node.announce_until_acked(
                ANNOUNCE_TOPIC, announcement, expected=max(1, len(self._sessions))
            )

    async def _fetch_submission(
        self, state: RoundState, key: bytes, message: GradientSubmission
    ) -> None:
        node = self._node
        assert node is not None
        try:
            with trio.fail_after(self.settings.stage_s):
                data = await fetch_blob_bytes(
                    node.host,
                    peer_of_key(key),
                    message.submission_hash,
                    max_size=message.blob_bytes,
                )
        except (BlobError, trio.TooSlowError) as err:
            state.blob_failures += 1
            log.info("round %d: no masked input from %s: %r", message.round_id, key.hex()[:12], err)
            return
        state.bytes_in[key] += len(data)
        try:
            self._inbox_send.send_nowait(InboundBlob(message.round_id, key, data))
        except trio.WouldBlock:
            self.stats.inbox_overflow += 1

    def _report(self, state: RoundState, parent: str) -> None:
        report = round_report(state, parent)
        self.reports.append(report)
        self.rounds_ended += 1
        self._round_done.set()
        self._round_done = trio.Event()
        self._emit("fl_round_done", **report.to_json())
