"""Shared pieces of the GTP engine: the error a command fails with, and input parsing.

:mod:`engine.gtp` (the protocol) and :mod:`engine._gtp_analysis` (Leela Zero's
analysis commands) both turn bad arguments into :class:`GtpError`, which
:meth:`engine.gtp.GtpEngine.handle` answers as a ``? message`` reply.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine._rules import Color

__all__ = ["GtpError"]

_CONTROL = {c: None for c in range(32) if c not in (9, 10)} | {127: None, 9: " "}


class GtpError(Exception):
    """A command failed; the message is what follows ``?`` in the reply."""


def _preprocess(line: str) -> str:
    """Clean one input line as GTP v2 section 3.1 prescribes."""
    text = line.translate(_CONTROL)
    return text.split("#", 1)[0].strip()


def _one_line(text: str) -> str:
    """Reply text with no empty line inside (an empty line ends a GTP reply).

    A leading line break is kept: multi-line diagrams start below the ``=``.
    """
    lead = "\n" if text.startswith("\n") else ""
    return lead + "\n".join(line for line in text.splitlines() if line.strip())


def _color(text: str) -> Color:
    try:
        return Color.parse(text)
    except ValueError:
        raise GtpError("invalid color") from None


def _int(text: str, what: str) -> int:
    try:
        value = int(text)
    except ValueError:  # also very long digit strings (Python refuses >4300 digits)
        raise GtpError(f"{what} is not an integer") from None
    return value


def _args(args: Sequence[str], count: int, usage: str) -> None:
    if len(args) != count:
        raise GtpError(f"syntax error: expected {usage}")
