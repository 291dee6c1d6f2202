"""Messages of the federated round protocol, as frozen records (no encoding here).

One round, in message order (C = coordinator, P = participant):

    C -> all   RoundStart          round id, model version, deadlines, DP/SecAgg/PoW params
    P -> C     PeerReady           game count, data hash, a commit-reveal nonce
    C -> sel.  Selection           the selected peers (= SecAgg indices), graph seed
    C -> rest  NotSelected         (only where the selection is secret)
    P <-> C    SecAggStep          the SecAgg+ stage messages of `fl._secagg_types`,
                                   wrapped with the round id and the sender's key
    P -> C     GradientSubmission  BLAKE3 of the masked-vector blob + proof of work;
                                   the blob itself travels over the blob protocol
    C -> surv. SurvivorsAck        U3 and the hash of every accepted submission (signed:
                                   the coordinator's commitment to what it will sum)
    C -> all   ModelUpdate         new and parent version, Merkle root of the accepted
                                   submissions' hashes, the hashes themselves, metrics
    C -> all   RoundAborted        the round cannot complete, and why

Every message names its round and its sender (a 32-byte Ed25519 verify key) and carries
the sender's signature over its canonical encoding bound to the round id and the message
kind (`fl._round_codec`). Vectors never travel inside these messages: masked inputs are
referenced by hash, model weights by version.

Field checks here are the ones any party can make without context (sizes, ranges);
the state machines check the rest (right round, right stage, right sender).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from fl._dp import PrivacyEvent, Sampling, participant_noise_std
from fl._errors import FlInputError
from fl._pow import MAX_DIFFICULTY_BITS
from fl._quant import MAX_MODULUS_BITS, QuantSpec, choose_quant
from fl._secagg_types import (
    AdvertiseKeys,
    ConsistencySignature,
    KeyRoster,
    ShareBundle,
    ShareKeys,
    UnmaskRequest,
    UnmaskResponse,
)

PeerId = bytes
"""A peer's 32-byte Ed25519 verify key: its identity and the key its messages verify with."""

KEY_BYTES = 32
HASH_BYTES = 32
SIGNATURE_BYTES = 64
MAX_PEERS = 100_000
"""Most peers one round may list (ready, selected, survivors)."""
MAX_UINT = 2**64 - 1
_VERSION = re.compile(r"[0-9a-f]{64}")


def check_version(name: str, value: str, *, allow_empty: bool = False) -> None:
    """A model version is the lowercase BLAKE3 hex digest of its weights ("" for none)."""
    if allow_empty and value == "":
        return
    if not isinstance(value, str) or not _VERSION.fullmatch(value):
        raise FlInputError(f"{name} must be a 64-digit lowercase hex BLAKE3 digest")


def _uint(name: str, value: int, maximum: int = MAX_UINT) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise FlInputError(f"{name} must be an integer in 0..{maximum}")


def _finite(name: str, value: float, low: float, high: float) -> None:
    if not isinstance(value, float) or not math.isfinite(value) or not low <= value <= high:
        raise FlInputError(f"{name} must be a finite float in [{low}, {high}]")


