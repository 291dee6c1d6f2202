"""The MCP model server: tools, their input and output schemas, and the model resources.

:func:`build_server` wraps a :class:`net._mcp_tasks.ModelTasks` in an
``mcp.server.mcpserver.MCPServer`` (MCP Python SDK 2.x). Every tool returns a pydantic
model, so ``tools/list`` carries an output schema for each and every result carries
``structuredContent`` (and the same JSON as text, for clients that read only text).

Tools:

* ``predict_move(board_state, model_version="latest", top_k=5, analyze=False)``
* ``train_local(games, model_weights="latest", hyperparams={...})``, with progress
  notifications when the request carries a progress token
* ``verify_model(old_weights, new_weights, proof, games=None)``
* ``cache_stats()``: the loaded-model cache's hit/miss counters

Resources: ``models://list`` (every known version, latest first) and the template
``models://{version}`` (one version's metadata; ``latest`` works too).

Bad input is a tool error (``isError`` with a message saying what is wrong), never a
crash: :class:`~net._mcp_tasks.TaskError` becomes ``ToolError``; arguments that do not
fit the input schema are refused by the SDK the same way; anything unexpected is
logged with its traceback and reported as a generic tool error.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Literal

import anyio
import anyio.from_thread
import anyio.to_thread
import blake3
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from net._mcp_board import MAX_BOARD_STATE_CHARS
from net._mcp_models import LATEST, ModelError
from net._mcp_tasks import ModelTasks, TaskError

__all__ = [
    "CacheStatsResult",
    "Hyperparams",
    "MoveCandidate",
    "PredictMoveResult",
    "Proof",
    "TrainLocalResult",
    "TrainMetrics",
    "UpdatePayload",
    "VerifyModelResult",
    "build_server",
]

log = logging.getLogger(__name__)

SERVER_NAME = "p2pgo-mcp"
SERVER_VERSION = "0.1.0"
# The largest round message fl decodes (fl.MAX_ROUND_MESSAGE_BYTES is 4 MiB), as base64.
_MAX_PROOF_CHARS = 6 * 1024 * 1024
# Progress notifications at most this often (a training step can take a millisecond).
_PROGRESS_INTERVAL_S = 0.2
_HEX32 = r"^[0-9a-fA-F]{64}$"

_INSTRUCTIONS = """\
p2pgo's Go model. predict_move(board_state) gives the network's move, its top moves and
the side to move's win probability; board_state is SGF text or a compact string
'ROWS;TO_PLAY[;ko=VERTEX][;komi=N][;rules=NAME]' with rows of X/O/. from the top
separated by '/', e.g. '.../.X./...;w;komi=7.5'. train_local trains on games (SGF or
store ids) and returns a clipped model update; verify_model checks a signed
ModelUpdate against old and new weights. Model versions: resource models://list."""


# ---- schemas --------------------------------------------------------------------------


class MoveCandidate(BaseModel):
    move: str = Field(description="GTP vertex such as 'D4', or 'pass'")
    probability: float = Field(description="the network's policy probability of the move")
    win_rate: float | None = Field(
        default=None, description="the mover's win probability after the move (only with analyze)"
    )


class PredictMoveResult(BaseModel):
    move: str = Field(description="the network's choice: GTP vertex or 'pass'")
    confidence: float = Field(description="policy probability of that move (0..1)")
    top_moves: list[MoveCandidate] = Field(description="the most likely moves, best first")
    value: float = Field(description="the side to move's win probability (0..1)")
    score_lead: float | None = Field(
        default=None, description="expected lead in points of the side to move (score-head models)"
    )
    to_play: Literal["b", "w"]
    board_size: int
    model_version: str = Field(description="the version that answered (BLAKE3 hex)")


