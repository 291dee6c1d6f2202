"""The participant side of SecAgg+: one object per participant per round, sans-IO.

Each method consumes the coordinator's reply to the previous stage and returns the
participant's next message; calling out of order raises `LocalProtocolError`. Anything
wrong in what the coordinator (or a neighbour, through it) sent raises
`RemoteProtocolError` and aborts this participant's round — a participant never guesses.
Secrets (X25519 keys, self-mask seed, held shares) stay inside the object.
"""

from __future__ import annotations

import os

import numpy as np
from nacl.signing import SigningKey
from numpy.typing import NDArray

from fl._errors import (
    FlInputError,
    LocalProtocolError,
    RefusedError,
    RemoteProtocolError,
    SecAggAborted,
)
from fl._secagg_crypto import (
    KEY_BYTES,
    decrypt_share,
    encrypt_share,
    expand_mask,
    mask_seed,
    seed_commitment,
    sign_keys,
    sign_survivors,
    verify_keys,
    verify_survivors,
    x25519,
    x25519_keypair,
)
from fl._secagg_types import (
    NEXT_STAGE,
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShare,
    KeyRoster,
    MaskedInput,
    SecAggConfig,
    ShareBundle,
    ShareKeys,
    Stage,
    SurvivorList,
    UnmaskRequest,
    UnmaskResponse,
)
from fl._shamir import SHARE_BYTES, decode_share, encode_share, split_secret