def _key(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_BYTES:
        raise FlInputError(f"{name} must be {KEY_BYTES} bytes")


def _hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_BYTES:
        raise FlInputError(f"{name} must be a {HASH_BYTES}-byte hash")


def _signature(value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) not in (0, SIGNATURE_BYTES):
        raise FlInputError(f"signature must be {SIGNATURE_BYTES} bytes (or empty before signing)")


@dataclass(frozen=True, slots=True)
class RoundParams:
    """What a round promises about privacy, secure aggregation and admission.

    `clip_norm` C bounds each update's L2 norm. `noise_multiplier` z: the released sum
    carries Gaussian noise of std z*C, added in shares by at least `min_participants`
    participants (each adds std z*C/sqrt(min_participants)); the round aborts before
    unmasking if fewer inputs survive. `sampling` says how peers are chosen and so which
    privacy claim holds (`fl._selection`); `sampling_rate` q is each ready peer's
    inclusion probability, the rate every peer accounts with (the draw uses exactly q;
    a Selection claiming more is evidence against the coordinator).
    `target_participants` k and `expected_dropout` size over-selection. `modulus_bits` is SecAgg's field, `quant_range` the coordinate
    clamp of quantisation, `pow_difficulty` the leading zero bits a submission's proof
    of work needs. `hyperparams` go to local training (e.g. FedProx's proximal_mu).
    """

    clip_norm: float
    noise_multiplier: float
    sampling: Sampling
    sampling_rate: float
    min_participants: int
    target_participants: int
    expected_dropout: float = 0.1
    modulus_bits: int = 16
    quant_range: float = 1.0
    pow_difficulty: int = 8
    hyperparams: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        _finite("clip_norm", self.clip_norm, 1e-12, 1e12)
        _finite("noise_multiplier", self.noise_multiplier, 1e-6, 1e6)
        if not isinstance(self.sampling, Sampling):
            raise FlInputError("sampling must be a Sampling")
        _finite("sampling_rate", self.sampling_rate, 1e-9, 1.0)
        _uint("min_participants", self.min_participants, MAX_PEERS)
        _uint("target_participants", self.target_participants, MAX_PEERS)
        if not 2 <= self.min_participants <= self.target_participants:
            raise FlInputError("need 2 <= min_participants <= target_participants")
        _finite("expected_dropout", self.expected_dropout, 0.0, 0.9)
        _uint("modulus_bits", self.modulus_bits, MAX_MODULUS_BITS)
        if self.modulus_bits < 4:
            raise FlInputError("modulus_bits must be at least 4")
        _finite("quant_range", self.quant_range, 1e-12, 1e12)
        _uint("pow_difficulty", self.pow_difficulty, MAX_DIFFICULTY_BITS)
        names = [name for name, _ in self.hyperparams]
        if names != sorted(set(names)) or not all(isinstance(n, str) for n in names):
            raise FlInputError("hyperparams must be (name, value) pairs sorted by unique name")
        for name, value in self.hyperparams:
            _finite(f"hyperparam {name}", value, -1e12, 1e12)

    @classmethod
    def create(
        cls,
        *,
        clip_norm: float,
        noise_multiplier: float,
        sampling: Sampling,
        sampling_rate: float,
        min_participants: int,
        target_participants: int,
        expected_dropout: float = 0.1,
        modulus_bits: int = 16,
        quant_range: float = 1.0,
        pow_difficulty: int = 8,
        hyperparams: Mapping[str, float] | None = None,
    ) -> RoundParams:
        """Keyword constructor that takes `hyperparams` as a mapping and coerces floats."""
        pairs = tuple(sorted((str(k), float(v)) for k, v in (hyperparams or {}).items()))
        return cls(
            float(clip_norm),
            float(noise_multiplier),
            sampling,
            float(sampling_rate),
            min_participants,
            target_participants,
            float(expected_dropout),
            modulus_bits,
            float(quant_range),
            pow_difficulty,
            pairs,
        )

    def privacy_event(self) -> PrivacyEvent:
        """The event one round costs a peer: amplified only for secret Poisson sampling."""
        if self.sampling is Sampling.POISSON_SECRET:
            return PrivacyEvent(self.noise_multiplier, self.sampling, self.sampling_rate)
        return PrivacyEvent(self.noise_multiplier, Sampling.NONE, 1.0)

    def noise_std(self) -> float:
        """Std of the Gaussian noise each participant adds to its clipped update."""
        return participant_noise_std(self.noise_multiplier, self.clip_norm, self.min_participants)

    def quant_spec(self, n_selected: int) -> QuantSpec:
        """Quantisation for a round of `n_selected` summands in this field."""
        return choose_quant(n_selected, self.quant_range, self.modulus_bits)

    def hyperparam_dict(self) -> dict[str, float]:
        """`hyperparams` as a dict for the training callable."""
        return dict(self.hyperparams)


def default_quant_range(clip_norm: float, noise_std: float, vector_length: int) -> float:
    """A coordinate clamp that leaves almost every clipped, noised coordinate unclamped.

    A coordinate of a clipped update is typically about C/sqrt(d) (at most C); the noise
    adds std sigma. Six standard deviations of the combined spread clamp about 2e-9 of
    Gaussian coordinates (a round of 1,000 x 100k values sees ~0.2 clamps; at four, ~6,000,
    each one a visible error); a wider range spends quantisation levels on nothing.
    """
    if vector_length < 1:
        raise FlInputError("vector_length must be positive")
    return float(6.0 * math.sqrt(clip_norm**2 / vector_length + noise_std**2))


@dataclass(frozen=True, slots=True)
class RoundStart:
    """C -> all: a round opens on `model_version` (the BLAKE3 hex of the weights).

    `ready_deadline` is absolute (the coordinator's clock, seconds); `train_timeout`
    bounds the key-advertising stage (selected peers train first, see the participant),
    `stage_timeout` each later SecAgg stage. `selection_commitment` is BLAKE3 of the
    coordinator's selection seed (revealed afterwards only for commit-reveal selection).
    """

    KIND: ClassVar[str] = "round_start"
    round_id: int
    sender: PeerId
    model_version: str
    parent_version: str
    vector_length: int
    params: RoundParams
    ready_deadline: float
    train_timeout: float
    stage_timeout: float
    selection_commitment: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        check_version("model_version", self.model_version)
        check_version("parent_version", self.parent_version, allow_empty=True)
        _uint("vector_length", self.vector_length, 1 << 31)
        if self.vector_length < 1:
            raise FlInputError("vector_length must be positive")
        _finite("ready_deadline", self.ready_deadline, -1e15, 1e15)
        _finite("train_timeout", self.train_timeout, 1e-3, 1e7)
        _finite("stage_timeout", self.stage_timeout, 1e-3, 1e7)
        _hash("selection_commitment", self.selection_commitment)
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True, slots=True)
class PeerReady:
    """P -> C: ready for the round, with how much data it holds (no proof of work: cheap
    to send, and the coordinator only pays a signature check for it). `nonce` feeds
    commit-reveal selection."""

    KIND: ClassVar[str] = "peer_ready"
    round_id: int
    sender: PeerId
    game_count: int
    data_hash: bytes
    nonce: bytes
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        _uint("game_count", self.game_count)
        _hash("data_hash", self.data_hash)
        _hash("nonce", self.nonce)
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True, slots=True)
class Selection:
    """C -> selected: who takes part, in SecAgg index order, and the SecAgg parameters.

    `rate` is the inclusion probability the sampler used (<= the announced rate);
    `target` the over-selected count it aimed for. For commit-reveal selection `reveal`
    is the committed seed and `ready` every (peer, nonce) it sampled from, so anyone can
    recompute the selection; for secret selection both are empty.
    """

    KIND: ClassVar[str] = "selection"
    round_id: int
    sender: PeerId
    selected: tuple[PeerId, ...]
    graph_seed: bytes
    degree: int
    threshold: int
    rate: float
    target: int
    reveal: bytes
    ready: tuple[tuple[PeerId, bytes], ...]
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        if len(self.selected) > MAX_PEERS or len(self.ready) > MAX_PEERS:
            raise FlInputError(f"at most {MAX_PEERS} peers per list")
        for peer in self.selected:
            _key("selected peer", peer)
        if list(self.selected) != sorted(set(self.selected)):
            raise FlInputError("selected peers must be sorted and distinct")
        _hash("graph_seed", self.graph_seed)
        _uint("degree", self.degree, MAX_PEERS)
        _uint("threshold", self.threshold, MAX_PEERS)
        _finite("rate", self.rate, 0.0, 1.0)
        _uint("target", self.target, MAX_PEERS)
        if self.reveal:
            _hash("reveal", self.reveal)
        for peer, nonce in self.ready:
            _key("ready peer", peer)
            _hash("ready nonce", nonce)
        if [p for p, _ in self.ready] != sorted({p for p, _ in self.ready}):
            raise FlInputError("ready peers must be sorted and distinct")
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True, slots=True)
class NotSelected:
    """C -> one ready peer: it was not selected (secret selection names no one else)."""

    KIND: ClassVar[str] = "not_selected"
    round_id: int
    sender: PeerId
    recipient: PeerId
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        _key("recipient", self.recipient)
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND


