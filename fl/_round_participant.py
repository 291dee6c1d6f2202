"""A participant of one federated round, as a sans-IO state machine.

Theory of operation. `receive(message, now)` takes what the coordinator sent and returns
the `Send`s to deliver (messages for the coordinator, and the masked-vector `Blob` for
the blob protocol); `tick(now)` gives up on a round that went silent. The success path
is the table `PARTICIPANT_TRANSITIONS` (in `fl._round_states`):

    WAIT_START --RoundStart--> WAIT_SELECTION       ledger check, PeerReady
    WAIT_SELECTION --Selection--> WAIT_ROSTER       train, clip, noise, quantise, keys
    WAIT_ROSTER --KeyRoster--> WAIT_BUNDLE          Shamir-share keys
    WAIT_BUNDLE --ShareBundle--> WAIT_SURVIVORS     mask, blob, proof of work, submit
    WAIT_SURVIVORS --SurvivorsAck--> WAIT_UNMASK    check my hash is acked, sign U3
    WAIT_UNMASK --UnmaskRequest--> WAIT_UPDATE      reveal shares
    any --ModelUpdate / RoundAborted--> FINISHED    verify: adopt or reject

A handler that refuses (budget, unknown model), is not selected, or finds the
coordinator's content wrong (bad roster, a selection that is not the committed draw,
my submission not acknowledged) leaves the success path for OBSERVING: it takes no
further part but still verifies the ModelUpdate, as every peer does before adopting.
Messages not signed by the coordinator, for another round, or with no table entry are
rejected (recorded, state unchanged); exact duplicates (re-announcements) are ignored.

Selected peers train first, when the Selection arrives (so the driver should run that
`receive` in a worker): a peer that fails or is slow to train then drops out before it
has shared any key, the one dropout that costs the round nothing to recover from.

Privacy ledger. The round's event is `RoundParams.privacy_event()`. With secret Poisson
sampling the amplified event covers every round the peer was eligible for, selected or
not (recording it only when selected would count the amplification twice), so it is
recorded on sending PeerReady. Without amplification the full event is recorded when
the peer actually submits its masked input. Either way a round that would exceed the
budget is refused at RoundStart.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import replace

import blake3
import numpy as np
from nacl.signing import SigningKey
from numpy.typing import NDArray

from fl._compress import pack_quantized
from fl._dp import PrivacyEvent, PrivacyLedger, Sampling, add_gaussian_noise
from fl._errors import FlInputError, LocalProtocolError, RemoteProtocolError, SecAggAborted
from fl._pow import PowChallenge, solve_pow
from fl._quant import QuantSpec, quantize
from fl._round_codec import secagg_round_id, sign_message, verify_signature
from fl._round_messages import (
    Blob,
    GradientSubmission,
    ModelUpdate,
    NotSelected,
    PeerId,
    PeerReady,
    RoundAborted,
    RoundMessage,
    RoundStart,
    SecAggStep,
    Selection,
    Send,
    SurvivorsAck,
)
from fl._round_states import (
    MESSAGE_TYPES,
    PARTICIPANT_TRANSITIONS,
    EpsilonFn,
    ParticipantEvent,
    ParticipantStage,
    ParticipantStatus,
    TrainFn,
    Verdict,
    participant_event,
)
from fl._round_update import tensors_version, verify_model_update
from fl._secagg_participant import SecAggParticipant
from fl._secagg_types import (
    KeyRoster,
    SecAggConfig,
    ShareBundle,
    SurvivorList,
    UnmaskRequest,
    default_degree,
)
from fl._selection import draw_seed, graph_seed, select_peers, selection_commitment
from fl._tensors import NamedTensors, clip_l2, flatten

__all__ = [
    "PARTICIPANT_TRANSITIONS",
    "EpsilonFn",
    "ParticipantEvent",
    "ParticipantStage",
    "ParticipantStatus",
    "RoundParticipant",
    "TrainFn",
    "Verdict",
]


class _Diverted(Exception):
    """Internal: a handler leaves the success path (status and reason attached)."""

    def __init__(self, status: ParticipantStatus, reason: str, *, evidence: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.evidence = evidence  # the coordinator provably broke the protocol


class RoundParticipant:
    """This peer's part in one round (see the module docstring).

    `model` is the weights the peer holds (its version, `version_of(model)` unless the
    caller passes `model_version`, must be the round's for the peer to take part); `ledger` its privacy spending so far; `train` its local
    training. `rng` drives noise and stochastic rounding (OS entropy when None; pass one
    only in tests). `keep_contribution` keeps the clipped, noised float vector for
    `take_contribution` (simulations compare it with the secure aggregate).
    """

    def __init__(
        self,
        *,
        signing_key: SigningKey,
        coordinator_key: PeerId,
        model: NamedTensors,
        ledger: PrivacyLedger,
        train: TrainFn,
        game_count: int = 0,
        data_hash: bytes = bytes(32),
        version_of: Callable[[Mapping[str, np.ndarray]], str] = tensors_version,
        model_version: str | None = None,
        epsilon_after: EpsilonFn | None = None,
        rng: np.random.Generator | None = None,
        keep_contribution: bool = False,
        max_pow_difficulty: int = 24,
    ) -> None:
        if len(coordinator_key) != 32 or len(data_hash) != 32:
            raise FlInputError("coordinator_key and data_hash must be 32 bytes")
        _, self._spec = flatten(model)
        self._model = dict(model)
        self._version = model_version if model_version is not None else version_of(model)
        self._version_of = version_of
        self._key = signing_key
        self._me: PeerId = bytes(signing_key.verify_key)
        self._coordinator = bytes(coordinator_key)
        self._ledger = ledger
        self._train = train
        self._games = game_count
        self._data_hash = data_hash
        self._epsilon_after: EpsilonFn = epsilon_after or PrivacyLedger.epsilon_after
        self._rng = rng
        self._keep = keep_contribution
        self._max_pow = max_pow_difficulty
        self._stage = ParticipantStage.WAIT_START
        self._status = ParticipantStatus.IDLE
        self._reason = ""
        self._seen: set[RoundMessage] = set()
        self._rejections: list[tuple[str, str]] = []
        self._start: RoundStart | None = None
        self._secagg_id = b""
        self._nonce = b""
        self._planned: PrivacyEvent | None = None
        self._epsilon: float | None = None
        self._selected = False
        self._secagg: SecAggParticipant | None = None
        self._quant: QuantSpec | None = None
        self._values: NDArray[np.uint32] | None = None
        self._contribution: NDArray[np.float32] | None = None
        self._num_examples = 0
        self._train_metrics: dict[str, float] = {}
        self._my_hash: bytes | None = None
        self._acked: tuple[bytes, ...] | None = None
        self._verdict: Verdict | None = None
        self._evidence: str | None = None
        self._give_up_at = math.inf

    # -- read-only views ---------------------------------------------------------------

    @property
    def peer_id(self) -> PeerId:
        return self._me

    @property
    def stage(self) -> ParticipantStage:
        return self._stage

    @property
    def status(self) -> ParticipantStatus:
        return self._status

    @property
    def reason(self) -> str:
        """Why the status is REFUSED or FAILED (empty otherwise)."""
        return self._reason

    @property
    def ledger(self) -> PrivacyLedger:
        """The privacy ledger, with this round's event once it counts (persist it)."""
        return self._ledger

    @property
    def charged(self) -> PrivacyEvent | None:
        """The event this round added to the ledger (None until it counts). A driver that
        runs several rounds at once (several coordinators) merges this into its one
        ledger (`ledger.record(charged)`) instead of keeping a round's whole copy."""
        return self._planned if self._epsilon is not None else None

    @property
    def epsilon(self) -> float | None:
        """Epsilon spent once this round's event is recorded (None if it was refused)."""
        return self._epsilon

    @property
    def verdict(self) -> Verdict | None:
        """Adopt or reject the ModelUpdate, once it has arrived."""
        return self._verdict

    @property
    def selected(self) -> bool:
        return self._selected

    @property
    def submission_hash(self) -> bytes | None:
        return self._my_hash

    @property
    def train_metrics(self) -> Mapping[str, float]:
        return dict(self._train_metrics)

    @property
    def rejections(self) -> tuple[tuple[str, str], ...]:
        """(kind, reason) of every message ignored as invalid."""
        return tuple(self._rejections)

    def take_contribution(self) -> NDArray[np.float32] | None:
        """The clipped, noised update (if kept), handed over once and then forgotten."""
        out, self._contribution = self._contribution, None
        return out

    def accept_weights(self, weights: NamedTensors) -> NamedTensors:
        """Check fetched weights against the adopted update's version; return them."""
        if self._verdict is None or not self._verdict.adopt:
            raise LocalProtocolError("no verified model update to adopt")
        if self._version_of(weights) != self._verdict.new_version:
            raise RemoteProtocolError("weights do not hash to the updated model version")
        return dict(weights)

    # -- events --------------------------------------------------------------------------

    def tick(self, now: float) -> list[Send]:
        """Give up on a round that has gone past every deadline it announced."""
        if self._stage is not ParticipantStage.FINISHED and now >= self._give_up_at:
            self._finish_unverified("round timed out")
        return []

    def receive(self, message: RoundMessage, now: float) -> list[Send]:
        """Handle one message from the coordinator."""
        if not isinstance(message, MESSAGE_TYPES):
            raise LocalProtocolError(f"not a round message: {type(message).__name__}")
        event = participant_event(message)
        if event is None:
            self._rejections.append((message.kind, "not a coordinator message"))
            return []
        if message in self._seen:
            return []  # a re-announcement of something already handled
        try:
            self._check(message, event)
        except RemoteProtocolError as exc:
            self._rejections.append((message.kind, exc.reason))
            return []
        self._seen.add(message)
        nxt = PARTICIPANT_TRANSITIONS[(self._stage, event)]
        try:
            sends = self._handle(message)
        except _Diverted as off:
            self._status = off.status
            self._reason = off.reason
            if off.evidence:
                self._evidence = off.reason
            self._secagg = None
            self._values = None
            self._stage = ParticipantStage.OBSERVING
            return []
        self._stage = nxt
        return sends

    def _check(self, message: RoundMessage, event: ParticipantEvent) -> None:
        if message.sender != self._coordinator:
            raise RemoteProtocolError("not from this round's coordinator")
        if self._start is not None and message.round_id != self._start.round_id:
            raise RemoteProtocolError(f"message is for round {message.round_id}")
        if (self._stage, event) not in PARTICIPANT_TRANSITIONS:
            raise RemoteProtocolError(f"{message.kind} is not expected at {self._stage.value}")
        if isinstance(message, NotSelected) and message.recipient != self._me:
            raise RemoteProtocolError("NotSelected is addressed to another peer")
        if not verify_signature(message, self._coordinator):
            raise RemoteProtocolError("bad coordinator signature")

    def _handle(self, message: RoundMessage) -> list[Send]:
        if isinstance(message, RoundStart):
            return self._on_start(message)
        if isinstance(message, Selection):
            return self._on_selection(message)
        if isinstance(message, NotSelected):
            raise _Diverted(ParticipantStatus.IDLE, "not selected")
        if isinstance(message, SurvivorsAck):
            return self._on_survivors(message)
        if isinstance(message, ModelUpdate):
            self._on_update(message)
            return []
        if isinstance(message, RoundAborted):
            self._on_aborted(message)
            return []
        assert isinstance(message, SecAggStep)
        return self._on_secagg(message)

    def _send(self, message: RoundMessage) -> Send:
        return Send(self._coordinator, sign_message(message, self._key))

    # -- handlers ------------------------------------------------------------------------

    def _on_start(self, start: RoundStart) -> list[Send]:
        self._start = start
        self._secagg_id = secagg_round_id(start)
        self._give_up_at = start.ready_deadline + start.train_timeout + 6 * start.stage_timeout
        if start.model_version != self._version:
            raise _Diverted(ParticipantStatus.REFUSED, "the round's model is not the one held")
        if start.vector_length != self._spec.size:
            raise _Diverted(ParticipantStatus.REFUSED, "the round's model size does not match")
        if start.params.pow_difficulty > self._max_pow:
            raise _Diverted(ParticipantStatus.REFUSED, "proof of work is too hard")
        planned = start.params.privacy_event()
        after = self._epsilon_after(self._ledger, planned)
        if after > self._ledger.epsilon_budget:
            raise _Diverted(ParticipantStatus.REFUSED, self._refusal(planned, after))
        self._planned = planned
        if planned.sampling is Sampling.POISSON_SECRET:
            self._record(after)
        self._nonce = os.urandom(32)
        self._status = ParticipantStatus.READY
        ready = PeerReady(start.round_id, self._me, self._games, self._data_hash, self._nonce)
        return [self._send(ready)]

    def _refusal(self, planned: PrivacyEvent, after: float) -> str:
        """Why the budget refuses this round, in terms an operator can act on."""
        ledger = self._ledger
        one = self._epsilon_after(replace(ledger, events=()), planned)
        if planned.amplified:
            how = f"sampling rate q={planned.sampling_rate:.3g} (secret Poisson sampling)"
        else:
            how = "no sampling amplification (q=1)"
        why = (
            f"joining would spend epsilon {after:.3f} > budget {ledger.epsilon_budget:g}: "
            f"one round at noise multiplier z={planned.noise_multiplier:g} with {how} "
            f"costs epsilon {one:.3f} at delta {ledger.delta:g}"
        )
        if one > ledger.epsilon_budget:
            return why + (
                "; no round at these settings fits the budget (q is high when few peers "
                "are in the network: rounds get cheaper as it grows, or with a larger z)"
            )
        return why + f"; epsilon {ledger.spent():.3f} is already spent on earlier rounds"

    def _record(self, epsilon: float) -> None:
        assert self._planned is not None
        self._ledger = self._ledger.record(self._planned)
        self._epsilon = epsilon

    def _on_selection(self, selection: Selection) -> list[Send]:
        start = self._start
        assert start is not None
        if self._stage is ParticipantStage.OBSERVING:
            return []
        params = start.params
        failed = ParticipantStatus.FAILED
        if selection.rate > params.sampling_rate:
            raise _Diverted(failed, "coordinator sampled above the announced rate", evidence=True)
        if params.sampling is Sampling.NONE:
            self._check_public_draw(start, selection)
        elif selection.reveal or selection.ready:
            raise _Diverted(failed, "a secret selection must not list seeds or ready peers")
        if self._me not in selection.selected:
            raise _Diverted(ParticipantStatus.IDLE, "not selected")
        n = len(selection.selected)
        if n < params.min_participants or selection.degree < min(default_degree(n), n - 1):
            raise _Diverted(failed, "selection is smaller or sparser than the round allows")
        try:
            config = SecAggConfig(
                self._secagg_id,
                selection.selected,
                start.vector_length,
                params.modulus_bits,
                selection.threshold,
                selection.degree,
                selection.graph_seed,
            )
            self._quant = params.quant_spec(n)
        except FlInputError as exc:
            raise _Diverted(failed, f"unusable SecAgg parameters: {exc}") from exc
        self._selected = True
        self._status = ParticipantStatus.TRAINING
        self._prepare_input(params.hyperparam_dict())
        self._secagg = SecAggParticipant(config, selection.selected.index(self._me), self._key)
        keys = self._secagg.advertise_keys()
        return [self._send(SecAggStep(start.round_id, self._me, keys))]

    def _check_public_draw(self, start: RoundStart, selection: Selection) -> None:
        failed = ParticipantStatus.FAILED
        if selection_commitment(selection.reveal) != start.selection_commitment:
            raise _Diverted(failed, "revealed seed does not match the commitment", evidence=True)
        if (self._me, self._nonce) not in selection.ready:
            raise _Diverted(failed, "my PeerReady is missing from the draw")
        seed = draw_seed(selection.reveal, selection.ready)
        plan = select_peers(
            [peer for peer, _ in selection.ready],
            per_round=start.params.target_participants,
            expected_dropout=start.params.expected_dropout,
            rate=start.params.sampling_rate,
            draw_seed=seed,
        )
        if (plan.selected, plan.rate, plan.target, graph_seed(seed)) != (
            selection.selected,
            selection.rate,
            selection.target,
            selection.graph_seed,
        ):
            raise _Diverted(failed, "selection is not the committed draw", evidence=True)

    def _prepare_input(self, hyperparams: Mapping[str, float]) -> None:
        """Train, clip, add my share of the noise, quantise (kept until masking)."""
        assert self._start is not None and self._quant is not None
        params = self._start.params
        try:
            delta, examples, metrics = self._train(dict(self._model), hyperparams)
        except Exception as exc:  # the caller's trainer: any failure means no submission
            raise _Diverted(ParticipantStatus.FAILED, f"local training failed: {exc}") from exc
        try:
            clipped, _ = clip_l2(delta, params.clip_norm)
            flat, _ = flatten(clipped, self._spec)
        except FlInputError as exc:
            raise _Diverted(ParticipantStatus.FAILED, f"local training output: {exc}") from exc
        if isinstance(examples, bool) or not isinstance(examples, int) or examples < 0:
            raise _Diverted(ParticipantStatus.FAILED, "local training reported a bad count")
        rng = self._rng or np.random.default_rng(secrets.randbits(128))
        noised = add_gaussian_noise(flat, params.noise_std(), self._rng)
        self._values = quantize(noised, self._quant, rng)
        self._contribution = noised if self._keep else None
        self._num_examples = examples
        self._train_metrics = {str(k): float(v) for k, v in metrics.items()}

    def _on_secagg(self, step: SecAggStep) -> list[Send]:
        assert self._secagg is not None and self._start is not None
        body = step.body
        try:
            if isinstance(body, KeyRoster):
                out: object = self._secagg.share_keys(body)
            elif isinstance(body, ShareBundle):
                return self._submit(body)
            else:
                assert isinstance(body, UnmaskRequest)
                out = self._secagg.unmask(body)
        except (RemoteProtocolError, SecAggAborted) as exc:
            raise _Diverted(ParticipantStatus.FAILED, f"secure aggregation: {exc}") from exc
        return [self._send(SecAggStep(self._start.round_id, self._me, out))]  # type: ignore[arg-type]

    def _submit(self, bundle: ShareBundle) -> list[Send]:
        assert self._secagg is not None and self._start is not None and self._values is not None
        params = self._start.params
        masked = self._secagg.masked_input(bundle, self._values)
        self._values = None
        blob = pack_quantized(masked.masked, params.modulus_bits, compress=False)
        digest = blake3.blake3(blob).digest()
        challenge = PowChallenge(self._secagg_id, self._me, digest, params.pow_difficulty)
        nonce = solve_pow(challenge, start=secrets.randbits(32))
        submission = GradientSubmission(
            self._start.round_id, self._me, digest, len(blob), self._num_examples, nonce
        )
        self._my_hash = digest
        if self._planned is not None and self._planned.sampling is Sampling.NONE:
            self._record(self._epsilon_after(self._ledger, self._planned))
        self._status = ParticipantStatus.SUBMITTED
        return [self._send(submission), Send(self._coordinator, Blob(digest, blob))]

    def _on_survivors(self, ack: SurvivorsAck) -> list[Send]:
        assert self._secagg is not None and self._start is not None
        index = self._secagg.index
        if index not in ack.survivors:
            raise _Diverted(ParticipantStatus.FAILED, "my submission was not acknowledged")
        if ack.submissions[ack.survivors.index(index)] != self._my_hash:
            raise _Diverted(
                ParticipantStatus.FAILED,
                "the acknowledged hash is not my submission's",
                evidence=True,
            )
        try:
            signature = self._secagg.consistency_check(SurvivorList(self._secagg_id, ack.survivors))
        except RemoteProtocolError as exc:
            raise _Diverted(ParticipantStatus.FAILED, f"secure aggregation: {exc}") from exc
        self._acked = ack.submissions
        return [self._send(SecAggStep(self._start.round_id, self._me, signature))]

    def _on_update(self, update: ModelUpdate) -> None:
        assert self._start is not None
        try:
            if self._evidence is not None:
                raise RemoteProtocolError(f"the coordinator broke this round: {self._evidence}")
            if self._acked is not None:
                verify_model_update(
                    update, self._coordinator, self._start.model_version, self._my_hash
                )
                if update.submissions != self._acked:
                    raise RemoteProtocolError("submission list differs from the acknowledged one")
            else:
                verify_model_update(update, self._coordinator, self._start.model_version)
        except RemoteProtocolError as exc:
            self._verdict = Verdict(False, update.new_version, exc.reason)
            if self._selected:
                self._status, self._reason = ParticipantStatus.FAILED, exc.reason
            return
        self._verdict = Verdict(True, update.new_version)
        if self._acked is not None:
            self._status = ParticipantStatus.VERIFIED
        elif self._selected and self._status is not ParticipantStatus.FAILED:
            if self._my_hash is not None and self._my_hash in update.submissions:
                self._status = ParticipantStatus.VERIFIED
            else:
                self._status = ParticipantStatus.FAILED
                self._reason = "the round finished without my submission"

    def _on_aborted(self, aborted: RoundAborted) -> None:
        reason = f"round aborted: {aborted.reason}"
        if self._status in (ParticipantStatus.REFUSED, ParticipantStatus.FAILED):
            return
        if self._selected:
            self._status, self._reason = ParticipantStatus.FAILED, reason
        else:
            self._status = ParticipantStatus.IDLE

    def _finish_unverified(self, reason: str) -> None:
        self._stage = ParticipantStage.FINISHED
        self._secagg = None
        self._values = None
        if self._selected and self._status is not ParticipantStatus.FAILED:
            self._status, self._reason = ParticipantStatus.FAILED, reason
        elif self._status is ParticipantStatus.READY:
            self._status = ParticipantStatus.IDLE
