"""The trio shell around `GameSession`: one persistent ``/p2pgo/game/1`` stream per game.

Frames are the blob protocol's (4-byte length + one wire message). The challenger opens
the stream with a `GameChallenge`; the challenged peer's `GamePolicy` accepts or
declines. Both sides then run the same loop (`_drive`): a reader feeds every message
to the session as it arrives and sends the replies, while an actor lets the policy
act (a move on our turn, a dead-stone proposal in scoring) and sends that; the two
share one send lock. Reading never waits for the policy, so a resignation or a flag
fall ends the game while our side is still thinking (the policy's worker thread is
abandoned then). A finished game is stored in both players' `engine.GameStore` with
both signatures.

Clocks: every session call gets ``now`` from the service's clock (`trio.current_time`
unless one is injected). The reader wakes at the session's `flag_deadline` and calls
`check_time`, so either side ends a game whose running clock ran out. `resign` may be
called at any time (it sends on the live stream; after a drop the resumed stream
resends it). Timed games emit ``game_clock`` events after every change.

Dropped connections: the challenger re-dials the address it used (direct or
``/p2p-circuit``) with backoff and opens a new stream that starts with `GameSync`; the
challenged side keeps the session and attaches it to the new stream when a `GameSync`
for it arrives. `GameProtocolError` (the opponent broke the protocol) ends the game's
stream for good.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard, TypeVar

import trio
from libp2p.abc import INetStream
from libp2p.connection_types import ConnectionType
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from engine import GameStore, HeuristicPlayer, Move, Point, estimate_dead
from net._blob import FramedStream
from net._errors import NetError, ProtocolError
from net._game import GamePhase, GameProtocolError, GameSession, GameStateError, GameTerms
from net._game_clock import TIME_GRACE_S, ClockView
from net._wire import GameChallenge, GameSync, Message

GAME_PROTOCOL = "/p2pgo/game/1"
log = logging.getLogger(__name__)
# What a dying connection raises while we read or write a game stream.
_DROPPED = (BaseLibp2pError, EOFError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)

GameEventSink = Callable[[str, dict[str, Any]], None]
_FINAL = (GamePhase.FINISHED, GamePhase.DECLINED)
_T = TypeVar("_T")


class GameError(NetError):
    """A game could not be played to its end (declined, unreachable, protocol broken)."""


class _Dropped(Exception):
    """The game's stream died; the game may resume on a new one."""


class GamePolicy(Protocol):
    """Our side's decisions (the AI here; the TUI's human player later)."""

    def decline_reason(self, terms: GameTerms) -> str | None:
        """None to accept a challenge, else why we decline it."""
        ...

    def choose(self, session: GameSession) -> Move:
        """Our next move (runs in a worker thread; read the session, never change it).

        The game may end meanwhile (the opponent resigns, a flag falls): the thread is
        then abandoned and its move dropped, so a blocking `choose` should also wake
        when the game ends (the TUI closes its link).
        """
        ...

    def dead_stones(self, session: GameSession) -> frozenset[Point]:
        """Our dead-stone proposal after two passes (again after a dispute)."""
        ...


class AiPolicy:
    """Plays with `engine.HeuristicPlayer`; passes once the game has `max_moves` moves."""

    def __init__(
        self,
        *,
        seed: int = 0,
        max_moves: int = 400,
        max_size: int = 19,
        playouts: int = 32,
    ) -> None:
        self._player = HeuristicPlayer(seed)
        self.max_moves = max_moves
        self.max_size = max_size
        self.playouts = playouts

    def decline_reason(self, terms: GameTerms) -> str | None:
        return f"board larger than {self.max_size}" if terms.size > self.max_size else None

    def choose(self, session: GameSession) -> Move:
        if len(session.record.moves) >= self.max_moves:
            return Move.pass_(session.color)
        move = self._player.choose(session.position)
        return Move.pass_(session.color) if move.is_resign else move

    def dead_stones(self, session: GameSession) -> frozenset[Point]:
        # Seeded by the chain head, so both AIs estimate the same thing and usually agree.
        seed = int.from_bytes(session.record.head[:4], "big")
        ours = estimate_dead(session.position, playouts=self.playouts, seed=seed)
        theirs = session.their_dead
        if session.disputed and theirs is not None:
            size = session.terms.size
            return ours & frozenset(divmod(p, size) for p in theirs)  # meet halfway
        return ours


