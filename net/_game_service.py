"""The trio shell around `GameSession`: one persistent ``/p2pgo/game/1`` stream per game.

Frames are the blob protocol's (4-byte length + one wire message). The challenger opens
the stream with a `GameChallenge`; the challenged peer's `GamePolicy` accepts or
declines. Both sides then run the same loop (`_drive`): read one message, feed it to
the session, send the replies, then let the policy act (a move on our turn, a
dead-stone proposal in scoring) and send that. A finished game is stored in both
players' `engine.GameStore` with both signatures.

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
from typing import Any, Protocol

import trio
from libp2p.abc import INetStream
from libp2p.connection_types import ConnectionType
from libp2p.exceptions import BaseLibp2pError
from libp2p.peer.id import ID

from engine import GameStore, HeuristicPlayer, Move, Point, estimate_dead
from net._blob import FramedStream
from net._errors import NetError, ProtocolError
from net._game import GamePhase, GameProtocolError, GameSession, GameTerms
from net._wire import GameChallenge, GameSync, Message

GAME_PROTOCOL = "/p2pgo/game/1"
log = logging.getLogger(__name__)
# What a dying connection raises while we read or write a game stream.
_DROPPED = (BaseLibp2pError, EOFError, OSError, trio.BrokenResourceError, trio.ClosedResourceError)

GameEventSink = Callable[[str, dict[str, Any]], None]


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
        """Our next move (runs in a worker thread: the session must not be changed)."""
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
    ) -> None:
        self._store = store
        self.policy = policy
        self.accept_challenges = accept_challenges
        self._on_event = on_event
        self._idle_timeout = idle_timeout
        self._reconnect_timeout = reconnect_timeout
        self._drop_after = drop_after_moves  # test hook: cut the connection once, mid-game
        self._dropped_once = False
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
            terms, self._node.peer_id, self._node.identity.signing_key, key, challenger=challenger
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
            outbox = session.accept()
            self._emit("game_accepted", game_id=terms.game_id, opponent=peer)
        elif isinstance(first, GameSync):
            known = self.sessions.get(first.game_id)
            if known is None or known.opponent != peer:
                raise GameProtocolError(f"no game {first.game_id} with {peer}")
            session = known
            outbox = [*session.sync(), *session.receive(first)]
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
        try:
            await _send_all(framed, outbox)
            await _send_all(framed, await self._act(session))
            while session.phase not in (GamePhase.FINISHED, GamePhase.DECLINED):
                with trio.fail_after(self._idle_timeout):
                    message = await framed.receive()
                if message is None:
                    raise _Dropped("the opponent closed the stream")
                before = len(session.rejected_incoming)
                await _send_all(framed, session.receive(message))
                if len(session.rejected_incoming) > before:
                    self._emit(
                        "game_move_rejected",
                        game_id=session.game_id,
                        reason=session.rejected_incoming[-1],
                    )
                await self._maybe_drop(session)
                await _send_all(framed, await self._act(session))
        except trio.TooSlowError:
            raise _Dropped("the opponent went silent") from None
        except GameProtocolError:
            raise
        except ProtocolError as err:  # a frame cut off by the dying connection
            raise _Dropped(str(err)) from None
        except _DROPPED as err:
            raise _Dropped(repr(err)) from None
        if session.phase is GamePhase.FINISHED and session.game_id not in self.outcomes:
            self._finish(session)

    async def _act(self, session: GameSession) -> list[Message]:
        policy = self.policy
        if policy is None:
            return []
        if session.my_turn:
            move = await trio.to_thread.run_sync(policy.choose, session)
            return session.play(move)
        if session.phase is GamePhase.SCORING and (session.our_dead is None or session.disputed):
            points = await trio.to_thread.run_sync(policy.dead_stones, session)
            size = session.terms.size
            if session.our_dead != tuple(sorted(r * size + c for r, c in points)):
                return session.propose_dead(points)
        return []

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


async def _reset(stream: INetStream | None) -> None:
    if stream is None:
        return
    try:
        await stream.reset()
    except Exception as err:  # the stream may already be gone
        log.debug("resetting a game stream failed: %r", err)
