"""CPU savings per gossip RPC in py-libp2p 0.8.1: cached signed peer records, batched Yamux credit.

Why: announce latency across ten peers is CPU per hop in Python (docs/benchmarks.md,
network section). A profile of `benchmarks/bench_net.py` showed two costs that repeat
on every RPC although their inputs almost never change:

- **Signed peer records.** Every pubsub RPC carries the sender's signed peer record
  (``senderRecord``). Sending, ``env_to_send_in_RPC(host)`` rebuilds the host's
  advertised multiaddrs (``host.get_addrs()``, ~0.3 ms in py-multiaddr) to compare
  them with the cached record. Receiving, ``maybe_consume_signed_record`` parses the
  envelope, verifies its Ed25519 signature, parses the multiaddrs and rewrites the
  peerstore (~0.27 ms), even when the bytes are identical to the last record that
  peer sent.
- **Yamux window updates.** py-libp2p's Yamux sends a WINDOW_UPDATE frame after every
  ``read()`` (``PY_YAMUX_RELEASE_ON_READ`` defaults on), and pubsub reads each RPC's
  varint length and body separately: three extra frames per RPC (counted), each
  Noise-encrypted, sent, received, decrypted and parsed. go-yamux credits the window
  once half of it has been consumed; ``PY_YAMUX_RELEASE_ON_READ=0`` does that, except
  that one update per RPC remains (counted; apparently the auto-tuner's "partial
  slack" branch).

What `tune_host` does (once per process, idempotent; hosts not passed to it are
untouched):

- Wraps the two record functions in the namespaces of ``libp2p.pubsub.pubsub`` and
  ``libp2p.pubsub.gossipsub`` (the only callers on the gossip path). For tuned hosts:
  - **receive:** a record is skipped (reported accepted) only if it is byte-identical
    to the last record from that same peer that the original function accepted, that
    accepted envelope is still the one the peerstore holds for the peer, and it was
    fully processed less than `RECORD_RECHECK_S` ago. The original accepts identical
    bytes from the same peer in that state (same signature, same peer id, same
    sequence number), so nothing the original would reject is accepted; any other
    bytes (a changed, newer, forged or tampered record) go through the original
    function. The periodic full pass also refreshes the addresses' TTL and, as the
    original does on every RPC, replaces addresses learnt for the peer by other
    means with the record's (so those may live up to `RECORD_RECHECK_S` longer).
  - **send:** the envelope bytes are reused while the peerstore still holds the same
    local record, the set of listeners is unchanged and the last full check is less
    than `RECORD_RECHECK_S` old; otherwise the original runs and re-issues the record
    if the addresses changed. A new or replaced listener is seen at once; any other
    change (an address learnt through observed-address discovery, say) reaches the
    record within `RECORD_RECHECK_S`.
- Sets ``PY_YAMUX_RELEASE_ON_READ=0`` unless the environment already sets it (the
  user's choice wins). This is py-libp2p's own tuning switch; it is process-wide.

Re-check all of this on any py-libp2p upgrade: it names module attributes of 0.8.1.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import libp2p.peer.peerstore as _peerstore_module
import libp2p.pubsub.gossipsub as _gossipsub_module
import libp2p.pubsub.pubsub as _pubsub_module
import libp2p.pubsub.utils as _pubsub_utils_module
from libp2p.abc import IHost
from libp2p.peer.envelope import Envelope
from libp2p.peer.id import ID
from libp2p.pubsub.pb.rpc_pb2 import RPC

__all__ = [
    "RECORD_RECHECK_S",
    "YAMUX_RELEASE_ON_READ_ENV",
    "LocalRecordCache",
    "SenderRecordCache",
    "caches",
    "is_tuned",
    "tune_host",
]

# How long a verified record (ours or a peer's) is trusted without the full path.
# Bounds how stale addresses may get; the savings come from the many RPCs in between
# (a full pass costs ~0.3 ms, so one per peer every few seconds is noise).
RECORD_RECHECK_S = 5.0
MAX_CACHED_PEERS = 1024
YAMUX_RELEASE_ON_READ_ENV = "PY_YAMUX_RELEASE_ON_READ"

Clock = Callable[[], float]
_ConsumeFn = Callable[[RPC, IHost, ID], bool]
_EnvFn = Callable[[IHost], tuple[bytes, bool]]

# The originals, from their defining modules: never from a namespace we patch.
_ORIGINAL_CONSUME: _ConsumeFn = _pubsub_utils_module.maybe_consume_signed_record
_ORIGINAL_ENV: _EnvFn = _peerstore_module.env_to_send_in_RPC
_PATCHED_MODULES: tuple[ModuleType, ...] = (_pubsub_module, _gossipsub_module)


@dataclass(frozen=True, slots=True)
class _Accepted:
    """A sender record the original function accepted, and the envelope it stored."""

    data: bytes
    envelope: Envelope
    checked_at: float


def _stored_envelope(host: IHost, peer_id: ID) -> Envelope | None:
    """The envelope the peerstore holds for `peer_id`, or None (also if unknown layout)."""
    records = getattr(host.get_peerstore(), "peer_record_map", None)
    state = records.get(peer_id) if isinstance(records, dict) else None
    envelope = getattr(state, "envelope", None)
    return envelope if isinstance(envelope, Envelope) else None


class SenderRecordCache:
    """The last accepted signed peer record per peer, for one host.

    `consume` answers exactly what the original would for the same input, skipping
    the work only for bytes already verified and accepted from the same peer (see
    the module docstring for the conditions).
    """

    def __init__(
        self,
        *,
        recheck_s: float = RECORD_RECHECK_S,
        max_peers: int = MAX_CACHED_PEERS,
        clock: Clock = time.monotonic,
    ) -> None:
        self._recheck_s = recheck_s
        self._max_peers = max_peers
        self._clock = clock
        self._accepted: OrderedDict[ID, _Accepted] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def consume(self, msg: RPC, host: IHost, peer_id: ID, original: _ConsumeFn) -> bool:
        if not msg.HasField("senderRecord"):
            return original(msg, host, peer_id)  # nothing to verify: the original's answer
        data = msg.senderRecord
        now = self._clock()
        known = self._accepted.get(peer_id)
        if (
            known is not None
            and known.data == data
            and now - known.checked_at < self._recheck_s
            and _stored_envelope(host, peer_id) is known.envelope
        ):
            self.hits += 1
            return True
        self.misses += 1
        accepted = original(msg, host, peer_id)
        stored = _stored_envelope(host, peer_id) if accepted else None
        if stored is not None:
            self._accepted[peer_id] = _Accepted(bytes(data), stored, now)
            self._accepted.move_to_end(peer_id)
            while len(self._accepted) > self._max_peers:
                self._accepted.popitem(last=False)
        else:
            # Rejected (or not stored): forget what we had, the next record goes the full way.
            self._accepted.pop(peer_id, None)
        return accepted


def _listener_fingerprint(host: IHost) -> tuple[tuple[str, int], ...]:
    """Which listeners the swarm has (address asked for, object): cheap, unlike get_addrs()."""
    listeners = getattr(host.get_network(), "listeners", None)
    if not isinstance(listeners, dict):
        return ()
    return tuple((str(key), id(listener)) for key, listener in listeners.items())


class LocalRecordCache:
    """This host's marshalled signed peer record, re-checked against its addresses."""

    def __init__(self, *, recheck_s: float = RECORD_RECHECK_S, clock: Clock = time.monotonic):
        self._recheck_s = recheck_s
        self._clock = clock
        self._data: bytes | None = None
        self._envelope: Envelope | None = None
        self._listeners: tuple[tuple[str, int], ...] = ()
        self._checked_at = 0.0
        self.hits = 0
        self.misses = 0

    def envelope(self, host: IHost, original: _EnvFn) -> tuple[bytes, bool]:
        now = self._clock()
        listeners = _listener_fingerprint(host)
        if (
            self._data is not None
            and now - self._checked_at < self._recheck_s
            and listeners == self._listeners
            and host.get_peerstore().get_local_record() is self._envelope
        ):
            self.hits += 1
            return self._data, False
        self.misses += 1
        data, created = original(host)
        self._data, self._envelope = data, host.get_peerstore().get_local_record()
        self._listeners, self._checked_at = listeners, now
        return data, created


