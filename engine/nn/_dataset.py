"""Training examples from game records: features, policy and value targets, the held-out split.

Every position of a finished game (except the last) becomes one example:

* **features**: :func:`engine.nn.encode_position` of the position (stored as float16:
  every plane is 0/1 except komi/15, which float16 holds exactly for half-point komi);
* **policy target**: the move played, one-hot at index ``row * size + col`` (``size *
  size`` for a pass), or, for self-play games with search, the distribution of the
  search's visit counts written in the move's comment (see below). Moves marked as
  random openings get policy weight 0 (they are not moves to imitate);
* **value target**: the game's outcome for the side to move (1 win, 0 loss, 0.5 draw).
  Games without a result are skipped; resignations and time wins count; ``Void`` and
  unknown results are skipped;
* **score target**: the final margin for the side to move when the result has one
  (``B+3.5``), else NaN (resignations), for networks with a score head.

Examples are grouped by board size (:class:`ExampleArrays`), so a batch never needs
padding. :func:`split_records` makes a deterministic held-out split by game: a game is
held out when the BLAKE3 of its record id falls below the fraction, so the split
never depends on file order and a game's positions never straddle it.

Annotations in SGF comments (written by ``p2pgo-selfplay``):

* root comment line ``p2pgo-selfplay: random-plies=K``: the first ``K`` moves were
  random, for opening diversity;
* move comment line ``p2pgo-visits: D4=120 E5=30 pass=1``: the search's visit counts
  in the position before that move.

A malformed annotation makes the game a :class:`SkippedGame` (with the reason), like
an unreadable file; nothing here raises on bad input except :class:`DatasetError`
from the loaders when asked for a file that cannot be read at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3
import numpy as np
import torch

from engine._coords import CoordinateError, Point, from_gtp, to_gtp
from engine._record import GameRecord, RecordError
from engine._rules import Color
from engine._sgf import SgfError, load_sgf
from engine._store import GameStore, StoreError
from engine.nn._features import encode_position
from engine.nn._symmetry import Symmetry, transform_planes, transform_policy

__all__ = [
    "SELFPLAY_MARKER",
    "VISITS_MARKER",
    "DatasetError",
    "ExampleArrays",
    "ExampleSet",
    "SkippedGame",
    "augment_batch",
    "build_examples",
    "examples_from_record",
    "format_visits",
    "held_out",
    "load_records",
    "parse_opening",
    "parse_visits",
    "records_from_store",
    "result_targets",
    "split_records",
]

SELFPLAY_MARKER = "p2pgo-selfplay:"
VISITS_MARKER = "p2pgo-visits:"
_MAX_SGF_BYTES = 8 * 1024 * 1024


class DatasetError(ValueError):
    """A game or input that cannot become training examples; the message says why."""


@dataclass(frozen=True, slots=True)
class SkippedGame:
    """A game (or file) that gave no examples, and why."""

    source: str
    reason: str


# ---- annotations ------------------------------------------------------------------------


def format_visits(visits: Mapping[Point | None, int], size: int) -> str:
    """A comment line with the visit count of each move (``None`` is a pass)."""
    ranked = sorted(visits.items(), key=lambda kv: -kv[1])
    words = [f"{to_gtp(p, size)}={n}" for p, n in ranked if n > 0]
    return f"{VISITS_MARKER} " + " ".join(words)


def parse_visits(comment: str, size: int) -> dict[Point | None, int] | None:
    """The visit counts in a move comment; ``None`` if it has none; DatasetError if bad."""
    for line in comment.splitlines():
        if not line.startswith(VISITS_MARKER):
            continue
        out: dict[Point | None, int] = {}
        for word in line[len(VISITS_MARKER) :].split():
            vertex, _, count = word.partition("=")
            if not count.isdigit() or len(count) > 9:
                raise DatasetError(f"bad visit count in {word[:20]!r}")
            try:
                point = from_gtp(vertex, size)
            except CoordinateError as exc:
                raise DatasetError(f"bad vertex in {word[:20]!r}: {exc}") from None
            out[point] = out.get(point, 0) + int(count)
        if sum(out.values()) == 0:
            raise DatasetError("a visits line without visits")
        return out
    return None


def parse_opening(comment: str) -> int:
    """How many random opening plies a root comment declares (0 when it says nothing)."""
    for line in comment.splitlines():
        if not line.startswith(SELFPLAY_MARKER):
            continue
        for word in line[len(SELFPLAY_MARKER) :].split():
            key, _, value = word.partition("=")
            if key == "random-plies":
                if not value.isdigit() or len(value) > 6:
                    raise DatasetError(f"bad random-plies value {value[:20]!r}")
                return int(value)
    return 0


# ---- targets ----------------------------------------------------------------------------


def result_targets(result: str) -> tuple[Color | None, float] | None:
    """``(winner, black's margin)`` from an SGF result; ``None`` when it is unusable.

    ``winner`` is ``None`` for a draw; the margin is NaN when the result has none
    (``B+R``, ``W+T``, ``B+F``).
    """
    text = result.strip().upper()
    if text in ("0", "DRAW", "JIGO"):
        return None, 0.0
    if len(text) < 3 or text[0] not in "BW" or text[1] != "+":
        return None  # "", "Void", "?", or free text
    winner = Color.BLACK if text[0] == "B" else Color.WHITE
    rest = text[2:]
    try:
        margin = float(rest)
    except ValueError:
        margin = math.nan  # R, Resign, T, Time, F, Forfeit
    if not math.isfinite(margin) and not math.isnan(margin):
        return None
    if math.isfinite(margin) and margin <= 0:
        return None  # "B+0" or "B+-3" is not a win
    sign = 1.0 if winner is Color.BLACK else -1.0
    return winner, sign * margin


@dataclass(frozen=True, slots=True, eq=False)
class ExampleArrays:
    """Examples of one board size; every array has the same first dimension ``N``."""

    size: int
    planes: np.ndarray  # (N, C, size, size) float16
    policy: np.ndarray  # (N, size*size + 1) float32, each row sums to 1 (or 0)
    policy_weight: np.ndarray  # (N,) float32: 0 when there is no policy target
    value: np.ndarray  # (N,) float32: 1 win, 0 loss, 0.5 draw for the side to move
    score: np.ndarray  # (N,) float32: margin for the side to move, NaN if unknown

    def __len__(self) -> int:
        return int(self.planes.shape[0])

    @staticmethod
    def concat(parts: Sequence[ExampleArrays]) -> ExampleArrays:
        """One array set from several of the same board size."""
        if not parts:
            raise ValueError("nothing to concatenate")
        size = parts[0].size
        if any(p.size != size for p in parts):
            raise ValueError("example arrays of different board sizes")
        return ExampleArrays(
            size=size,
            planes=np.concatenate([p.planes for p in parts]),
            policy=np.concatenate([p.policy for p in parts]),
            policy_weight=np.concatenate([p.policy_weight for p in parts]),
            value=np.concatenate([p.value for p in parts]),
            score=np.concatenate([p.score for p in parts]),
        )


@dataclass(frozen=True, slots=True, eq=False)
class ExampleSet:
    """Training examples of many games, one :class:`ExampleArrays` per board size."""

    groups: tuple[ExampleArrays, ...]
    games: int
    skipped: tuple[SkippedGame, ...] = ()

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups)

    @property
    def policy_examples(self) -> int:
        """Examples with a policy target (random opening moves have none)."""
        return int(sum(float((g.policy_weight > 0).sum()) for g in self.groups))


def examples_from_record(record: GameRecord, *, use_visits: bool = True) -> ExampleArrays:
    """The examples of one finished game; :class:`DatasetError` if it cannot give any."""
    targets = result_targets(record.result)
    if targets is None:
        raise DatasetError(f"no usable result ({record.result[:20]!r})")
    winner, black_margin = targets
    size = record.size
    n = size * size
    random_plies = parse_opening(record.comments.get(0, ""))
    try:
        positions = list(record.positions())
    except RecordError as exc:
        raise DatasetError(str(exc)) from exc
    planes, policies, weights, values, scores = [], [], [], [], []
    for i, move in enumerate(record.moves):
        position = positions[i]
        if move.is_resign or move.color is not position.to_play:
            continue  # nothing to imitate; or a colour the features cannot describe
        target = np.zeros(n + 1, dtype=np.float32)
        visits = parse_visits(record.comments.get(i + 1, ""), size) if use_visits else None
        if visits is not None:
            total = float(sum(visits.values()))
            for point, count in visits.items():
                target[n if point is None else point[0] * size + point[1]] = count / total
        else:
            point = move.point
            target[n if point is None else point[0] * size + point[1]] = 1.0
        me = position.to_play
        planes.append(encode_position(position).astype(np.float16))
        policies.append(target)
        weights.append(0.0 if i < random_plies and visits is None else 1.0)
        values.append(0.5 if winner is None else float(winner is me))
        scores.append(black_margin if me is Color.BLACK else -black_margin)
    if not planes:
        raise DatasetError("no moves to learn from")
    return ExampleArrays(
        size=size,
        planes=np.stack(planes),  # (N, C, size, size)
        policy=np.stack(policies),  # (N, size*size + 1)
        policy_weight=np.asarray(weights, dtype=np.float32),
        value=np.asarray(values, dtype=np.float32),
        score=np.asarray(scores, dtype=np.float32),
    )


def build_examples(
    records: Iterable[GameRecord | SkippedGame], *, use_visits: bool = True
) -> ExampleSet:
    """Examples of every usable game; the others are listed in ``skipped``."""
    by_size: dict[int, list[ExampleArrays]] = {}
    skipped: list[SkippedGame] = []
    games = 0
    for item in records:
        if isinstance(item, SkippedGame):
            skipped.append(item)
            continue
        try:
            arrays = examples_from_record(item, use_visits=use_visits)
        except DatasetError as exc:
            skipped.append(SkippedGame(item.game_id or item.record_id[:16], str(exc)))
            continue
        by_size.setdefault(arrays.size, []).append(arrays)
        games += 1
    groups = tuple(ExampleArrays.concat(parts) for _, parts in sorted(by_size.items()))
    return ExampleSet(groups, games, tuple(skipped))


# ---- sources ----------------------------------------------------------------------------


def _sgf_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.sgf") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise DatasetError(f"{path}: no such file or directory")
    return files


def load_records(paths: Iterable[Path | str]) -> list[GameRecord | SkippedGame]:
    """Game records from SGF files and directories (searched recursively for ``*.sgf``).

    A file that is not a legal game becomes a :class:`SkippedGame`; a path that does not
    exist raises :class:`DatasetError`.
    """
    out: list[GameRecord | SkippedGame] = []
    for file in _sgf_files(Path(p) for p in paths):
        try:
            with file.open("rb") as f:
                data = f.read(_MAX_SGF_BYTES + 1)
        except OSError as exc:
            out.append(SkippedGame(str(file), f"unreadable: {exc.strerror or exc}"))
            continue
        if len(data) > _MAX_SGF_BYTES:
            out.append(SkippedGame(str(file), "larger than a game record can be"))
            continue
        try:
            out.append(load_sgf(data))
        except SgfError as exc:
            out.append(SkippedGame(str(file), str(exc)))
    return out


def records_from_store(store: GameStore, *, size: int | None = None) -> list[GameRecord]:
    """The finished games in a :class:`GameStore` (optionally of one board size)."""
    out = []
    for summary in store.games(finished=True, size=size):
        try:
            out.append(store.load(summary.record_id))
        except StoreError:
            continue  # the store has recorded the problem in store.problems
    return out


def held_out(record: GameRecord, fraction: float, salt: str = "") -> bool:
    """Whether ``record`` belongs to the held-out part of a ``fraction`` split."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("the held-out fraction must be between 0 and 1")
    digest = blake3.blake3(f"{salt}:{record.record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2.0**64


def split_records(
    records: Iterable[GameRecord | SkippedGame], fraction: float = 0.1, salt: str = ""
) -> tuple[list[GameRecord | SkippedGame], list[GameRecord | SkippedGame]]:
    """``(train, held_out)`` by game, deterministically (see the module docstring).

    Skipped games stay in the training part so they are reported once.
    """
    train: list[GameRecord | SkippedGame] = []
    test: list[GameRecord | SkippedGame] = []
    for item in records:
        if isinstance(item, GameRecord) and held_out(item, fraction, salt):
            test.append(item)
        else:
            train.append(item)
    return train, test


# ---- augmentation -----------------------------------------------------------------------


def augment_batch(
    planes: torch.Tensor, policy: torch.Tensor, symmetries: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply ``symmetries[i]`` (0-7) to example ``i`` of a batch of one board size.

    ``planes`` is ``(B, C, n, n)``, ``policy`` ``(B, n*n + 1)``; new tensors come back.
    """
    size = int(planes.shape[-1])
    out_planes = planes.clone()
    out_policy = policy.clone()
    for sym in range(1, 8):
        idx = torch.from_numpy(np.flatnonzero(symmetries == sym))
        if idx.numel() == 0:
            continue
        s = Symmetry(sym)
        out_planes[idx] = transform_planes(planes[idx], s)  # (b, C, n, n)
        out_policy[idx] = transform_policy(policy[idx], size, s)  # (b, n*n + 1)
    return out_planes, out_policy
