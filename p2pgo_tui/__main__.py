"""``p2pgo-tui``: the command that starts the terminal app.

Start-up stays light (Textual, the rules and the store only): torch and libp2p are
never imported here, so the board is usable in well under two seconds. With ``--ai mcp``
(the default when a model exists) the model server starts in the background after the
app's first frame, and the network once the model server is ready. Everything
the app and its libraries log goes to a file in the data directory, never onto the
screen.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from p2pgo_tui._app import make_app
from p2pgo_tui._engine import Color, Rules
from p2pgo_tui._model_ai import AiKind, build_ai
from p2pgo_tui._netmodel import add_network_arguments, network_plan
from p2pgo_tui._settings import DEFAULT_KOMI, HANDICAP_KOMI, GameSettings, SettingsError
from p2pgo_tui._storage import StoreStorage, default_data_dir

__all__ = ["build_parser", "main"]

log = logging.getLogger("p2pgo_tui")

_RULES = ("chinese", "japanese", "aga", "new-zealand", "tromp-taylor")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pgo-tui",
        description="Play Go against the local AI in the terminal.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"where games, keys and logs live (default: {default_data_dir()})",
    )
    parser.add_argument("--size", type=int, default=9, help="board size (default: 9)")
    parser.add_argument(
        "--komi",
        type=float,
        default=None,
        help=f"komi (default: the rules' own, {DEFAULT_KOMI:g} for chinese; {HANDICAP_KOMI:g} with a handicap)",
    )
    parser.add_argument("--handicap", type=int, default=0, help="handicap stones (default: none)")
    parser.add_argument(
        "--color",
        "--colour",
        choices=("black", "white"),
        default="black",
        help="the colour you play (default: black)",
    )
    parser.add_argument(
        "--rules", choices=_RULES, default="chinese", help="rule set (default: chinese)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed the AI for reproducible games (default: random)",
    )
    parser.add_argument(
        "--ai",
        choices=[k.value for k in AiKind],
        default=None,
        help="where the AI's moves and hints come from: the network through the p2pgo-mcp "
        "server, the network in this process, or the heuristic player (default: mcp when "
        "a model exists, else heuristic)",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=None,
        help="log file (default: DATA_DIR/logs/p2pgo-tui.log)",
    )
    add_network_arguments(parser)
    return parser


def _settings(args: argparse.Namespace) -> GameSettings:
    komi = args.komi
    if komi is None:
        komi = HANDICAP_KOMI if args.handicap >= 2 else Rules.named(args.rules).komi
    return GameSettings(
        size=args.size,
        komi=komi,
        handicap=args.handicap,
        human=Color.parse(args.color),
        rules=args.rules,
    )


def _configure_logging(log_file: Path) -> None:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # Library warnings would otherwise go to stderr, which is the screen.
    logging.captureWarnings(True)


def _player_name() -> str:
    try:
        return getpass.getuser() or "You"
    except (KeyError, OSError):  # no user name in this environment (containers)
        return "You"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except SettingsError as exc:
        parser.error(str(exc))
    data_dir: Path = (args.data_dir or default_data_dir()).expanduser()
    try:
        network = network_plan(args, data_dir)
    except ValueError as exc:
        parser.error(str(exc))
    log_file: Path = (args.log_file or data_dir / "logs" / "p2pgo-tui.log").expanduser()
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        _configure_logging(log_file)
    except OSError as exc:
        print(f"p2pgo-tui: cannot use {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2

    log.info("starting: data dir %s, %s", data_dir, settings.describe())
    storage = StoreStorage(data_dir)
    # The model server starts after the app's first frame (make_app's background_ai).
    setup = build_ai(None if args.ai is None else AiKind(args.ai), data_dir, args.seed, start=False)
    log.info("AI: %s", setup.name)
    app = make_app(
        ai=setup.ai,
        ai_name=setup.name,
        advisor=setup.advisor,
        storage=storage,
        settings=settings,
        player_name=_player_name(),
        sgf_dir=data_dir / "sgf",
        network=network,
        operator=args.operator,
        models=setup.models,
        background_ai=setup.client,
    )
    try:
        app.run()
    finally:
        storage.close()
        if setup.client is not None:
            setup.client.close()
    log.info("exited")
    return app.return_code or 0


if __name__ == "__main__":
    sys.exit(main())
