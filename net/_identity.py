"""The node's Ed25519 identity, persisted in the data directory.

One 32-byte seed is both the libp2p host key (so the peer id is stable across
restarts) and the PyNaCl signing key for our envelopes and game records. The file
holds the raw seed, mode 0600; it is created atomically (written to a private
temporary file, then hard-linked into place, which fails rather than overwrites if
another process won the race) and refused on load if others can read it or its
length is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from nacl.signing import SigningKey

from engine._keyfile import KEY_FILE, SEED_BYTES, KeyFileError, load_or_create_seed, read_seed
from net._errors import IdentityError

__all__ = ["KEY_FILE", "SEED_BYTES", "Identity"]


@dataclass(frozen=True, slots=True)
class Identity:
    """An Ed25519 key usable by libp2p and by PyNaCl."""

    signing_key: SigningKey

    @classmethod
    def generate(cls) -> Identity:
        return cls(SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        if len(seed) != SEED_BYTES:
            raise IdentityError(f"an identity seed is {SEED_BYTES} bytes, got {len(seed)}")
        return cls(SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self.signing_key)

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def libp2p_key_pair(self) -> KeyPair:
        """The same key as a py-libp2p `KeyPair` (for `new_host(key_pair=...)`)."""
        return create_new_key_pair(self.seed)

    @property
    def peer_id(self) -> str:
        return ID.from_pubkey(self.libp2p_key_pair().public_key).to_base58()

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Load a key file; `IdentityError` if it is readable by others or malformed."""
        try:
            return cls.from_seed(read_seed(path))
        except KeyFileError as err:
            raise IdentityError(str(err)) from None

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Identity:
        """The identity stored in `data_dir`, created on first use."""
        try:
            seed, _ = load_or_create_seed(data_dir)
        except KeyFileError as err:
            raise IdentityError(str(err)) from None
        return cls.from_seed(seed)
