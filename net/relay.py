"""``p2pgo-relay``: a headless relay: circuit relay v2 hop, peer directory, ``/metrics``.

It runs a `Node` (so it is also a gossip hub) with `RelayService` (circuit relay v2 hop
with explicit limits) and `DirectoryService` (``/p2pgo/directory/1``), counts the
gossip it sees by topic, and serves Prometheus metrics on
``http://127.0.0.1:<metrics-port>/metrics`` from a background thread when
``--metrics-port`` is not 0 (see `net._metrics` for the threading). Settings come from
the ``[net]`` and ``[relay]`` tables of ``--config`` and from flags (flags win).

Like ``p2pgo-peer`` it writes one JSON object per line to stdout (``listening`` with
the peer id, addresses and metrics URL; ``stopped``) and stops on SIGINT/SIGTERM or,
with ``--exit-on-stdin-eof``, when stdin closes.

With ``--coordinate-rounds`` it also coordinates federated rounds
(`net.FlCoordinatorService`): peers running ``p2pgo-peer --join-rounds`` open
``/p2pgo/fl/1`` sessions to it; it starts from ``--model-file`` (an engine weight file)
or, when ``<data dir>/fl`` holds a saved state, resumes from that, and prints
``fl_round_started`` / ``fl_round_done`` (with per-stage timings) for every round.
Privacy defaults (docs/privacy.md): noise multiplier 2 and secret Poisson sampling at a
rate derived from the peers in step with the model, so a network of a few hundred
peers fits a few hundred rounds in a peer's default budget (epsilon 1); in a tiny
network q is high and peers refuse, saying why.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

import trio

from fl import Sampling
from net._config import NodeConfig
from net._directory import Directory, DirectoryService
from net._errors import ConfigError, IdentityError, NetError
from net._fl_coordinator import FlCoordinatorService
from net._fl_protocol import ModelError, load_model
from net._fl_records import RoundSettings, load_coordinator_state
from net._metrics import RelayMetrics
from net._node import ANNOUNCE_TOPIC, Node, Received
from net._relay import RelayLimitsConfig, RelayService
from net.peer import _emit, _wait_for_stop

_LIMIT_KEYS = (
    "max_reservations",
    "reservation_ttl_s",
    "max_circuits_per_peer",
    "circuit_duration_s",
    "circuit_bytes",
)
_RELAY_KEYS = (*_LIMIT_KEYS, "directory_max_entries", "directory_max_ttl_s", "metrics_port")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2pgo-relay", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="TOML file with [net] and [relay] tables")
    p.add_argument("--data-dir", type=Path, help="where the identity key lives")
    p.add_argument("--listen", action="append", help="multiaddr to listen on (repeatable)")
    p.add_argument("--metrics-port", type=int, help="serve /metrics on this port (0: off)")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address /metrics binds")
    p.add_argument("--max-reservations", type=int)
    p.add_argument("--reservation-ttl-s", type=int)
    p.add_argument("--max-circuits-per-peer", type=int)
    p.add_argument("--circuit-duration-s", type=int, help="0: unlimited")
    p.add_argument("--circuit-bytes", type=int, help="per circuit; 0: unlimited")
    p.add_argument("--directory-max-entries", type=int)
    p.add_argument("--directory-max-ttl-s", type=int)
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    p.add_argument("--log-level", default="WARNING")
    f = p.add_argument_group("federated rounds")
    f.add_argument("--coordinate-rounds", action="store_true", help="run the round coordinator")
    f.add_argument("--model-file", type=Path, help="the first model (a saved state wins)")
    f.add_argument("--rounds", type=int, default=0, help="rounds to run (0: until stopped)")
    f.add_argument("--round-interval", type=float, default=5.0, help="seconds between rounds")
    f.add_argument("--per-round", type=int, default=8, help="target participants K")
    f.add_argument("--min-participants", type=int, default=3, help="abort below this")
    f.add_argument("--wait-for-peers", type=int, default=0, help="sessions before round 1")
    f.add_argument("--ready-timeout", type=float, default=5.0, help="seconds to collect ready")
    f.add_argument("--train-timeout", type=float, default=120.0, help="seconds to train")
    f.add_argument("--stage-timeout", type=float, default=15.0, help="seconds per SecAgg stage")
    f.add_argument("--clip-norm", type=float, default=1.0)
    f.add_argument(
        "--noise-multiplier",
        type=float,
        default=2.0,
        help="DP noise z (2: ~250 rounds in epsilon 1 at ~300 ready peers; docs/privacy.md)",
    )
    f.add_argument(
        "--sampling", choices=[s.value for s in Sampling], default=Sampling.POISSON_SECRET.value
    )
    f.add_argument(
        "--sampling-rate",
        type=float,
        default=1.0,
        help="cap on q: each round announces q = min(cap, ceil(K/(1-dropout)) / peers in step)",
    )
    f.add_argument("--expected-dropout", type=float, default=0.1)
    f.add_argument("--pow-difficulty", type=int, default=8)
    f.add_argument("--server-lr", type=float, default=1.0)
    f.add_argument("--proximal-mu", type=float, default=0.0, help="FedProx when > 0")
    return p


def _coordinator(args: argparse.Namespace, data_dir: Path) -> FlCoordinatorService | None:
    """The round coordinator the flags ask for (None without ``--coordinate-rounds``)."""
    if not args.coordinate_rounds:
        return None
    settings = RoundSettings(
        per_round=args.per_round,
        min_participants=args.min_participants,
        wait_for_peers=args.wait_for_peers,
        ready_s=args.ready_timeout,
        train_s=args.train_timeout,
        stage_s=args.stage_timeout,
        rounds=args.rounds,
        interval_s=args.round_interval,
        clip_norm=args.clip_norm,
        noise_multiplier=args.noise_multiplier,
        sampling=Sampling(args.sampling),
        sampling_rate=args.sampling_rate,
        expected_dropout=args.expected_dropout,
        pow_difficulty=args.pow_difficulty,
        server_lr=args.server_lr,
        proximal_mu=args.proximal_mu,
    )
    state_dir = data_dir / "fl"
    saved = load_coordinator_state(state_dir)
    if saved is not None:
        codec, weights, first_round, parent = saved
    elif args.model_file is not None:
        try:
            codec, weights = load_model(args.model_file.read_bytes())
        except (OSError, ModelError) as err:
            raise ConfigError(f"--model-file {args.model_file}: {err}") from None
        first_round, parent = 1, ""
    else:
        raise ConfigError("--coordinate-rounds needs --model-file (or a saved state)")
    return FlCoordinatorService(
        codec,
        weights,
        settings,
        state_dir=state_dir,
        parent_version=parent,
        first_round=first_round,
        on_event=lambda event, fields: _emit(event, **fields),
    )


def _relay_settings(path: Path | None, args: argparse.Namespace) -> dict[str, int]:
    """The ``[relay]`` table overlaid with flags; every value an integer."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                table = tomllib.load(f).get("relay", {})
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from None
        if not isinstance(table, dict):
            raise ConfigError(f"config {path}: [relay] must be a table")
        unknown = sorted(set(table) - set(_RELAY_KEYS))
        if unknown:
            raise ConfigError(f"unknown [relay] keys {unknown}; known: {sorted(_RELAY_KEYS)}")
        values.update(table)
    for key in _RELAY_KEYS:
        flag = getattr(args, key)
        if flag is not None:
            values[key] = flag
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
    return values


