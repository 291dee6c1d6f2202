"""Error types of the federated-learning core.

Two families, after h11: the *local* side misused the API (`LocalProtocolError`,
`FlInputError`) — a bug in our caller — or a *remote* party sent something invalid
(`RemoteProtocolError`) — drop or penalise that peer, never crash. `SecAggAborted` says a
round cannot complete (too few survivors); `BudgetExceeded` says a privacy budget forbids
an action.
"""

from __future__ import annotations


class FlError(Exception):
    """Base class of every error raised by `fl`."""


class FlInputError(FlError, ValueError):
    """A function was given an argument it cannot accept (wrong shape, dtype, range)."""


class LocalProtocolError(FlError):
    """Our own caller drove a protocol object out of order (a bug on this side)."""


class RemoteProtocolError(FlError):
    """A remote party sent an invalid message; `peer` is its participant index if known."""

    def __init__(self, reason: str, peer: int | None = None) -> None:
        super().__init__(reason if peer is None else f"peer {peer}: {reason}")
        self.reason = reason
        self.peer = peer


class RefusedError(RemoteProtocolError):
    """A participant refuses a coordinator request that would break its privacy."""


class SecAggAborted(FlError):
    """A secure-aggregation round cannot complete (too few survivors or shares)."""


class BudgetExceeded(FlError):
    """A privacy ledger refuses an event that would exceed its budget."""
