"""``p2pgo-peer``: a headless node that joins the network and reports what it sees.

It starts a `Node` from a config file and flags, dials the given peers, subscribes to
the announcement topic, says hello, and writes one JSON object per line to stdout for
each event (``listening``, ``hello``, ``announcement``, ``acked``, ``announce_timeout``)
so scripts and tests can follow it. Every round announcement it receives is acked.
With ``--announce-round`` it announces a round itself and re-announces until
``--expect-acks`` peers have acked. It stops on SIGINT/SIGTERM, or when stdin
closes if ``--exit-on-stdin-eof`` is given (how tests stop it cleanly).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from net._config import NodeConfig
from net._errors import ConfigError, IdentityError
from net._node import ANNOUNCE_TOPIC, Node, Received
from net._wire import Hello, RoundAnnouncement

AGENT = "p2pgo-peer/0.1"


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


async def _run(config: NodeConfig, args: argparse.Namespace) -> None:
    node = Node(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        inbox = await node.subscribe(ANNOUNCE_TOPIC)
        _emit("listening", peer_id=node.peer_id, addrs=list(node.listen_addrs))
        nursery.start_soon(_report, node, inbox)
        await node.publish(ANNOUNCE_TOPIC, Hello(node.peer_id, node.listen_addrs, AGENT))
        if args.announce_round is not None:
            nursery.start_soon(_announce, node, args)
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
        )
        if len(args.model_version) != 64:
            raise ConfigError("--model-version must be 64 hex digits")
        bytes.fromhex(args.model_version)
        trio.run(_run, config, args)
    except (ConfigError, IdentityError, ValueError) as err:
        print(f"p2pgo-peer: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
