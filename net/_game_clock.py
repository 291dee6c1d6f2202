"""Game clocks: Fischer time control as one player observes it (pure, no clock of its own).

`GameTerms` carry ``main_time_s`` and ``increment_s``: each side starts with the main
time and gains the increment after each of its moves (0 main time: untimed). There
is no byo-yomi in the terms, so none here.

Whose clock runs, and from when (each peer measures with its own clock, passed in as
``now``; only differences of its own readings matter, so peers need no common clock):

- the first mover's clock starts when the challenge is accepted;
- a mover's clock runs from the moment the previous move was acknowledged: the
  receiver of a move starts its own clock when it sends the ack, the mover starts the
  opponent's clock when the ack arrives. The receiver then measures the opponent's
  move from the ack it sent to the move's arrival, and the mover from the ack's
  arrival to sending its move: the two network delays cancel, so both peers see the
  same thinking time up to the *difference* of two one-way delays (jitter), and time
  in flight is charged to nobody;
- the first move is the exception when the challenger moves first: the accept is
  not an ack, and the accepter charges black up to one round trip more.

A side's flag falls when its time on the current move exceeds its remaining time
plus `TIME_GRACE_S`. The grace is the documented allowance for network jitter (and
for that first round trip); both peers apply the same rule to their own view, so
they agree unless the network's jitter exceeds the grace. Time used within the grace
is not charged beyond zero (remaining never goes below zero before the increment).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import Color

# The same on both peers: it is part of the game protocol, not a preference.
TIME_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class ClockView:
    """Both clocks at one instant, for display: seconds left (never below zero)."""

    black_s: float
    white_s: float
    running: Color | None  # whose clock runs now (None: stopped, or a move is in flight)

    def remaining(self, color: Color) -> float:
        return self.black_s if color is Color.BLACK else self.white_s


class GameClock:
    """Remaining time of both sides in one player's view (see the module docstring)."""

    def __init__(
        self, main_time_s: float, increment_s: float, *, grace_s: float = TIME_GRACE_S
    ) -> None:
        self.timed = main_time_s > 0
        self.increment_s = increment_s
        self.grace_s = grace_s
        self._left = {Color.BLACK: float(main_time_s), Color.WHITE: float(main_time_s)}
        self.running: Color | None = None
        self._since = 0.0  # when the running clock started
        self._frozen_at: float | None = None  # our move is in flight since then

    def start(self, color: Color, now: float) -> None:
        self.running, self._since, self._frozen_at = color, now, None

    def freeze(self, now: float) -> None:
        """Our move is sent: stop counting (the ack decides whether it counts)."""
        if self.running is not None:
            self._frozen_at = now

    def thaw(self) -> None:
        """Our move was rejected: our clock has been running all along."""
        self._frozen_at = None

    def charge(self, now: float | None = None) -> float:
        """The running side moved (at `now`, or when frozen); returns the time it used.

        Its remaining time drops by that (not below zero) and gains the increment.
        """
        color = self.running
        if color is None:
            return 0.0
        end = self._frozen_at if self._frozen_at is not None else now
        assert end is not None, "charge() needs `now` unless a move is in flight"
        used = end - self._since
        self._left[color] = max(0.0, self._left[color] - used) + self.increment_s
        self.running, self._frozen_at = None, None
        return used

    def stop(self, now: float) -> None:
        """Play is over (scoring or a result): the running clock stops where it is."""
        color = self.running
        if color is not None:
            self._left[color] = max(0.0, self.left(color, now))
        self.running, self._frozen_at = None, None

    def expire(self, color: Color) -> None:
        """`color` lost on time: its clock shows zero and nothing runs any more."""
        self._left[color] = 0.0
        self.running, self._frozen_at = None, None

    def used(self, now: float) -> float:
        """Time the running side has spent on its current move so far."""
        if self.running is None:
            return 0.0
        end = self._frozen_at if self._frozen_at is not None else now
        return end - self._since

    def left(self, color: Color, now: float) -> float:
        """Seconds `color` has left (negative once into the grace)."""
        spent = self.used(now) if color is self.running else 0.0
        return self._left[color] - spent

    def flagged(self, now: float) -> Color | None:
        """The side whose flag has fallen (only the running clock can fall)."""
        color = self.running
        if not self.timed or color is None or self._frozen_at is not None:
            return None
        return color if self.left(color, now) < -self.grace_s else None

    def in_time(self, now: float) -> bool:
        """Whether a move by the running side arriving `now` is within its time."""
        color = self.running
        return not self.timed or color is None or self.left(color, now) >= -self.grace_s

    def flag_deadline(self) -> float | None:
        """When the running clock's flag falls, in the caller's time (None: never)."""
        color = self.running
        if not self.timed or color is None or self._frozen_at is not None:
            return None
        return self._since + self._left[color] + self.grace_s

    def claim_plausible(self, color: Color, now: float) -> bool:
        """Whether the opponent may say `color` (us) lost on time, as we see it.

        Our clock must be running (a move in flight included) and within one grace
        of running out: the opponent's view differs from ours only by jitter.
        """
        if not self.timed or self.running is not color:
            return False
        return self.left(color, now) <= self.grace_s

    def view(self, now: float) -> ClockView:
        running = self.running if self._frozen_at is None else None
        return ClockView(
            max(0.0, self.left(Color.BLACK, now)), max(0.0, self.left(Color.WHITE, now)), running
        )
