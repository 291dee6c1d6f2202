"""``p2pgo-peer``: a headless node that joins the network and reports what it sees.

It starts a `Node` from a config file and flags, dials the given peers, subscribes to
the announcement topic, says hello, and writes one JSON object per line to stdout for
each event (``listening``, ``hello``, ``announcement``, ``acked``, ``announce_timeout``,
``reserved``, ``registered``, ``game_*``) so scripts and tests can follow it. Every
round announcement it receives is acked. With ``--announce-round`` it announces a
round itself and re-announces until ``--expect-acks`` peers have acked.

Relays and games: with ``--relay ADDR`` it keeps a circuit relay v2 reservation on
that relay (so it is reachable at ``ADDR/p2p-circuit/p2p/<us>``), upgrades relayed
connections with DCUtR unless ``--no-dcutr``, and registers its addresses in the
relay's directory. With ``--play`` it accepts challenges and plays them with the
heuristic AI; ``--challenge PEER_ID`` finds that peer (``--challenge-addr`` or the
relays' directories; ``--via-relay`` uses only its circuit address) and plays one
game. Finished games are stored, signed by both players, under
``<data dir>/gamestore``.

Federated rounds: with ``--join-rounds`` it joins the rounds of its coordinators
(``--coordinator PEER_ID``, by default the ``--relay`` peers, else the ``--connect``
peers; `net.FlParticipantService`): it trains the Go network on the finished games in
its game store, submits through secure aggregation, verifies the signed ModelUpdate
and adopts the new model. Its privacy ledger (``--epsilon-budget``, ``--delta``) and
its model live in ``<data dir>/fl``. ``--bots N`` runs N more such peers in this
process (each with its own identity and data dir ``<data dir>/bots/<i>``), as the
TUI's local federation does. Events: ``fl_joined``, ``fl_model``, ``fl_round_start``,
``fl_selected``, ``fl_submitted``, ``fl_adopted``, ``fl_round`` (each with the
``peer_id`` of the node it concerns).

It stops on SIGINT/SIGTERM, or when stdin closes if ``--exit-on-stdin-eof`` is given
(how tests stop it cleanly).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from engine import GameStore
from fl import DEFAULT_DELTA, DEFAULT_EPSILON
from net._blobstore import DirectoryBlobStore
from net._config import LOOPBACK_LISTEN, NodeConfig
from net._directory import DirectoryClient, DirectoryError
from net._errors import ConfigError, IdentityError, NetError
from net._fl_participant import FlParticipantService, GoTrainer
from net._fl_protocol import EphemeralBlobStore, GoModelCodec
from net._game_service import AiPolicy, GameError, GameService
from net._identity import Identity
from net._node import ANNOUNCE_TOPIC, Node, NodeService, Received
from net._relay import RelayClient
from net._wire import Hello, RoundAnnouncement

AGENT = "p2pgo-peer/0.1"
log = logging.getLogger(__name__)


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="p2pgo-peer", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, help="TOML file with a [net] table")
    p.add_argument("--data-dir", type=Path, help="where the identity key and blobs live")
    p.add_argument("--listen", action="append", help="multiaddr to listen on (repeatable)")
    p.add_argument("--connect", action="append", default=[], help="peer multiaddr with /p2p/")
    p.add_argument("--announce-round", type=int, metavar="ID", help="announce this round")
    p.add_argument("--min-participants", type=int, default=1)
    p.add_argument("--model-version", default="00" * 32, help="hex BLAKE3 of the model")
    p.add_argument("--expect-acks", type=int, default=1, help="re-announce until this many ack")
    p.add_argument("--announce-timeout", type=float, default=30.0, help="give up after (s)")
    p.add_argument("--exit-on-stdin-eof", action="store_true")
    p.add_argument("--log-level", default="WARNING")
    g = p.add_argument_group("relays and games")
    g.add_argument("--relay", action="append", default=[], help="relay multiaddr with /p2p/")
    g.add_argument("--no-dcutr", action="store_true", help="never upgrade relayed connections")
    g.add_argument("--register-ttl", type=int, default=300, help="directory entry TTL (s)")
    g.add_argument("--play", action="store_true", help="accept challenges and play (AI)")
    g.add_argument("--challenge", metavar="PEER_ID", help="challenge this peer to a game")
    g.add_argument("--challenge-addr", help="where the challenged peer is (else directory)")
    g.add_argument("--via-relay", action="store_true", help="reach the peer via its circuit")
    g.add_argument("--size", type=int, default=9)
    g.add_argument("--komi", type=float, default=7.5)
    g.add_argument("--rules", default="chinese")
    g.add_argument("--color", choices=["black", "white"], default="black")
    g.add_argument("--main-time", type=int, default=0, help="seconds per player (0: none)")
    g.add_argument("--increment", type=int, default=0, help="seconds added per move")
    g.add_argument("--max-moves", type=int, default=400, help="the AI passes after this")
    g.add_argument("--seed", type=int, default=0, help="the AI's random seed")
    g.add_argument("--drop-after-moves", type=int, help=argparse.SUPPRESS)  # test hook
    r = p.add_argument_group("federated rounds")
    r.add_argument("--join-rounds", action="store_true", help="train and join FL rounds")
    r.add_argument("--coordinator", action="append", default=[], metavar="PEER_ID")
    r.add_argument("--epsilon-budget", type=float, default=DEFAULT_EPSILON)
    r.add_argument("--delta", type=float, default=DEFAULT_DELTA)
    r.add_argument("--min-games", type=int, default=1, help="stored games needed to join")
    r.add_argument("--train-lr", type=float, default=1e-3)
    r.add_argument("--train-epochs", type=int, default=1)
    r.add_argument("--train-max-steps", type=int, help="stop local training after N steps")
    r.add_argument("--train-threads", type=int, default=1, help="torch CPU threads")
    r.add_argument("--bots", type=int, default=0, help="N more round-joining peers in-process")
    r.add_argument("--fl-freeze-round", type=int, help=argparse.SUPPRESS)  # test hook
    return p


async def _report(node: Node, inbox: trio.MemoryReceiveChannel[Received]) -> None:
    seen: set[tuple[bytes, bytes]] = set()
    async for received in inbox:
        message = received.message
        if received.sender == node.public_key:
            continue
        key = (received.sender, received.envelope.payload)
        first = key not in seen
        seen.add(key)
        if isinstance(message, Hello) and first:
            _emit("hello", peer_id=message.peer_id, addrs=list(message.addrs), agent=message.agent)
        elif isinstance(message, RoundAnnouncement):
            if first:
                _emit(
                    "announcement",
                    round_id=message.round_id,
                    model_version=message.model_version.hex(),
                    min_participants=message.min_participants,
                    sender=received.sender.hex(),
                    origin=received.origin,
                )
            await node.ack(received)  # every time: a re-announce means our ack was lost


async def _announce(node: Node, args: argparse.Namespace) -> None:
    message = RoundAnnouncement(
        args.announce_round, bytes.fromhex(args.model_version), args.min_participants
    )
    with trio.move_on_after(args.announce_timeout):
        ackers = await node.announce_until_acked(ANNOUNCE_TOPIC, message, expected=args.expect_acks)
        _emit("acked", round_id=message.round_id, ackers=sorted(a.hex() for a in ackers))
        return
    _emit("announce_timeout", round_id=message.round_id, ackers=len(node.acks_for(message)))


async def _wait_for_stop(exit_on_eof: bool) -> None:
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

        async def on_eof() -> None:
            stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            async with stream:
                while await stream.receive_some(4096):
                    pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        if exit_on_eof:
            nursery.start_soon(on_eof)


async def _register(node: Node, relays: RelayClient, ttl: int) -> None:
    """Keep our addresses (direct and circuit) listed in every relay's directory."""
    clients = [DirectoryClient(node, addr.rsplit("/p2p/", 1)[1]) for addr in node.config.relays]
    first = True
    while True:
        addrs = (*relays.circuit_addrs, *node.listen_addrs)
        for client in clients:
            try:
                granted = await client.register(addrs, AGENT, ttl)
            except DirectoryError as err:
                _emit("register_failed", relay=client.relay_peer_id, error=str(err))
                continue
            if first:
                _emit("registered", relay=client.relay_peer_id, ttl=granted, addrs=list(addrs))
        first = False
        await trio.sleep(max(1.0, ttl / 2))  # re-register before the entry expires


