"""The rules of Go as immutable positions.

Theory of operation
-------------------
A :class:`Position` is a value: ``play(move)`` returns a new position or raises
:class:`IllegalMove` with a :class:`IllegalReason`. The board is a padded flat
``bytes`` (see ``_coords``: stride ``size + 1``, one shared border column, a border
row above and below) so that the four neighbours of ``p`` are ``p±1`` and
``p±stride`` with no bounds checks.

Captures are found with a flood fill that stops at the first liberty, so a capture
test costs as little as the nearest empty point. Repetition (superko) uses Zobrist
hashes kept in a log shared by a game line: a position records its parent and the
log is materialised lazily, appended in place while a line is linear and copied
only when play branches, so trying many moves from one position costs nothing.

The value types (colours, rule sets, moves, illegal-move errors, handicap points) live
in :mod:`engine._moves` and are re-exported here, the module callers import them from.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from engine._coords import Point, check_size
from engine._moves import (
    _BLACK,
    _WHITE,
    Color,
    IllegalMove,
    IllegalReason,
    Move,
    MoveKind,
    Rules,
    ScoringRule,
    SuperkoRule,
    fixed_handicap_points,
)

# engine._playout reads the padded board too and imports these cell values from here.
from engine._moves import _BORDER as _BORDER
from engine._moves import _EMPTY as _EMPTY

__all__ = [
    "Color",
    "IllegalMove",
    "IllegalReason",
    "Move",
    "MoveKind",
    "Position",
    "Rules",
    "ScoringRule",
    "SuperkoRule",
    "fixed_handicap_points",
]


_COLORS = (Color.EMPTY, Color.BLACK, Color.WHITE)
_SUPERKO_CODE = {SuperkoRule.NONE: 0, SuperkoRule.POSITIONAL: 1, SuperkoRule.SITUATIONAL: 2}

_ZOBRIST: dict[int, tuple[list[int], list[int], list[int]]] = {}


def _zobrist(length: int) -> tuple[list[int], list[int], list[int]]:
    """Per-board-length random keys: (black, white, side-to-move)."""
    table = _ZOBRIST.get(length)
    if table is None:
        rng = random.Random(0x9E3779B97F4A7C15 ^ length)  # deterministic: hashes are stable
        black = [rng.getrandbits(64) for _ in range(length)]
        white = [rng.getrandbits(64) for _ in range(length)]
        side = [0, rng.getrandbits(64), rng.getrandbits(64)]
        table = (black, white, side)
        _ZOBRIST[length] = table
    return table


class _Log:
    """Keys of the positions of one game line, with the index of each key's first use."""

    __slots__ = ("first", "keys")

    def __init__(self, keys: list[int]) -> None:
        self.keys = keys
        self.first: dict[int, int] = {}
        for i, k in enumerate(keys):
            self.first.setdefault(k, i)

    def append(self, key: int) -> None:
        self.first.setdefault(key, len(self.keys))
        self.keys.append(key)


def _dead_group(board: bytearray, start: int, stride: int) -> list[int] | None:
    """The stones of the group at ``start`` if it has no liberty, else ``None``."""
    color = board[start]
    stack = [start]
    seen = {start}
    while stack:
        s = stack.pop()
        for n in (s - 1, s + 1, s - stride, s + stride):
            v = board[n]
            if v == _EMPTY:
                return None
            if v == color and n not in seen:
                seen.add(n)
                stack.append(n)
    return list(seen)


def _eye_like(board: bytearray, p: int, c: int, w: int) -> bool:
    """All four neighbours of ``p`` are ``c`` (or the edge) and the diagonals do not
    make it a false eye: no opponent diagonal on the edge, at most one in the middle."""
    for n in (p - 1, p + 1, p - w, p + w):
        v = board[n]
        if v != c and v != _BORDER:
            return False
    bad = 0
    edge = False
    for d in (p - w - 1, p - w + 1, p + w - 1, p + w + 1):
        v = board[d]
        if v == _BORDER:
            edge = True
        elif v == 3 - c:
            bad += 1
    return bad == 0 if edge else bad <= 1


