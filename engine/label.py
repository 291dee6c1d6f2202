"""Label the positions of recorded games with a stronger engine's moves (``p2pgo-label``).

Imitating a teacher from the teacher's own games leaves the student helpless in the
positions its own mistakes create: it never saw them. DAgger (Ross et al., 2011) fixes
that by letting the student play, asking the teacher what it would have played in every
position the student reached, and training on those answers. This tool is the asking
step: it replays each SGF game in a GTP engine and, before every move, asks the engine
for its move **without playing it** (GnuGo's ``reg_genmove``; engines without it get
``genmove`` followed by ``undo``), then plays the move that was really played and goes
on. The engine's answer is written into the move's comment as a one-move
``p2pgo-visits:`` annotation, which :mod:`engine.nn._dataset` reads as the policy target
for that position (the value target stays the game's real result).

With ``--model`` instead of ``--engine`` the teacher is our own network's PUCT search
(:func:`label_record_with_search`, in-process, one worker process per ``--jobs``): each
position gets the search's whole visit distribution as a soft target, AlphaZero's
policy-improvement step applied to recorded games (expert iteration, Anthony et al.,
2017). The search reads tactics the bare policy does not, so its visits are a better
target than the policy it starts from. Typical use::

    p2pgo-eval match --opponent "gnugo --mode gtp --level 1" --visits 0 --games 100 --sgf-dir ours/
    p2pgo-label ours/ --engine "gnugo --mode gtp --level 10 --chinese-rules" --out labelled/ --jobs 2
    p2pgo-label ours/ --model model.cbor --visits 100 --out searched/ --jobs 2
    p2pgo-train labelled/ other-games/ --init model.cbor ...

Output files keep their names (prefixed with the source directory's name, so two runs'
``game-000.sgf`` do not collide); an existing output is skipped, so an interrupted run
continues where it stopped. A game the engine cannot follow (it rejects a recorded
move, answers nonsense, dies or times out) is reported and not written; games with
setup stones or handicap are skipped (their setup is not sent to the engine).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shlex
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from engine._coords import CoordinateError, from_gtp, to_gtp
from engine._gtp_client import GtpClient, GtpClientError
from engine._record import GameRecord, RecordError
from engine._rules import Position
from engine._sgf import SgfError, dump_sgf, load_sgf
from engine.nn._dataset import VISITS_MARKER, format_visits

if TYPE_CHECKING:
    from engine._search import Search

__all__ = ["LabelError", "LabelledGame", "label_record", "label_record_with_search", "main"]

LABEL_MARKER = "p2pgo-label:"  # the root comment line saying who labelled the game


class LabelError(Exception):
    """A game the labelling engine could not follow; the message says why."""


@dataclass(frozen=True, slots=True)
class LabelledGame:
    """A game with the engine's move before each recorded move, and how it went."""

    record: GameRecord
    labelled: int  # positions that got a label
    agreed: int  # of those, where the engine's move is the one that was played
    seconds: float


class _Asker:
    """How to ask one engine for its move without playing it."""

    def __init__(self, client: GtpClient, *, use_reg_genmove: bool = True) -> None:
        self.client = client
        commands = set(client.send("list_commands").split())
        self.reg_genmove = use_reg_genmove and "reg_genmove" in commands
        if not self.reg_genmove and "undo" not in commands:
            raise LabelError(f"{client.name} has neither reg_genmove nor undo")

    def ask(self, letter: str) -> str:
        if self.reg_genmove:
            return self.client.send(f"reg_genmove {letter}").strip()
        answer = self.client.send(f"genmove {letter}").strip()
        if answer.lower() != "resign":
            self.client.send("undo")
        return answer


def label_record(
    record: GameRecord, client: GtpClient, *, engine_name: str, use_reg_genmove: bool = True
) -> LabelledGame:
    """Ask ``client`` for its move before every move of ``record`` (see the module docs).

    Positions where the engine would resign keep their recorded move as the target
    (nothing better is known there). ``use_reg_genmove=False`` asks with ``genmove``
    and ``undo`` even when the engine has ``reg_genmove``. Raises :class:`LabelError`
    for games it cannot follow.
    """
    started = time.monotonic()
    size = record.size
    positions = _replayable(record)
    comments = dict(record.comments)
    labelled = agreed = 0
    try:
        asker = _Asker(client, use_reg_genmove=use_reg_genmove)
        for command in (f"boardsize {size}", "clear_board", f"komi {record.rules.komi:g}"):
            client.send(command)
        for i, move in enumerate(record.moves):
            if move.is_resign:
                break
            letter = move.color.letter.lower()
            if move.color is positions[i].to_play:
                answer = asker.ask(letter)
                if answer.lower() != "resign":
                    try:
                        point = from_gtp(answer, size)
                    except CoordinateError:
                        raise LabelError(
                            f"{engine_name} answered {answer[:40]!r} at move {i + 1}, not a move"
                        ) from None
                    _set_label(comments, i + 1, format_visits({point: 1}, size))
                    labelled += 1
                    agreed += point == move.point
            client.send(f"play {letter} {to_gtp(move.point, size)}")
    except GtpClientError as exc:
        raise LabelError(f"{engine_name} failed: {exc}") from exc
    return _finish(record, comments, engine_name, labelled, agreed, started)


