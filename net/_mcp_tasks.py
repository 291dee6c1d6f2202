"""What the MCP model server's tools do, without MCP: predict, train locally, verify.

:class:`ModelTasks` holds the registry (:mod:`net._mcp_models`), where the game store
is, and which coordinator key to trust; its methods take plain values and return
frozen records, raising :class:`TaskError` (the one error type) with a message for the
caller on bad input. The server module wraps them as tools.

**Weights arguments** (``train_local``'s ``model_weights``, ``verify_model``'s
``old_weights``/``new_weights``) are either a model version the registry knows
(``"latest"`` or a 64-digit hex id) or a weight file inline as base64 of its canonical
CBOR bytes, at most ``max_inline_bytes`` once decoded (default 8 MiB; the default
6x64 network is about 2 MB).

**Games** are SGF texts (starting with ``(``) or game-store record ids (64 hex digits,
looked up in ``DATA_DIR/store`` with the peer's own key); at most :data:`MAX_GAMES`.

**The update** ``train_local`` returns is the training delta (new - old weights),
clipped to L2 norm ``clip_norm`` with :func:`fl.clip_l2` (the same clipping a round
participant applies before noise and masking) and encoded as:

* ``"p2pgo-tensors"`` (default): :func:`fl.encode_tensors`, canonical CBOR of the
  float32 named tensors (decode with :func:`fl.decode_tensors`); exact.
* ``"p2q1"``: the tensors flattened in sorted-name order (:func:`fl.flatten`),
  stochastically quantised (:func:`fl.quantize`) to 16 bits over ``[-range, range]``
  with ``range = fl.default_quant_range(clip_norm, 0, n)`` and framed with
  :func:`fl.pack_quantized`; ``quant_range`` and the bits come back with it
  (dequantise with ``fl.dequantize(values, fl.QuantSpec(range, 16, 16, 1))``).

No differential-privacy noise and no masking are added here: the round protocol adds
them with the round's own parameters.

**Verification** decodes the proof (a :class:`fl.ModelUpdate` in its wire encoding),
then runs :func:`fl.verify_model_update` (coordinator signature, parent version =
the old weights' id, participant count, no repeated submissions, Merkle root of the
submissions, and optionally that my submission is included) and checks that the new
weights are the version the update announces. A proof that fails is an answer
(``valid`` false with the reason), not an error. Only for a valid update is the
improvement measured: the policy+value loss of old minus new on held-out games (the
games given, else the store's held-out 10%, the split ``p2pgo-train`` uses), on at
most :data:`MAX_HELD_OUT_POSITIONS` positions so it stays well under a second.

``fl`` is imported on first use (it loads slowly); the server's warm-up imports it
early.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import GameRecord, Move, SgfError, load_sgf, to_gtp
from net._mcp_board import BoardStateError, parse_board_state
from net._mcp_models import LATEST, LoadedModel, ModelError, ModelRegistry, is_version

if TYPE_CHECKING:
    from engine.nn import ExampleSet, Metrics, SkippedGame, TrainConfig

__all__ = [
    "DEFAULT_MAX_INLINE_BYTES",
    "ENCODINGS",
    "MAX_GAMES",
    "MAX_HELD_OUT_POSITIONS",
    "MAX_SGF_CHARS",
    "ModelTasks",
    "MoveEstimate",
    "PredictOutcome",
    "TaskError",
    "TrainOutcome",
    "VerifyOutcome",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_INLINE_BYTES = 8 * 1024 * 1024
MAX_GAMES = 1000
MAX_SGF_CHARS = 1_000_000
# The held-out positions verify_model evaluates both networks on. Evaluating the default
# 6x64 network costs ~2-3 ms a position on one loaded core: 128 keeps a verification
# (two networks) well under a second.
MAX_HELD_OUT_POSITIONS = 128
HELD_OUT_FRACTION = 0.1  # engine.train's default split
ENCODINGS = ("p2pgo-tensors", "p2q1")
_QUANT_BITS = 16

ProgressFn = Callable[[int, int, str], None]


class TaskError(ValueError):
    """Bad input for a tool (the message says what to fix)."""


# ---- results ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveEstimate:
    move: str  # GTP vertex or "pass"
    probability: float
    win_rate: float | None  # the mover's win probability after the move (analyze only)


@dataclass(frozen=True, slots=True)
class PredictOutcome:
    move: str
    confidence: float
    top_moves: tuple[MoveEstimate, ...]
    value: float
    score_lead: float | None
    to_play: str
    size: int
    model_version: str


@dataclass(frozen=True, slots=True)
class TrainOutcome:
    encoding: str
    data: bytes
    parent_version: str
    clip_norm: float
    norm_before_clip: float
    scale: float
    quant_range: float | None
    quant_bits: int | None
    metrics: Metrics
    num_examples: int
    games: int
    skipped: tuple[str, ...]
    steps: int
    seconds: float


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    valid: bool
    reason: str
    parent_version: str
    new_version: str
    round_id: int | None
    participant_count: int | None
    improvement: float | None
    old_loss: float | None
    new_loss: float | None
    old_top1: float | None
    new_top1: float | None
    held_out_positions: int
    seconds: float


# ---- the tasks ----------------------------------------------------------------------


class ModelTasks:
    """The tools' work; see the module docstring. Thread-safe (the registry locks)."""

    def __init__(
        self,
        registry: ModelRegistry,
        *,
        data_dir: Path | None = None,
        coordinator_key: bytes | None = None,
        max_inline_bytes: int = DEFAULT_MAX_INLINE_BYTES,
        held_out_positions: int = MAX_HELD_OUT_POSITIONS,
    ) -> None:
        if held_out_positions < 1:
            raise ValueError("held_out_positions must be at least 1")
        if coordinator_key is not None and len(coordinator_key) != 32:
            raise ValueError("a coordinator key is 32 bytes")
        self.registry = registry
        self.data_dir = data_dir
        self.coordinator_key = coordinator_key
        self.max_inline_bytes = max_inline_bytes
        self.held_out_positions = held_out_positions
        self._examples: OrderedDict[tuple[str, ...], ExampleSet] = OrderedDict()
        self._examples_lock = threading.Lock()

    # ---- predict ------------------------------------------------------------------

    def predict(
        self,
        board_state: str,
        model_version: str = LATEST,
        *,
        top_k: int = 5,
        analyze: bool = False,
    ) -> PredictOutcome:
        """The network's move for the side to move, its top moves and the win rate."""
        try:
            position = parse_board_state(board_state)
        except BoardStateError as exc:
            raise TaskError(str(exc)) from None
        if position.is_game_over:
            raise TaskError("the game in board_state is over: there is no move to predict")
        loaded = self._model(model_version)
        pred = loaded.predictor.predict(position)
        size = position.size
        top = pred.top_k(top_k)
        win_rates: list[float | None] = [None] * len(top)
        if analyze and top:
            me = position.to_play
            children = [
                position.play(Move.pass_(me) if p is None else Move.play(me, p)) for p, _ in top
            ]
            # The child's value is the opponent's; the mover's is its complement.
            win_rates = [1.0 - c.value for c in loaded.predictor.predict_batch(children)]
        best, confidence = top[0] if top else (None, 0.0)
        return PredictOutcome(
            move=to_gtp(best, size),
            confidence=confidence,
            top_moves=tuple(
                MoveEstimate(to_gtp(p, size), prob, w)
                for (p, prob), w in zip(top, win_rates, strict=True)
            ),
            value=pred.value,
            score_lead=pred.score_lead,
            to_play=position.to_play.letter.lower(),
            size=size,
            model_version=loaded.version,
        )

    def _model(self, version: str) -> LoadedModel:
        try:
            return self.registry.get(version)
        except ModelError as exc:
            raise TaskError(str(exc)) from None

    # ---- inputs -------------------------------------------------------------------

    def weights(self, spec: str, what: str = "model_weights") -> LoadedModel:
        """A weights argument: a known version or inline base64 (module docstring)."""
        text = spec.strip()
        if text == LATEST or is_version(text):
            return self._model(text)
        limit = self.max_inline_bytes
        # base64 is 4 characters per 3 bytes: refuse before decoding anything big.
        if len(text) > 4 * math.ceil(limit / 3) + 4:
            raise TaskError(
                f"{what}: inline weights are about {len(text) * 3 // 4} bytes; "
                f"the limit is {limit} (register big models as files and pass their version)"
            )
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise TaskError(
                f"{what} must be 'latest', a 64-digit hex model version, or base64 of a weight file"
            ) from None
        if len(data) > limit:
            raise TaskError(f"{what}: inline weights are {len(data)} bytes; the limit is {limit}")
        try:
            return self.registry.get_inline(data)
        except ModelError as exc:
            raise TaskError(f"{what}: {exc}") from None

    def games(self, games: Sequence[str]) -> list[GameRecord | SkippedGame]:
        """Game records from SGF texts and store ids (unreadable SGF becomes skipped)."""
        from engine.nn import SkippedGame

        if len(games) > MAX_GAMES:
            raise TaskError(f"{len(games)} games; at most {MAX_GAMES} per call")
        out: list[GameRecord | SkippedGame] = []
        ids: list[tuple[int, str]] = []
        for i, game in enumerate(games):
            text = game.strip()
            if len(text) > MAX_SGF_CHARS:
                raise TaskError(
                    f"game {i + 1} is {len(text)} characters; the limit is {MAX_SGF_CHARS}"
                )
            if text.startswith("("):
                try:
                    out.append(load_sgf(text.encode("utf-8")))
                except SgfError as exc:
                    out.append(SkippedGame(f"game {i + 1}", str(exc)))
            elif is_version(text):
                ids.append((len(out), text))
                out.append(SkippedGame(text, "not loaded"))  # replaced below
            else:
                raise TaskError(
                    f"game {i + 1} is neither SGF text (starting with '(') nor a 64-digit "
                    "hex game-store record id"
                )
        if ids:
            loaded = self._from_store([rid for _, rid in ids])
            for (index, rid), record in zip(ids, loaded, strict=True):
                out[index] = record if record is not None else SkippedGame(rid, "not in the store")
        return out

    def _open_store(self) -> Any:
        from nacl.signing import SigningKey

        from engine import GameStore
        from net._errors import IdentityError
        from net._identity import KEY_FILE, Identity

        if self.data_dir is None:
            raise TaskError("game-store ids need a data directory (p2pgo-mcp --data-dir)")
        try:
            identity = Identity.load(self.data_dir / KEY_FILE)
            return GameStore(self.data_dir / "store", SigningKey(identity.seed))
        except (IdentityError, OSError) as exc:
            raise TaskError(f"cannot open the game store: {exc}") from None

    def _from_store(self, record_ids: Sequence[str]) -> list[GameRecord | None]:
        from engine import StoreError

        store = self._open_store()
        try:
            out: list[GameRecord | None] = []
            for rid in record_ids:
                try:
                    out.append(store.load(rid) if rid in store else None)
                except StoreError as exc:
                    log.warning("game %s: %s", rid[:12], exc)
                    out.append(None)
            return out
        finally:
            store.close()

    def _store_held_out(self) -> list[GameRecord]:
        from engine.nn import records_from_store, split_records

        store = self._open_store()
        try:
            records = records_from_store(store)
        finally:
            store.close()
        _, test = split_records(records, HELD_OUT_FRACTION)
        return [r for r in test if isinstance(r, GameRecord)]

    # ---- train --------------------------------------------------------------------

    def train(
        self,
        games: Sequence[str],
        model_weights: str,
        config: TrainConfig,
        *,
        clip_norm: float,
        encoding: str = ENCODINGS[0],
        progress: ProgressFn | None = None,
    ) -> TrainOutcome:
        """Train on ``games`` from ``model_weights``; the clipped, encoded update."""
        from engine.nn import ModelFormatError, Progress, SkippedGame, train_local
        from fl import clip_l2, encode_tensors, l2_norm

        if encoding not in ENCODINGS:
            raise TaskError(f"encoding must be one of {', '.join(ENCODINGS)}")
        if not (math.isfinite(clip_norm) and clip_norm > 0):
            raise TaskError("clip_norm must be a finite number > 0")
        if not games:
            raise TaskError("no games to train on")
        loaded = self.weights(model_weights)
        records = self.games(games)

        def report(p: Progress) -> None:
            if progress is not None:
                progress(p.step, p.total, f"epoch {p.epoch + 1}, step {p.step}: loss {p.loss:.4f}")

        try:
            result = train_local(loaded.model, records, config, report)
        except (ValueError, ModelFormatError) as exc:
            raise TaskError(f"training failed: {exc}") from None
        norm = l2_norm(result.delta)
        clipped, scale = clip_l2(result.delta, clip_norm)
        quant_range: float | None = None
        bits: int | None = None
        if encoding == "p2pgo-tensors":
            data = encode_tensors(clipped)
        else:
            data, quant_range = _quantized(clipped, clip_norm, config.seed)
            bits = _QUANT_BITS
        skipped = tuple(f"{s.source}: {s.reason}" for s in records if isinstance(s, SkippedGame))
        return TrainOutcome(
            encoding=encoding,
            data=data,
            parent_version=loaded.version,
            clip_norm=clip_norm,
            norm_before_clip=norm,
            scale=scale,
            quant_range=quant_range,
            quant_bits=bits,
            metrics=result.metrics,
            num_examples=result.num_examples,
            games=len(records) - len(skipped),
            skipped=skipped,
            steps=result.steps,
            seconds=result.seconds,
        )

    # ---- verify -------------------------------------------------------------------

    def verify(
        self,
        old_weights: str,
        new_weights: str,
        update: bytes,
        *,
        coordinator_key: bytes | None = None,
        my_submission: bytes | None = None,
        games: Sequence[str] | None = None,
    ) -> VerifyOutcome:
        """Check a signed ModelUpdate against the weights; measure the improvement."""
        from fl import ModelUpdate, RemoteProtocolError, decode_round_message, verify_model_update

        started = time.perf_counter()
        key = self._coordinator(coordinator_key)
        old = self.weights(old_weights, "old_weights")
        new = self.weights(new_weights, "new_weights")

        def answer(reason: str, message: Any = None, **measured: Any) -> VerifyOutcome:
            return VerifyOutcome(
                valid=not reason,
                reason=reason or "ok",
                parent_version=old.version,
                new_version=new.version,
                round_id=getattr(message, "round_id", None),
                participant_count=getattr(message, "participant_count", None),
                improvement=measured.get("improvement"),
                old_loss=measured.get("old_loss"),
                new_loss=measured.get("new_loss"),
                old_top1=measured.get("old_top1"),
                new_top1=measured.get("new_top1"),
                held_out_positions=measured.get("positions", 0),
                seconds=time.perf_counter() - started,
            )

        if isinstance(key, str):
            return answer(key)
        try:
            message = decode_round_message(update)
        except RemoteProtocolError as exc:
            return answer(f"the proof is not a round message: {exc}")
        if not isinstance(message, ModelUpdate):
            return answer(f"the proof is a {message.kind} message, not a model update", message)
        try:
            verify_model_update(message, key, old.version, my_submission)
        except RemoteProtocolError as exc:
            return answer(str(exc), message)
        if message.new_version != new.version:
            return answer(
                f"new_weights are version {new.version[:12]}, but the update announces "
                f"{message.new_version[:12]}",
                message,
            )
        return answer("", message, **self._improvement(old, new, games))

    def _coordinator(self, given: bytes | None) -> bytes | str:
        """The key to verify with, or (a string) why the proof cannot be valid."""
        if given is not None and len(given) != 32:
            raise TaskError("proof.coordinator_key must be 32 bytes (64 hex digits)")
        if self.coordinator_key is None:
            if given is None:
                raise TaskError(
                    "no coordinator key: give proof.coordinator_key or start p2pgo-mcp "
                    "with --coordinator-key"
                )
            return given
        if given is not None and given != self.coordinator_key:
            return "the update's coordinator is not the one this server trusts"
        return self.coordinator_key

    def _improvement(
        self, old: LoadedModel, new: LoadedModel, games: Sequence[str] | None
    ) -> dict[str, Any]:
        from engine.nn import evaluate

        examples = self._held_out(games)
        if examples is None or len(examples) == 0:
            return {}
        # device="cpu": the cached networks are shared with predict_move; never move them.
        before = evaluate(old.model, examples, device="cpu")
        after = evaluate(new.model, examples, device="cpu")
        return {
            "improvement": before.loss - after.loss,
            "old_loss": before.loss,
            "new_loss": after.loss,
            "old_top1": before.top1,
            "new_top1": after.top1,
            "positions": len(examples),
        }

    def _held_out(self, games: Sequence[str] | None) -> ExampleSet | None:
        from engine.nn import build_examples

        if games:
            records = [r for r in self.games(games) if isinstance(r, GameRecord)]
        elif self.data_dir is not None and (self.data_dir / "store").is_dir():
            try:
                records = self._store_held_out()
            except TaskError as exc:
                log.info("no held-out games: %s", exc)
                return None
        else:
            return None
        chosen: list[GameRecord] = []
        positions = 0
        # Games enough for a few times the positions wanted, so the sample spans many
        # games; building examples costs ~0.6 ms a position, once per game set.
        for record in records:
            if positions >= 4 * self.held_out_positions:
                break
            chosen.append(record)
            positions += len(record.moves)
        key = tuple(r.record_id for r in chosen)
        with self._examples_lock:
            cached = self._examples.get(key)
            if cached is None:
                cached = _subsample(build_examples(chosen), self.held_out_positions)
                self._examples[key] = cached
                while len(self._examples) > 4:  # a few game sets: the store's and a caller's
                    self._examples.popitem(last=False)
            else:
                self._examples.move_to_end(key)
            return cached


def _subsample(examples: ExampleSet, limit: int) -> ExampleSet:
    """At most ``limit`` examples, evenly spaced through every board size's group."""
    import numpy as np

    from engine.nn import ExampleArrays, ExampleSet

    total = len(examples)
    if total <= limit:
        return examples
    groups = []
    for g in examples.groups:
        keep = max(1, round(len(g) * limit / total))
        idx = np.linspace(0, len(g) - 1, keep).round().astype(int)
        groups.append(
            ExampleArrays(
                g.size,
                g.planes[idx],
                g.policy[idx],
                g.policy_weight[idx],
                g.value[idx],
                g.score[idx],
            )
        )
    return ExampleSet(tuple(groups), examples.games, examples.skipped)


def _quantized(clipped: dict[str, Any], clip_norm: float, seed: int) -> tuple[bytes, float]:
    import numpy as np

    from fl import choose_quant, default_quant_range, flatten, pack_quantized, quantize

    flat, _ = flatten(clipped)
    quant_range = default_quant_range(clip_norm, 0.0, max(int(flat.size), 1))
    spec = choose_quant(1, quant_range, _QUANT_BITS)
    values = quantize(flat, spec, np.random.default_rng(seed))
    return pack_quantized(values, spec.modulus_bits), quant_range
