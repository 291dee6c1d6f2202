"""Game records: one value for a whole game, its canonical bytes and its hash chain.

Theory of operation
-------------------
A :class:`GameRecord` is a frozen value holding everything needed to replay and
display a game: board size, :class:`Rules` (komi lives in ``rules.komi``), setup
stones, players, date, result, the moves and comments (index ``i`` annotates the
position after ``i`` moves; ``0`` is the root).

Canonical bytes are CBOR (``cbor2``, ``canonical=True``) of a map with ``v`` (schema
version) and ``kind``. :meth:`GameRecord.from_cbor` accepts only bytes that re-encode
to themselves, so the content id (:attr:`GameRecord.record_id`, the BLAKE3 of those
bytes) is unique per game; anything else raises :class:`RecordError` and nothing else.

Hash chain: the genesis link is the BLAKE3 of the canonical *header* (what is fixed
when the game starts: size, rules, handicap, setup, first player, players, game id);
link ``i`` is ``BLAKE3(link[i-1] || cbor(move i))``. Each encoded move carries the
link before it, so editing, reordering or truncating moves breaks the chain, and a
peer that remembers the head of a game can tell whether a later record extends it.
Result, date and comments are annotations and stay outside the chain; the store's
signatures cover the full canonical bytes.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any

import blake3
import cbor2

from engine._coords import MAX_SIZE, MIN_SIZE, Point, to_gtp
from engine._rules import (
    Color,
    IllegalMove,
    Move,
    MoveKind,
    Position,
    Rules,
    ScoringRule,
    SuperkoRule,
)

__all__ = [
    "RECORD_KIND",
    "RECORD_VERSION",
    "GameRecord",
    "Player",
    "RecordError",
]

RECORD_VERSION = 1
RECORD_KIND = "game"
_HEADER_KIND = "game-header"
# A game of a few thousand moves with long comments is well under this; the cap keeps
# a hostile peer from making us allocate without bound.
MAX_RECORD_BYTES = 8 * 1024 * 1024
_KIND_CODE = {MoveKind.PLAY: 0, MoveKind.PASS: 1, MoveKind.RESIGN: 2}
_CODE_KIND = {v: k for k, v in _KIND_CODE.items()}
_KEYS = frozenset(
    {
        "v",
        "kind",
        "id",
        "size",
        "rules",
        "handicap",
        "first",
        "ab",
        "aw",
        "pb",
        "pw",
        "date",
        "result",
        "moves",
        "comments",
    }
)


class RecordError(ValueError):
    """A game record that is malformed, not canonical, or whose moves are illegal."""


@dataclass(frozen=True, slots=True)
class Player:
    """A player as a record names them; ``rank`` is free text such as ``"3d"``."""

    name: str = ""
    rank: str = ""


def _check_point(point: Any, size: int, what: str) -> Point:
    if (
        not isinstance(point, tuple)
        or len(point) != 2
        or not all(type(x) is int for x in point)
        or not (0 <= point[0] < size and 0 <= point[1] < size)
    ):
        raise RecordError(f"{what}: {point!r} is not a point on a {size}x{size} board")
    return (point[0], point[1])


def _points(points: Iterable[Point], size: int, what: str) -> tuple[Point, ...]:
    return tuple(sorted({_check_point(tuple(p), size, what) for p in points}))


@dataclass(frozen=True, slots=True)
class GameRecord:
    """A whole game. Build one with :meth:`new`, :meth:`from_position` or ``load_sgf``.

    ``first_player`` is the colour to move after setup. ``game_id`` is a stable id
    that survives the game growing (the store replaces an in-progress game with its
    later versions by it); the content id is :attr:`record_id`. Setup points are kept
    sorted so that equal games have equal bytes.
    """

    size: int = 19
    rules: Rules = field(default_factory=Rules)
    handicap: int = 0
    setup_black: tuple[Point, ...] = ()
    setup_white: tuple[Point, ...] = ()
    first_player: Color = Color.BLACK
    black: Player = field(default_factory=Player)
    white: Player = field(default_factory=Player)
    date: str = ""
    result: str = ""
    moves: tuple[Move, ...] = ()
    # Not part of the hash: a read-only view of {move index: text}.
    comments: Mapping[int, str] = field(default_factory=dict, hash=False)
    game_id: str = ""

    def __post_init__(self) -> None:
        size = self.size
        if type(size) is not int or not MIN_SIZE <= size <= MAX_SIZE:
            raise RecordError(f"board size must be an integer from {MIN_SIZE} to {MAX_SIZE}")
        rules = self.rules
        if (
            not isinstance(rules, Rules)
            or type(rules.komi) not in (int, float)
            or not math.isfinite(rules.komi)
        ):
            raise RecordError("rules must be a Rules with a finite komi")
        if type(rules.komi) is int:  # 7 and 7.0 are the same komi but not the same bytes
            object.__setattr__(self, "rules", rules.with_komi(rules.komi))
        if type(self.handicap) is not int or not 0 <= self.handicap <= size * size:
            raise RecordError(f"handicap must be a stone count, not {self.handicap!r}")
        black = _points(self.setup_black, size, "setup stone")
        white = _points(self.setup_white, size, "setup stone")
        if set(black) & set(white):
            raise RecordError("a setup point cannot hold both colours")
        if self.first_player not in (Color.BLACK, Color.WHITE):
            raise RecordError("first_player must be BLACK or WHITE")
        for p in (self.black, self.white):
            if (
                not isinstance(p, Player)
                or not isinstance(p.name, str)
                or not isinstance(p.rank, str)
            ):
                raise RecordError("players must be Player values of text")
        if not isinstance(self.date, str) or not isinstance(self.result, str):
            raise RecordError("date and result must be text")
        if not isinstance(self.game_id, str):
            raise RecordError("game_id must be text")
        moves = tuple(self.moves)
        for i, m in enumerate(moves, 1):
            if not isinstance(m, Move):
                raise RecordError(f"move {i} is not a Move: {m!r}")
            if m.point is not None:
                _check_point(m.point, size, f"move {i}")
        comments: dict[int, str] = {}
        for k, text in self.comments.items():
            if type(k) is not int or not 0 <= k <= len(moves):
                raise RecordError(f"comment index {k!r} is not 0..{len(moves)}")
            if not isinstance(text, str):
                raise RecordError(f"comment {k} is not text")
            comments[k] = text
        comments = dict(sorted(comments.items()))
        # Normalised values, so that equal games compare (and encode) equal.
        object.__setattr__(self, "setup_black", black)
        object.__setattr__(self, "setup_white", white)
        object.__setattr__(self, "moves", moves)
        object.__setattr__(self, "comments", MappingProxyType(comments))

    def __reduce__(self) -> tuple[type[GameRecord], tuple[Any, ...]]:
        # The read-only comments view cannot be pickled; pass a plain dict instead
        # (so records can cross process boundaries, e.g. to training workers).
        values = tuple(
            dict(self.comments) if f.name == "comments" else getattr(self, f.name)
            for f in fields(self)
        )
        return (GameRecord, values)

    # ---- construction -------------------------------------------------------------

    @classmethod
    def new(
        cls,
        size: int = 19,
        rules: Rules | None = None,
        *,
        black: Player | None = None,
        white: Player | None = None,
        date: str = "",
        handicap_points: Sequence[Point] = (),
    ) -> GameRecord:
        """An empty game with a fresh random ``game_id`` (handicap stones are AB setup)."""
        return cls(
            size=size,
            rules=rules or Rules(),
            handicap=len(handicap_points),
            setup_black=tuple(handicap_points),
            first_player=Color.WHITE if len(handicap_points) >= 2 else Color.BLACK,
            black=black or Player(),
            white=white or Player(),
            date=date,
            game_id=uuid.uuid4().hex,
        )

    @classmethod
    def from_position(
        cls,
        position: Position,
        *,
        handicap: int = 0,
        black: Player | None = None,
        white: Player | None = None,
        date: str = "",
        result: str = "",
        game_id: str = "",
    ) -> GameRecord:
        """The game that led to ``position``: its root's stones become setup stones."""
        root = next(p for p in position.ancestors() if p.parent is None)
        return cls(
            size=position.size,
            rules=position.rules,
            handicap=handicap,
            setup_black=tuple(root.stones(Color.BLACK)),
            setup_white=tuple(root.stones(Color.WHITE)),
            first_player=root.to_play,
            black=black or Player(),
            white=white or Player(),
            date=date,
            result=result,
            moves=tuple(position.history()),
            game_id=game_id,
        )

    def with_move(self, move: Move) -> GameRecord:
        """This game with ``move`` appended (legality is checked by :meth:`replay`)."""
        return replace(self, moves=(*self.moves, move))

    def with_result(self, result: str) -> GameRecord:
        return replace(self, result=result)

    def with_comment(self, index: int, text: str) -> GameRecord:
        return replace(self, comments={**self.comments, index: text})

    # ---- replay -------------------------------------------------------------------

    def root_position(self) -> Position:
        return Position(self.size, self.rules).with_setup(
            self.setup_black, self.setup_white, self.first_player
        )

    def positions(self) -> Iterator[Position]:
        """The root position, then the position after each move.

        Either colour may move at any time (as in SGF); raises :class:`RecordError`
        naming the first illegal move.
        """
        pos = self.root_position()
        yield pos
        for i, move in enumerate(self.moves, 1):
            try:
                pos = pos.play(move, strict_turn=False)
            except IllegalMove as exc:
                where = to_gtp(move.point, self.size) if move.point else move.kind.value
                raise RecordError(
                    f"move {i} ({move.color.letter} {where}) is illegal: {exc.reason.value}"
                ) from exc
            yield pos

    def replay(self) -> Position:
        """The final position, validating every move."""
        last: Position | None = None
        for last in self.positions():  # noqa: B007 - only the last one is wanted
            pass
        assert last is not None  # positions() always yields the root
        return last

    @property
    def is_finished(self) -> bool:
        """A result is recorded, someone resigned, or the game ended with two passes."""
        if self.result or (self.moves and self.moves[-1].is_resign):
            return True
        return len(self.moves) >= 2 and self.moves[-1].is_pass and self.moves[-2].is_pass

    # ---- hash chain ---------------------------------------------------------------

    def header_bytes(self) -> bytes:
        """Canonical CBOR of what is fixed when the game starts (the chain's genesis)."""
        header = self._header_map()
        header["kind"] = _HEADER_KIND
        return cbor2.dumps(header, canonical=True)

    def chain(self) -> list[bytes]:
        """``[genesis, link 1, ..., link n]``: 32-byte BLAKE3 links, one per move."""
        links = [blake3.blake3(self.header_bytes()).digest()]
        for move in self.moves:
            links.append(_link(links[-1], move))
        return links

    @property
    def head(self) -> bytes:
        """The last link of the chain (the genesis for a game with no moves)."""
        return self.chain()[-1]

    def verify_chain(self, links: Sequence[bytes]) -> bool:
        """Whether ``links`` is exactly this game's chain (any edit, reorder,
        truncation or extension of the moves, or a changed header, gives False)."""
        return list(links) == self.chain()

    def extends(self, links: Sequence[bytes]) -> bool:
        """Whether this game continues the game whose chain is ``links``."""
        ours = self.chain()
        return 0 < len(links) <= len(ours) and list(links) == ours[: len(links)]

    # ---- canonical bytes ----------------------------------------------------------

    def _header_map(self) -> dict[str, Any]:
        r = self.rules
        return {
            "v": RECORD_VERSION,
            "id": self.game_id,
            "size": self.size,
            "rules": [r.name, r.komi, r.scoring.value, r.superko.value, r.suicide_allowed],
            "handicap": self.handicap,
            "first": self.first_player.value,
            "ab": [list(p) for p in self.setup_black],
            "aw": [list(p) for p in self.setup_white],
            "pb": [self.black.name, self.black.rank],
            "pw": [self.white.name, self.white.rank],
        }

    def to_cbor(self) -> bytes:
        """The canonical bytes of this record."""
        data = self._header_map()
        links = self.chain()
        data["kind"] = RECORD_KIND
        data["date"] = self.date
        data["result"] = self.result
        data["moves"] = [[links[i], *_move_payload(m)] for i, m in enumerate(self.moves)]
        data["comments"] = dict(self.comments)
        return cbor2.dumps(data, canonical=True)

    @property
    def record_id(self) -> str:
        """The content id: hex BLAKE3 of the canonical bytes."""
        return blake3.blake3(self.to_cbor()).hexdigest()

    @classmethod
    def from_cbor(cls, data: bytes, *, check_moves: bool = True) -> GameRecord:
        """Decode canonical bytes; raises :class:`RecordError` (only) on anything wrong.

        ``check_moves`` replays the game to reject illegal moves (about a millisecond
        per hundred moves); turn it off only for bytes this process wrote itself.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise RecordError("a record is bytes")
        data = bytes(data)
        if len(data) > MAX_RECORD_BYTES:
            raise RecordError(f"record is larger than {MAX_RECORD_BYTES} bytes")
        try:
            obj = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=8)
        except Exception as exc:  # cbor2 raises many types on hostile input: one error out
            raise RecordError(f"not CBOR: {exc}") from exc
        record, links = _from_map(obj)
        if record.to_cbor() != data:
            chain = record.chain()
            for i, (got, want) in enumerate(zip(links, chain, strict=False), 1):
                if got != want:
                    raise RecordError(f"hash chain broken at move {i}")
            raise RecordError("record bytes are not in canonical form")
        if check_moves:
            record.replay()
        return record


def _move_payload(move: Move) -> list[int]:
    r, c = move.point if move.point is not None else (0, 0)
    return [move.color.value, _KIND_CODE[move.kind], r, c]


def _link(prev: bytes, move: Move) -> bytes:
    return blake3.blake3(prev + cbor2.dumps(_move_payload(move), canonical=True)).digest()


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise RecordError(f"malformed record: {what}")


def _text(value: Any, what: str) -> str:
    _need(isinstance(value, str), f"{what} must be text")
    return str(value)


def _int(value: Any, what: str) -> int:
    _need(type(value) is int, f"{what} must be an integer")
    return int(value)


def _point_list(value: Any, what: str) -> list[Point]:
    _need(isinstance(value, list), f"{what} must be a list")
    out: list[Point] = []
    for p in value:
        _need(isinstance(p, list) and len(p) == 2, f"{what} holds [row, col] pairs")
        out.append((_int(p[0], what), _int(p[1], what)))
    return out


def _player(value: Any, what: str) -> Player:
    _need(isinstance(value, list) and len(value) == 2, f"{what} is [name, rank]")
    return Player(_text(value[0], what), _text(value[1], what))


def _from_map(obj: Any) -> tuple[GameRecord, list[bytes]]:
    _need(isinstance(obj, dict), "top level must be a map")
    _need(obj.get("v") == RECORD_VERSION and type(obj.get("v")) is int, "unknown version")
    _need(obj.get("kind") == RECORD_KIND, "kind must be 'game'")
    _need(set(obj) == _KEYS, "unexpected or missing keys")
    size = _int(obj["size"], "size")
    rules = obj["rules"]
    _need(isinstance(rules, list) and len(rules) == 5, "rules is a list of five")
    name, komi, scoring, superko, suicide = rules
    _need(type(komi) is float and math.isfinite(komi), "komi must be a finite float")
    _need(type(suicide) is bool, "suicide must be a boolean")
    try:
        rule_set = Rules(
            _text(name, "rules name"),
            komi,
            ScoringRule(scoring),
            SuperkoRule(superko),
            suicide,
        )
        first = Color(_int(obj["first"], "first"))
    except ValueError as exc:
        raise RecordError(f"malformed record: {exc}") from exc
    moves_raw = obj["moves"]
    _need(isinstance(moves_raw, list), "moves must be a list")
    moves: list[Move] = []
    links: list[bytes] = []
    for i, entry in enumerate(moves_raw, 1):
        _need(isinstance(entry, list) and len(entry) == 5, f"move {i} is a list of five")
        prev, color, kind, r, c = entry
        _need(isinstance(prev, bytes) and len(prev) == 32, f"move {i} link")
        links.append(prev)
        try:
            col = Color(_int(color, f"move {i} colour"))
            k = _CODE_KIND[_int(kind, f"move {i} kind")]
            point = (_int(r, f"move {i} row"), _int(c, f"move {i} col"))
            if k is MoveKind.PLAY:
                moves.append(Move.play(col, point))
            else:
                _need(point == (0, 0), f"move {i}: a pass or resignation has no point")
                moves.append(Move.pass_(col) if k is MoveKind.PASS else Move.resign(col))
        except (ValueError, KeyError) as exc:
            if isinstance(exc, RecordError):
                raise
            raise RecordError(f"malformed record: move {i}: {exc}") from exc
    comments = obj["comments"]
    _need(isinstance(comments, dict), "comments must be a map")
    record = GameRecord(
        size=size,
        rules=rule_set,
        handicap=_int(obj["handicap"], "handicap"),
        setup_black=tuple(_point_list(obj["ab"], "ab")),
        setup_white=tuple(_point_list(obj["aw"], "aw")),
        first_player=first,
        black=_player(obj["pb"], "pb"),
        white=_player(obj["pw"], "pw"),
        date=_text(obj["date"], "date"),
        result=_text(obj["result"], "result"),
        moves=tuple(moves),
        comments=comments,
        game_id=_text(obj["id"], "id"),
    )
    return record, links