@dataclass(frozen=True, slots=True)
class _HostTuning:
    received: SenderRecordCache
    local: LocalRecordCache


# Tuned hosts and their caches; weak, so a closed host's caches go with it.
_TUNED: weakref.WeakKeyDictionary[IHost, _HostTuning] = weakref.WeakKeyDictionary()


def _consume_signed_record(msg: RPC, host: IHost, peer_id: ID) -> bool:
    tuning = _TUNED.get(host)
    if tuning is None:
        return _ORIGINAL_CONSUME(msg, host, peer_id)
    return tuning.received.consume(msg, host, peer_id, _ORIGINAL_CONSUME)


def _env_to_send(host: IHost) -> tuple[bytes, bool]:
    tuning = _TUNED.get(host)
    if tuning is None:
        return _ORIGINAL_ENV(host)
    return tuning.local.envelope(host, _ORIGINAL_ENV)


def _install() -> None:
    """Point pubsub's and gossipsub's names at the wrappers; a no-op the second time."""
    for module in _PATCHED_MODULES:
        patched: dict[str, Any] = {
            "maybe_consume_signed_record": _consume_signed_record,
            "env_to_send_in_RPC": _env_to_send,
        }
        for name, wrapper in patched.items():
            if getattr(module, name) is not wrapper:
                setattr(module, name, wrapper)
    os.environ.setdefault(YAMUX_RELEASE_ON_READ_ENV, "0")


def tune_host(host: IHost, *, clock: Clock = time.monotonic) -> None:
    """Apply the tuning (once per process) and enable the record caches for `host`."""
    _install()
    if host not in _TUNED:
        _TUNED[host] = _HostTuning(SenderRecordCache(clock=clock), LocalRecordCache(clock=clock))


def is_tuned(host: IHost) -> bool:
    return host in _TUNED


def caches(host: IHost) -> tuple[SenderRecordCache, LocalRecordCache] | None:
    """The record caches of a tuned host (for tests and benchmarks), else None."""
    tuning = _TUNED.get(host)
    return None if tuning is None else (tuning.received, tuning.local)
