"""Scoring: area (Chinese, Tromp-Taylor) and territory (Japanese), plus dead stones.

Scoring with a given set of dead stones is exact:

* **Area**: a player's score is their living stones plus the empty points (and points
  of removed dead stones) that reach only their stones. White adds komi.
* **Territory**: a player's score is the empty points that reach only their stones,
  plus the stones they captured during the game, plus the opponent's dead stones.
  White adds komi. Points marked ``neutral`` (the eyes of groups in seki, which
  Japanese rules do not count) count for no one.

Dead stones are either marked by the players (the authoritative way, as in every
server) or proposed by :func:`estimate_dead`, a deliberately simple estimator:

1. Groups that are unconditionally alive (Benson's algorithm: every region they
   enclose that they need is a vital region, and at least two such regions) are alive.
2. Groups in a simple seki are alive: two adjacent groups of opposite colours that
   share the same two or more liberties and have no others (neither may approach).
3. Every other group is judged by random playouts from the position with simple ko:
   both sides place stones uniformly at random on points that are not their own
   eyes and do not put their own group in atari (unless they capture), until both pass. A group is dead when its points end up owned by the
   opponent in at least ``threshold`` of the playouts (default 55%: in a finished
   game the owner of a settled area wins nearly every playout, an invader rarely).

The estimate is a proposal for the players (and for GTP ``final_status_list``); it is
good on finished games and may be wrong in unsettled fights or seki.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine._coords import Point
from engine._playout import playout_ownership
from engine._rules import Color, Position, Rules, ScoringRule

__all__ = ["Score", "estimate_dead", "game_result", "ownership", "score", "unconditionally_alive"]


@dataclass(frozen=True, slots=True)
class Score:
    """The count of a finished game: ``black`` and ``white`` (komi included)."""

    black: float
    white: float
    rules: Rules
    dead: frozenset[Point]
    black_area: frozenset[Point]  # territory points (and, under area rules, nothing more)
    white_area: frozenset[Point]

    @property
    def margin(self) -> float:
        """Black's lead (negative when white leads)."""
        return self.black - self.white

    @property
    def winner(self) -> Color | None:
        if self.margin > 0:
            return Color.BLACK
        if self.margin < 0:
            return Color.WHITE
        return None

    def result(self) -> str:
        """The SGF/GTP result: ``B+3.5``, ``W+0.5`` or ``0`` for a draw (jigo)."""
        m = self.margin
        if m == 0:
            return "0"
        text = f"{abs(m):g}"
        return f"B+{text}" if m > 0 else f"W+{text}"


def _regions(size: int, cells: bytes, removed: frozenset[int]) -> list[tuple[list[int], set[int]]]:
    """Connected regions of empty (or removed) points and the colours they reach."""
    seen: set[int] = set()
    out: list[tuple[list[int], set[int]]] = []
    for start in range(size * size):
        if start in seen or (cells[start] and start not in removed):
            continue
        region = [start]
        seen.add(start)
        borders: set[int] = set()
        stack = [start]
        while stack:
            i = stack.pop()
            r, c = divmod(i, size)
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < size and 0 <= nc < size:
                    j = nr * size + nc
                    if cells[j] and j not in removed:
                        borders.add(cells[j])
                    elif j not in seen:
                        seen.add(j)
                        region.append(j)
                        stack.append(j)
        out.append((region, borders))
    return out


def score(
    position: Position,
    dead: Iterable[Point] = (),
    rules: Rules | None = None,
    neutral: Iterable[Point] = (),
) -> Score:
    """Score ``position`` with the given dead stones under ``rules`` (default: its own)."""
    rules = rules or position.rules
    size = position.size
    cells = position.cells()
    dead_set = frozenset(dead)
    removed: set[int] = set()
    dead_black = dead_white = 0
    for r, c in dead_set:
        if not (0 <= r < size and 0 <= c < size):
            raise ValueError(f"dead stone {(r, c)} is off the board")
        v = cells[r * size + c]
        if v == Color.EMPTY:
            raise ValueError(f"dead stone at empty point {(r, c)}")
        removed.add(r * size + c)
        if v == Color.BLACK:
            dead_black += 1
        else:
            dead_white += 1
    frozen_removed = frozenset(removed)
    neutral_idx = {r * size + c for r, c in neutral}
    black_area: set[int] = set()
    white_area: set[int] = set()
    for region, borders in _regions(size, cells, frozen_removed):
        if borders == {Color.BLACK.value}:
            black_area.update(i for i in region if i not in neutral_idx)
        elif borders == {Color.WHITE.value}:
            white_area.update(i for i in region if i not in neutral_idx)
    if rules.scoring is ScoringRule.AREA:
        black_stones = sum(
            1 for i, v in enumerate(cells) if v == Color.BLACK and i not in frozen_removed
        )
        white_stones = sum(
            1 for i, v in enumerate(cells) if v == Color.WHITE and i not in frozen_removed
        )
        black = float(black_stones + len(black_area))
        white = float(white_stones + len(white_area)) + rules.komi
    else:
        by_black, by_white = position.captures
        black = float(len(black_area) + by_black + dead_white)
        white = float(len(white_area) + by_white + dead_black) + rules.komi

    def points(idx: set[int]) -> frozenset[Point]:
        return frozenset(divmod(i, size) for i in idx)

    return Score(black, white, rules, dead_set, points(black_area), points(white_area))


