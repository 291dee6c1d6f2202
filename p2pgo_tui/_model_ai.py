"""The app's AI and hint giver from a chain of model backends, with fallbacks.

:class:`ModelOpponent` and :class:`ModelAdvisor` implement the app's ``AiOpponent``
and ``Advisor`` protocols from a chain of :class:`ModelBackend` s, normally
``[McpModel(client), LocalModel(path)]``: each one is asked in turn, and a backend
that fails (:class:`~p2pgo_tui._mcp_client.ModelServiceError`) hands over to the next,
the last resort being the heuristic player. Hints come with the network's win rates.
:func:`build_ai` wires them for ``p2pgo-tui --ai``.

Start-up stays light: neither this module nor :mod:`p2pgo_tui._mcp_client` imports
``mcp`` or torch; the in-process fallback imports torch only if it is ever needed.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engine import HeuristicPlayer, from_gtp, pass_alternative
from engine.gtp import DEFAULT_MODEL
from p2pgo_tui._advice import ExplainingAdvisor, explain_move
from p2pgo_tui._engine import (
    CoordinateError,
    GameRecord,
    IllegalMove,
    Move,
    Position,
    dump_sgf,
)
from p2pgo_tui._mcp_client import McpModelClient, ModelServiceError, server_command
from p2pgo_tui._model_choice import ModelChoice
from p2pgo_tui._protocols import Advisor, AiOpponent, Suggestion

__all__ = [
    "AiKind",
    "AiSetup",
    "LocalModel",
    "McpModel",
    "ModelAdvisor",
    "ModelAnswer",
    "ModelBackend",
    "ModelOpponent",
    "MoveChoice",
    "build_ai",
    "heuristic_advisor",
]

log = logging.getLogger(__name__)

_ORDINALS = ("first", "second", "third")


# ---- answers and backends -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoveChoice:
    move: Move
    probability: float
    win_rate: float | None  # the mover's win probability after the move, if evaluated


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """What a backend says about a position (candidates best first, at least one)."""

    candidates: tuple[MoveChoice, ...]
    value: float  # the side to move's win probability
    model_version: str
    source: str  # "mcp" or "local"

    @property
    def best(self) -> Move:
        return self.candidates[0].move


class ModelBackend(Protocol):
    def predict(self, position: Position, *, top_k: int = 1, analyze: bool = False) -> ModelAnswer:
        """The network's view; raises :class:`ModelServiceError` when it cannot answer."""
        ...


def _move(vertex: Any, position: Position) -> Move:
    if not isinstance(vertex, str):
        raise ModelServiceError(f"the server sent a move that is not text: {vertex!r}")
    try:
        point = from_gtp(vertex, position.size)
    except CoordinateError:
        raise ModelServiceError(f"the server sent an invalid move {vertex[:10]!r}") from None
    me = position.to_play
    return Move.pass_(me) if point is None else Move.play(me, point)


class McpModel:
    """:class:`ModelBackend` over :class:`McpModelClient` (positions travel as SGF)."""

    def __init__(
        self,
        client: McpModelClient,
        model_version: str = "latest",
        *,
        choice: ModelChoice | None = None,
    ) -> None:
        self.client = client
        self.model_version = model_version
        self.choice = choice  # when given, its current version is asked for by id

    def predict(self, position: Position, *, top_k: int = 1, analyze: bool = False) -> ModelAnswer:
        # The whole game as SGF: the network sees the last moves, and repetition is exact.
        sgf = dump_sgf(GameRecord.from_position(position)).decode("utf-8")
        version = (self.choice.version if self.choice is not None else "") or self.model_version
        out = self.client.call(
            "predict_move",
            {
                "board_state": sgf,
                "model_version": version,
                "top_k": top_k,
                "analyze": analyze,
            },
        )
        try:
            candidates = tuple(
                MoveChoice(_move(m["move"], position), float(m["probability"]), m.get("win_rate"))
                for m in out["top_moves"]
            )
            answer = ModelAnswer(candidates, float(out["value"]), str(out["model_version"]), "mcp")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelServiceError(f"predict_move returned an unexpected result: {exc}") from None
        if not candidates:
            raise ModelServiceError("predict_move returned no moves")
        return answer