def _replayable(record: GameRecord) -> list[Position]:
    if record.handicap or record.setup_black or record.setup_white:
        raise LabelError("games with handicap or setup stones are not supported")
    try:
        return list(record.positions())
    except RecordError as exc:
        raise LabelError(f"the record is not a legal game: {exc}") from exc


def _finish(
    record: GameRecord, comments: dict[int, str], name: str, labelled: int, agreed: int, t0: float
) -> LabelledGame:
    root = [ln for ln in comments.get(0, "").splitlines() if not ln.startswith(LABEL_MARKER)]
    comments[0] = "\n".join([*root, f"{LABEL_MARKER} engine={name} labelled={labelled}"])
    return LabelledGame(replace(record, comments=comments), labelled, agreed, time.monotonic() - t0)


def _set_label(comments: dict[int, str], index: int, line: str) -> None:
    kept = [ln for ln in comments.get(index, "").splitlines() if not ln.startswith(VISITS_MARKER)]
    comments[index] = "\n".join([*kept, line])


def label_record_with_search(
    record: GameRecord, search: Search, *, engine_name: str, visits: int
) -> LabelledGame:
    """Label every position of ``record`` with ``search``'s visit distribution after
    ``visits`` more playouts (the tree is kept along the recorded moves, as in play).

    ``agreed`` counts the positions whose most-visited move is the one played. Raises
    :class:`LabelError` for games it cannot replay (setup stones, illegal records).
    """
    if visits < 1:
        raise ValueError("visits must be at least 1")
    started = time.monotonic()
    positions = _replayable(record)
    comments = dict(record.comments)
    labelled = agreed = 0
    search.reset()
    for i, move in enumerate(record.moves):
        if move.is_resign:
            break
        position = positions[i]
        if move.color is position.to_play and not position.is_game_over:
            counts = search.run(position, visits=visits).visit_counts()
            if counts:
                _set_label(comments, i + 1, format_visits(counts, record.size))
                labelled += 1
                agreed += max(counts, key=lambda m: counts[m]) == move.point
        search.advance(move)
    return _finish(record, comments, engine_name, labelled, agreed, started)


def _sgf_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix.lower() == ".sgf")
        else:
            yield path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pgo-label",
        description="Write a teacher's move before every move of recorded games into "
        "their SGF comments, as policy targets for p2pgo-train (DAgger-style data: the "
        "positions our network reaches, the moves a stronger player would play there). "
        "The teacher is a GTP engine (--engine) or our network's search (--model), which "
        "writes its whole visit distribution.",
        epilog='example: p2pgo-label games/ --engine "/usr/games/gnugo --mode gtp --level 10 '
        '--chinese-rules --capture-all-dead --positional-superko" --out labelled/ --jobs 2',
    )
    parser.add_argument("files", nargs="+", type=Path, help="SGF files or directories of them")
    teacher = parser.add_mutually_exclusive_group(required=True)
    teacher.add_argument("--engine", help="command line of the labelling engine")
    teacher.add_argument("--model", type=Path, help="label with this network's PUCT search")
    parser.add_argument(
        "--visits", type=int, default=100, help="--model: playouts per position (default 100)"
    )
    parser.add_argument("--name", help="the teacher's name in the root comment")
    parser.add_argument("--out", type=Path, required=True, help="directory for the labelled SGF")
    parser.add_argument("--jobs", type=int, default=1, help="teachers run at once (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per engine command (default 120)"
    )
    return parser


def _out_path(out: Path, source: Path) -> Path:
    return out / f"{source.parent.name}-{source.name}"


def _read(path: Path) -> GameRecord:
    try:
        return load_sgf(path.read_bytes())
    except (OSError, SgfError) as exc:
        raise LabelError(f"cannot read it: {exc}") from exc


# One search per worker process of a --model run (set by _start_search_worker).
_worker_search: Search | None = None


