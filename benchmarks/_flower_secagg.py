"""Flower's own SecAgg+ (server workflow + client mod), driven in one process, timed.

Runs only inside the bench venv that has ``flwr`` (``make bench-flower-venv`` makes
``.venv-flower``); `benchmarks.bench_secagg` starts it as a subprocess and reads the one
JSON line it prints. Nothing here is a SecAgg implementation: it is a transport stub.
Flower's `SecAggPlusWorkflow` (server) talks to a `Grid`; `_InProcessGrid` delivers each
message to that node's `secaggplus_mod` (client) with its own `Context`, the way a
SuperLink and SuperNodes would, minus the network. Each delivery gets a deep copy of the
message (a real transport serialises; the mod mutates what it receives), made outside
the timed sections. Dropouts: the chosen nodes stop answering at the masked-vector
stage, i.e. after sharing keys (the costly case, as in ours).

Timing: client seconds are the time inside each node's mod call (key generation, Shamir
sharing, encryption, masking, unmask replies); coordinator seconds are the rest of the
workflow's wall time, less the strategy's `aggregate_fit` (FedAvg over already-unmasked
parameters, not SecAgg work) which is reported separately. Upload bytes are the bytes
and arrays in each node's replies.

    .venv-flower/bin/python benchmarks/_flower_secagg.py --peers 100 --params 10000
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.client.mod.secure_aggregation.secaggplus_mod import secaggplus_mod
from flwr.common import (
    Code,
    FitRes,
    Parameters,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_manager import SimpleClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import SecAggPlusWorkflow
from flwr.serverapp.grid import Grid
from flwr.supercore.task_identity import TaskIdentity


class _Proxy(ClientProxy):  # type: ignore[misc]  # flwr is not in the project venv
    """A node as the legacy strategy sees it: only its id is used by the workflow."""

    def __init__(self, node_id: int) -> None:
        super().__init__(str(node_id))
        self.node_id = node_id

    def get_properties(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def get_parameters(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def fit(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def evaluate(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def reconnect(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class _TimedFedAvg(FedAvg):  # type: ignore[misc]
    """FedAvg that notes how long `aggregate_fit` takes (not part of SecAgg+)."""

    seconds = 0.0

    def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
        start = time.perf_counter()
        out = super().aggregate_fit(server_round, results, failures)
        self.seconds += time.perf_counter() - start
        return out


def _reply_bytes(message: Message) -> int:
    total = 0
    for record in message.content.config_records.values():
        for value in record.values():
            items = value if isinstance(value, list) else [value]
            total += sum(len(v) for v in items if isinstance(v, bytes))
    for record in message.content.array_records.values():
        total += sum(len(array.data) for array in record.values())
    return total


class _InProcessGrid(Grid):  # type: ignore[misc]
    """Delivers each message to the destination node's SecAgg+ mod, in process."""

    def __init__(self, updates: dict[int, list[np.ndarray]], dropped: set[int]) -> None:
        self._updates = updates
        self._dropped = dropped
        self._contexts = {
            nid: Context(run_id=1, node_id=nid, node_config={}, state=RecordDict(), run_config={})
            for nid in updates
        }
        self.client_seconds: dict[int, float] = dict.fromkeys(updates, 0.0)
        self.upload_bytes: dict[int, int] = dict.fromkeys(updates, 0)
        self.copy_seconds = 0.0

    def _fit(self, message: Message, context: Context) -> Message:
        """The ClientApp behind the mod: 'training' returns a fixed update."""
        del context
        params: Parameters = ndarrays_to_parameters(self._updates[message.metadata.dst_node_id])
        fitres = FitRes(Status(Code.OK, ""), params, 1, {})
        return Message(compat.fitres_to_recorddict(fitres, keep_input=False), reply_to=message)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        del timeout
        replies = []
        for message in messages:
            nid = message.metadata.dst_node_id
            stage = message.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE]
            if stage == Stage.COLLECT_MASKED_VECTORS and nid in self._dropped:
                continue  # silent from here on
            start = time.perf_counter()
            delivered = Message(
                copy.deepcopy(message.content),
                dst_node_id=nid,
                message_type=message.metadata.message_type,
                group_id=message.metadata.group_id,
            )
            self.copy_seconds += time.perf_counter() - start
            start = time.perf_counter()
            reply = secaggplus_mod(delivered, self._contexts[nid], self._fit)
            self.client_seconds[nid] += time.perf_counter() - start
            self.upload_bytes[nid] += _reply_bytes(reply)
            replies.append(reply)
        return replies

    # The workflow uses only send_and_receive; the rest of Grid is not needed here.
    def set_run(self, run_id: int) -> None:
        raise NotImplementedError

    @property
    def run(self) -> Any:
        raise NotImplementedError

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self._updates)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError


