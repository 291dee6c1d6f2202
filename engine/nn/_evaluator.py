"""The network as the search's :class:`engine.Evaluator`, and a player that searches.

:class:`NetworkEvaluator` runs a :class:`Predictor`'s network on the search's leaf
batches. It skips the Predictor's legal-move masking on purpose: the search finds
the legal moves itself when it expands a node (and masks the priors there), and
asking the rules for every legal point a second time costs more than the network on
19x19. It can look at each batch in a random one of the 8 symmetries (as Leela Zero
does), which averages out orientation bias over a search at no extra cost, or in all
8 at once with their policies and values averaged (8 times the work, and deterministic:
a policy-only player then repeats its games against a deterministic opponent, which is
why it is off by default; ``p2pgo-gtp --symmetries all`` turns it on).

:class:`SearchPlayer` is an :class:`engine.MovePlayer` (``choose(position) -> Move``)
that searches with a visit and/or time budget per move and keeps its tree between
moves when the game continues from the position it expected. :meth:`SearchPlayer.analyze`
searches without playing and reports the candidates, for GTP ``lz-analyze``. With
``pass_guard`` (area scoring) it does not pass while an empty region touches both
colours (:mod:`engine._pass_guard`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from engine._coords import Point
from engine._pass_guard import pass_alternative
from engine._rules import Move, Position
from engine._search import Search, SearchConfig, SearchResult
from engine.nn._features import encode_batch
from engine.nn._inference import Predictor
from engine.nn._symmetry import Symmetry, transform_planes, transform_policy

__all__ = ["NetworkEvaluator", "SearchPlayer"]


class NetworkEvaluator:
    """A :class:`Predictor`'s network as a search evaluator (see the module docstring)."""

    def __init__(
        self,
        predictor: Predictor,
        *,
        random_symmetry: bool = False,
        seed: int = 0,
        all_symmetries: bool = False,
    ) -> None:
        self.predictor = predictor
        self.random_symmetry = random_symmetry
        self.all_symmetries = all_symmetries  # wins over random_symmetry
        self._rng = random.Random(seed)
        self.positions_evaluated = 0

    def evaluate(self, positions: Sequence[Position]) -> list[tuple[np.ndarray, float]]:
        out: list[tuple[np.ndarray, float]] = []
        by_size: dict[int, list[int]] = {}
        for i, p in enumerate(positions):
            by_size.setdefault(p.size, []).append(i)
        results: dict[int, tuple[np.ndarray, float]] = {}
        for size, indices in by_size.items():
            group = [positions[i] for i in indices]
            for i, r in zip(indices, self._evaluate_same_size(group, size), strict=True):
                results[i] = r
        out = [results[i] for i in range(len(positions))]
        self.positions_evaluated += len(positions)
        return out

    def _evaluate_same_size(
        self, positions: list[Position], size: int
    ) -> list[tuple[np.ndarray, float]]:
        planes = encode_batch(positions)  # (B, C, size, size)
        if self.all_symmetries:
            syms = tuple(Symmetry)
        elif self.random_symmetry:
            syms = (Symmetry(self._rng.randrange(8)),)
        else:
            syms = (Symmetry.IDENTITY,)
        if syms != (Symmetry.IDENTITY,):
            # Symmetry-major so each symmetry's outputs are one contiguous slice.
            planes = np.ascontiguousarray(
                np.concatenate([transform_planes(planes, sym) for sym in syms])
            )  # (S*B, C, size, size)
        model = self.predictor.model
        logits_all, values_all = [], []
        with torch.inference_mode():
            for start in range(0, len(planes), self.predictor.max_batch):
                x = torch.from_numpy(planes[start : start + self.predictor.max_batch])
                result = model(x)
                logits_all.append(result.policy_logits.double().numpy())  # (b, n*n + 1)
                values_all.append(result.value_logit.double().numpy())  # (b,)
        b, s = len(positions), len(syms)
        logits = np.concatenate(logits_all).reshape(s, b, -1)  # (S, B, n*n + 1)
        for k, sym in enumerate(syms):
            if sym is not Symmetry.IDENTITY:
                logits[k] = transform_policy(logits[k], size, sym.inverse)
        logits = np.nan_to_num(logits, nan=-1e30, posinf=1e30, neginf=-1e30)
        values = np.nan_to_num(np.concatenate(values_all), nan=0.0, posinf=50.0, neginf=-50.0)
        logits -= logits.max(axis=2, keepdims=True)
        policy = np.exp(logits)
        policy /= policy.sum(axis=2, keepdims=True)  # (S, B, n*n + 1)
        # Probabilities, not logits, are averaged (as Predictor does), and win rates.
        policy = policy.mean(axis=0)  # (B, n*n + 1)
        win = (0.5 + 0.5 * np.tanh(values / 2)).reshape(s, b).mean(axis=0)  # sigmoid; (B,)
        return [(policy[i].astype(np.float32), float(win[i])) for i in range(b)]


