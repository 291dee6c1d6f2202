"""Cryptographic primitives of secure aggregation: KDF, mask expansion, share encryption,
and the Ed25519 signatures of the consistency check.

Masks are AES-256-CTR keystreams read as uint32 words (AES-NI makes 1M words ~1 ms here,
3x ChaCha20); numpy's PRNG is never used for anything secret. Keys are X25519 (libsodium
via PyNaCl). Shares travel under ChaCha20-Poly1305 keyed from a separate X25519 agreement,
with the round and both endpoints as associated data, so the coordinator can relay them
but neither read nor redirect them.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Iterable

import blake3
import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base
from nacl.exceptions import BadSignatureError, CryptoError
from nacl.signing import SigningKey, VerifyKey
from numpy.typing import NDArray

from fl._errors import FlInputError, RemoteProtocolError

KEY_BYTES = 32
SIGNATURE_BYTES = 64
NONCE_BYTES = 12
TAG_BYTES = 16

_CTX_PREFIX = "p2pgo secagg v1 "


def kdf(context: str, *parts: bytes) -> bytes:
    """32-byte key derived with BLAKE3 from length-prefixed `parts` under `context`."""
    hasher = blake3.blake3(derive_key_context=_CTX_PREFIX + context)
    for part in parts:
        hasher.update(struct.pack(">I", len(part)))
        hasher.update(part)
    return hasher.digest(KEY_BYTES)


def expand_mask(seed: bytes, length: int) -> NDArray[np.uint32]:
    """`length` pseudo-random uint32 words from a 32-byte seed (AES-256-CTR keystream)."""
    if len(seed) != KEY_BYTES:
        raise FlInputError("mask seed must be 32 bytes")
    if length < 0:
        raise FlInputError("mask length must be non-negative")
    encryptor = Cipher(algorithms.AES(seed), modes.CTR(bytes(16))).encryptor()
    stream = encryptor.update(bytes(4 * length))
    return np.frombuffer(stream, dtype="<u4").astype(np.uint32, copy=False)


def x25519_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 (secret, public) key pair from the OS CSPRNG."""
    secret = os.urandom(KEY_BYTES)
    return secret, crypto_scalarmult_base(secret)


def x25519_public(secret: bytes) -> bytes:
    """The X25519 public key of `secret`."""
    if len(secret) != KEY_BYTES:
        raise FlInputError("X25519 secret must be 32 bytes")
    return crypto_scalarmult_base(secret)


def x25519(secret: bytes, public: bytes, peer: int | None = None) -> bytes:
    """X25519 agreement; a low-order or malformed public key is the remote's fault."""
    if len(public) != KEY_BYTES:
        raise RemoteProtocolError("X25519 public key must be 32 bytes", peer)
    try:
        return crypto_scalarmult(secret, public)
    except (CryptoError, RuntimeError, ValueError) as exc:
        raise RemoteProtocolError(f"unusable X25519 public key ({exc})", peer) from exc


def _share_aad(round_id: bytes, sender: int, recipient: int) -> bytes:
    return kdf("share aad", round_id) + struct.pack(">II", sender, recipient)


def encrypt_share(
    shared: bytes, round_id: bytes, sender: int, recipient: int, plaintext: bytes
) -> bytes:
    """nonce || ChaCha20-Poly1305(plaintext), bound to (round, sender, recipient)."""
    key = kdf("share key", shared, round_id)
    nonce = os.urandom(NONCE_BYTES)
    aad = _share_aad(round_id, sender, recipient)
    return nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, aad)


def decrypt_share(
    shared: bytes, round_id: bytes, sender: int, recipient: int, ciphertext: bytes
) -> bytes:
    """Inverse of `encrypt_share`; raises `RemoteProtocolError` (peer = sender) on failure."""
    if len(ciphertext) < NONCE_BYTES + TAG_BYTES:
        raise RemoteProtocolError("share ciphertext too short", sender)
    key = kdf("share key", shared, round_id)
    aad = _share_aad(round_id, sender, recipient)
    try:
        return ChaCha20Poly1305(key).decrypt(
            ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], aad
        )
    except InvalidTag as exc:
        raise RemoteProtocolError("share ciphertext fails authentication", sender) from exc


def mask_seed(shared: bytes, round_id: bytes, a: int, b: int) -> bytes:
    """Seed of the pairwise mask between participants `a` and `b` (order-independent)."""
    low, high = sorted((a, b))
    return kdf("pair mask", shared, round_id, struct.pack(">II", low, high))


def seed_commitment(round_id: bytes, owner: int, seed: bytes) -> bytes:
    """Binding commitment to a self-mask seed, so a wrong reconstruction is detected."""
    return kdf("seed commitment", round_id, struct.pack(">I", owner), seed)


def _keys_message(round_id: bytes, sender: int, cipher_pk: bytes, mask_pk: bytes) -> bytes:
    return (
        b"p2pgo-secagg-keys\x00"
        + kdf("keys", round_id, struct.pack(">I", sender))
        + (cipher_pk + mask_pk)
    )


def _survivors_message(round_id: bytes, survivors: Iterable[int]) -> bytes:
    return _survivors_digest(round_id, tuple(survivors))


@functools.lru_cache(maxsize=4)
def _survivors_digest(round_id: bytes, survivors: tuple[int, ...]) -> bytes:
    # Cached: a participant checks dozens of signatures over the same (round, U3),
    # and re-hashing a thousand-entry set for each one cost nearly as much as verifying.
    ordered = sorted(set(survivors))
    packed = struct.pack(f">{len(ordered)}I", *ordered)
    return b"p2pgo-secagg-survivors\x00" + kdf("survivors", round_id, packed)


def sign_keys(
    signing_key: SigningKey, round_id: bytes, sender: int, cipher_pk: bytes, mask_pk: bytes
) -> bytes:
    """Ed25519 signature binding a participant's two round keys to it and the round."""
    return signing_key.sign(_keys_message(round_id, sender, cipher_pk, mask_pk)).signature


def verify_keys(
    verify_key: bytes,
    round_id: bytes,
    sender: int,
    cipher_pk: bytes,
    mask_pk: bytes,
    signature: bytes,
) -> bool:
    """True if `signature` is `sender`'s signature over its advertised keys."""
    return _verify(verify_key, _keys_message(round_id, sender, cipher_pk, mask_pk), signature)


def sign_survivors(signing_key: SigningKey, round_id: bytes, survivors: Iterable[int]) -> bytes:
    """Ed25519 signature over (round, set of survivors) for the consistency check."""
    return signing_key.sign(_survivors_message(round_id, survivors)).signature


def verify_survivors(
    verify_key: bytes, round_id: bytes, survivors: Iterable[int], signature: bytes
) -> bool:
    """True if `signature` signs exactly this survivor set for this round."""
    return _verify(verify_key, _survivors_message(round_id, survivors), signature)


def _verify(verify_key: bytes, message: bytes, signature: bytes) -> bool:
    if len(signature) != SIGNATURE_BYTES or len(verify_key) != KEY_BYTES:
        return False
    try:
        VerifyKey(verify_key).verify(message, signature)
    except (BadSignatureError, CryptoError, ValueError):
        return False
    return True