class LocalModel:
    """:class:`ModelBackend` in this process (engine.nn, imported on first use).

    ``model`` is a weight file, or a :class:`ModelChoice` whose current file is
    reloaded whenever it changes (a file that does not load leaves the last one).
    """

    def __init__(self, model: Path | ModelChoice | None) -> None:
        self.choice = model if isinstance(model, ModelChoice) else None
        self.model_path = model if isinstance(model, Path) else None
        self._lock = threading.Lock()
        self._predictor: Any = None
        self._version = ""
        self._loaded: Path | None = None
        self._failed: dict[Path, str] = {}  # files that did not load, and why

    def _wanted(self) -> Path | None:
        if self.choice is not None:
            current = self.choice.current
            return current.path if current is not None else None
        return self.model_path

    def _load(self) -> tuple[Any, str]:
        with self._lock:
            path = self._wanted()
            if path is None and self._predictor is None:
                raise ModelServiceError("no model file")
            if path is not None and path != self._loaded and path not in self._failed:
                try:
                    from engine.nn import ModelFormatError, Predictor, load_weights, weights_id

                    data = path.read_bytes()
                    self._predictor = Predictor(load_weights(data), threads=1)
                    self._version = weights_id(data)
                    self._loaded = path
                    log.info("local model %s loaded from %s", self._version[:12], path)
                except (OSError, ModelFormatError) as exc:
                    self._failed[path] = f"cannot load {path}: {exc}"
                    log.warning("local model: %s", self._failed[path])
            if self._predictor is None:
                assert path is not None
                raise ModelServiceError(self._failed[path])
            return self._predictor, self._version

    def predict(self, position: Position, *, top_k: int = 1, analyze: bool = False) -> ModelAnswer:
        predictor, version = self._load()
        pred = predictor.predict(position)
        top = pred.top_k(top_k)
        if not top:
            raise ModelServiceError("no legal move")
        me = position.to_play
        moves = [Move.pass_(me) if p is None else Move.play(me, p) for p, _ in top]
        rates: list[float | None] = [None] * len(top)
        if analyze:
            rates = [
                1.0 - c.value for c in predictor.predict_batch([position.play(m) for m in moves])
            ]
        candidates = tuple(
            MoveChoice(m, prob, r) for m, (_, prob), r in zip(moves, top, rates, strict=True)
        )
        return ModelAnswer(candidates, pred.value, version, "local")


# ---- the app's protocols ------------------------------------------------------------------


class ModelOpponent:
    """An ``AiOpponent``: the first backend that answers plays; else ``last_resort``."""

    def __init__(self, backends: Sequence[ModelBackend], last_resort: AiOpponent) -> None:
        self.backends = list(backends)
        self.last_resort = last_resort
        self.last_source = ""
        self.last_version = ""  # the model version of the last move ("" if none chose it)

    def choose(self, position: Position) -> Move:
        if position.is_game_over:
            return Move.pass_(position.to_play)
        for backend in self.backends:
            try:
                answer = backend.predict(position)
            except ModelServiceError as exc:
                log.warning("%s could not choose a move: %s", type(backend).__name__, exc)
                continue
            move = answer.best
            if move.point is None and not move.is_resign:
                move = self._unless_unfinished(backend, position, move)
            if position.is_legal(move):
                self.last_source = type(backend).__name__
                self.last_version = answer.model_version
                return move
            log.error("%s chose an illegal move %s", type(backend).__name__, move)
        self.last_source = type(self.last_resort).__name__
        self.last_version = ""
        return self.last_resort.choose(position)

    @staticmethod
    def _unless_unfinished(backend: ModelBackend, position: Position, pass_: Move) -> Move:
        """The network's pass, unless (area scoring) an empty region still touches both
        colours: then its best safe move there (``engine.pass_alternative``)."""
        try:
            wide = backend.predict(position, top_k=min(50, position.size**2 + 1))
        except ModelServiceError:
            return pass_
        point = pass_alternative(position, (c.move.point for c in wide.candidates))
        return pass_ if point is None else Move.play(position.to_play, point)