async def _count_gossip(metrics: RelayMetrics, inbox: trio.MemoryReceiveChannel[Received]) -> None:
    async for received in inbox:
        metrics.count_message(received.topic)


async def _run(
    config: NodeConfig,
    settings: dict[str, int],
    args: argparse.Namespace,
    rounds: FlCoordinatorService | None = None,
) -> None:
    limits = RelayLimitsConfig(**{k: settings[k] for k in _LIMIT_KEYS if k in settings})
    relay = RelayService(limits)
    directory = DirectoryService(
        Directory(
            max_entries=settings.get("directory_max_entries", 4096),
            max_ttl_s=settings.get("directory_max_ttl_s", 600),
        )
    )
    node = Node(config, services=[relay, directory, *([rounds] if rounds else [])])
    metrics = RelayMetrics(node, relay, directory, rounds=rounds)
    port = settings.get("metrics_port", 0)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        inbox = await node.subscribe(ANNOUNCE_TOPIC)
        nursery.start_soon(_count_gossip, metrics, inbox)
        url = None
        if port:
            server = await nursery.start(
                lambda task_status: metrics.run(
                    port=port, host=args.metrics_host, task_status=task_status
                )
            )
            url = server.url
        _emit(
            "listening",
            peer_id=node.peer_id,
            addrs=list(node.listen_addrs),
            metrics_url=url,
            limits={k: getattr(limits, k) for k in _LIMIT_KEYS},
        )
        await _wait_for_stop(args.exit_on_stdin_eof)
        nursery.cancel_scope.cancel()
    _emit("stopped")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        config = NodeConfig.load(
            args.config,
            data_dir=args.data_dir,
            listen=tuple(args.listen) if args.listen else None,
        )
        settings = _relay_settings(args.config, args)
        if not 0 <= settings.get("metrics_port", 0) <= 65535:
            raise ConfigError("metrics_port must be 0..65535")
        rounds = _coordinator(args, config.data_dir)
        trio.run(_run, config, settings, args, rounds)
    except (ConfigError, IdentityError) as err:
        print(f"p2pgo-relay: {err}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:  # trio nurseries wrap what their tasks raise
        leaf = _single_leaf(group)
        if not isinstance(leaf, NetError | OSError):  # e.g. the metrics port is taken
            raise
        print(f"p2pgo-relay: {leaf}", file=sys.stderr)
        return 1
    return 0


def _single_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


if __name__ == "__main__":
    raise SystemExit(main())
