"""Leela Zero's analysis commands for :class:`engine.gtp.GtpEngine` (what Sabaki reads).

``lz-analyze`` and ``lz-genmove_analyze`` need a :class:`SearchingPlayer`; the engine
registers them only when its player is one. :class:`AnalysisCommands` is a mixin of
:class:`~engine.gtp.GtpEngine` that holds those commands and their streaming forms
(see the :mod:`engine.gtp` docstring for how streaming works); it relies on the
engine's game state through the few members declared at the top of the class.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from engine._coords import to_gtp
from engine._gtp_parse import GtpError, _color, _int
from engine._players import Player
from engine._rules import Color, IllegalMove, Move, Position
from engine._search import SearchResult

__all__ = ["AnalysisCommands", "SearchingPlayer", "format_analysis"]

# lz-analyze without an interval reports once a second (the interval is in centiseconds).
_DEFAULT_INTERVAL_CS = 100
# Analysis stops growing the tree here (memory), and then only waits for the next command.
_MAX_ANALYSIS_VISITS = 200_000


@runtime_checkable
class SearchingPlayer(Protocol):
    """A player that searches within a time budget and can analyse without playing."""

    def choose(self, position: Position) -> Move: ...

    def choose_with_budget(
        self,
        position: Position,
        seconds: float | None,
        on_progress: Callable[[SearchResult], None] | None = None,
    ) -> Move: ...

    def analyze(
        self,
        position: Position,
        *,
        seconds: float,
        max_visits: int = ...,
        on_progress: Callable[[SearchResult], None] | None = None,
    ) -> SearchResult: ...


def format_analysis(result: SearchResult, size: int) -> str:
    """One Leela Zero ``info`` line for the candidates of a search (most visited first)."""
    parts = []
    order = 0
    for stats in result.candidates:
        if stats.visits <= 0:
            continue
        pv = " ".join(to_gtp(p, size) for p in stats.pv)
        parts.append(
            f"info move {to_gtp(stats.move, size)} visits {stats.visits} "
            f"winrate {round(stats.winrate * 10000)} prior {round(stats.prior * 10000)} "
            f"order {order} pv {pv}"
        )
        order += 1
    return " ".join(parts)


class AnalysisCommands:
    """``lz-analyze`` and ``lz-genmove_analyze``, mixed into :class:`engine.gtp.GtpEngine`."""

    if TYPE_CHECKING:  # provided by GtpEngine; declared so the mixin type-checks alone
        _player: Player

        @property
        def size(self) -> int: ...

        def _playable(self) -> Position: ...

        def _position_for(self, color: Color) -> Position: ...

        def move_time(self, color: Color) -> float | None: ...

        def play(self, move: Move) -> Position: ...

    def _analysis_args(self, args: list[str]) -> tuple[Color, float]:
        """``[color] [interval]`` plus Leela Zero's keyword options (ignored, except
        ``interval``); the colour defaults to the side to move."""
        color = self._playable().to_play
        interval = _DEFAULT_INTERVAL_CS
        rest = list(args)
        if rest and rest[0].lower() in ("b", "w", "black", "white"):
            color = _color(rest.pop(0))
        if rest and rest[0].isdigit():
            interval = _int(rest.pop(0), "interval")
        while rest:
            word = rest.pop(0).lower()
            if word == "interval" and rest:
                interval = _int(rest.pop(0), "interval")
            elif word in ("minmoves", "maxmoves") and rest:
                rest.pop(0)
            elif word in ("avoid", "allow"):
                rest[:] = rest[3:]  # color, vertices, until-move: not supported, ignored
            else:
                raise GtpError(f"syntax error: unexpected {word[:20]!r}")
        if interval < 0 or interval > 360_000:
            raise GtpError("syntax error: interval is 0 to 360000 centiseconds")
        return color, (interval or _DEFAULT_INTERVAL_CS) / 100.0

    def _searching_player(self) -> SearchingPlayer:
        player = self._player
        if not isinstance(player, SearchingPlayer):
            raise GtpError("analysis needs the network player (start with --model)")
        return player

    def analyze_stream(
        self,
        args: list[str],
        write: Callable[[str], None],
        input_waiting: Callable[[float], bool],
        ident: str = "",
    ) -> None:
        """``lz-analyze`` streaming: ``=``, one info line per interval, until input waits.

        ``input_waiting(timeout)`` says whether a line of input is waiting (waiting up
        to ``timeout`` seconds for one); the reply ends with a blank line.
        """
        try:
            player = self._searching_player()
            color, interval = self._analysis_args(args)
            pos = self._position_for(color)
        except GtpError as exc:
            write(f"?{ident} {exc}\n\n")
            return
        write(f"={ident}\n")
        if not pos.is_game_over:
            while True:
                result = player.analyze(pos, seconds=interval)
                write(format_analysis(result, pos.size) + "\n")
                if input_waiting(0.0):
                    break
                if result.visits >= _MAX_ANALYSIS_VISITS:
                    while not input_waiting(interval):
                        continue  # the tree is full: only wait for the next command
                    break
        write("\n")

    def _lz_analyze(self, args: list[str]) -> str:
        player = self._searching_player()
        color, interval = self._analysis_args(args)
        pos = self._position_for(color)
        if pos.is_game_over:
            return ""
        return "\n" + format_analysis(player.analyze(pos, seconds=interval), pos.size)

    def genmove_analyze_stream(
        self, args: list[str], write: Callable[[str], None], ident: str = ""
    ) -> None:
        """``lz-genmove_analyze``: info lines while the move is searched, then ``play``."""
        try:
            player = self._searching_player()
            color, interval = self._analysis_args(args)
        except GtpError as exc:
            write(f"?{ident} {exc}\n\n")
            return
        write(f"={ident}\n")
        pos = self._position_for(color)
        clock = [0.0]

        def progress(result: SearchResult) -> None:
            clock[0] += 0.2  # the search reports every 0.2 s
            if clock[0] >= interval:
                clock[0] = 0.0
                write(format_analysis(result, pos.size) + "\n")

        vertex = self._generate_with(color, player, progress)
        write(f"play {vertex}\n\n")

    def _generate_with(
        self,
        color: Color,
        player: SearchingPlayer,
        progress: Callable[[SearchResult], None] | None,
    ) -> str:
        pos = self._position_for(color)
        if pos.is_game_over:
            move = Move.pass_(color)
        else:
            move = player.choose_with_budget(pos, self.move_time(color), progress)
        return to_gtp(self._play_or_pass(move).point, self.size)

    def _play_or_pass(self, move: Move) -> Move:
        """Play `move`; a pass instead if it is illegal here (returns what was played).

        Only reachable when the player could not see the real history (an out-of-turn
        request and superko): passing is always legal.
        """
        try:
            self.play(move)
        except IllegalMove:
            move = Move.pass_(move.color)
            self.play(move)
        return move

    def _lz_genmove_analyze(self, args: list[str]) -> str:
        player = self._searching_player()
        color, _ = self._analysis_args(args)
        return "\nplay " + self._generate_with(color, player, None)