class SearchPlayer:
    """Chooses moves by PUCT search over the network (see the module docstring).

    ``visits`` and ``seconds`` bound each move (whichever ends first; ``visits=0`` is
    policy-only play). :meth:`choose_with_budget` lets a caller (GTP time management)
    give a tighter time budget for one move.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        visits: int = 200,
        seconds: float | None = None,
        batch_size: int = 8,
        random_symmetry: bool = True,
        seed: int = 0,
        pass_guard: bool = False,
        all_symmetries: bool = False,
    ) -> None:
        if visits < 0:
            raise ValueError("visits must be >= 0")
        if seconds is not None and not seconds > 0:
            raise ValueError("seconds must be > 0")
        self.visits = visits
        self.seconds = seconds
        # Area scoring only: no pass while an empty region touches both colours
        # (engine._pass_guard says why).
        self.pass_guard = pass_guard
        # Running estimate of how far a timed search overshoots its budget (seconds);
        # the first guess is one 19x19 leaf batch on a busy 2-core machine.
        self._overrun = 0.25
        self.evaluator = NetworkEvaluator(
            predictor, random_symmetry=random_symmetry, seed=seed, all_symmetries=all_symmetries
        )
        self.search = Search(
            self.evaluator, SearchConfig(visits=visits, seconds=seconds, batch_size=batch_size)
        )
        self._expected: Position | None = None
        self.last_result: SearchResult | None = None

    def _prepare(self, position: Position) -> None:
        """Step the tree down the opponent's reply if ``position`` follows the one left
        after our last move; otherwise the search itself keeps the tree only if its
        root is ``position`` (and starts afresh if not)."""
        expected = self._expected
        parent = position.parent
        if (
            expected is not None
            and parent is not None
            and position.last_move is not None
            and parent.same_board(expected)
            and parent.to_play is expected.to_play
            and parent.ko == expected.ko
        ):
            self.search.advance(position.last_move)
        self._expected = None

    def choose(self, position: Position) -> Move:
        return self.choose_with_budget(position, None)

    def choose_with_budget(
        self,
        position: Position,
        seconds: float | None,
        on_progress: Callable[[SearchResult], None] | None = None,
    ) -> Move:
        """A move for ``position.to_play``, searching at most ``seconds`` (and ``visits``);
        ``on_progress`` sees the search's statistics about every 0.2 s."""
        if position.is_game_over:
            return Move.pass_(position.to_play)
        self._prepare(position)
        limit = self.seconds if seconds is None else min(seconds, self.seconds or seconds)
        if limit is not None:
            # The search starts its clock after expanding the root and checks it only
            # between leaf batches, so it overruns (measured: up to ~0.4 s on 19x19 on
            # a busy machine): ask for less by the overrun seen so far.
            limit = max(0.5 * limit, limit - self._overrun)
        started = time.perf_counter()
        result = self.search.run(
            position, visits=self.visits, seconds=limit, on_progress=on_progress
        )
        if limit is not None:
            spent = time.perf_counter() - started
            if spent >= limit:  # the time limit, not the visits, ended the search
                self._overrun = 0.5 * self._overrun + 0.5 * (spent - limit)
        self.last_result = result
        move = result.move
        if self.pass_guard and move.point is None and not move.is_resign:
            point = pass_alternative(position, self._ranked(position, result))
            if point is not None:
                move = Move.play(position.to_play, point)
        self.search.advance(move)
        self._expected = position.play(move, strict_turn=False)
        return move

    def _ranked(self, position: Position, result: SearchResult) -> Iterator[Point | None]:
        """Moves best first: the search's candidates, then every other legal point by
        the network's policy (asked only if the candidates run out)."""
        yield from (c.move for c in result.candidates)
        policy = self.evaluator.predictor.predict(position).policy
        size = position.size
        for index in np.argsort(-policy[: size * size], kind="stable"):
            if policy[index] <= 0:
                break
            yield divmod(int(index), size)

    def analyze(
        self,
        position: Position,
        *,
        seconds: float,
        max_visits: int = 100_000,
        on_progress: Callable[[SearchResult], None] | None = None,
    ) -> SearchResult:
        """Search ``position`` for up to ``seconds`` more (the tree is kept, so repeated
        calls deepen the same analysis) without committing to a move."""
        self._prepare(position)
        result = self.search.run(
            position, visits=max_visits, seconds=seconds, on_progress=on_progress
        )
        self.last_result = result
        return result