def run(peers: int, params: int, dropout: float, num_shares: int, threshold: int) -> dict[str, Any]:
    """One SecAgg+ round of Flower's code; returns the measurements."""
    # What a ServerApp process would have set before messages can be made.
    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    rng = np.random.default_rng(0)
    node_ids = [1000 + i for i in range(peers)]
    updates = {nid: [rng.uniform(-0.5, 0.5, params).astype(np.float32)] for nid in node_ids}
    dropped = set(random.Random(0).sample(node_ids, round(dropout * peers)))
    grid = _InProcessGrid(updates, dropped)
    strategy = _TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=peers,
        min_available_clients=peers,
    )
    manager = SimpleClientManager()
    for nid in node_ids:
        manager.register(_Proxy(nid))
    base = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    context = LegacyContext(base, strategy=strategy, client_manager=manager)
    context.state.config_records[MAIN_CONFIGS_RECORD] = ConfigRecord({WorkflowKey.CURRENT_ROUND: 1})
    zeros = ndarrays_to_parameters([np.zeros(params, dtype=np.float32)])
    context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
        zeros, keep_input=True
    )
    # Flower's neighbourhood includes the node itself: num_shares = degree + 1.
    workflow = SecAggPlusWorkflow(
        num_shares=num_shares, reconstruction_threshold=threshold, clipping_range=1.0
    )
    start = time.perf_counter()
    workflow(grid, context)
    wall = time.perf_counter() - start
    client_total = sum(grid.client_seconds.values())
    coordinator = wall - client_total - grid.copy_seconds - strategy.seconds
    result = parameters_to_ndarrays(
        compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
        )
    )[0]
    survivors = [nid for nid in node_ids if nid not in dropped]
    expected = np.mean([updates[nid][0] for nid in survivors], axis=0)
    return {
        "flwr_peers": peers,
        "flwr_params": params,
        "flwr_dropout": dropout,
        "flwr_num_shares": num_shares,
        "flwr_threshold": threshold,
        "flwr_coordinator_s": round(coordinator, 3),
        "flwr_participant_mean_s": round(client_total / peers, 4),
        "flwr_participant_total_s": round(client_total, 3),
        "flwr_round_compute_s": round(coordinator + client_total, 3),
        "flwr_strategy_aggregate_s": round(strategy.seconds, 3),
        "flwr_upload_bytes_per_participant": round(
            sum(grid.upload_bytes[n] for n in survivors) / len(survivors)
        ),
        "flwr_max_abs_error": float(np.max(np.abs(result - expected))),
        "flwr_wall_s": round(wall, 3),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="_flower_secagg")
    parser.add_argument("--peers", type=int, required=True)
    parser.add_argument("--params", type=int, required=True)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--num-shares", type=int, required=True)
    parser.add_argument("--threshold", type=int, required=True)
    args = parser.parse_args(argv)
    import flwr

    out = run(args.peers, args.params, args.dropout, args.num_shares, args.threshold)
    print(json.dumps({"flwr_version": flwr.__version__, **out}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