SecAggBody = (
    AdvertiseKeys
    | KeyRoster
    | ShareKeys
    | ShareBundle
    | ConsistencySignature
    | UnmaskRequest
    | UnmaskResponse
)
SECAGG_KINDS: dict[type, str] = {
    AdvertiseKeys: "secagg_advertise_keys",
    KeyRoster: "secagg_key_roster",
    ShareKeys: "secagg_share_keys",
    ShareBundle: "secagg_share_bundle",
    ConsistencySignature: "secagg_consistency",
    UnmaskRequest: "secagg_unmask_request",
    UnmaskResponse: "secagg_unmask_response",
}
"""Wire kind of each wrapped SecAgg+ message (masked inputs go as blobs instead)."""


@dataclass(frozen=True, slots=True)
class SecAggStep:
    """A SecAgg+ stage message (`fl._secagg_types`) wrapped with the round and sender.

    `body.sender` / `body.recipient` are SecAgg indices; `sender` here is the Ed25519
    key that signs the wrapper, and the coordinator checks the two agree.
    """

    round_id: int
    sender: PeerId
    body: SecAggBody
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        if type(self.body) not in SECAGG_KINDS:
            raise FlInputError(f"not a wrappable SecAgg message: {type(self.body).__name__}")
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return SECAGG_KINDS[type(self.body)]


