"""``p2pgo-mcp``: the model server over MCP stdio (``predict_move``, ``train_local``,
``verify_model``, ``cache_stats``; resources ``models://list`` and ``models://{version}``).

Nothing but the protocol goes to stdout: logs go to stderr, or to ``--log-file``, and
while it serves, the SDK points file descriptor 1 at stderr so stray output from any
library misses the wire. Models come from ``--model-dir`` (default
``DATA_DIR/models``) and the shipped default model; with neither, ``predict_move``
answers "no model available" unless ``--fresh-model`` allows an untrained network.
The server answers ``initialize`` and ``tools/list`` at once and loads torch and the
latest model in the background (``--no-warm-up`` to skip). See docs/mcp.md.

    p2pgo-mcp --data-dir ~/.local/share/p2pgo --log-file /tmp/p2pgo-mcp.log
    npx @modelcontextprotocol/inspector@0.15.0 --cli p2pgo-mcp --method tools/list
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from net._config import default_data_dir
from net._mcp_board import BoardStateError, format_board_state, parse_board_state
from net._mcp_models import CacheStats, LoadedModel, ModelError, ModelInfo, ModelRegistry
from net._mcp_server import build_server
from net._mcp_tasks import (
    DEFAULT_MAX_INLINE_BYTES,
    MAX_HELD_OUT_POSITIONS,
    ModelTasks,
    TaskError,
)

# The public surface of the model server (net/__init__ does not import it: mcp and
# pydantic would then load with every ``import net``).
__all__ = [
    "BoardStateError",
    "CacheStats",
    "LoadedModel",
    "ModelError",
    "ModelInfo",
    "ModelRegistry",
    "ModelTasks",
    "TaskError",
    "build_parser",
    "build_server",
    "format_board_state",
    "main",
    "parse_board_state",
]

log = logging.getLogger("net.mcp")


def _default_model() -> Path:
    from engine.gtp import DEFAULT_MODEL

    return DEFAULT_MODEL


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p2pgo-mcp", description="p2pgo's model server (MCP over stdio)."
    )
    p.add_argument("--data-dir", type=Path, default=None, help="data directory (XDG default)")
    p.add_argument("--model-dir", type=Path, default=None, help="default: DATA_DIR/models")
    p.add_argument(
        "--default-model",
        type=Path,
        default=None,
        help="the fallback weight file (default: the shipped engine/models/default-9x9.cbor)",
    )
    p.add_argument(
        "--no-default-model", action="store_true", help="do not use the shipped default model"
    )
    p.add_argument(
        "--fresh-model",
        action="store_true",
        help="with no model at all, use a fresh untrained network (seeded) instead of an error",
    )
    p.add_argument("--fresh-seed", type=int, default=0, help="seed of the fresh network")
    p.add_argument("--cache-size", type=int, default=4, help="loaded models kept (LRU)")
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 suits a shared machine)"
    )
    p.add_argument(
        "--coordinator-key",
        default=None,
        help="hex Ed25519 key of the round coordinator that verify_model trusts",
    )
    p.add_argument(
        "--max-inline-bytes",
        type=int,
        default=DEFAULT_MAX_INLINE_BYTES,
        help="largest weight file accepted inline (base64) in a request",
    )
    p.add_argument(
        "--held-out-positions",
        type=int,
        default=MAX_HELD_OUT_POSITIONS,
        help="positions verify_model evaluates both models on",
    )
    p.add_argument("--log-file", type=Path, default=None, help="log here instead of stderr")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument(
        "--no-warm-up", action="store_true", help="load torch and the model on first use"
    )
    return p


def _configure_logging(log_file: Path | None, level: str) -> None:
    handler: logging.Handler
    if log_file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)
    # Warnings would otherwise be printed; printed text must never reach stdout.
    logging.captureWarnings(True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    key: bytes | None = None
    if args.coordinator_key is not None:
        try:
            key = bytes.fromhex(args.coordinator_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            parser.error("--coordinator-key must be 64 hex digits (an Ed25519 public key)")
    if min(args.cache_size, args.threads, args.max_inline_bytes, args.held_out_positions) < 1:
        parser.error(
            "--cache-size, --threads, --max-inline-bytes and --held-out-positions must be >= 1"
        )
    data_dir: Path = (args.data_dir or default_data_dir()).expanduser()
    try:
        _configure_logging(args.log_file, args.log_level)
    except OSError as exc:
        print(f"p2pgo-mcp: cannot log to {args.log_file}: {exc.strerror}", file=sys.stderr)
        return 2
    default_model = None if args.no_default_model else (args.default_model or _default_model())
    registry = ModelRegistry(
        (args.model_dir or data_dir / "models").expanduser(),
        default_model,
        capacity=args.cache_size,
        allow_fresh=args.fresh_model,
        fresh_seed=args.fresh_seed,
        threads=args.threads,
    )
    tasks = ModelTasks(
        registry,
        data_dir=data_dir,
        coordinator_key=key,
        max_inline_bytes=args.max_inline_bytes,
        held_out_positions=args.held_out_positions,
    )
    server = build_server(tasks, warm_up=not args.no_warm_up)
    log.info("serving MCP on stdio; models from %s", registry.model_dir)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in a terminal: just stop
        server.run("stdio")
    log.info("stdin closed: exiting")
    return 0


if __name__ == "__main__":
    sys.exit(main())