class Hyperparams(BaseModel):
    """Local training settings; every value is range-checked."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    lr: float = Field(default=1e-3, gt=0, le=1, description="learning rate")
    epochs: int = Field(default=1, ge=1, le=50)
    batch_size: int = Field(default=64, ge=1, le=4096)
    prox_mu: float = Field(default=0.0, ge=0, le=1e4, description="FedProx proximal weight mu")
    clip_norm: float = Field(
        default=1.0, gt=0, le=1e6, description="L2 bound on the returned update"
    )
    max_steps: int | None = Field(
        default=None, ge=1, le=1_000_000, description="stop after this many steps"
    )
    optimizer: Literal["sgd", "adamw"] = "adamw"
    weight_decay: float = Field(default=1e-4, ge=0, le=1)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    encoding: Literal["p2pgo-tensors", "p2q1"] = Field(
        default="p2pgo-tensors",
        description="update encoding: fl tensors CBOR, or 16-bit P2Q1 frame",
    )


class UpdatePayload(BaseModel):
    encoding: str
    data_base64: str = Field(description="the encoded, clipped update")
    size_bytes: int
    blake3: str = Field(description="BLAKE3 hex of the encoded bytes")
    parent_version: str = Field(description="the weights the update applies to")
    clip_norm: float
    norm_before_clip: float
    scale: float = Field(description="factor the delta was scaled by (1.0: not clipped)")
    quant_range: float | None = Field(default=None, description="p2q1: values span [-range, range]")
    quant_bits: int | None = None


class TrainMetrics(BaseModel):
    loss: float
    policy_loss: float
    value_loss: float
    accuracy: float = Field(description="top-1 move prediction accuracy on the training batches")
    top3: float
    examples: int
    games: int
    skipped: list[str] = Field(description="games that gave no examples, and why")
    steps: int
    seconds: float


class TrainLocalResult(BaseModel):
    update: UpdatePayload
    metrics: TrainMetrics


class Proof(BaseModel):
    """A signed ModelUpdate and what to check it against."""

    model_config = ConfigDict(extra="forbid")

    update: str = Field(
        max_length=_MAX_PROOF_CHARS, description="base64 of the ModelUpdate's wire bytes"
    )
    coordinator_key: str | None = Field(
        default=None,
        pattern=_HEX32,
        description="hex Ed25519 key of the coordinator (default: --coordinator-key)",
    )
    my_submission: str | None = Field(
        default=None, pattern=_HEX32, description="hex hash of my submission, which must be listed"
    )


class VerifyModelResult(BaseModel):
    valid: bool
    reason: str = Field(description="'ok', or the first check that failed")
    improvement: float | None = Field(
        default=None, description="held-out loss of old minus new weights (positive: better)"
    )
    parent_version: str
    new_version: str
    round_id: int | None = None
    participant_count: int | None = None
    old_loss: float | None = None
    new_loss: float | None = None
    old_accuracy: float | None = None
    new_accuracy: float | None = None
    held_out_positions: int
    seconds: float


class CacheStatsResult(BaseModel):
    hits: int
    misses: int
    hit_rate: float
    evictions: int
    preloads: int = Field(description="models loaded ahead of any request (not counted)")
    capacity: int
    loaded: list[str] = Field(description="cached versions, least recently used first")


def _json_text(value: Any) -> Any:
    """Object arguments may come as JSON text: CLI clients (the MCP Inspector) send
    arguments whose schema is a reference, not ``type: object``, as strings."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise ValueError("expected an object, or JSON text of one") from None
    return value


# ---- the server -----------------------------------------------------------------------


