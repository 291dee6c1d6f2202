"""Error types of the network layer.

After h11: a *remote* party sent something invalid (`ProtocolError`, `BlobError` with a
remote cause) — drop or penalise that peer, never crash — or *our own* setup is wrong
(`ConfigError`, `IdentityError`) — a clear message for the operator.
"""

from __future__ import annotations


class NetError(Exception):
    """Base class of every error raised by `net`."""


class ProtocolError(NetError):
    """Bytes from the network are not a valid message (malformed, unknown, oversize)."""


class ConfigError(NetError, ValueError):
    """A node configuration value (file or flag) is invalid."""


class IdentityError(NetError):
    """The identity key file cannot be created or loaded (permissions, length)."""


class BlobError(NetError):
    """A blob transfer failed: not found, refused, corrupt, or the stream broke."""
