"""The coordinator side of SecAgg+: collects messages, relays shares, learns only the sum.

Drive it with `receive(message)` for every message that arrives in the current stage
(a bad or out-of-stage message raises `RemoteProtocolError` naming the sender and changes
nothing: drop or penalise that peer) and one `close_*` call when the stage's deadline
passes or `pending()` is empty. Participants that did not send in a stage have dropped;
that is the normal path, not an error. `SecAggAborted` means the round cannot finish.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fl._errors import FlInputError, LocalProtocolError, RemoteProtocolError, SecAggAborted
from fl._secagg_crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    SIGNATURE_BYTES,
    TAG_BYTES,
    expand_mask,
    mask_seed,
    seed_commitment,
    verify_keys,
    verify_survivors,
    x25519,
    x25519_public,
)
from fl._secagg_types import (
    NEXT_STAGE,
    AdvertiseKeys,
    ConsistencySignature,
    KeyRoster,
    MaskedInput,
    SecAggConfig,
    SecAggResult,
    ShareBundle,
    ShareKeys,
    Stage,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
)
from fl._shamir import SHARE_BYTES, combine_shares, decode_share

SecAggMessage = AdvertiseKeys | ShareKeys | MaskedInput | ConsistencySignature | UnmaskResponse

_SHARE_CIPHERTEXT_BYTES = NONCE_BYTES + 2 * SHARE_BYTES + TAG_BYTES
_EXPECTED: dict[Stage, type] = {
    Stage.ADVERTISE_KEYS: AdvertiseKeys,
    Stage.SHARE_KEYS: ShareKeys,
    Stage.MASKED_INPUT: MaskedInput,
    Stage.CONSISTENCY_CHECK: ConsistencySignature,
    Stage.UNMASK: UnmaskResponse,
}


class SecAggCoordinator:
    """Server of one SecAgg+ round (`config` is the round's public parameters)."""

    def __init__(self, config: SecAggConfig) -> None:
        self._config = config
        self._stage = Stage.ADVERTISE_KEYS
        self._expecting: frozenset[int] = frozenset(range(config.n))
        self._received: set[int] = set()
        self._keys: dict[int, AdvertiseKeys] = {}
        self._rosters: dict[int, tuple[int, ...]] = {}  # owner -> holders of its shares
        self._share_msgs: dict[int, ShareKeys] = {}
        self._total = np.zeros(config.vector_length, dtype=np.uint32)
        self._survivors: tuple[int, ...] = ()
        self._signatures: dict[int, bytes] = {}
        self._seed_shares: dict[int, list[tuple[int, int]]] = {}
        self._key_shares: dict[int, list[tuple[int, int]]] = {}
        self._handlers: dict[Stage, Callable[[SecAggMessage], None]] = {
            Stage.ADVERTISE_KEYS: self._on_keys,
            Stage.SHARE_KEYS: self._on_share_keys,
            Stage.MASKED_INPUT: self._on_masked,
            Stage.CONSISTENCY_CHECK: self._on_signature,
            Stage.UNMASK: self._on_unmask,
        }

    @property
    def stage(self) -> Stage:
        """The stage whose messages the coordinator is collecting."""
        return self._stage

    def pending(self) -> frozenset[int]:
        """Participants whose message for the current stage has not arrived yet."""
        return self._expecting - self._received

    def receive(self, message: SecAggMessage) -> None:
        """Accept one participant message of the current stage (validated first)."""
        handler = self._handlers.get(self._stage)
        expected = _EXPECTED.get(self._stage)
        sender = getattr(message, "sender", None)
        peer = sender if isinstance(sender, int) else None
        if handler is None or expected is None or not isinstance(message, expected):
            raise RemoteProtocolError(f"unexpected message at stage {self._stage.value}", peer)
        if message.round_id != self._config.round_id:
            raise RemoteProtocolError("message is for another round", peer)
        if peer not in self._expecting:
            raise RemoteProtocolError("sender is not in this stage", peer)
        if peer in self._received:
            raise RemoteProtocolError("duplicate message", peer)
        handler(message)
        self._received.add(peer)

    def _next(self, participants: frozenset[int]) -> None:
        self._stage = NEXT_STAGE[self._stage]
        self._expecting = participants
        self._received = set()

    def _require(self, stage: Stage) -> None:
        if self._stage is not stage:
            raise LocalProtocolError(f"coordinator is at {self._stage.value}, not {stage.value}")

    def _abort(self, reason: str) -> SecAggAborted:
        self._stage = Stage.ABORTED
        return SecAggAborted(reason)

    # -- stage 1: advertise keys ---------------------------------------------------------

    def _on_keys(self, message: SecAggMessage) -> None:
        assert isinstance(message, AdvertiseKeys)
        cfg = self._config
        if len(message.cipher_pk) != KEY_BYTES or len(message.mask_pk) != KEY_BYTES:
            raise RemoteProtocolError("public keys must be 32 bytes", message.sender)
        if not verify_keys(
            cfg.identities[message.sender],
            cfg.round_id,
            message.sender,
            message.cipher_pk,
            message.mask_pk,
            message.signature,
        ):
            raise RemoteProtocolError("bad key signature", message.sender)
        self._keys[message.sender] = message

    def close_advertise_keys(self) -> dict[int, KeyRoster]:
        """End stage 1: rosters for every participant with at least t live neighbours."""
        self._require(Stage.ADVERTISE_KEYS)
        cfg = self._config
        live = set(self._keys)
        # Someone with fewer than t live neighbours could not be recovered if it dropped;
        # removing it can starve its neighbours in turn, hence the loop to a fixpoint.
        changed = True
        while changed:
            starved = {i for i in live if len(live.intersection(cfg.neighbours(i))) < cfg.threshold}
            live -= starved
            changed = bool(starved)
        if len(live) < cfg.threshold:
            raise self._abort(f"only {len(live)} participants can take part")
        rosters = {}
        for i in sorted(live):
            holders = tuple(j for j in cfg.neighbours(i) if j in live)
            self._rosters[i] = holders
            rosters[i] = KeyRoster(cfg.round_id, i, tuple(self._keys[j] for j in holders))
        self._next(frozenset(live))
        return rosters

    # -- stage 2: share keys -------------------------------------------------------------

    def _on_share_keys(self, message: SecAggMessage) -> None:
        assert isinstance(message, ShareKeys)
        sender = message.sender
        if len(message.seed_commitment) != KEY_BYTES:
            raise RemoteProtocolError("seed commitment must be 32 bytes", sender)
        recipients = tuple(share.recipient for share in message.shares)
        if recipients != self._rosters[sender]:
            raise RemoteProtocolError("shares are not addressed to exactly the roster", sender)
        for share in message.shares:
            if share.sender != sender or len(share.ciphertext) != _SHARE_CIPHERTEXT_BYTES:
                raise RemoteProtocolError("malformed encrypted share", sender)
        self._share_msgs[sender] = message

    def close_share_keys(self) -> dict[int, ShareBundle]:
        """End stage 2: each participant that shared gets the shares addressed to it."""
        self._require(Stage.SHARE_KEYS)
        cfg = self._config
        # Someone who would receive fewer than t shares aborts (it could not be protected
        # if it dropped later), so leave it out now; that starves others in turn.
        shared = set(self._share_msgs)
        changed = True
        while changed:
            starved = {
                i for i in shared if sum(1 for j in self._rosters[i] if j in shared) < cfg.threshold
            }
            shared -= starved
            changed = bool(starved)
        for i in set(self._share_msgs) - shared:
            del self._share_msgs[i]
        if len(shared) < cfg.threshold:
            raise self._abort(f"only {len(shared)} participants shared keys")
        inbox: dict[int, list[object]] = {i: [] for i in shared}
        for sender in sorted(shared):
            for share in self._share_msgs[sender].shares:
                if share.recipient in inbox:
                    inbox[share.recipient].append(share)
        bundles = {
            i: ShareBundle(cfg.round_id, i, tuple(inbox[i]))  # type: ignore[arg-type]
            for i in sorted(shared)
        }
        self._next(frozenset(shared))
        return bundles

    # -- stage 3: masked input -----------------------------------------------------------

    def _on_masked(self, message: SecAggMessage) -> None:
        assert isinstance(message, MaskedInput)
        cfg = self._config
        vector = message.masked
        if not isinstance(vector, np.ndarray) or vector.dtype != np.uint32:
            raise RemoteProtocolError("masked input must be a uint32 array", message.sender)
        if vector.shape != (cfg.vector_length,):
            raise RemoteProtocolError("masked input has the wrong length", message.sender)
        if int(vector.max()) > cfg.modulus_mask:
            raise RemoteProtocolError("masked input exceeds the modulus", message.sender)
        # Summing as they arrive keeps memory at one vector however many participants.
        self._total += vector

    def _check_recoverable(self, live: frozenset[int], who: str) -> None:
        cfg = self._config
        for owner in sorted(self._share_msgs):
            if sum(1 for h in self._rosters[owner] if h in live) < cfg.threshold:
                raise self._abort(f"too few {who} hold shares of participant {owner}")

    def close_masked_input(self) -> SurvivorList:
        """End stage 3: the survivors U3 (whose inputs are in the sum), to be signed."""
        self._require(Stage.MASKED_INPUT)
        cfg = self._config
        survivors = frozenset(self._received)
        if len(survivors) < cfg.threshold:
            raise self._abort(f"only {len(survivors)} masked inputs arrived")
        self._check_recoverable(survivors, "survivors")
        self._survivors = tuple(sorted(survivors))
        self._next(survivors)
        return SurvivorList(cfg.round_id, self._survivors)

    # -- stage 4: consistency check ------------------------------------------------------

    def _on_signature(self, message: SecAggMessage) -> None:
        assert isinstance(message, ConsistencySignature)
        cfg = self._config
        if len(message.signature) != SIGNATURE_BYTES or not verify_survivors(
            cfg.identities[message.sender], cfg.round_id, self._survivors, message.signature
        ):
            raise RemoteProtocolError("bad survivor-set signature", message.sender)
        self._signatures[message.sender] = message.signature

    def close_consistency_check(self) -> dict[int, UnmaskRequest]:
        """End stage 4: unmask requests carrying the signatures each recipient checks."""
        self._require(Stage.CONSISTENCY_CHECK)
        cfg = self._config
        signers = frozenset(self._signatures)
        self._check_recoverable(signers, "signers")
        requests = {}
        for i in sorted(signers):
            # i checks signatures from the neighbours of every neighbour it holds shares of.
            wanted = set(cfg.neighbours(i))
            for j in cfg.neighbours(i):
                wanted.update(cfg.neighbours(j))
            sigs = tuple((s, self._signatures[s]) for s in sorted(wanted & signers))
            requests[i] = UnmaskRequest(cfg.round_id, i, self._survivors, sigs)
        self._next(signers)
        return requests

    # -- stage 5: unmask -----------------------------------------------------------------

    def _on_unmask(self, message: SecAggMessage) -> None:
        assert isinstance(message, UnmaskResponse)
        sender = message.sender
        survivors = set(self._survivors)
        owners_held = {o for o in self._share_msgs if sender in self._rosters[o]}
        parsed: list[tuple[dict[int, list[tuple[int, int]]], int, int]] = []
        seen: set[int] = set()
        for pairs, store, want_survivor in (
            (message.seed_shares, self._seed_shares, True),
            (message.key_shares, self._key_shares, False),
        ):
            for owner, data in pairs:
                if owner in seen or owner not in owners_held:
                    raise RemoteProtocolError("share for an owner it does not hold", sender)
                if (owner in survivors) != want_survivor:
                    raise RemoteProtocolError("share of the wrong kind for its owner", sender)
                try:
                    value = decode_share(data)
                except FlInputError as exc:
                    raise RemoteProtocolError(str(exc), sender) from exc
                seen.add(owner)
                parsed.append((store, owner, value))
        for store, owner, value in parsed:
            store.setdefault(owner, []).append((sender + 1, value))

    def close_unmask(self) -> SecAggResult:
        """End stage 5: recombine secrets, strip the masks, return the sum over U3."""
        self._require(Stage.UNMASK)
        cfg = self._config
        total = self._total.copy()
        survivors = set(self._survivors)
        for owner in self._survivors:
            seed = self._recover(owner, self._seed_shares.get(owner, []), is_seed=True)
            total -= expand_mask(seed, cfg.vector_length)
        dropped_after_sharing = sorted(set(self._share_msgs) - survivors)
        for owner in dropped_after_sharing:
            secret = self._recover(owner, self._key_shares.get(owner, []), is_seed=False)
            for m in self._rosters[owner]:
                if m not in survivors:
                    continue
                shared = x25519(secret, self._keys[m].mask_pk, m)
                pair = expand_mask(mask_seed(shared, cfg.round_id, owner, m), cfg.vector_length)
                # Survivor m added the pair mask if m < owner and subtracted it otherwise.
                if m < owner:
                    total -= pair
                else:
                    total += pair
        total &= np.uint32(cfg.modulus_mask)
        self._stage = Stage.DONE
        dropped = tuple(i for i in range(cfg.n) if i not in survivors)
        return SecAggResult(total, self._survivors, dropped)

    def _recover(self, owner: int, shares: list[tuple[int, int]], *, is_seed: bool) -> bytes:
        """Recombine a self-mask seed (checked against its commitment) or a masking key
        (checked against the advertised public key)."""
        cfg = self._config
        t = cfg.threshold
        if len(shares) < t:
            raise self._abort(f"only {len(shares)} of {t} shares for participant {owner}")
        # Sliding windows of t shares: a single bad share is outvoted when extras arrived.
        for start in range(len(shares) - t + 1):
            try:
                secret = combine_shares(shares[start : start + t], t)
            except FlInputError:
                continue
            if is_seed:
                good = seed_commitment(cfg.round_id, owner, secret) == (
                    self._share_msgs[owner].seed_commitment
                )
            else:
                good = x25519_public(secret) == self._keys[owner].mask_pk
            if good:
                return secret
        raise self._abort(f"shares of participant {owner} do not recombine consistently")
