"""Benchmark: one federated round over real libp2p between in-process hosts.

A coordinator node and N participant nodes (one process, loopback, TCP + Noise + Yamux)
run one round through ``/p2pgo/fl/1``: RoundStart, ready, selection, the SecAgg+
stages, masked inputs fetched as blobs over ``/p2pgo/blob/1``, the signed ModelUpdate
and every peer fetching, verifying and adopting the new model. Local training is a
synthetic pull toward a per-peer target (this measures the network round, not
training). One JSON line: wall seconds per stage (the ready stage is a fixed window,
``--ready``), the whole round, and bytes per participant up (frames + masked input) and
down (frames + the new model).

    python -m benchmarks.bench_fl_net                    # 8 peers x 100k parameters
    python -m benchmarks.bench_fl_net --peers 16 --params 10000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import trio

from fl import NamedTensors
from net import MemoryBlobStore, Node, NodeConfig
from net._fl_coordinator import FlCoordinatorService
from net._fl_participant import FlParticipantService
from net._fl_protocol import EphemeralBlobStore, TensorCodec
from net._fl_records import RoundSettings


class _PullTrainer:
    def __init__(self, index: int) -> None:
        self._index = index

    def data_summary(self) -> tuple[int, bytes]:
        return 10, bytes(32)

    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        rng = np.random.default_rng(self._index)
        delta = {
            k: (0.1 * (rng.normal(0, 0.01, w.shape) - w)).astype(np.float32)
            for k, w in weights.items()
        }
        return delta, 10, {}


async def _round(peers: int, params: int, ready_s: float, root: Path) -> dict[str, Any]:
    settings = RoundSettings(
        per_round=peers,
        min_participants=max(2, (3 * peers) // 4),
        wait_for_peers=peers,
        ready_s=ready_s,
        train_s=60.0,
        stage_s=60.0,
        rounds=1,
        expected_dropout=0.0,
    )
    coordinator = FlCoordinatorService(TensorCodec(), {"w": np.zeros(params, np.float32)}, settings)
    services: list[FlParticipantService] = []
    async with trio.open_nursery() as nursery:
        relay = Node(
            NodeConfig.load(data_dir=root / "relay"),
            blob_store=MemoryBlobStore(),
            services=[coordinator],
        )
        await nursery.start(relay.run)
        setup = time.perf_counter()
        for i in range(peers):
            service = FlParticipantService(
                _PullTrainer(i),
                state_dir=root / f"p{i}" / "fl",
                coordinators=[relay.peer_id],
                codec=TensorCodec(),
                epsilon_budget=1e6,
            )
            config = NodeConfig.load(data_dir=root / f"p{i}", peers=(relay.listen_addrs[0],))
            node = Node(
                config, blob_store=EphemeralBlobStore(MemoryBlobStore()), services=[service]
            )
            await nursery.start(node.run)
            services.append(service)
        started = time.perf_counter()
        await coordinator.wait_round(1)
        done = time.perf_counter()
        report = coordinator.reports[0]
        for service in services:
            await service.wait_model(coordinator.version)
        adopted = time.perf_counter()
        nursery.cancel_scope.cancel()
    model_blob = len(TensorCodec().encode(coordinator.weights))  # each peer fetches it once
    up = [report.bytes_in.get(p, 0) for p in report.selected]
    down = [report.bytes_out.get(p, 0) for p in report.selected]
    n = max(len(report.selected), 1)
    return {
        "bench": "fl_net",
        "peers": peers,
        "params": params,
        "completed": report.completed,
        "selected": len(report.selected),
        "survivors": len(report.survivors),
        "start_hosts_s": round(started - setup, 3),
        "wait_sync_s": round(done - started - report.seconds, 3),
        "round_s": round(report.seconds, 3),
        "all_adopted_after_s": round(adopted - done, 3),
        "stages_s": {s.stage: round(s.seconds, 3) for s in report.stages},
        "upload_bytes_per_participant": round(sum(up) / n),
        "download_bytes_per_participant": round(sum(down) / n) + model_blob,
        "masked_input_bytes": 2 * params + 10,
        "model_blob_bytes": model_blob,
    }


def bench_fl_net(peers: int = 8, params: int = 100_000, ready_s: float = 1.0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        result: dict[str, Any] = trio.run(_round, peers, params, ready_s, Path(tmp))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=8)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--ready", type=float, default=1.0, help="ready window (s)")
    args = parser.parse_args(argv)
    print(json.dumps(bench_fl_net(args.peers, args.params, args.ready)), flush=True)


if __name__ == "__main__":
    main()
