"""Federated rounds between in-process nodes over real libp2p (loopback): sessions,
SecAgg stages, blob transfer of masked inputs and models, dropouts, budgets, late joiners."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import blake3
import cbor2
import numpy as np
import pytest
import trio

from fl import NamedTensors, PrivacyEvent, PrivacyLedger, Sampling, compute_epsilon
from net import MemoryBlobStore, Node, NodeConfig
from net._fl_coordinator import FlCoordinatorService
from net._fl_participant import FlParticipantService
from net._fl_protocol import EphemeralBlobStore, TensorCodec
from net._fl_records import RoundSettings, load_coordinator_state
from tests.net._helpers import run_trio

NOISE = 1.0


class PullTrainer:
    """A deterministic stand-in for training: pull the weights toward a peer's target."""

    def __init__(self, index: int, games: int = 5) -> None:
        self.index = index
        self.games = games
        self.calls = 0

    def data_summary(self) -> tuple[int, bytes]:
        return self.games, blake3.blake3(b"games %d" % self.index).digest()

    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        self.calls += 1
        rng = np.random.default_rng(self.index)
        delta = {
            name: (0.2 * (rng.normal(0.1, 0.05, w.shape) - w)).astype(np.float32)
            for name, w in weights.items()
        }
        return delta, 10 + self.index, {"loss": 1.0}


class BrokenTrainer(PullTrainer):
    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        raise ValueError("no usable games")


def _model() -> NamedTensors:
    return {"w": np.zeros((6, 5), np.float32), "b": np.zeros((4,), np.float32)}


