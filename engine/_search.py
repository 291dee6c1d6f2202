"""PUCT tree search (AlphaZero style) over any evaluator of positions.

Theory of operation
-------------------
Each node holds the position reached by a move, the prior of that move, a visit count
``n`` and ``w``, the sum of values *from the point of view of the player who made the
move* (so a parent picks the child with the highest ``w / n``). A simulation walks
down by the PUCT rule

    score(child) = Q(child) + c_puct * P(child) * sqrt(N(parent)) / (1 + N(child))

with unvisited children valued at the parent's Q minus a first-play reduction, until it
reaches a leaf. Leaves are gathered into a batch (a virtual loss keeps one batch from
walking the same path), evaluated together by the :class:`Evaluator`, expanded with
the priors of their legal moves and backed up.

Finished games (two passes) are scored exactly by area (Tromp-Taylor: every stone on
the board counts) rather than evaluated.

:meth:`Search.advance` keeps the subtree of the move actually played, so the next
search starts with the visits already spent below it. ``visits=0`` is policy-only play.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from engine._coords import Point
from engine._rules import Color, IllegalMove, Move, Position
from engine._scoring import score

__all__ = [
    "Evaluator",
    "MoveStats",
    "Search",
    "SearchConfig",
    "SearchResult",
    "sample_move",
    "side_value",
]

PolicyArray = npt.NDArray[np.float32]


class Evaluator(Protocol):
    """Anything that scores positions: a neural network, or a heuristic in tests."""

    def evaluate(self, positions: Sequence[Position]) -> list[tuple[PolicyArray, float]]:
        """For each position: a policy over ``size * size + 1`` moves (row-major
        points, then pass; illegal moves may carry weight, the search masks them) and
        the win probability in [0, 1] for the side to move."""
        ...


@dataclass(frozen=True, slots=True)
class SearchConfig:
    visits: int = 200  # simulations per move; 0 = play the policy's best legal move
    seconds: float | None = None  # wall-clock budget per move; with visits, first to end
    c_puct: float = 1.5
    batch_size: int = 8
    fpu_reduction: float = 0.2  # unvisited children start at parent Q minus this
    dirichlet_alpha: float = 0.0  # root noise for self-play (0 = off)
    dirichlet_fraction: float = 0.25
    seed: int = 0


@dataclass(frozen=True, slots=True)
class MoveStats:
    move: Point | None
    visits: int
    winrate: float  # for the side to move at the root
    prior: float
    pv: tuple[Point | None, ...]


@dataclass(frozen=True, slots=True)
class SearchResult:
    move: Move
    winrate: float  # the root's value for the side to move
    visits: int
    candidates: tuple[MoveStats, ...]  # most visited first
    visit_distribution: dict[Point | None, float] = field(default_factory=dict)

    def visit_counts(self) -> dict[Point | None, int]:
        """The root's visit distribution as counts (at least 1 for every visited move),
        the form ``p2pgo-visits:`` SGF comments store as a training target."""
        return {m: max(1, round(f * self.visits)) for m, f in self.visit_distribution.items()}


class _Node:
    __slots__ = ("children", "expanded", "move", "n", "parent", "position", "prior", "vloss", "w")

    def __init__(
        self, position: Position | None, parent: _Node | None, move: Point | None, prior: float
    ) -> None:
        self.position = position
        self.parent = parent
        self.move = move
        self.prior = prior
        self.n = 0
        self.w = 0.0
        self.vloss = 0
        self.children: list[_Node] = []
        self.expanded = False

    def q(self, default: float) -> float:
        n = self.n + self.vloss
        if n == 0:
            return default
        return (self.w) / n  # virtual losses count as losses (value 0)


def _index(point: Point | None, size: int) -> int:
    return size * size if point is None else point[0] * size + point[1]


def _pos(node: _Node) -> Position:
    position = node.position
    assert position is not None, "selected nodes always have positions"
    return position


def _terminal_value(position: Position) -> float:
    """Exact result of a finished game for the side to move: 1 win, 0 loss, 0.5 draw."""
    if position.resigned is not None:
        return 1.0 if position.resigned is not position.to_play else 0.0
    winner = score(position).winner
    if winner is None:
        return 0.5
    return 1.0 if winner is position.to_play else 0.0


class Search:
    """A PUCT search that keeps its tree between moves of one game."""

    def __init__(
        self,
        evaluator: Evaluator,
        config: SearchConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.evaluator = evaluator
        self.config = config or SearchConfig()
        self._clock = clock
        self._rng = random.Random(self.config.seed)
        self._root: _Node | None = None
        self._noised: _Node | None = None
        self.nodes_evaluated = 0

    # ---- public -------------------------------------------------------------------

    def run(
        self,
        position: Position,
        *,
        visits: int | None = None,
        seconds: float | None = None,
        on_progress: Callable[[SearchResult], None] | None = None,
    ) -> SearchResult:
        """Search ``position`` and return the chosen move with statistics."""
        if position.is_game_over:
            raise ValueError("the game is over; there is nothing to search")
        budget = self.config.visits if visits is None else visits
        limit = self.config.seconds if seconds is None else seconds
        # The budget starts now: expanding the root is part of the move's time.
        deadline = None if limit is None else self._clock() + limit
        root = self._root_for(position)
        if not root.expanded:
            self._evaluate_batch([root])
        self._add_root_noise(root)
        if budget <= 0:
            return self._result(root, policy_only=True)
        done = 0
        last_report = self._clock()
        while done < budget:
            if deadline is not None and self._clock() >= deadline:
                break
            batch = []
            for _ in range(min(self.config.batch_size, budget - done)):
                leaf = self._select(root)
                if leaf is None:
                    break
                batch.append(leaf)
            if not batch:
                break
            self._evaluate_batch(batch)
            done += len(batch)
            if on_progress is not None and self._clock() - last_report >= 0.2:
                last_report = self._clock()
                on_progress(self._result(root, policy_only=False))
        return self._result(root, policy_only=False)

    def advance(self, move: Move) -> None:
        """Re-root the tree at the child for ``move`` (or forget it if unexplored)."""
        root = self._root
        if root is None:
            return
        for child in root.children:
            if child.move == move.point and not move.is_resign and child.position is not None:
                child.parent = None
                self._root = child
                return
        self._root = None

    def reset(self) -> None:
        self._root = None

    # ---- tree ---------------------------------------------------------------------

    def _root_for(self, position: Position) -> _Node:
        root = self._root
        known = None if root is None else root.position
        if (
            root is not None
            and known is not None
            and known.same_board(position)
            and known.to_play is position.to_play
            and known.ko == position.ko
            and known.passes == position.passes
        ):
            return root
        self._root = _Node(position, None, None, 1.0)
        return self._root

    def _add_root_noise(self, root: _Node) -> None:
        alpha = self.config.dirichlet_alpha
        # Once per root: a root kept from the last move already has its noise.
        if alpha <= 0 or not root.children or root is self._noised:
            return
        self._noised = root
        noise = [self._rng.gammavariate(alpha, 1.0) for _ in root.children]
        total = sum(noise) or 1.0
        frac = self.config.dirichlet_fraction
        for child, eta in zip(root.children, noise, strict=True):
            child.prior = (1 - frac) * child.prior + frac * eta / total

    def _select(self, root: _Node) -> _Node | None:
        node = root
        c = self.config.c_puct
        while node.expanded:
            if not node.children:
                return node  # terminal: evaluated again exactly
            sqrt_n = math.sqrt(max(1, node.n + node.vloss))
            parent_q = 1.0 - node.q(0.5)  # node.q is from the mover's view; flip for ours
            fpu = parent_q - self.config.fpu_reduction
            best = node.children[0]
            best_score = -math.inf
            for child in node.children:
                u = c * child.prior * sqrt_n / (1 + child.n + child.vloss)
                s = child.q(fpu) + u
                if s > best_score:
                    best_score, best = s, child
            if not self._materialize(node, best):
                continue  # it was illegal and is gone; choose again among the rest
            node = best
            node.vloss += 1
            if node.vloss > 1 and not node.expanded:
                # Another leaf of this batch already waits on this node.
                self._undo_vloss(node)
                return None
        return node

    def _materialize(self, parent: _Node, child: _Node) -> bool:
        """Build a child's position on its first visit; drop the child if illegal."""
        if child.position is not None:
            return True
        pos = parent.position
        assert pos is not None
        color = pos.to_play
        move = Move.pass_(color) if child.move is None else Move.play(color, child.move)
        try:
            child.position = pos.play(move)
        except IllegalMove:
            parent.children.remove(child)
            return False
        return True

    def _undo_vloss(self, leaf: _Node) -> None:
        node: _Node | None = leaf
        while node is not None and node.parent is not None:
            node.vloss -= 1
            node = node.parent

    def _evaluate_batch(self, leaves: list[_Node]) -> None:
        pending = [leaf for leaf in leaves if not _pos(leaf).is_game_over]
        results = self.evaluator.evaluate([_pos(leaf) for leaf in pending]) if pending else []
        self.nodes_evaluated += len(pending)
        values: dict[int, float] = {}
        for leaf, (policy, value) in zip(pending, results, strict=True):
            self._expand(leaf, policy)
            values[id(leaf)] = float(value)
        for leaf in leaves:
            known = values.get(id(leaf))
            if known is None:
                leaf.expanded = True
                known = _terminal_value(_pos(leaf))
            self._backup(leaf, known)

    def _expand(self, node: _Node, policy: PolicyArray) -> None:
        if node.expanded:
            return
        pos = _pos(node)
        size = pos.size
        # Children get their positions on their first visit (see _materialize): most are
        # never visited. An evaluator that masks illegal moves (the network does) gives
        # them no prior, so they are never created; others are dropped when first tried.
        points: list[Point | None] = [*pos.empty_points(), None]
        weights = np.array([float(policy[_index(p, size)]) for p in points])
        weights = np.where(np.isfinite(weights), np.maximum(weights, 0.0), 0.0)
        total = float(weights.sum())
        if total <= 0:
            weights, total = np.ones(len(points)), float(len(points))
        children = []
        for point, weight in zip(points, weights, strict=True):
            if weight > 0 or point is None:  # passing is always legal
                children.append(_Node(None, node, point, float(weight) / total))
        node.children = children
        node.expanded = True

    def _backup(self, leaf: _Node, value_for_side_to_move: float) -> None:
        # The leaf's value is for the player to move there; the leaf's own w is from
        # the view of the player who moved into it, the opponent.
        value = 1.0 - value_for_side_to_move
        node: _Node | None = leaf
        while node is not None:
            node.n += 1
            node.w += value
            if node.vloss > 0 and node.parent is not None:
                node.vloss -= 1
            value = 1.0 - value
            node = node.parent

    # ---- results ------------------------------------------------------------------

    def _pv(self, node: _Node, depth: int = 10) -> tuple[Point | None, ...]:
        line: list[Point | None] = [node.move]
        while node.children and len(line) < depth:
            node = max(node.children, key=lambda ch: ch.n)
            if node.n == 0:
                break
            line.append(node.move)
        return tuple(line)

    def _result(self, root: _Node, *, policy_only: bool) -> SearchResult:
        pos = _pos(root)
        if policy_only:
            # The best prior that is legal: children are checked lazily, so check now.
            for child in sorted(root.children, key=lambda ch: ch.prior, reverse=True):
                if self._materialize(root, child):
                    break
        children = root.children
        if not children:
            move = Move.pass_(pos.to_play)
            return SearchResult(move, 0.5, root.n, ())
        if policy_only:
            ranked = sorted(children, key=lambda ch: (ch.position is not None, ch.prior))
            ranked.reverse()
        else:
            ranked = sorted(children, key=lambda ch: (ch.n, ch.prior), reverse=True)
        best = ranked[0]
        # Root value for the side to move: mean over the tree below the root.
        winrate = 1.0 - root.q(0.5) if root.n else 0.5
        stats = tuple(
            MoveStats(
                ch.move,
                ch.n,
                ch.q(winrate) if ch.n else winrate,
                ch.prior,
                self._pv(ch),
            )
            for ch in ranked[:10]
        )
        total = sum(ch.n for ch in children)
        dist = {ch.move: ch.n / total for ch in children if ch.n} if total else {}
        move = Move.pass_(pos.to_play) if best.move is None else Move.play(pos.to_play, best.move)
        return SearchResult(move, winrate, root.n, stats, dist)


def sample_move(result: SearchResult, temperature: float, rng: random.Random) -> Point | None:
    """Pick a move in proportion to visits^(1/T) (self-play openings); T=0 is greedy."""
    dist = result.visit_distribution
    if temperature <= 0 or not dist:
        return result.move.point
    moves = list(dist)
    weights = [dist[m] ** (1.0 / temperature) for m in moves]
    return rng.choices(moves, weights=weights)[0]


def side_value(color: Color, winrate_black: float) -> float:
    """Convert black's win probability to ``color``'s."""
    return winrate_black if color is Color.BLACK else 1.0 - winrate_black