def game_result(position: Position, dead: Iterable[Point] = ()) -> str:
    """The SGF result of a finished game: resignation (``B+R``) or the score."""
    if position.resigned is not None:
        return f"{position.resigned.opponent.letter}+R"
    return score(position, dead).result()


def unconditionally_alive(position: Position) -> frozenset[Point]:
    """Stones of groups that no sequence of opponent moves can capture (Benson)."""
    size = position.size
    cells = position.cells()
    alive: set[Point] = set()
    for color in (Color.BLACK, Color.WHITE):
        alive |= _benson(position, size, cells, color)
    return frozenset(alive)


def _benson(position: Position, size: int, cells: bytes, color: Color) -> set[Point]:
    v = color.value
    groups = [g for g in position.groups() if g[0] is color]
    # Regions: maximal connected sets of points that are not `color` stones.
    seen: set[int] = set()
    regions: list[set[int]] = []
    for start in range(size * size):
        if cells[start] == v or start in seen:
            continue
        region = {start}
        seen.add(start)
        stack = [start]
        while stack:
            i = stack.pop()
            r, c = divmod(i, size)
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < size and 0 <= nc < size:
                    j = nr * size + nc
                    if cells[j] != v and j not in seen:
                        seen.add(j)
                        region.add(j)
                        stack.append(j)
        regions.append(region)
    group_idx = [{r * size + c for r, c in stones} for _, stones, _ in groups]
    group_libs = [{r * size + c for r, c in libs} for _, _, libs in groups]

    def neighbours(i: int) -> list[int]:
        r, c = divmod(i, size)
        out = []
        for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nr < size and 0 <= nc < size:
                out.append(nr * size + nc)
        return out

    live_groups = set(range(len(groups)))
    live_regions = set(range(len(regions)))
    while True:
        # A region is vital to a group if every empty point of the region is its liberty.
        vital_count = dict.fromkeys(live_groups, 0)
        for ri in live_regions:
            region = regions[ri]
            empties = {i for i in region if cells[i] == 0}
            for gi in live_groups:
                if empties and empties <= group_libs[gi]:
                    vital_count[gi] += 1
        removed_group = {gi for gi in live_groups if vital_count[gi] < 2}
        if not removed_group:
            break
        live_groups -= removed_group
        # Drop regions that touch a removed group.
        removed_stones = set().union(*(group_idx[g] for g in removed_group))
        drop = {
            ri
            for ri in live_regions
            if any(j in removed_stones for i in regions[ri] for j in neighbours(i))
        }
        live_regions -= drop
        if not live_groups:
            break
    return {divmod(i, size) for g in live_groups for i in group_idx[g]}


def _simple_seki(
    position: Position, groups: list[tuple[Color, frozenset[Point], frozenset[Point]]]
) -> set[Point]:
    """Stones of pairs of adjacent opposing groups with the same 2+ liberties."""
    owner: dict[Point, int] = {}
    for gi, (_, stones, _) in enumerate(groups):
        for pt in stones:
            owner[pt] = gi
    out: set[Point] = set()
    for color, stones, libs in groups:
        if len(libs) < 2:
            continue
        for pt in stones:
            for n in position.neighbours(pt):
                other = owner.get(n)
                if other is None:
                    continue
                ocolor, ostones, olibs = groups[other]
                if ocolor is not color and olibs == libs:
                    out |= stones | ostones
    return out


def ownership(position: Position, playouts: int = 64, seed: int = 0) -> list[float]:
    """Row-major ownership from random playouts: +1 black owns, -1 white owns."""
    return playout_ownership(position, playouts, seed)


def estimate_dead(
    position: Position, *, playouts: int = 64, seed: int = 0, threshold: float = 0.55
) -> frozenset[Point]:
    """Propose dead stones (see the module docstring for the method)."""
    size = position.size
    alive = set(unconditionally_alive(position))
    all_groups = position.groups()
    alive |= _simple_seki(position, all_groups)
    groups = [g for g in all_groups if not (g[1] & alive)]
    if not groups:
        return frozenset()
    own = ownership(position, playouts, seed)
    dead: set[Point] = set()
    for color, stones, _ in groups:
        sign = 1.0 if color is Color.BLACK else -1.0
        # Mean ownership from this group's side: -1 means the opponent always owns it.
        mean = sum(own[r * size + c] for r, c in stones) * sign / len(stones)
        if (1.0 - mean) / 2.0 >= threshold:
            dead |= stones
    return frozenset(dead)