class Federation:
    """A coordinator node and participant nodes in one trio run, events recorded."""

    def __init__(self, tmp: Path, nursery: trio.Nursery, settings: RoundSettings) -> None:
        self.tmp = tmp
        self.nursery = nursery
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.coordinator = FlCoordinatorService(
            TensorCodec(), _model(), settings, on_event=self._record, state_dir=tmp / "relay" / "fl"
        )
        self.node: Node | None = None
        self.scopes: dict[str, trio.CancelScope] = {}
        self.ids: dict[str, str] = {}

    def _record(self, event: str, fields: dict[str, Any]) -> None:
        self.events.append((event, fields))

    def find(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            f for e, f in self.events if e == event and all(f.get(k) == v for k, v in match.items())
        ]

    async def start(self) -> None:
        cfg = NodeConfig.load(data_dir=self.tmp / "relay")
        self.node = Node(cfg, blob_store=MemoryBlobStore(), services=[self.coordinator])
        await self.nursery.start(self.node.run)

    async def add_peer(
        self, name: str, trainer: PullTrainer, **options: Any
    ) -> FlParticipantService:
        assert self.node is not None
        service = FlParticipantService(
            trainer,
            state_dir=self.tmp / name / "fl",
            coordinators=[self.node.peer_id],
            codec=TensorCodec(),
            on_event=self._record,
            **{"epsilon_budget": 100.0, **options},
        )
        cfg = NodeConfig.load(data_dir=self.tmp / name, peers=(self.node.listen_addrs[0],))
        node = Node(cfg, blob_store=EphemeralBlobStore(MemoryBlobStore()), services=[service])
        scope = trio.CancelScope()
        self.scopes[name] = scope
        self.ids[name] = node.peer_id

        async def run(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self.nursery.start(run)
        return service


def _ledger(path: Path) -> PrivacyLedger:
    return PrivacyLedger.from_dict(cbor2.loads((path / "fl" / "ledger.cbor").read_bytes()))


@pytest.mark.slow
def test_rounds_absorb_a_vanished_peer_and_every_peer_ends_on_one_model(tmp_path: Path) -> None:
    settings = RoundSettings(
        # K = the 7 peers in step, so q = min(1, K / 7) = 1: everyone ready is selected
        # (the victim must be) and the ledgers below hold q = 1 events.
        per_round=7,
        min_participants=3,
        wait_for_peers=7,
        # Generous deadlines: a busy 2-core CI machine runs nine nodes here.
        ready_s=3.0,
        train_s=6.0,
        stage_s=4.0,
        rounds=2,
        interval_s=0.1,
        noise_multiplier=NOISE,
        expected_dropout=0.0,
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            fed = Federation(tmp_path, nursery, settings)
            await fed.start()
            peers = {f"p{i}": await fed.add_peer(f"p{i}", PullTrainer(i)) for i in range(4)}
            # Stops answering after its masked input in round 1; then its node vanishes.
            peers["victim"] = await fed.add_peer("victim", PullTrainer(7), freeze_round=1)
            # One round costs epsilon ~4.4 at z = 1: this peer must refuse, yet follow.
            peers["frugal"] = await fed.add_peer("frugal", PullTrainer(8), epsilon_budget=1.0)
            # Training raises: it sits the round out (a silent dropout before any key).
            # With it and the victim gone, 5 of 7 survive: each survivor's key shares
            # are still held by t others, as SecAgg needs.
            peers["broken"] = await fed.add_peer("broken", BrokenTrainer(9))
            with trio.fail_after(90):
                while not fed.find("fl_frozen"):
                    await trio.sleep(0.05)
                fed.scopes["victim"].cancel()
                await fed.coordinator.wait_round(1)
                # A peer that arrives between rounds syncs the model and joins round 2.
                peers["late"] = await fed.add_peer("late", PullTrainer(10))
                await fed.coordinator.wait_round(2)
                final = fed.coordinator.version
                for name, peer in peers.items():
                    if name != "victim":
                        await peer.wait_model(final)
            nursery.cancel_scope.cancel()
        first, second = fed.coordinator.reports
        assert first.completed and second.completed
        assert second.parent_version == first.model_version
        assert second.model_version == fed.coordinator.version
        by_name = fed.ids
        victim_id, broken_id = by_name["victim"], by_name["broken"]
        # The victim's input was in; its silence closed a later stage by timeout.
        assert victim_id in first.selected
        late = [s for s in first.stages if victim_id in s.missing]
        assert late and all(s.closed.value == "timeout" for s in late)
        # The broken trainer never advertised keys: the train deadline dropped it.
        advertise = next(s for s in first.stages if s.stage == "advertise_keys")
        assert advertise.closed.value == "timeout" and broken_id in advertise.missing
        assert broken_id in first.dropped and broken_id not in first.survivors
        assert victim_id not in second.selected
        refused = fed.find("fl_round", round_id=1, status="refused")
        assert [r["peer_id"] for r in refused] == [by_name["frugal"]]
        # Model files are the final blob; ledgers hold what each peer spent.
        for name in peers:
            if name == "victim":
                continue
            blob = (tmp_path / name / "fl" / "model.bin").read_bytes()
            assert blake3.blake3(blob).hexdigest() == fed.coordinator.version
        one = PrivacyEvent(NOISE, Sampling.POISSON_SECRET, 1.0)
        assert _ledger(tmp_path / "p0").events == (
            PrivacyEvent(NOISE, Sampling.POISSON_SECRET, 1.0, 2),
        )
        assert _ledger(tmp_path / "late").events == (one,)
        assert not (tmp_path / "frugal" / "fl" / "ledger.cbor").exists()  # spent nothing
        assert _ledger(tmp_path / "victim").events == (one,)
        adopted = fed.find("fl_adopted", round_id=2, peer_id=by_name["p0"])
        assert adopted[0]["epsilon"] == pytest.approx(compute_epsilon([replace_rounds(one, 2)]))
        assert fed.coordinator.stats.sessions_closed["malformed"] == 0
        # A restarted relay resumes with the last model and the next round id.
        saved = load_coordinator_state(tmp_path / "relay" / "fl")
        assert saved is not None
        codec, weights, next_round, parent = saved
        assert (next_round, parent) == (3, first.model_version)
        assert codec.version(weights) == second.model_version

    run_trio(main, timeout=150)


def replace_rounds(event: PrivacyEvent, rounds: int) -> PrivacyEvent:
    return PrivacyEvent(event.noise_multiplier, event.sampling, event.sampling_rate, rounds)