def _unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def build_server(tasks: ModelTasks, *, warm_up: bool = False) -> MCPServer[Any]:
    """The MCP server over ``tasks``; ``warm_up`` preloads the latest model at start."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[None]:
        if warm_up:
            # A daemon thread, not a task: loading torch cannot be cancelled, and a
            # server told to exit must not wait for it.
            threading.Thread(
                target=_warm_up, args=(tasks,), name="p2pgo-mcp-warm-up", daemon=True
            ).start()
        yield

    server: MCPServer[Any] = MCPServer(
        SERVER_NAME,
        version=SERVER_VERSION,
        instructions=_INSTRUCTIONS,
        lifespan=lifespan,
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def predict_move(
        board_state: Annotated[
            str,
            Field(
                max_length=MAX_BOARD_STATE_CHARS,
                description="SGF text, or 'ROWS;TO_PLAY[;ko=VERTEX][;komi=N][;rules=NAME]'",
            ),
        ],
        model_version: Annotated[
            str, Field(description="'latest' or a model version (64 hex digits)")
        ] = LATEST,
        top_k: Annotated[int, Field(ge=1, le=50)] = 5,
        analyze: Annotated[
            bool, Field(description="also evaluate each top move's resulting position")
        ] = False,
    ) -> PredictMoveResult:
        """The network's move for the side to move, its top moves and win probability."""
        try:
            out = tasks.predict(board_state, model_version, top_k=top_k, analyze=analyze)
        except TaskError as exc:
            raise ToolError(str(exc)) from None
        return PredictMoveResult(
            move=out.move,
            confidence=out.confidence,
            top_moves=[
                MoveCandidate(move=m.move, probability=m.probability, win_rate=m.win_rate)
                for m in out.top_moves
            ],
            value=out.value,
            score_lead=out.score_lead,
            to_play="b" if out.to_play == "b" else "w",
            board_size=out.size,
            model_version=out.model_version,
        )

    @server.tool()
    async def train_local(
        games: Annotated[
            list[str], Field(min_length=1, description="SGF texts or game-store record ids")
        ],
        ctx: Context,
        model_weights: Annotated[
            str, Field(description="'latest', a model version, or base64 of a weight file")
        ] = LATEST,
        hyperparams: Annotated[Hyperparams | None, BeforeValidator(_json_text)] = None,
    ) -> TrainLocalResult:
        """Train the model on local games; return the clipped update and training metrics."""
        from engine.nn import OptimizerKind, TrainConfig

        hp = hyperparams or Hyperparams()
        try:
            config = TrainConfig(
                lr=hp.lr,
                epochs=hp.epochs,
                batch_size=hp.batch_size,
                prox_mu=hp.prox_mu,
                max_steps=hp.max_steps,
                optimizer=OptimizerKind(hp.optimizer),
                weight_decay=hp.weight_decay,
                seed=hp.seed,
            )
        except ValueError as exc:
            raise ToolError(f"hyperparams: {exc}") from None
        last = [0.0]

        def progress(step: int, total: int, message: str) -> None:
            now = time.monotonic()
            if step < total and now - last[0] < _PROGRESS_INTERVAL_S:
                return
            last[0] = now
            anyio.from_thread.run(partial(ctx.report_progress, step, total, message))

        try:
            out = await anyio.to_thread.run_sync(
                partial(
                    tasks.train,
                    games,
                    model_weights,
                    config,
                    clip_norm=hp.clip_norm,
                    encoding=hp.encoding,
                    progress=progress,
                )
            )
        except TaskError as exc:
            raise ToolError(str(exc)) from None
        m = out.metrics
        return TrainLocalResult(
            update=UpdatePayload(
                encoding=out.encoding,
                data_base64=base64.b64encode(out.data).decode("ascii"),
                size_bytes=len(out.data),
                blake3=blake3.blake3(out.data).hexdigest(),
                parent_version=out.parent_version,
                clip_norm=out.clip_norm,
                norm_before_clip=out.norm_before_clip,
                scale=out.scale,
                quant_range=out.quant_range,
                quant_bits=out.quant_bits,
            ),
            metrics=TrainMetrics(
                loss=m.loss,
                policy_loss=m.policy_loss,
                value_loss=m.value_loss,
                accuracy=m.top1,
                top3=m.top3,
                examples=out.num_examples,
                games=out.games,
                skipped=list(out.skipped),
                steps=out.steps,
                seconds=out.seconds,
            ),
        )

    @server.tool(annotations=read_only)
    def verify_model(
        old_weights: Annotated[
            str, Field(description="the model the update builds on: version or base64 weights")
        ],
        new_weights: Annotated[str, Field(description="the announced model: version or base64")],
        proof: Annotated[Proof, BeforeValidator(_json_text)],
        games: Annotated[
            list[str] | None,
            Field(description="held-out games (SGF or store ids); default: the store's"),
        ] = None,
    ) -> VerifyModelResult:
        """Check a signed ModelUpdate (signature, parent, Merkle root); measure improvement."""
        try:
            update = base64.b64decode(proof.update, validate=True)
        except (binascii.Error, ValueError):
            raise ToolError("proof.update must be base64 of a ModelUpdate's wire bytes") from None
        try:
            out = tasks.verify(
                old_weights,
                new_weights,
                update,
                coordinator_key=_unhex(proof.coordinator_key),
                my_submission=_unhex(proof.my_submission),
                games=games,
            )
        except TaskError as exc:
            raise ToolError(str(exc)) from None
        return VerifyModelResult(
            valid=out.valid,
            reason=out.reason,
            improvement=out.improvement,
            parent_version=out.parent_version,
            new_version=out.new_version,
            round_id=out.round_id,
            participant_count=out.participant_count,
            old_loss=out.old_loss,
            new_loss=out.new_loss,
            old_accuracy=out.old_top1,
            new_accuracy=out.new_top1,
            held_out_positions=out.held_out_positions,
            seconds=out.seconds,
        )

    @server.tool(annotations=read_only)
    def cache_stats() -> CacheStatsResult:
        """Hit/miss counters of the loaded-model cache."""
        s = tasks.registry.stats()
        return CacheStatsResult(
            hits=s.hits,
            misses=s.misses,
            hit_rate=s.hit_rate,
            evictions=s.evictions,
            preloads=s.preloads,
            capacity=s.capacity,
            loaded=list(s.loaded),
        )

    @server.resource("models://list", name="models", mime_type="application/json")
    def list_models() -> str:
        """Every known model version, the one 'latest' names first."""
        registry = tasks.registry
        infos = registry.versions()
        return json.dumps(
            {
                "latest": infos[0].version if infos else None,
                "models": [
                    {
                        "version": i.version,
                        "source": i.source.value,
                        "size_bytes": i.size_bytes,
                        "added": i.added,
                        "cached": registry.cached(i.version),
                    }
                    for i in infos
                ],
            }
        )

    @server.resource("models://{version}", name="model", mime_type="application/json")
    def model_metadata(version: str) -> str:
        """One model version's metadata: source, size, architecture, parameter count."""
        registry = tasks.registry
        try:
            info = registry.resolve(version)
            config, parameters = registry.describe(info)
        except ModelError as exc:
            raise ResourceError(str(exc)) from None
        return json.dumps(
            {
                "version": info.version,
                "source": info.source.value,
                "size_bytes": info.size_bytes,
                "added": info.added,
                "latest": registry.resolve(LATEST).version == info.version,
                "cached": registry.cached(info.version),
                "config": config.to_dict(),
                "parameters": parameters,
            }
        )

    return server


def _warm_up(tasks: ModelTasks) -> None:
    started = time.perf_counter()
    tasks.registry.warm_up()
    import fl  # noqa: F401 - train_local and verify_model need it; it loads slowly

    log.info("warm-up done in %.1f s", time.perf_counter() - started)