class SecAggParticipant:
    """Participant `index` of the round described by `config`.

    `signing_key` is the participant's long-term Ed25519 key; its verify key must be
    `config.identities[index]`. It signs the advertised round keys and the survivor set.
    """

    def __init__(self, config: SecAggConfig, index: int, signing_key: SigningKey) -> None:
        if not 0 <= index < config.n:
            raise FlInputError(f"participant index {index} not in 0..{config.n - 1}")
        if bytes(signing_key.verify_key) != config.identities[index]:
            raise FlInputError("signing key does not match this participant's identity")
        self._config = config
        self._index = index
        self._signing_key = signing_key
        self._stage = Stage.ADVERTISE_KEYS
        self._cipher_sk, self._cipher_pk = x25519_keypair()
        self._mask_sk, self._mask_pk = x25519_keypair()
        self._self_seed = os.urandom(KEY_BYTES)
        self._roster: dict[int, AdvertiseKeys] = {}
        self._partners: tuple[int, ...] = ()  # neighbours in U2: whom we mask with
        self._cipher_shared: dict[int, bytes] = {}  # X25519 with each roster neighbour
        self._held: dict[int, tuple[int, int]] = {}  # owner -> (key share, seed share)
        self._signed: tuple[int, ...] | None = None

    @property
    def stage(self) -> Stage:
        """The stage whose input this participant expects next."""
        return self._stage

    @property
    def index(self) -> int:
        """This participant's index in the round."""
        return self._index

    def _enter(self, stage: Stage) -> None:
        if self._stage is not stage:
            raise LocalProtocolError(f"participant is at {self._stage.value}, not {stage.value}")

    def _advance(self) -> None:
        self._stage = NEXT_STAGE[self._stage]

    def _fail(self, error: RemoteProtocolError) -> RemoteProtocolError:
        self._stage = Stage.ABORTED
        return error

    def _check_round(self, round_id: bytes) -> None:
        if round_id != self._config.round_id:
            raise self._fail(RemoteProtocolError("message is for another round"))

    def advertise_keys(self) -> AdvertiseKeys:
        """Stage 1: the participant's signed round public keys."""
        self._enter(Stage.ADVERTISE_KEYS)
        cfg = self._config
        signature = sign_keys(
            self._signing_key, cfg.round_id, self._index, self._cipher_pk, self._mask_pk
        )
        self._advance()
        return AdvertiseKeys(cfg.round_id, self._index, self._cipher_pk, self._mask_pk, signature)

    def share_keys(self, roster: KeyRoster) -> ShareKeys:
        """Stage 2: Shamir-share the masking key and self-mask seed among the roster."""
        self._enter(Stage.SHARE_KEYS)
        cfg = self._config
        self._check_round(roster.round_id)
        if roster.recipient != self._index:
            raise self._fail(RemoteProtocolError("roster is addressed to someone else"))
        neighbours = set(cfg.neighbours(self._index))
        for keys in roster.keys:
            if keys.sender not in neighbours or keys.sender in self._roster:
                raise self._fail(RemoteProtocolError("roster holds a non-neighbour or a repeat"))
            if keys.round_id != cfg.round_id or not verify_keys(
                cfg.identities[keys.sender],
                cfg.round_id,
                keys.sender,
                keys.cipher_pk,
                keys.mask_pk,
                keys.signature,
            ):
                raise self._fail(RemoteProtocolError("bad key signature", keys.sender))
            self._roster[keys.sender] = keys
        if len(self._roster) < cfg.threshold:
            self._stage = Stage.ABORTED
            raise SecAggAborted(
                f"only {len(self._roster)} live neighbours, threshold is {cfg.threshold}"
            )
        holders = sorted(self._roster)
        xs = [h + 1 for h in holders]
        key_shares = split_secret(self._mask_sk, cfg.threshold, xs)
        seed_shares = split_secret(self._self_seed, cfg.threshold, xs)
        encrypted = []
        for holder, key_share, seed_share in zip(holders, key_shares, seed_shares, strict=True):
            shared = x25519(self._cipher_sk, self._roster[holder].cipher_pk, holder)
            self._cipher_shared[holder] = shared
            plaintext = encode_share(key_share) + encode_share(seed_share)
            ciphertext = encrypt_share(shared, cfg.round_id, self._index, holder, plaintext)
            encrypted.append(EncryptedShare(self._index, holder, ciphertext))
        self._advance()
        commitment = seed_commitment(cfg.round_id, self._index, self._self_seed)
        return ShareKeys(cfg.round_id, self._index, commitment, tuple(encrypted))

    def masked_input(self, bundle: ShareBundle, values: NDArray[np.uint32]) -> MaskedInput:
        """Stage 3: store the shares we hold and send `values` (each < 2^k) masked."""
        self._enter(Stage.MASKED_INPUT)
        cfg = self._config
        vector = np.asarray(values)
        if vector.shape != (cfg.vector_length,) or vector.dtype != np.uint32:
            raise FlInputError(f"values must be uint32 of shape ({cfg.vector_length},)")
        if vector.size and int(vector.max()) > cfg.modulus_mask:
            raise FlInputError(f"values must be below 2^{cfg.modulus_bits}")
        self._check_round(bundle.round_id)
        if bundle.recipient != self._index:
            raise self._fail(RemoteProtocolError("share bundle is addressed to someone else"))
        held: dict[int, tuple[int, int]] = {}
        for share in bundle.shares:
            owner = share.sender
            if share.recipient != self._index or owner not in self._roster or owner in held:
                raise self._fail(RemoteProtocolError("share from a non-neighbour or a repeat"))
            try:
                plain = decrypt_share(
                    self._cipher_shared[owner], cfg.round_id, owner, self._index, share.ciphertext
                )
                if len(plain) != 2 * SHARE_BYTES:
                    raise RemoteProtocolError("share plaintext has the wrong length", owner)
                held[owner] = (decode_share(plain[:SHARE_BYTES]), decode_share(plain[SHARE_BYTES:]))
            except FlInputError as exc:
                raise self._fail(RemoteProtocolError(str(exc), owner)) from exc
            except RemoteProtocolError as exc:
                raise self._fail(exc) from exc
        if len(held) < cfg.threshold:
            self._stage = Stage.ABORTED
            raise SecAggAborted(f"only {len(held)} neighbours shared keys")
        self._held = held
        self._partners = tuple(sorted(held))
        masked = vector.copy()
        masked += expand_mask(self._self_seed, cfg.vector_length)
        for j in self._partners:
            shared = x25519(self._mask_sk, self._roster[j].mask_pk, j)
            pair = expand_mask(mask_seed(shared, cfg.round_id, self._index, j), cfg.vector_length)
            # The lower index adds and the higher subtracts, so each pair cancels in the sum.
            if self._index < j:
                masked += pair
            else:
                masked -= pair
        masked &= np.uint32(cfg.modulus_mask)
        self._advance()
        return MaskedInput(cfg.round_id, self._index, masked)

    def consistency_check(self, survivors: SurvivorList) -> ConsistencySignature:
        """Stage 4: sign (round, U3). Signs at most one set per round."""
        self._enter(Stage.CONSISTENCY_CHECK)
        cfg = self._config
        self._check_round(survivors.round_id)
        group = survivors.survivors
        if list(group) != sorted(set(group)) or any(not 0 <= i < cfg.n for i in group):
            raise self._fail(RemoteProtocolError("survivor list is not sorted distinct indices"))
        if self._index not in group:
            raise self._fail(RemoteProtocolError("survivor list omits this participant"))
        if len(group) < cfg.threshold:
            raise self._fail(RemoteProtocolError(f"only {len(group)} survivors"))
        neighbours = set(cfg.neighbours(self._index))
        if not (set(group) & neighbours) <= set(self._partners):
            raise self._fail(RemoteProtocolError("a listed survivor never shared keys with us"))
        self._signed = group
        self._advance()
        signature = sign_survivors(self._signing_key, cfg.round_id, group)
        return ConsistencySignature(cfg.round_id, self._index, signature)

    def unmask(self, request: UnmaskRequest) -> UnmaskResponse:
        """Stage 5: reveal seed shares of surviving and key shares of dropped neighbours.

        Idempotent for the set we signed (a retransmitted request gets the same answer).
        Raises `RefusedError` for any other set — answering it would hand the coordinator
        both kinds of share for some neighbour — or if, for a neighbour we would reveal
        about, fewer than `threshold` of that neighbour's neighbours signed the same set.
        """
        if self._stage is Stage.DONE:
            self._stage = Stage.UNMASK  # retransmission; the checks below run again
        self._enter(Stage.UNMASK)
        cfg = self._config
        self._check_round(request.round_id)
        if request.recipient != self._index:
            raise self._fail(RemoteProtocolError("unmask request is addressed to someone else"))
        if request.survivors != self._signed:
            raise self._fail(
                RefusedError(
                    "unmask request names a survivor set other than the one signed; "
                    "answering could reveal both the self-mask and the key share of a peer"
                )
            )
        survivors = set(request.survivors)
        signatures: dict[int, bytes] = {}
        for signer, signature in request.signatures:
            if signer in signatures or signer not in survivors:
                raise self._fail(RemoteProtocolError("signature list has repeats or outsiders"))
            signatures[signer] = signature
        valid: dict[int, bool] = {}

        def signed_by(signer: int) -> bool:
            if signer not in valid:
                sig = signatures.get(signer)
                valid[signer] = sig is not None and verify_survivors(
                    cfg.identities[signer], cfg.round_id, request.survivors, sig
                )
            return valid[signer]

        seed_out: list[tuple[int, bytes]] = []
        key_out: list[tuple[int, bytes]] = []
        for owner in self._partners:
            count = 0
            for peer in cfg.neighbours(owner):
                if count >= cfg.threshold:
                    break
                count += signed_by(peer)
            if count < cfg.threshold:
                raise self._fail(
                    RefusedError(f"fewer than {cfg.threshold} of peer {owner}'s neighbours signed")
                )
            key_share, seed_share = self._held[owner]
            if owner in survivors:
                seed_out.append((owner, encode_share(seed_share)))
            else:
                key_out.append((owner, encode_share(key_share)))
        self._stage = Stage.DONE
        return UnmaskResponse(cfg.round_id, self._index, tuple(seed_out), tuple(key_out))