class ModelAdvisor:
    """An ``Advisor``: the network's top moves with their win rates; else ``last_resort``."""

    def __init__(
        self, backends: Sequence[ModelBackend], last_resort: Advisor, *, count: int = 3
    ) -> None:
        self.backends = list(backends)
        self.last_resort = last_resort
        self.count = count
        self.last_version = ""  # the model version of the last hint ("" if none gave it)

    def suggest(self, position: Position) -> Sequence[Suggestion]:
        if position.is_game_over:
            return []
        for backend in self.backends:
            try:
                answer = backend.predict(position, top_k=self.count, analyze=True)
            except ModelServiceError as exc:
                log.warning("%s could not give a hint: %s", type(backend).__name__, exc)
                continue
            out: list[Suggestion] = []
            for choice in answer.candidates:
                try:
                    position.play(choice.move)
                except IllegalMove:
                    continue
                rank = _ORDINALS[len(out)] if len(out) < len(_ORDINALS) else f"no. {len(out) + 1}"
                reason = (
                    f"the network's {rank} choice ({choice.probability:.0%}); "
                    f"{explain_move(position, choice.move)}"
                )
                out.append(Suggestion(choice.move, reason, choice.win_rate))
            if out:
                self.last_version = answer.model_version
                return out
        self.last_version = ""
        return self.last_resort.suggest(position)


def heuristic_advisor(seed: int | None) -> Advisor:
    """The hint giver without a network (what the app used before MCP)."""
    return ExplainingAdvisor(HeuristicPlayer(seed))


# ---- wiring -----------------------------------------------------------------------------


class AiKind(enum.Enum):
    """``p2pgo-tui --ai``: where the AI's moves come from."""

    MCP = "mcp"  # the network through p2pgo-mcp (then in-process, then heuristic)
    LOCAL = "local"  # the network in this process (then heuristic)
    HEURISTIC = "heuristic"


@dataclass(frozen=True, slots=True)
class AiSetup:
    """The app's AI and hint giver, the model choice they follow (None for the
    heuristic player), and the MCP client (the app starts it after its first frame
    and closes it on exit)."""

    kind: AiKind
    ai: AiOpponent
    name: str
    advisor: Advisor
    client: McpModelClient | None = None
    models: ModelChoice | None = None


def build_ai(
    kind: AiKind | None, data_dir: Path, seed: int | None, *, start: bool = True
) -> AiSetup:
    """The AI for ``kind``; ``None``: MCP when a model exists, else the heuristic player.

    Both backends follow one :class:`ModelChoice` (the persisted model, else the
    newest). With MCP the client starts now unless ``start`` is False: the app starts
    it after its first frame, since the server's start-up (seconds of imports) would
    otherwise compete with drawing the board.
    """
    heuristic = HeuristicPlayer(seed)
    # The hint giver gets its own player: asking the opponent would change its game.
    hints = heuristic_advisor(None if seed is None else seed + 1)
    if kind is AiKind.HEURISTIC:
        return AiSetup(kind, heuristic, "p2pgo AI (heuristic)", hints)
    models = ModelChoice(data_dir, DEFAULT_MODEL)
    if kind is None:
        kind = AiKind.MCP if models.current is not None else AiKind.HEURISTIC
        if kind is AiKind.HEURISTIC:
            return AiSetup(kind, heuristic, "p2pgo AI (heuristic)", hints)
    backends: list[ModelBackend] = [LocalModel(models)]
    client = None
    name = "p2pgo AI (network)"
    if kind is AiKind.MCP:
        client = McpModelClient(
            server_command(data_dir), errlog=data_dir / "logs" / "p2pgo-mcp.log"
        )
        if start:
            client.start()
        backends.insert(0, McpModel(client, choice=models))
        name = "p2pgo AI (network via MCP)"
    return AiSetup(
        kind,
        ModelOpponent(backends, heuristic),
        name,
        ModelAdvisor(backends, hints),
        client,
        models,
    )
