"""The states, transition tables and records of the round's two state machines.

`fl._round_coordinator` and `fl._round_participant` each drive one side of a round;
this module holds what they are driven by: the stages and events of each side, the
table of legal (stage, event) -> next stage (a missing entry is a protocol error), how
a message maps to an event, and the frozen records the machines hand out (timing,
rejections, outcomes, verdicts). It has no behaviour of its own beyond the tables, so
both machines, the simulator and the tests can share one definition. The public names
are re-exported by the two machine modules and by `fl`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import get_args

from fl._aggregate import FedAdamState
from fl._dp import PrivacyEvent, PrivacyLedger
from fl._errors import FlInputError
from fl._round_messages import (
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
    SurvivorsAck,
)
from fl._secagg_types import (
    AdvertiseKeys,
    ConsistencySignature,
    KeyRoster,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)
from fl._tensors import NamedTensors

MESSAGE_TYPES: tuple[type, ...] = get_args(RoundMessage)
"""Every round message class (for a local caller's type check)."""

# -- the coordinator ---------------------------------------------------------------------


class RoundStage(enum.Enum):
    """Where the coordinator is in a round."""

    NEW = "new"
    COLLECT_READY = "collect_ready"
    ADVERTISE_KEYS = "advertise_keys"
    SHARE_KEYS = "share_keys"
    MASKED_INPUT = "masked_input"
    CONSISTENCY_CHECK = "consistency_check"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


class Event(enum.Enum):
    """What can happen to a coordinator (local calls and remote messages)."""

    START = "start"
    PEER_READY = "peer_ready"
    KEYS = "keys"
    SHARES = "shares"
    SUBMISSION = "submission"
    BLOB = "blob"
    SIGNATURE = "signature"
    UNMASK_SHARES = "unmask_shares"
    CLOSE = "close"
    ABORT = "abort"


_S, _E = RoundStage, Event
TRANSITIONS: dict[tuple[RoundStage, Event], RoundStage] = {
    (_S.NEW, _E.START): _S.COLLECT_READY,
    (_S.COLLECT_READY, _E.PEER_READY): _S.COLLECT_READY,
    (_S.COLLECT_READY, _E.CLOSE): _S.ADVERTISE_KEYS,
    (_S.ADVERTISE_KEYS, _E.KEYS): _S.ADVERTISE_KEYS,
    (_S.ADVERTISE_KEYS, _E.CLOSE): _S.SHARE_KEYS,
    (_S.SHARE_KEYS, _E.SHARES): _S.SHARE_KEYS,
    (_S.SHARE_KEYS, _E.CLOSE): _S.MASKED_INPUT,
    (_S.MASKED_INPUT, _E.SUBMISSION): _S.MASKED_INPUT,
    (_S.MASKED_INPUT, _E.BLOB): _S.MASKED_INPUT,
    (_S.MASKED_INPUT, _E.CLOSE): _S.CONSISTENCY_CHECK,
    (_S.CONSISTENCY_CHECK, _E.SIGNATURE): _S.CONSISTENCY_CHECK,
    (_S.CONSISTENCY_CHECK, _E.CLOSE): _S.UNMASK,
    (_S.UNMASK, _E.UNMASK_SHARES): _S.UNMASK,
    (_S.UNMASK, _E.CLOSE): _S.DONE,
    **{(stage, _E.ABORT): _S.ABORTED for stage in _S if stage not in (_S.NEW, _S.DONE, _S.ABORTED)},
}
"""Every legal (stage, event) -> next stage. Missing: a local call is a
`LocalProtocolError`; a remote message is rejected."""

_SECAGG_EVENTS: dict[type, Event] = {
    AdvertiseKeys: Event.KEYS,
    ShareKeys: Event.SHARES,
    ConsistencySignature: Event.SIGNATURE,
    UnmaskResponse: Event.UNMASK_SHARES,
}


def coordinator_event(message: RoundMessage) -> Event | None:
    """The event a participant's message is to the coordinator (None: not one)."""
    if isinstance(message, PeerReady):
        return Event.PEER_READY
    if isinstance(message, GradientSubmission):
        return Event.SUBMISSION
    if isinstance(message, SecAggStep):
        return _SECAGG_EVENTS.get(type(message.body))
    return None


@dataclass(frozen=True, slots=True)
class RoundTiming:
    """Seconds the coordinator waits: for PeerReady, for selected peers to train and
    advertise keys, and for each later SecAgg stage."""

    ready_seconds: float = 30.0
    train_seconds: float = 600.0
    stage_seconds: float = 60.0

    def __post_init__(self) -> None:
        if min(self.ready_seconds, self.train_seconds, self.stage_seconds) <= 0:
            raise FlInputError("timeouts must be positive")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A remote input the coordinator refused, and why (penalise or ignore the peer)."""

    peer: PeerId
    kind: str
    reason: str
    stage: RoundStage
    at: float


@dataclass(frozen=True, slots=True, eq=False)
class RoundOutcome:
    """A finished round: the new model, its signed announcement, the server optimiser's
    state (FedAdam), the securely aggregated mean delta it applied, and the survivors'
    total example count (for the operator; not published in the update)."""

    weights: NamedTensors
    update: ModelUpdate
    server_state: FedAdamState | None
    mean_delta: NamedTensors
    survivors: tuple[PeerId, ...]
    dropped: tuple[PeerId, ...]
    num_examples: int = 0


# -- the participant ---------------------------------------------------------------------

TrainFn = Callable[
    [NamedTensors, Mapping[str, float]], tuple[NamedTensors, int, Mapping[str, float]]
]
"""Local training: (round's weights, hyperparameters) -> (delta, examples, metrics)."""
EpsilonFn = Callable[[PrivacyLedger, PrivacyEvent], float]
"""Epsilon a ledger would have spent after an event (injectable: simulators memoise it)."""


class ParticipantStatus(enum.Enum):
    """What the UI shows for this peer in this round."""

    IDLE = "idle"
    READY = "ready"
    TRAINING = "training"
    SUBMITTED = "submitted"
    VERIFIED = "verified"
    REFUSED = "refused"
    FAILED = "failed"


class ParticipantStage(enum.Enum):
    """Which coordinator message the participant waits for."""

    WAIT_START = "wait_start"
    WAIT_SELECTION = "wait_selection"
    WAIT_ROSTER = "wait_roster"
    WAIT_BUNDLE = "wait_bundle"
    WAIT_SURVIVORS = "wait_survivors"
    WAIT_UNMASK = "wait_unmask"
    WAIT_UPDATE = "wait_update"
    OBSERVING = "observing"
    FINISHED = "finished"


class ParticipantEvent(enum.Enum):
    """Coordinator messages, by what they mean to a participant."""

    ROUND_START = "round_start"
    SELECTION = "selection"
    NOT_SELECTED = "not_selected"
    ROSTER = "roster"
    BUNDLE = "bundle"
    SURVIVORS = "survivors"
    UNMASK_REQUEST = "unmask_request"
    MODEL_UPDATE = "model_update"
    ROUND_ABORTED = "round_aborted"


_P, _V = ParticipantStage, ParticipantEvent
_LIVE = [s for s in _P if s not in (_P.WAIT_START, _P.FINISHED)]
PARTICIPANT_TRANSITIONS: dict[tuple[ParticipantStage, ParticipantEvent], ParticipantStage] = {
    (_P.WAIT_START, _V.ROUND_START): _P.WAIT_SELECTION,
    (_P.WAIT_SELECTION, _V.SELECTION): _P.WAIT_ROSTER,
    (_P.WAIT_SELECTION, _V.NOT_SELECTED): _P.OBSERVING,
    (_P.OBSERVING, _V.SELECTION): _P.OBSERVING,  # a public selection reaches observers too
    (_P.WAIT_ROSTER, _V.ROSTER): _P.WAIT_BUNDLE,
    (_P.WAIT_BUNDLE, _V.BUNDLE): _P.WAIT_SURVIVORS,
    (_P.WAIT_SURVIVORS, _V.SURVIVORS): _P.WAIT_UNMASK,
    (_P.WAIT_UNMASK, _V.UNMASK_REQUEST): _P.WAIT_UPDATE,
    **{(stage, _V.MODEL_UPDATE): _P.FINISHED for stage in _LIVE},
    **{(stage, _V.ROUND_ABORTED): _P.FINISHED for stage in _LIVE},
}
"""The success path; any handler may divert to OBSERVING (see the module docstring)."""

_BODY_EVENTS: dict[type, ParticipantEvent] = {
    KeyRoster: ParticipantEvent.ROSTER,
    ShareBundle: ParticipantEvent.BUNDLE,
    UnmaskRequest: ParticipantEvent.UNMASK_REQUEST,
}
_PLAIN_EVENTS: dict[type, ParticipantEvent] = {
    RoundStart: ParticipantEvent.ROUND_START,
    Selection: ParticipantEvent.SELECTION,
    NotSelected: ParticipantEvent.NOT_SELECTED,
    SurvivorsAck: ParticipantEvent.SURVIVORS,
    ModelUpdate: ParticipantEvent.MODEL_UPDATE,
    RoundAborted: ParticipantEvent.ROUND_ABORTED,
}


def participant_event(message: RoundMessage) -> ParticipantEvent | None:
    """The event a coordinator's message is to a participant (None: not one)."""
    if isinstance(message, SecAggStep):
        return _BODY_EVENTS.get(type(message.body))
    return _PLAIN_EVENTS.get(type(message))


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether to adopt the round's model update, and why not if not."""

    adopt: bool
    new_version: str
    reason: str = ""
