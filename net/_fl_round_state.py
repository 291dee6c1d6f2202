"""The round coordinator's bookkeeping: its events, sessions, round tallies and records.

`net._fl_coordinator.FlCoordinatorService` runs the protocol; this module holds what it
keeps while doing so: the events of its inbox (`Inbound`, `InboundBlob`), one
participant's stream (`Session`), the tallies of the round in progress (`RoundState`),
and what is made from them: the screen's `LiveRound`, the `CoordinatorReport` of a
finished round (`round_report`) and the saved counter and lineage (`save_state`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from fl import RoundCoordinator, RoundMessage
from net._fl_protocol import FlStream, atomic_write, peer_of_key
from net._fl_records import MODEL_FILE, STATE_FILE, CoordinatorReport, StageTiming


@dataclass(frozen=True, slots=True)
class Inbound:
    """A decoded round message from the session of the peer with `key`."""

    key: bytes
    message: RoundMessage


@dataclass(frozen=True, slots=True)
class InboundBlob:
    """A masked-input blob fetched from the peer with `key` for round `round_id`."""

    round_id: int
    key: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class LiveRound:
    """The round in progress, for a screen: id, stage, ready and selected peer counts."""

    round_id: int
    stage: str
    ready: int
    selected: int
    seconds: float  # since it started


class Session:
    """One participant's stream: frames out through a bounded outbox."""

    def __init__(self, peer_id: str, key: bytes, framed: FlStream, outbox: int) -> None:
        self.peer_id = peer_id
        self.key = key
        self.framed = framed
        self.send, self.receive = trio.open_memory_channel[bytes](outbox)
        self.scope = trio.CancelScope()
        self.reason = ""
        self.model_version = ""  # what the peer last said it holds

    def close(self, reason: str) -> None:
        self.reason = self.reason or reason
        self.scope.cancel()


@dataclass
class RoundState:
    """The round in progress: its state machine and what the report will say."""

    coordinator: RoundCoordinator
    stage_started: float
    started: float
    nursery: trio.Nursery | None = None
    start_body: bytes | None = None
    stages: list[StageTiming] = field(default_factory=list)
    blob_failures: int = 0
    bytes_in: dict[bytes, int] = field(default_factory=lambda: defaultdict(int))
    bytes_out: dict[bytes, int] = field(default_factory=lambda: defaultdict(int))


def live_round(state: RoundState | None) -> LiveRound | None:
    """`state` for a screen (None between rounds); call on the trio thread."""
    start = state.coordinator.round_start if state is not None else None
    if state is None or start is None:
        return None
    selection = state.coordinator.selection
    return LiveRound(
        start.round_id,
        state.coordinator.stage.value,
        len(state.coordinator.ready_peers),
        len(selection.selected) if selection is not None else 0,
        trio.current_time() - state.started,
    )


def round_report(state: RoundState, parent: str) -> CoordinatorReport:
    """The report of the round `state` ran from model `parent` (call once it has ended)."""
    coordinator = state.coordinator
    outcome = coordinator.outcome
    selection = coordinator.selection
    selected = selection.selected if selection is not None else ()
    return CoordinatorReport(
        round_id=coordinator.round_start.round_id if coordinator.round_start else 0,
        completed=outcome is not None,
        reason=coordinator.abort_reason or "",
        parent_version=parent,
        model_version=outcome.update.new_version if outcome else "",
        ready=len(coordinator.ready_peers),
        selected=tuple(peer_of_key(k) for k in selected),
        survivors=tuple(peer_of_key(k) for k in outcome.survivors) if outcome else (),
        dropped=tuple(peer_of_key(k) for k in outcome.dropped) if outcome else (),
        stages=tuple(state.stages),
        rejections=len(coordinator.rejections),
        blob_failures=state.blob_failures,
        seconds=trio.current_time() - state.started,
        bytes_in={peer_of_key(k): v for k, v in state.bytes_in.items()},
        bytes_out={peer_of_key(k): v for k, v in state.bytes_out.items()},
    )


def save_state(
    state_dir: Path, round_id: int, blob: bytes, version: str, parent: str, model_format: str
) -> None:
    """Save the round counter and model lineage (and the model blob if not saved yet).

    Done after every round, completed or not, so a restarted relay never reuses a
    round id its peers have seen.
    """
    if not (state_dir / MODEL_FILE).exists():
        atomic_write(state_dir / MODEL_FILE, blob)
    record = {
        "round_id": round_id,
        "model_version": version,
        "parent_version": parent,
        "model_format": model_format,
    }
    atomic_write(state_dir / STATE_FILE, json.dumps(record).encode())


async def drain(channel: trio.MemoryReceiveChannel[Any]) -> None:
    """Read and drop everything from `channel` (a subscription kept only for its acks)."""
    async for _ in channel:
        pass