@dataclass(frozen=True, slots=True)
class GradientSubmission:
    """P -> C: my masked input is the blob with BLAKE3 `submission_hash` (`blob_bytes`
    long), with proof of work `pow_nonce` bound to the round, me and that hash."""

    KIND: ClassVar[str] = "gradient_submission"
    round_id: int
    sender: PeerId
    submission_hash: bytes
    blob_bytes: int
    num_examples: int
    pow_nonce: int
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        _hash("submission_hash", self.submission_hash)
        _uint("blob_bytes", self.blob_bytes, 1 << 31)
        _uint("num_examples", self.num_examples)
        _uint("pow_nonce", self.pow_nonce)
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True, slots=True)
class SurvivorsAck:
    """C -> survivors: U3 (SecAgg indices, sorted) and, in the same order, the hash of
    each one's accepted submission. Signed, it commits the coordinator to the set it
    will sum: a ModelUpdate that lists anything else is evidence against it."""

    KIND: ClassVar[str] = "survivors_ack"
    round_id: int
    sender: PeerId
    survivors: tuple[int, ...]
    submissions: tuple[bytes, ...]
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        if len(self.survivors) > MAX_PEERS or len(self.survivors) != len(self.submissions):
            raise FlInputError("survivors and submissions must pair up (at most MAX_PEERS)")
        for index in self.survivors:
            _uint("survivor index", index, MAX_PEERS)
        if list(self.survivors) != sorted(set(self.survivors)):
            raise FlInputError("survivors must be sorted and distinct")
        for digest in self.submissions:
            _hash("submission hash", digest)
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND


@dataclass(frozen=True, slots=True)
class ModelUpdate:
    """C -> all: the round's result. `submissions` are the hashes of every accepted
    submission (SecAgg index order) and `merkle_root` their Merkle root (`fl._merkle`);
    `metrics` are sorted (name, value) pairs."""

    KIND: ClassVar[str] = "model_update"
    round_id: int
    sender: PeerId
    new_version: str
    parent_version: str
    participant_count: int
    merkle_root: bytes
    submissions: tuple[bytes, ...]
    metrics: tuple[tuple[str, float], ...]
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        check_version("new_version", self.new_version)
        check_version("parent_version", self.parent_version)
        _uint("participant_count", self.participant_count, MAX_PEERS)
        _hash("merkle_root", self.merkle_root)
        if len(self.submissions) > MAX_PEERS:
            raise FlInputError(f"at most {MAX_PEERS} submissions")
        for digest in self.submissions:
            _hash("submission hash", digest)
        names = [name for name, _ in self.metrics]
        if names != sorted(set(names)) or len(names) > 256:
            raise FlInputError("metrics must be at most 256 pairs sorted by unique name")
        for name, value in self.metrics:
            if not isinstance(name, str) or len(name) > 64:
                raise FlInputError("metric names must be strings of at most 64 characters")
            _finite(f"metric {name}", value, -1e300, 1e300)
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND

    def metric_dict(self) -> dict[str, float]:
        """`metrics` as a dict."""
        return dict(self.metrics)


@dataclass(frozen=True, slots=True)
class RoundAborted:
    """C -> all: the round ended without a model update."""

    KIND: ClassVar[str] = "round_aborted"
    round_id: int
    sender: PeerId
    reason: str
    signature: bytes = b""

    def __post_init__(self) -> None:
        _uint("round_id", self.round_id)
        _key("sender", self.sender)
        if not isinstance(self.reason, str) or len(self.reason) > 500:
            raise FlInputError("reason must be a string of at most 500 characters")
        _signature(self.signature)

    @property
    def kind(self) -> str:
        return self.KIND


RoundMessage = (
    RoundStart
    | PeerReady
    | Selection
    | NotSelected
    | SecAggStep
    | GradientSubmission
    | SurvivorsAck
    | ModelUpdate
    | RoundAborted
)


@dataclass(frozen=True, slots=True, eq=False)
class Blob:
    """A content-addressed payload (a masked vector) for the blob protocol, not gossip."""

    digest: bytes
    data: bytes


@dataclass(frozen=True, slots=True, eq=False)
class Send:
    """One outgoing item of a state machine: `to` a peer, or everyone when `to` is None."""

    to: PeerId | None
    message: RoundMessage | Blob