def _start_search_worker(weights: bytes) -> None:
    global _worker_search
    import torch

    from engine._search import Search, SearchConfig
    from engine.nn import Predictor, load_weights
    from engine.nn._evaluator import NetworkEvaluator

    torch.set_num_threads(1)
    predictor = Predictor(load_weights(weights), threads=1)
    # A random board symmetry per leaf batch, as in play; each worker its own stream
    # (which worker labels which game is up to the pool, so runs are not reproducible).
    evaluator = NetworkEvaluator(predictor, random_symmetry=True, seed=os.getpid())
    _worker_search = Search(evaluator, SearchConfig())


def _search_label(path: Path, name: str, visits: int) -> LabelledGame:
    assert _worker_search is not None, "worker not started"
    return label_record_with_search(_read(path), _worker_search, engine_name=name, visits=visits)


class _Teacher:
    """Runs the labelling jobs on GTP engines (threads) or on our search (processes)."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.args = args
        self.name = name
        self.local = threading.local()
        self.clients: list[GtpClient] = []
        self.lock = threading.Lock()
        self.engine_argv = shlex.split(args.engine) if args.engine is not None else []

    def pool(self) -> concurrent.futures.Executor:
        if self.args.model is None:
            return concurrent.futures.ThreadPoolExecutor(self.args.jobs)
        import multiprocessing

        from engine.nn import ModelFormatError, load_weights

        try:
            weights = self.args.model.read_bytes()
            load_weights(weights)  # refuse a bad file here, not in every worker
        except (OSError, ModelFormatError) as exc:
            raise LabelError(f"cannot load {self.args.model}: {exc}") from exc
        return concurrent.futures.ProcessPoolExecutor(
            self.args.jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_search_worker,
            initargs=(weights,),
        )

    def submit(
        self, pool: concurrent.futures.Executor, path: Path
    ) -> concurrent.futures.Future[LabelledGame]:
        if self.args.model is not None:
            return pool.submit(_search_label, path, self.name, self.args.visits)
        return pool.submit(self._engine_label, path)

    def _client(self) -> GtpClient:
        # One engine per worker thread, restarted if a game killed it.
        current: GtpClient | None = getattr(self.local, "client", None)
        if current is None or not current.alive:
            current = GtpClient(self.engine_argv, timeout=self.args.timeout, name=self.name)
            self.local.client = current
            with self.lock:
                self.clients.append(current)
        return current

    def _engine_label(self, path: Path) -> LabelledGame:
        return label_record(_read(path), self._client(), engine_name=self.name)

    def close(self) -> None:
        for c in self.clients:
            c.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``p2pgo-label`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.engine is not None and not shlex.split(args.engine):
        parser.error("--engine is empty")
    if args.jobs < 1 or args.timeout <= 0 or args.visits < 1:
        parser.error("--jobs and --visits must be at least 1 and --timeout positive")
    if args.model is not None:
        name = args.name or f"{args.model.stem}-search{args.visits}"
    else:
        name = args.name or Path(shlex.split(args.engine)[0]).name
    args.out.mkdir(parents=True, exist_ok=True)
    todo = [p for p in _sgf_files(args.files) if not _out_path(args.out, p).exists()]
    print(f"{len(todo)} games to label with {name}", file=sys.stderr, flush=True)
    teacher = _Teacher(args, name)
    done = failed = labelled = agreed = 0
    started = time.monotonic()
    try:
        with teacher.pool() as pool:
            futures = {teacher.submit(pool, path): path for path in todo}
            for future in concurrent.futures.as_completed(futures):
                path = futures[future]
                try:
                    game = future.result()
                except (LabelError, GtpClientError) as exc:
                    failed += 1
                    print(f"{path}: skipped: {exc}", file=sys.stderr, flush=True)
                    continue
                target = _out_path(args.out, path)
                target.write_bytes(dump_sgf(game.record))
                done += 1
                labelled += game.labelled
                agreed += game.agreed
                share = game.agreed / game.labelled if game.labelled else 0.0
                print(
                    f"[{done + failed}/{len(todo)}] {path.name}: {game.labelled} positions, "
                    f"{share:.0%} as played, {game.seconds:.1f} s -> {target}",
                    file=sys.stderr,
                    flush=True,
                )
    except (LabelError, concurrent.futures.BrokenExecutor) as exc:
        print(f"p2pgo-label: error: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        teacher.close()
    share = agreed / labelled if labelled else 0.0
    print(
        f"{done} games labelled ({failed} skipped), {labelled} positions, the teacher agreed "
        f"with the recorded move in {share:.1%}, {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return 0 if done or not todo else 1


if __name__ == "__main__":
    sys.exit(main())
