"""The coordinator of one federated round, as a sans-IO state machine.

Theory of operation. The coordinator moves through `RoundStage`s; `TRANSITIONS` is the
whole table of (stage, event) -> next stage (both, with the records this module hands
out, live in `fl._round_states`). Events come from three calls:

* `start(now)` opens the round (RoundStart to everyone);
* `receive(peer, message, now)` / `receive_blob(peer, data, now)` feed what a peer sent;
* `tick(now)` reports the time; a stage whose deadline has passed closes.

Each returns the list of `Send`s to deliver. A stage also closes as soon as every peer
it waits for has answered. A local call that has no table entry (starting twice) raises
`LocalProtocolError`; a remote message with no entry for the current stage, or that fails
any check (wrong round, not the delivering peer, unselected, bad signature, bad proof of
work, duplicate, bad SecAgg content), is *rejected*: recorded in `rejections` with the
peer and reason, and the round's state is unchanged. Dropouts are normal: a peer that
says nothing by a deadline is left out; if too few remain (SecAgg's threshold or the
round's `min_participants`), the round aborts and RoundAborted goes to everyone.

Stages and what closes them:

    COLLECT_READY      ready deadline: Poisson-sample the ready peers (`fl._selection`)
    ADVERTISE_KEYS     train timeout (selected peers train before advertising keys)
    SHARE_KEYS         stage timeout
    MASKED_INPUT       stage timeout: a GradientSubmission plus its blob (hash-checked)
    CONSISTENCY_CHECK  stage timeout (survivors sign U3, acknowledged with hashes)
    UNMASK             stage timeout: unmask, dequantise, average, apply the strategy

The aggregate is the plain mean of the survivors' clipped, noised updates (DP-FedAvg):
each input counts once, so the clip norm bounds every peer's influence; weighting by
example counts would have to happen inside the secure sum and would scale the
sensitivity by the largest weight. The mean delta then goes through the server
strategy (FedAvg/FedProx step or FedAdam), and the ModelUpdate is signed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace

import blake3
import numpy as np
from nacl.signing import SigningKey

from fl._aggregate import FedAdam, FedAdamState, FedAvg
from fl._compress import unpack_quantized
from fl._dp import Sampling
from fl._errors import FlInputError, LocalProtocolError, RemoteProtocolError, SecAggAborted
from fl._merkle import merkle_root
from fl._pow import PowChallenge, RateLimiter, verify_pow
from fl._quant import QuantSpec, dequantize_sum
from fl._round_codec import secagg_round_id, sign_message, verify_signature
from fl._round_messages import (
    GradientSubmission,
    ModelUpdate,
    NotSelected,
    PeerId,
    PeerReady,
    RoundAborted,
    RoundMessage,
    RoundParams,
    RoundStart,
    SecAggStep,
    Selection,
    Send,
    SurvivorsAck,
    check_version,
)
from fl._round_states import (
    MESSAGE_TYPES,
    TRANSITIONS,
    Event,
    Rejection,
    RoundOutcome,
    RoundStage,
    RoundTiming,
    coordinator_event,
)
from fl._round_update import tensors_version
from fl._secagg_coordinator import SecAggCoordinator
from fl._secagg_types import (
    MaskedInput,
    SecAggConfig,
    SecAggResult,
)
from fl._selection import (
    announced_rate,
    draw_seed,
    graph_seed,
    select_peers,
    selection_commitment,
)
from fl._tensors import NamedTensors, flatten, unflatten

__all__ = [
    "TRANSITIONS",
    "Event",
    "Rejection",
    "RoundCoordinator",
    "RoundOutcome",
    "RoundStage",
    "RoundTiming",
]

_FRAME_HEADER_BYTES = 10


class RoundCoordinator:
    """Coordinator of round `round_id` on `model` (see the module docstring).

    `version_of` names weights (default `tensors_version`); `seed` is the selection
    seed (32 random bytes by default; pass one only in tests); `limiter` bounds how
    often one peer may send (checked before any signature is verified).

    `eligible`, when given, is how many peers the coordinator expects could say ready
    (the sessions holding the current model): the announced sampling rate is then
    `announced_rate(target, dropout, eligible, cap)` with `params.sampling_rate` as the
    cap, so a big network gets a small q (cheap rounds) and a tiny one a high q. Without
    it `params.sampling_rate` is announced as given. Either way the draw uses exactly
    the announced rate, the one every peer accounts with.
    """

    def __init__(
        self,
        *,
        round_id: int,
        signing_key: SigningKey,
        model: NamedTensors,
        params: RoundParams,
        timing: RoundTiming | None = None,
        strategy: FedAvg | FedAdam | None = None,
        server_state: FedAdamState | None = None,
        parent_version: str = "",
        version_of: Callable[[Mapping[str, np.ndarray]], str] = tensors_version,
        seed: bytes | None = None,
        limiter: RateLimiter | None = None,
        max_ready: int = 100_000,
        eligible: int | None = None,
    ) -> None:
        check_version("parent_version", parent_version, allow_empty=True)
        _, self._spec = flatten(model)  # validates the model
        self._model = dict(model)
        self._version = version_of(model)
        self._key = signing_key
        self._me: PeerId = bytes(signing_key.verify_key)
        self._round_id = round_id
        self._strategy = strategy if strategy is not None else FedAvg()
        merged = {**params.hyperparam_dict(), **self._strategy.configure_fit(round_id)}
        params = replace(params, hyperparams=tuple(sorted(merged.items())))
        if eligible is not None:
            rate = announced_rate(
                params.target_participants, params.expected_dropout, eligible, params.sampling_rate
            )
            params = replace(params, sampling_rate=float(rate))
        self._params = params
        self._timing = timing or RoundTiming()
        self._server_state = server_state
        self._parent = parent_version
        self._version_of = version_of
        self._seed = seed if seed is not None else os.urandom(32)
        self._limiter = limiter if limiter is not None else RateLimiter(32, 1.0)
        self._max_ready = max_ready
        self._stage = RoundStage.NEW
        self._deadline: float | None = None
        self._start: RoundStart | None = None
        self._secagg_id = b""
        self._ready: dict[PeerId, PeerReady] = {}
        self._selection: Selection | None = None
        self._index: dict[PeerId, int] = {}
        self._secagg: SecAggCoordinator | None = None
        self._quant: QuantSpec | None = None
        self._submissions: dict[int, GradientSubmission] = {}
        self._accepted: dict[int, bytes] = {}
        self._early_blobs: dict[int, bytes] = {}  # blobs that overtook their submission
        self._rejections: list[Rejection] = []
        self._outcome: RoundOutcome | None = None
        self._abort_reason: str | None = None

    # -- read-only views ---------------------------------------------------------------

    @property
    def stage(self) -> RoundStage:
        return self._stage

    @property
    def deadline(self) -> float | None:
        """When the current stage closes by itself (None when no stage is open)."""
        return self._deadline

    @property
    def round_start(self) -> RoundStart | None:
        return self._start

    @property
    def selection(self) -> Selection | None:
        return self._selection

    @property
    def params(self) -> RoundParams:
        """The round's parameters (with the strategy's hyperparameters merged in)."""
        return self._params

    @property
    def ready_peers(self) -> tuple[PeerId, ...]:
        return tuple(sorted(self._ready))

    @property
    def rejections(self) -> tuple[Rejection, ...]:
        return tuple(self._rejections)

    @property
    def outcome(self) -> RoundOutcome | None:
        """The result once the stage is DONE."""
        return self._outcome

    @property
    def abort_reason(self) -> str | None:
        return self._abort_reason

    @property
    def quant_spec(self) -> QuantSpec | None:
        """The quantisation of this round, once peers are selected."""
        return self._quant

    def pending(self) -> frozenset[PeerId]:
        """Selected peers the current SecAgg stage still waits for."""
        if self._secagg is None or self._selection is None:
            return frozenset()
        return frozenset(self._selection.selected[i] for i in self._secagg.pending())

    # -- events --------------------------------------------------------------------------

    def _transition(self, event: Event) -> RoundStage:
        nxt = TRANSITIONS.get((self._stage, event))
        if nxt is None:
            raise LocalProtocolError(f"{event.value} is not allowed at stage {self._stage.value}")
        return nxt

    def start(self, now: float) -> list[Send]:
        """Open the round: RoundStart to everyone."""
        self._stage = self._transition(Event.START)
        start = RoundStart(
            self._round_id,
            self._me,
            self._version,
            self._parent,
            self._spec.size,
            self._params,
            float(now + self._timing.ready_seconds),
            float(self._timing.train_seconds),
            float(self._timing.stage_seconds),
            selection_commitment(self._seed),
        )
        self._start = sign_message(start, self._key)
        self._secagg_id = secagg_round_id(self._start)
        self._deadline = self._start.ready_deadline
        return [Send(None, self._start)]

    def abort(self, reason: str, now: float) -> list[Send]:
        """Abort the round from this side (an operator's decision)."""
        self._transition(Event.ABORT)
        return self._abort(reason)

    def tick(self, now: float) -> list[Send]:
        """Report the time: closes the current stage if its deadline has passed."""
        if self._deadline is None or now < self._deadline:
            return []
        return self._close(now)

    def receive(self, peer: PeerId, message: RoundMessage, now: float) -> list[Send]:
        """Handle one message delivered by (and authenticated as) `peer`."""
        if not isinstance(message, MESSAGE_TYPES):
            raise LocalProtocolError(f"not a round message: {type(message).__name__}")
        try:
            return self._receive(peer, message, now)
        except RemoteProtocolError as exc:
            self._reject(peer, message.kind, exc.reason, now)
            return []

    def receive_blob(self, peer: PeerId, data: bytes, now: float) -> list[Send]:
        """Handle the masked-vector blob `peer` announced in its GradientSubmission."""
        try:
            return self._receive_blob(peer, data, now)
        except RemoteProtocolError as exc:
            self._reject(peer, "blob", exc.reason, now)
            return []

    # -- validation ----------------------------------------------------------------------

    def _reject(self, peer: PeerId, kind: str, reason: str, now: float) -> None:
        self._rejections.append(Rejection(bytes(peer), kind, reason, self._stage, now))

    def _admit(self, peer: PeerId, kind: str, event: Event, now: float) -> None:
        """Checks every remote input passes before anything is looked at closely."""
        if not self._limiter.allow(peer.hex(), now):
            raise RemoteProtocolError("rate limited")
        if (self._stage, event) not in TRANSITIONS:
            raise RemoteProtocolError(f"{kind} is not accepted at stage {self._stage.value}")
        if event is not Event.PEER_READY and peer not in self._index:
            raise RemoteProtocolError("peer is not selected for this round")

    def _receive(self, peer: PeerId, message: RoundMessage, now: float) -> list[Send]:
        event = coordinator_event(message)
        if event is None:
            raise RemoteProtocolError(f"{message.kind} is not a participant message")
        if message.round_id != self._round_id:
            raise RemoteProtocolError(f"message is for round {message.round_id}")
        if message.sender != peer:
            raise RemoteProtocolError("message sender is not the peer that delivered it")
        self._admit(peer, message.kind, event, now)
        if not verify_signature(message, peer):
            raise RemoteProtocolError("bad signature")
        if isinstance(message, PeerReady):
            self._on_ready(peer, message)
            return []
        if isinstance(message, GradientSubmission):
            self._on_submission(peer, message)
            early = self._early_blobs.pop(self._index[peer], None)
            return [] if early is None else self.receive_blob(peer, early, now)
        assert isinstance(message, SecAggStep) and self._secagg is not None
        if getattr(message.body, "sender", None) != self._index[peer]:
            raise RemoteProtocolError("SecAgg index does not match the sender")
        self._secagg.receive(message.body)  # type: ignore[arg-type]
        return self._close_if_complete(now)

    def _on_ready(self, peer: PeerId, message: PeerReady) -> None:
        if peer in self._ready:
            raise RemoteProtocolError("duplicate PeerReady")
        if len(self._ready) >= self._max_ready:
            raise RemoteProtocolError("the round is full")
        self._ready[peer] = message

    def _on_submission(self, peer: PeerId, message: GradientSubmission) -> None:
        assert self._secagg is not None
        index = self._index[peer]
        if index in self._submissions:
            raise RemoteProtocolError("duplicate submission")
        if index not in self._secagg.pending():
            raise RemoteProtocolError("peer is not expected to submit (it left an earlier stage)")
        if message.blob_bytes > self._max_blob_bytes():
            raise RemoteProtocolError("announced blob is larger than a masked vector")
        challenge = PowChallenge(
            self._secagg_id, peer, message.submission_hash, self._params.pow_difficulty
        )
        if not verify_pow(challenge, message.pow_nonce):
            raise RemoteProtocolError("bad proof of work")
        self._submissions[index] = message

    def _max_blob_bytes(self) -> int:
        width = 2 if self._params.modulus_bits <= 16 else 4
        return _FRAME_HEADER_BYTES + width * self._spec.size

    def _receive_blob(self, peer: PeerId, data: bytes, now: float) -> list[Send]:
        self._admit(peer, "blob", Event.BLOB, now)
        assert self._secagg is not None
        index = self._index[peer]
        if index in self._accepted or index in self._early_blobs:
            raise RemoteProtocolError("duplicate blob")
        submission = self._submissions.get(index)
        if submission is None:
            # The blob overtook its submission (they travel separately): hold one per
            # selected peer, no bigger than a masked vector, until the submission comes.
            if len(data) > self._max_blob_bytes():
                raise RemoteProtocolError("blob is larger than a masked vector")
            self._early_blobs[index] = bytes(data)
            return []
        if len(data) != submission.blob_bytes or (
            blake3.blake3(data).digest() != submission.submission_hash
        ):
            raise RemoteProtocolError("blob does not match the submission's hash")
        try:
            vector, bits = unpack_quantized(data)
        except FlInputError as exc:
            raise RemoteProtocolError(f"malformed blob: {exc}") from exc
        if bits != self._params.modulus_bits:
            raise RemoteProtocolError("blob is not in this round's field")
        self._secagg.receive(MaskedInput(self._secagg_id, index, vector))
        self._accepted[index] = submission.submission_hash
        return self._close_if_complete(now)

    # -- stage closing -------------------------------------------------------------------

    def _close_if_complete(self, now: float) -> list[Send]:
        if self._secagg is not None and not self._secagg.pending():
            return self._close(now)
        return []

    def _abort(self, reason: str) -> list[Send]:
        self._stage = RoundStage.ABORTED
        self._deadline = None
        self._abort_reason = reason
        message = RoundAborted(self._round_id, self._me, reason[:500])
        return [Send(None, sign_message(message, self._key))]

    def _close(self, now: float) -> list[Send]:
        closing = self._stage
        nxt = self._transition(Event.CLOSE)
        try:
            if closing is RoundStage.COLLECT_READY:
                sends = self._select()
            elif closing is RoundStage.MASKED_INPUT:
                sends = self._close_masked()
            elif closing is RoundStage.UNMASK:
                sends = self._finish()
            else:
                sends = self._close_secagg(closing)
        except SecAggAborted as exc:
            return self._abort(str(exc))
        if self._stage is RoundStage.ABORTED:
            return sends
        self._stage = nxt
        seconds = (
            self._timing.train_seconds
            if nxt is RoundStage.ADVERTISE_KEYS
            else self._timing.stage_seconds
        )
        self._deadline = None if nxt is RoundStage.DONE else now + seconds
        return sends

    def _step(self, index: int, body: object) -> Send:
        assert self._selection is not None
        message = SecAggStep(self._round_id, self._me, body)  # type: ignore[arg-type]
        return Send(self._selection.selected[index], sign_message(message, self._key))

    def _select(self) -> list[Send]:
        params = self._params
        ready = sorted(self._ready)
        public = params.sampling is Sampling.NONE
        nonces = [(peer, self._ready[peer].nonce) for peer in ready] if public else []
        seed = draw_seed(self._seed, nonces)
        plan = select_peers(
            ready,
            per_round=params.target_participants,
            expected_dropout=params.expected_dropout,
            rate=params.sampling_rate,
            draw_seed=seed,
        )
        n = len(plan.selected)
        if n < params.min_participants:
            return self._abort(
                f"{n} peers selected of {len(ready)} ready, need {params.min_participants}"
            )
        try:
            self._quant = params.quant_spec(n)
            config = SecAggConfig.create(
                self._secagg_id,
                plan.selected,
                self._spec.size,
                graph_seed(seed),
                modulus_bits=params.modulus_bits,
            )
        except FlInputError as exc:
            return self._abort(f"cannot run SecAgg with {n} peers: {exc}")
        selection = Selection(
            self._round_id,
            self._me,
            plan.selected,
            config.graph_seed,
            config.degree,
            config.threshold,
            float(plan.rate),
            plan.target,
            self._seed if public else b"",
            tuple(nonces),
        )
        self._selection = sign_message(selection, self._key)
        self._index = {peer: i for i, peer in enumerate(plan.selected)}
        self._secagg = SecAggCoordinator(config)
        if public:
            return [Send(None, self._selection)]
        sends = [Send(peer, self._selection) for peer in plan.selected]
        for peer in ready:
            if peer not in self._index:
                note = NotSelected(self._round_id, self._me, peer)
                sends.append(Send(peer, sign_message(note, self._key)))
        return sends

    def _close_secagg(self, closing: RoundStage) -> list[Send]:
        assert self._secagg is not None
        replies: Mapping[int, object]
        if closing is RoundStage.ADVERTISE_KEYS:
            replies = self._secagg.close_advertise_keys()
        elif closing is RoundStage.SHARE_KEYS:
            replies = self._secagg.close_share_keys()
        else:
            replies = self._secagg.close_consistency_check()
        return [self._step(i, body) for i, body in sorted(replies.items())]

    def _close_masked(self) -> list[Send]:
        assert self._secagg is not None and self._selection is not None
        survivors = self._secagg.close_masked_input().survivors
        if len(survivors) < self._params.min_participants:
            # Abort before any unmasking: fewer noisy inputs than the DP noise assumes.
            return self._abort(
                f"{len(survivors)} masked inputs arrived, need {self._params.min_participants}"
            )
        ack = SurvivorsAck(
            self._round_id, self._me, survivors, tuple(self._accepted[i] for i in survivors)
        )
        ack = sign_message(ack, self._key)
        return [Send(self._selection.selected[i], ack) for i in survivors]

    def _finish(self) -> list[Send]:
        assert self._secagg is not None and self._selection is not None and self._quant
        result: SecAggResult = self._secagg.close_unmask()
        n = len(result.survivors)
        total = dequantize_sum(result.total, self._quant, n).astype(np.float64)
        mean_delta = unflatten((total / n).astype(np.float32), self._spec)
        state = self._server_state
        if isinstance(self._strategy, FedAdam):
            weights, state = self._strategy.step(self._model, mean_delta, state)
        else:
            weights = self._strategy.step(self._model, mean_delta)
        hashes = tuple(self._accepted[i] for i in result.survivors)
        selected = self._selection.selected
        # Published to every peer, so only what the round reveals anyway. How many peers
        # were ready or selected (presence in the sample) and how many examples they hold
        # (raw, un-noised data sizes) are outside the DP accounting: they stay with the
        # coordinator (`ready_peers`, `selection`, `RoundOutcome.num_examples`).
        metrics = {
            "survivors": float(n),
            "rejections": float(len(self._rejections)),
            "sampling_rate": self._selection.rate,
            # einsum, not a BLAS dot: OpenBLAS threads crawl on a busy 2-core machine.
            "mean_delta_l2": float(np.sqrt(np.einsum("i,i->", total, total))) / n,
        }
        update = ModelUpdate(
            self._round_id,
            self._me,
            self._version_of(weights),
            self._version,
            n,
            merkle_root(hashes),
            hashes,
            tuple(sorted(metrics.items())),
        )
        update = sign_message(update, self._key)
        self._outcome = RoundOutcome(
            weights,
            update,
            state,
            mean_delta,
            tuple(selected[i] for i in result.survivors),
            tuple(selected[i] for i in result.dropped),
            sum(self._submissions[i].num_examples for i in result.survivors),
        )
        return [Send(None, update)]