async def _find(node: Node, args: argparse.Namespace) -> str:
    """The address to challenge: ``--challenge-addr`` or a relay directory's entry."""
    if args.challenge_addr:
        return str(args.challenge_addr)
    relays = [DirectoryClient(node, a.rsplit("/p2p/", 1)[1]) for a in node.config.relays]
    if not relays:
        raise GameError("--challenge needs --challenge-addr or a --relay with a directory")
    with trio.move_on_after(30):
        while True:
            for client in relays:
                try:
                    entry = await client.lookup(args.challenge)
                except DirectoryError as err:
                    log.info("directory lookup failed: %s", err)
                    continue
                if entry is not None:
                    circuit = [a for a in entry.addrs if "/p2p-circuit" in a]
                    direct = [a for a in entry.addrs if "/p2p-circuit" not in a]
                    ordered = circuit if args.via_relay else direct + circuit
                    if ordered:
                        return ordered[0]
            await trio.sleep(0.5)  # the peer may not have registered yet: poll
    raise GameError(f"{args.challenge} is in no relay's directory")


async def _challenge(node: Node, games: GameService, args: argparse.Namespace) -> None:
    try:
        addr = await _find(node, args)
        terms = games.new_terms(
            args.challenge,
            size=args.size,
            rules=args.rules,
            komi=args.komi,
            black=args.color == "black",
            main_time_s=args.main_time,
            increment_s=args.increment,
            date=time.strftime("%Y-%m-%d"),
        )
        outcome = await games.challenge(addr, terms)
    except (GameError, NetError, ValueError) as err:
        _emit("challenge_failed", error=str(err))
        return
    _emit(
        "challenge_done",
        game_id=outcome.game_id,
        phase=outcome.phase.value,
        result=outcome.result,
        moves=outcome.moves,
        record_id=outcome.record_id,
        resumes=outcome.resumes,
        addr=addr,
    )