@dataclass(frozen=True, slots=True)
class GameOutcome:
    game_id: str
    phase: GamePhase
    result: str
    moves: int
    record_id: str | None  # in our store, with both signatures
    resumes: int  # how many times the stream was re-established


class GameService:
    """Plays games over ``/p2pgo/game/1`` (a `NodeService`)."""

    def __init__(
        self,
        store: GameStore | None,
        policy: GamePolicy | None,
        *,
        accept_challenges: bool = True,
        on_event: GameEventSink | None = None,
        idle_timeout: float = 600.0,
        reconnect_timeout: float = 60.0,
        drop_after_moves: int | None = None,
        clock: Callable[[], float] | None = None,
        grace_s: float = TIME_GRACE_S,
    ) -> None:
        self._store = store
        self.policy = policy
        self.accept_challenges = accept_challenges
        self._on_event = on_event
        self._idle_timeout = idle_timeout
        self._reconnect_timeout = reconnect_timeout
        self._drop_after = drop_after_moves  # test hook: cut the connection once, mid-game
        self._dropped_once = False
        self._clock = clock or trio.current_time
        self._grace_s = grace_s  # the protocol's TIME_GRACE_S; smaller only in tests
        self._links: dict[str, _Link] = {}  # game id -> its live stream
        self._node: Any = None
        self.sessions: dict[str, GameSession] = {}
        self._resumes: dict[str, int] = {}
        self.outcomes: dict[str, GameOutcome] = {}

    async def run(self, node: Any, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._node = node
        node.handle(GAME_PROTOCOL, "game", self._serve)
        task_status.started()
        await trio.sleep_forever()

    def _emit(self, event: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(event, fields)

    # -- for the UI and the CLI (trio side) ------------------------------------

    def clocks(self, game_id: str) -> ClockView | None:
        """Both players' remaining time now (None for an untimed or unknown game)."""
        session = self.sessions.get(game_id)
        return session.clocks(self._clock()) if session is not None else None

    async def resign(self, game_id: str) -> None:
        """Resign game `game_id` now, on either side's turn; `GameError` if not in play."""
        session = self.sessions.get(game_id)
        if session is None:
            raise GameError(f"no game {game_id}")
        try:
            messages = session.resign(self._clock())
        except GameStateError as err:
            raise GameError(f"cannot resign game {game_id}: {err}") from None
        self._emit("game_resigning", game_id=game_id, queued=not messages)
        link = self._links.get(game_id)
        if link is not None and messages:
            try:
                await link.send(messages)
            except _DROPPED as err:  # the resumed stream resends the pending resignation
                log.info("game %s: resignation not sent yet (%r)", game_id, err)

    # -- the challenger --------------------------------------------------------

    def new_terms(
        self,
        opponent: str,
        *,
        size: int = 9,
        rules: str = "chinese",
        komi: float = 7.5,
        black: bool = True,
        main_time_s: int = 0,
        increment_s: int = 0,
        date: str = "",
    ) -> GameTerms:
        me = self._node.peer_id
        b, w = (me, opponent) if black else (opponent, me)
        return GameTerms(uuid.uuid4().hex, size, rules, komi, b, w, main_time_s, increment_s, date)

    async def challenge(self, addr: str, terms: GameTerms) -> GameOutcome:
        """Challenge the peer at `addr` and play the game to its end; raises `GameError`."""
        if self.policy is None:
            raise GameError("no policy to play with")
        node = self._node
        opponent = terms.white if terms.black == node.peer_id else terms.black
        session = self._session(terms, opponent, challenger=True)
        outbox: list[Message] = [terms.challenge_message(node.peer_id)]
        self._emit("game_challenge", game_id=terms.game_id, opponent=opponent)
        backoff = 0.5
        deadline = trio.current_time() + self._reconnect_timeout
        while True:
            stream: INetStream | None = None
            try:
                await node.connect(addr)
                stream = await node.new_stream(opponent, GAME_PROTOCOL)
                await self._drive(session, FramedStream(stream), outbox)
                await stream.close()
                return self._outcome(session)
            except GameProtocolError as err:
                await _reset(stream)
                raise GameError(f"game {terms.game_id}: {err}") from None
            except (_Dropped, NetError, *_DROPPED) as err:
                await _reset(stream)
                if session.phase is GamePhase.CHALLENGED and not isinstance(err, _Dropped):
                    if trio.current_time() > deadline:
                        raise GameError(f"cannot reach {opponent}: {err!r}") from None
                elif trio.current_time() > deadline:
                    raise GameError(f"game {terms.game_id} lost: {err!r}") from None
                log.info("game %s: stream dropped (%r); resuming", terms.game_id, err)
            await trio.sleep(backoff)  # retry pacing, not sequencing
            backoff = min(backoff * 2, 5.0)
            if session.phase is not GamePhase.CHALLENGED:
                self._resumes[terms.game_id] = self._resumes.get(terms.game_id, 0) + 1
                deadline = trio.current_time() + self._reconnect_timeout
                outbox = session.sync()
                self._emit("game_resuming", game_id=terms.game_id, moves=len(session.record.moves))

    def _session(self, terms: GameTerms, opponent: str, *, challenger: bool) -> GameSession:
        public = ID.from_base58(opponent).extract_public_key()
        if public is None:  # only Ed25519-style ids embed their key, as ours all do
            raise GameError(f"peer id {opponent} does not embed its public key")
        key = public.to_bytes()
        session = GameSession(
            terms,
            self._node.peer_id,
            self._node.identity.signing_key,
            key,
            challenger=challenger,
            grace_s=self._grace_s,
        )
        self.sessions[terms.game_id] = session
        return session

    # -- the challenged --------------------------------------------------------

    async def _serve(self, stream: INetStream, peer: str) -> None:
        framed = FramedStream(stream)
        with trio.fail_after(30):
            first = await framed.receive()
        if isinstance(first, GameChallenge):
            terms = GameTerms.from_challenge(first, peer)
            if terms.game_id in self.sessions:
                raise GameProtocolError(f"game {terms.game_id} exists already")
            if self._node.peer_id not in (terms.black, terms.white):
                raise GameProtocolError(f"game {terms.game_id} is not ours to play")
            session = self._session(terms, peer, challenger=False)
            reason = (
                "not accepting challenges"
                if self.policy is None or not self.accept_challenges
                else self.policy.decline_reason(terms)
            )
            if reason is not None:
                await _send_all(framed, session.decline(reason))
                await stream.close()
                self._emit("game_declined", game_id=terms.game_id, reason=reason)
                return
            outbox = session.accept(self._clock())
            self._emit("game_accepted", game_id=terms.game_id, opponent=peer)
        elif isinstance(first, GameSync):
            known = self.sessions.get(first.game_id)
            if known is None or known.opponent != peer:
                raise GameProtocolError(f"no game {first.game_id} with {peer}")
            session = known
            outbox = [*session.sync(), *session.receive(first, self._clock())]
            self._resumes[session.game_id] = self._resumes.get(session.game_id, 0) + 1
            self._emit("game_resumed", game_id=session.game_id, moves=len(session.record.moves))
        else:
            raise GameProtocolError(
                f"a game stream starts with a challenge or sync, not {first!r:.60}"
            )
        try:
            await self._drive(session, framed, outbox)
            await stream.close()
        except _Dropped as err:
            log.info("game %s: stream dropped (%r); waiting for a resume", session.game_id, err)

    # -- both ------------------------------------------------------------------

    async def _drive(
        self, session: GameSession, framed: FramedStream, outbox: list[Message]
    ) -> None:
        """Play on one stream until the game ends; `_Dropped` if the stream dies first."""
        link = _Link(framed)
        self._links[session.game_id] = link
        try:
            async with trio.open_nursery() as nursery:
                await link.send(outbox)
                # Frames are read by a task of their own: waiting on its channel can be
                # cut short (a flag deadline) without cutting a frame in half.
                inbox_send, inbox = trio.open_memory_channel[Message | None](0)
                nursery.start_soon(_read_frames, framed, inbox_send)
                nursery.start_soon(self._actor, session, link)
                await self._reader(session, link, inbox)
                nursery.cancel_scope.cancel()  # the frame reader and the actor run on
        except BaseExceptionGroup as group:
            raise _first_cause(group) from None
        except (ProtocolError, trio.TooSlowError, *_DROPPED) as err:
            raise _translated(err) from None
        finally:
            if self._links.get(session.game_id) is link:
                del self._links[session.game_id]
        if session.phase is GamePhase.FINISHED and session.game_id not in self.outcomes:
            self._finish(session)

    async def _reader(
        self,
        session: GameSession,
        link: _Link,
        inbox: trio.MemoryReceiveChannel[Message | None],
    ) -> None:
        while session.phase not in _FINAL:
            flag_at = session.flag_deadline()
            wait = self._idle_timeout
            if flag_at is not None:
                wait = min(wait, max(0.0, flag_at - self._clock()))
            message: Message | None = None
            with trio.move_on_after(wait):
                message = await inbox.receive()
                if message is None:
                    raise _Dropped("the opponent closed the stream")
            now = self._clock()
            if message is None:
                if flag_at is None or wait >= self._idle_timeout:
                    raise trio.TooSlowError  # nothing arrived within the idle timeout
                await link.send(session.check_time(now))  # may still be a hair early
            else:
                before = len(session.rejected_incoming)
                await link.send(session.receive(message, now))
                if len(session.rejected_incoming) > before:
                    self._emit(
                        "game_move_rejected",
                        game_id=session.game_id,
                        reason=session.rejected_incoming[-1],
                    )
                await self._maybe_drop(session)
            self._emit_clock(session)
            link.changed()

    async def _actor(self, session: GameSession, link: _Link) -> None:
        """Let the policy act whenever the game's state allows it."""
        while True:
            seen = link.version
            messages = await self._act(session)
            if messages:
                await link.send(messages)
                self._emit_clock(session)
                link.changed()
            else:
                await link.wait_changed(seen)

    async def _act(self, session: GameSession) -> list[Message]:
        policy = self.policy
        if policy is None:
            return []
        if session.my_turn:
            moves = len(session.record.moves)
            move = await _abandonable(policy.choose, session)
            if not session.my_turn or len(session.record.moves) != moves:
                return []  # the game moved on while we thought (a resignation, a flag)
            now = self._clock()
            return session.check_time(now) or session.play(move, now)
        if session.phase is GamePhase.SCORING and (session.our_dead is None or session.disputed):
            head = session.record.head
            points = await _abandonable(policy.dead_stones, session)
            if session.phase is not GamePhase.SCORING or session.record.head != head:
                return []
            size = session.terms.size
            if session.our_dead != tuple(sorted(r * size + c for r, c in points)):
                return session.propose_dead(points)
        return []

    def _emit_clock(self, session: GameSession) -> None:
        view = session.clocks(self._clock())
        if view is None:
            return
        running = view.running.letter if view.running is not None else None
        self._emit(
            "game_clock",
            game_id=session.game_id,
            black_s=round(view.black_s, 3),
            white_s=round(view.white_s, 3),
            running=running,
        )

    async def _maybe_drop(self, session: GameSession) -> None:
        if (
            self._drop_after is not None
            and not self._dropped_once
            and len(session.record.moves) >= self._drop_after
        ):
            self._dropped_once = True
            self._emit("game_dropping", game_id=session.game_id, moves=len(session.record.moves))
            await self._node.host.get_network().close_peer(ID.from_base58(session.opponent))

    def _finish(self, session: GameSession) -> None:
        final = session.final_record
        assert final is not None
        record_id = None
        if self._store is not None:
            record_id = self._store.save(final)
            self._store.add_signature(
                record_id, session.opponent_key, session.signatures[session.opponent_key]
            )
            self._store.flush()
        outcome = self._outcome(session, record_id)
        self.outcomes[session.game_id] = outcome
        conns = self._node.host.get_network().get_connections(ID.from_base58(session.opponent))
        via = sorted({c.get_connection_type().value for c in conns}) or [
            ConnectionType.DIRECT.value
        ]
        self._emit(
            "game_finished",
            game_id=session.game_id,
            result=outcome.result,
            moves=outcome.moves,
            record_id=record_id,
            signatures=len(session.signatures),
            resumes=outcome.resumes,
            rejected_incoming=len(session.rejected_incoming),
            connections=via,
        )

    def _outcome(self, session: GameSession, record_id: str | None = None) -> GameOutcome:
        known = self.outcomes.get(session.game_id)
        if known is not None:
            return known
        return GameOutcome(
            session.game_id,
            session.phase,
            session.result,
            len(session.record.moves),
            record_id,
            self._resumes.get(session.game_id, 0),
        )


async def _send_all(framed: FramedStream, messages: list[Message]) -> None:
    for message in messages:
        await framed.send(message)


async def _abandonable(fn: Callable[[GameSession], _T], session: GameSession) -> _T:
    """Run a policy call in a worker thread that a finished game may leave behind."""
    # mypy 1.x rejects trio's keyword-only arguments after *args: Unpack[Ts].
    return await trio.to_thread.run_sync(fn, session, abandon_on_cancel=True)  # type: ignore[call-arg]


async def _read_frames(framed: FramedStream, inbox: trio.MemorySendChannel[Message | None]) -> None:
    """Hand every frame to the reader; None once the opponent closed the stream."""
    async with inbox:
        while True:
            message = await framed.receive()
            await inbox.send(message)
            if message is None:
                return


class _Link:
    """One game's live stream: sends under one lock (the reader, the actor and
    `resign` share it) and a change counter the actor waits on."""

    def __init__(self, framed: FramedStream) -> None:
        self.framed = framed
        self._lock = trio.Lock()
        self.version = 0
        self._changed = trio.Event()

    async def send(self, messages: list[Message]) -> None:
        if messages:
            async with self._lock:
                await _send_all(self.framed, messages)

    def changed(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, seen: int) -> None:
        while self.version == seen:
            await self._changed.wait()


def _is_dropped(err: BaseException) -> TypeGuard[Exception]:
    """A failure of the stream itself (a frame cut off by a dying connection included)."""
    if isinstance(err, GameProtocolError):
        return False
    return isinstance(err, (_Dropped, trio.TooSlowError, ProtocolError, *_DROPPED))


def _translated(err: BaseException) -> BaseException:
    """What `_drive` raises for one failure: the opponent's fault, or a dropped stream."""
    if isinstance(err, GameProtocolError | _Dropped):
        return err
    if isinstance(err, trio.TooSlowError):
        return _Dropped("the opponent went silent")
    return _Dropped(repr(err)) if _is_dropped(err) else err


def _first_cause(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The reader's and actor's failures come out of their nursery as a group."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        err = stack.pop()
        if isinstance(err, BaseExceptionGroup):
            stack.extend(err.exceptions)
        else:
            leaves.append(err)
    for err in leaves:
        if isinstance(err, GameProtocolError):
            return err
    for err in leaves:
        if _is_dropped(err):
            return _translated(err)
    return group


async def _reset(stream: INetStream | None) -> None:
    if stream is None:
        return
    try:
        await stream.reset()
    except Exception as err:  # the stream may already be gone
        log.debug("resetting a game stream failed: %r", err)