class Position:
    """An immutable Go position: stones, side to move, ko, prisoners and history."""

    __slots__ = (
        "_board",
        "_hash",
        "_ko",
        "_log",
        "_loglen",
        "_sk",
        "_stride",
        "_z",
        "captures",
        "last_move",
        "move_number",
        "parent",
        "passes",
        "resigned",
        "rules",
        "size",
        "to_play",
    )

    size: int
    rules: Rules
    to_play: Color
    captures: tuple[int, int]  # stones captured *by* (black, white)
    last_move: Move | None
    move_number: int
    parent: Position | None
    passes: int  # consecutive passes that ended the last moves
    resigned: Color | None
    _board: bytearray  # padded; never mutated once the position exists
    _hash: int
    _ko: int  # flat index of the ko point, -1 if none
    _sk: int  # superko rule: 0 none, 1 positional, 2 situational
    _z: tuple[list[int], list[int], list[int]]
    _stride: int
    _log: _Log | None
    _loglen: int

    def __init__(self, size: int = 19, rules: Rules | None = None) -> None:
        check_size(size)
        stride = size + 1
        length = (size + 2) * stride + 1
        board = bytearray([_BORDER]) * length
        for r in range(size):
            base = (r + 1) * stride
            board[base : base + size] = bytes(size)  # the board is never mutated after this
        self._init(size, rules or Rules(), board, Color.BLACK)

    def _init(self, size: int, rules: Rules, board: bytearray, to_play: Color) -> None:
        self.size = size
        self.rules = rules
        self._stride = size + 1
        self._board = board
        self.to_play = to_play
        self.captures = (0, 0)
        self._ko = -1
        self._sk = _SUPERKO_CODE[rules.superko]
        self.last_move = None
        self.move_number = 0
        self.parent = None
        self.passes = 0
        self.resigned = None
        self._z = _zobrist(len(board))
        black, white, _ = self._z
        h = 0
        for p, v in enumerate(board):
            if v == _BLACK:
                h ^= black[p]
            elif v == _WHITE:
                h ^= white[p]
        self._hash = h
        self._log = _Log([self._key()])
        self._loglen = 1

    # ---- construction -------------------------------------------------------------

    @classmethod
    def from_ascii(
        cls, text: str, to_play: Color = Color.BLACK, rules: Rules | None = None
    ) -> Position:
        """A position from rows of ``X`` (black), ``O`` (white) and ``.``/``+`` (empty).

        Whitespace between points is ignored; the number of rows is the board size.
        """
        rows = [line.replace(" ", "") for line in text.strip().splitlines() if line.strip()]
        size = len(rows)
        black: list[Point] = []
        white: list[Point] = []
        for r, row in enumerate(rows):
            if len(row) != size:
                raise ValueError(f"row {r} has {len(row)} points; the board is {size} rows")
            for c, ch in enumerate(row):
                if ch in "Xx#@":
                    black.append((r, c))
                elif ch in "Oo":
                    white.append((r, c))
                elif ch not in ".+":
                    raise ValueError(f"unknown board character {ch!r}")
        return cls(size, rules).with_setup(black, white, to_play)

    def with_setup(
        self,
        black: Iterable[Point] = (),
        white: Iterable[Point] = (),
        to_play: Color | None = None,
        empty: Iterable[Point] = (),
    ) -> Position:
        """A new root position with stones added/removed (SGF AB/AW/AE, handicap).

        Setup starts a new history: prisoners are kept, repetition is counted from here.
        Groups left without liberties by setup are not removed (as SGF specifies).
        """
        board = bytearray(self._board)
        for pts, v in ((black, _BLACK), (white, _WHITE), (empty, _EMPTY)):
            for pt in pts:
                board[self._index(pt)] = v
        pos = Position.__new__(Position)
        pos._init(self.size, self.rules, board, to_play or self.to_play)
        pos.captures = self.captures
        return pos

    def with_rules(self, rules: Rules) -> Position:
        """The same stones under other rules (a new root)."""
        pos = Position.__new__(Position)
        pos._init(self.size, rules, self._board, self.to_play)
        pos.captures = self.captures
        return pos

    # ---- reading the board --------------------------------------------------------

    def _index(self, point: Point) -> int:
        r, c = point
        if not (0 <= r < self.size and 0 <= c < self.size):
            raise IllegalMove(IllegalReason.OFF_BOARD)
        return (r + 1) * self._stride + c

    def _point(self, index: int) -> Point:
        r, c = divmod(index, self._stride)
        return (r - 1, c)

    def __getitem__(self, point: Point) -> Color:
        return Color(self._board[self._index(point)])

    def cells(self) -> bytes:
        """Row-major ``size * size`` bytes: 0 empty, 1 black, 2 white."""
        s, w = self.size, self._stride
        return b"".join(bytes(self._board[(r + 1) * w : (r + 1) * w + s]) for r in range(s))

    def stones(self, color: Color) -> list[Point]:
        v = color.value
        return [self._point(i) for i, x in enumerate(self._board) if x == v]

    def empty_points(self) -> list[Point]:
        return self.stones(Color.EMPTY)

    @property
    def ko(self) -> Point | None:
        """The point the side to move may not retake at (simple ko), if any."""
        return None if self._ko < 0 else self._point(self._ko)

    @property
    def zobrist(self) -> int:
        """A 64-bit hash of the stones alone."""
        return self._hash

    def _key(self) -> int:
        if self.rules.superko is SuperkoRule.SITUATIONAL:
            return self._hash ^ self._z[2][self.to_play.value]
        return self._hash

    def neighbours(self, point: Point) -> list[Point]:
        r, c = point
        out = [(r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)]
        return [(a, b) for a, b in out if 0 <= a < self.size and 0 <= b < self.size]

    def group(self, point: Point) -> frozenset[Point]:
        """The stones connected to ``point`` (empty set for an empty point)."""
        stones, _ = self._group_and_liberties(self._index(point))
        return frozenset(self._point(s) for s in stones)

    def liberties(self, point: Point) -> frozenset[Point]:
        """The liberties of the group at ``point``."""
        _, libs = self._group_and_liberties(self._index(point))
        return frozenset(self._point(s) for s in libs)

    def _group_and_liberties(self, start: int) -> tuple[set[int], set[int]]:
        board, w = self._board, self._stride
        color = board[start]
        if color not in (_BLACK, _WHITE):
            return set(), set()
        seen = {start}
        libs: set[int] = set()
        stack = [start]
        while stack:
            s = stack.pop()
            for n in (s - 1, s + 1, s - w, s + w):
                v = board[n]
                if v == _EMPTY:
                    libs.add(n)
                elif v == color and n not in seen:
                    seen.add(n)
                    stack.append(n)
        return seen, libs

    def groups(self) -> list[tuple[Color, frozenset[Point], frozenset[Point]]]:
        """Every group on the board: (colour, stones, liberties)."""
        out = []
        done: set[int] = set()
        for i, v in enumerate(self._board):
            if v in (_BLACK, _WHITE) and i not in done:
                stones, libs = self._group_and_liberties(i)
                done |= stones
                out.append(
                    (
                        Color(v),
                        frozenset(self._point(s) for s in stones),
                        frozenset(self._point(s) for s in libs),
                    )
                )
        return out

    def liberty_map(self) -> list[int]:
        """Row-major liberty count of the group on each point (0 where empty)."""
        counts = [0] * (self.size * self.size)
        for _, stones, libs in self.groups():
            n = len(libs)
            for r, c in stones:
                counts[r * self.size + c] = n
        return counts

    def is_eye_like(self, point: Point, color: Color) -> bool:
        """An empty point whose neighbours are all ``color`` and whose diagonals do not
        make it a false eye (at most one opponent diagonal, none on the edge)."""
        i = self._index(point)
        return self._board[i] == _EMPTY and _eye_like(self._board, i, color.value, self._stride)

    def _playout_state(self) -> tuple[bytearray, int, int]:
        """A copy of the padded board, its stride and the ko index (for engine._playout)."""
        return bytearray(self._board), self._stride, self._ko

    # ---- playing ------------------------------------------------------------------

    @property
    def is_game_over(self) -> bool:
        return self.resigned is not None or self.passes >= 2

    def play(self, move: Move, *, strict_turn: bool = True) -> Position:
        """The position after ``move``; raises :class:`IllegalMove` if the rules forbid it.

        ``strict_turn=False`` lets either colour move (GTP ``play`` and SGF editing);
        a player may resign at any time.
        """
        if self.passes >= 2 or self.resigned is not None:
            raise IllegalMove(IllegalReason.GAME_OVER, move)
        if strict_turn and move.color is not self.to_play and move.kind is not MoveKind.RESIGN:
            raise IllegalMove(IllegalReason.WRONG_TURN, move)
        point = move.point
        if point is not None:
            r, c = point
            size = self.size
            if 0 <= r < size and 0 <= c < size:
                return self._play_stone((r + 1) * self._stride + c, move)
            raise IllegalMove(IllegalReason.OFF_BOARD, move)
        child = self._child(self._board, self._hash, move.color.opponent, move)
        if move.kind is MoveKind.PASS:
            child.passes = self.passes + 1
        else:
            child.resigned = move.color
        return child

    def play_at(self, point: Point | None) -> Position:
        """The side to move plays at ``point`` (``None`` passes)."""
        if point is None:
            return self.play(Move.pass_(self.to_play))
        return self.play(Move.play(self.to_play, point))

    def is_legal(self, move: Move, *, strict_turn: bool = True) -> bool:
        try:
            self.play(move, strict_turn=strict_turn)
        except IllegalMove:
            return False
        return True

    def legal_points(self, color: Color | None = None) -> list[Point]:
        """Every point where ``color`` (default: the side to move) may place a stone."""
        c = color or self.to_play
        if self.is_game_over:
            return []
        out = []
        board = self._board
        for i, v in enumerate(board):
            if v == _EMPTY:
                try:
                    self._play_stone(i, Move(c, self._point(i)))
                except IllegalMove:
                    continue
                out.append(self._point(i))
        return out

    def _child(self, board: bytearray, h: int, to_play: Color, move: Move) -> Position:
        child = Position.__new__(Position)
        child.size = self.size
        child.rules = self.rules
        child._stride = self._stride
        child._sk = self._sk
        child._z = self._z
        child._board = board
        child._hash = h
        child._ko = -1
        child.to_play = to_play
        child.captures = self.captures
        child.last_move = move
        child.move_number = self.move_number + 1
        child.parent = self
        child.passes = 0
        child.resigned = None
        child._log = None
        child._loglen = self._loglen + 1
        return child

    def _ensure_log(self) -> _Log:
        log = self._log
        if log is not None:
            return log
        parent = self.parent
        assert parent is not None
        plog = parent._log
        if plog is None:
            plog = parent._ensure_log()
        key = self._key()
        n = parent._loglen
        if len(plog.keys) == n:
            plog.first.setdefault(key, n)
            plog.keys.append(key)
            log = plog
        else:  # a sibling line already extended the parent's log: branch off a copy
            log = _Log([*plog.keys[:n], key])
        self._log = log
        return log

    def _play_stone(self, p: int, move: Move) -> Position:
        # The hot path of every playout and search: kept flat on purpose.
        board = self._board
        if board[p]:
            raise IllegalMove(IllegalReason.OCCUPIED, move)
        c: int = move.color._value_
        o = 3 - c
        w = self._stride
        is_ko_point = p == self._ko and move.color is self.to_play
        sk = self._sk
        if is_ko_point and sk == 0:
            raise IllegalMove(IllegalReason.KO, move)
        black, white, side = self._z
        zc, zo = (black, white) if c == _BLACK else (white, black)
        nb = bytearray(board)
        nb[p] = c
        h = self._hash ^ zc[p]
        captured = 0
        cap_point = -1
        for q in (p - 1, p + 1, p - w, p + w):
            if nb[q] == o:
                # Most groups touch an empty point next to the stone we reached them by.
                if not nb[q - 1] or not nb[q + 1] or not nb[q - w] or not nb[q + w]:
                    continue
                dead = _dead_group(nb, q, w)
                if dead is not None:
                    for s in dead:
                        nb[s] = _EMPTY
                        h ^= zo[s]
                    captured += len(dead)
                    cap_point = q
        suicided = 0
        if not captured and nb[p - 1] and nb[p + 1] and nb[p - w] and nb[p + w]:
            own = _dead_group(nb, p, w)
            if own is not None:
                if not self.rules.suicide_allowed:
                    raise IllegalMove(IllegalReason.SUICIDE, move)
                for s in own:
                    nb[s] = _EMPTY
                    h ^= zc[s]
                suicided = len(own)
        if sk:
            key = h ^ side[o] if sk == 2 else h
            log = self._log
            if log is None:
                log = self._ensure_log()
            first = log.first.get(key)
            if first is not None and first < self._loglen:
                reason = IllegalReason.KO if is_ko_point else IllegalReason.SUPERKO
                raise IllegalMove(reason, move)
        child = self._child(nb, h, _COLORS[o], move)
        if captured or suicided:
            bc, wc = self.captures
            if c == _BLACK:
                child.captures = (bc + captured, wc + suicided)
            else:
                child.captures = (bc + suicided, wc + captured)
            if captured == 1 and not suicided:
                # A lone stone that captured one stone and whose only liberty is that
                # point: the opponent may not retake at once.
                libs = 0
                friends = False
                for n in (p - 1, p + 1, p - w, p + w):
                    v = nb[n]
                    if v == _EMPTY:
                        libs += 1
                    elif v == c:
                        friends = True
                if libs == 1 and not friends:
                    child._ko = cap_point
        return child

    # ---- history and display ------------------------------------------------------

    def history(self) -> list[Move]:
        """The moves from the root (the last setup) to this position."""
        moves: list[Move] = []
        pos: Position | None = self
        while pos is not None and pos.last_move is not None:
            moves.append(pos.last_move)
            pos = pos.parent
        moves.reverse()
        return moves

    def ancestors(self) -> Iterator[Position]:
        """This position, its parent, and so on back to the root."""
        pos: Position | None = self
        while pos is not None:
            yield pos
            pos = pos.parent

    def to_ascii(self) -> str:
        chars = ".XO"
        cells = self.cells()
        s = self.size
        return "\n".join(" ".join(chars[cells[r * s + c]] for c in range(s)) for r in range(s))

    def __str__(self) -> str:
        return self.to_ascii()

    def __repr__(self) -> str:
        return (
            f"<Position {self.size}x{self.size} move {self.move_number} "
            f"{self.to_play.letter} to play>"
        )

    def same_board(self, other: Position) -> bool:
        return self.size == other.size and self.cells() == other.cells()