def _coordinators(config: NodeConfig, args: argparse.Namespace) -> list[str]:
    if args.coordinator:
        return list(args.coordinator)
    addrs = config.relays or config.peers
    return [addr.rsplit("/p2p/", 1)[1] for addr in addrs]


def _rounds_service(
    config: NodeConfig, identity: Identity, store: GameStore, args: argparse.Namespace
) -> FlParticipantService:
    """The round-joining service of one node: the Go network trained on its games."""
    from engine.nn import TrainConfig  # imports torch: only for peers that train

    codec = GoModelCodec()
    train = TrainConfig(
        lr=args.train_lr, epochs=args.train_epochs, max_steps=args.train_max_steps, device="cpu"
    )
    return FlParticipantService(
        GoTrainer(store, codec, train),
        state_dir=config.data_dir / "fl",
        coordinators=_coordinators(config, args),
        codec=codec,
        epsilon_budget=args.epsilon_budget,
        delta=args.delta,
        min_games=args.min_games,
        on_event=lambda event, fields: _emit(event, **fields),
        freeze_round=args.fl_freeze_round,
    )


async def _run_bot(
    config: NodeConfig, args: argparse.Namespace, *, task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """One more round-joining peer in this process, with its own identity and data."""
    identity = Identity.load_or_create(config.data_dir)
    store = GameStore(config.data_dir / "gamestore", identity.signing_key)
    blobs = EphemeralBlobStore(DirectoryBlobStore(config.data_dir / "blobs"))
    node = Node(
        config,
        identity,
        blob_store=blobs,
        services=[_rounds_service(config, identity, store, args)],
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        _emit("bot_listening", peer_id=node.peer_id, addrs=list(node.listen_addrs))
        task_status.started()


async def _run(config: NodeConfig, args: argparse.Namespace) -> None:
    identity = Identity.load_or_create(config.data_dir)
    services: list[NodeService] = []
    relays = RelayClient(dcutr=not args.no_dcutr) if config.relays else None
    if relays is not None:
        services.append(relays)
    games = None
    store = None
    if args.play or args.challenge or args.join_rounds:
        store = GameStore(config.data_dir / "gamestore", identity.signing_key)
    if args.join_rounds:
        assert store is not None
        if args.train_threads > 0:
            import torch

            torch.set_num_threads(args.train_threads)
        services.append(_rounds_service(config, identity, store, args))
    if args.play or args.challenge:
        assert store is not None
        policy = AiPolicy(seed=args.seed, max_moves=args.max_moves)
        games = GameService(
            store,
            policy,
            accept_challenges=args.play,
            on_event=lambda event, fields: _emit(event, **fields),
            drop_after_moves=args.drop_after_moves,
        )
        services.append(games)
    blobs = None
    if args.join_rounds:
        blobs = EphemeralBlobStore(DirectoryBlobStore(config.data_dir / "blobs"))
    node = Node(config, identity, blob_store=blobs, services=services)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        inbox = await node.subscribe(ANNOUNCE_TOPIC)
        _emit("listening", peer_id=node.peer_id, addrs=list(node.listen_addrs))
        for i in range(args.bots if args.join_rounds else 0):
            bot = dataclasses.replace(
                config, data_dir=config.data_dir / "bots" / str(i), listen=(LOOPBACK_LISTEN,)
            )
            await nursery.start(_run_bot, bot, args)
        nursery.start_soon(_report, node, inbox)
        await node.publish(ANNOUNCE_TOPIC, Hello(node.peer_id, node.listen_addrs, AGENT))
        if relays is not None:
            _emit("reserved", circuit_addrs=list(relays.circuit_addrs))
            nursery.start_soon(_register, node, relays, args.register_ttl)
        if args.announce_round is not None:
            nursery.start_soon(_announce, node, args)
        if args.challenge and games is not None:
            nursery.start_soon(_challenge, node, games, args)
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
            peers=tuple(args.connect) or None,
            relays=tuple(args.relay) or None,
        )
        if len(args.model_version) != 64:
            raise ConfigError("--model-version must be 64 hex digits")
        if args.join_rounds and not _coordinators(config, args):
            raise ConfigError("--join-rounds needs --coordinator, --relay or --connect")
        if args.bots < 0 or (args.bots and not args.join_rounds):
            raise ConfigError("--bots needs --join-rounds and a count >= 0")
        bytes.fromhex(args.model_version)
        trio.run(_run, config, args)
    except (ConfigError, IdentityError, ValueError) as err:
        print(f"p2pgo-peer: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
