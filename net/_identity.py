"""The node's Ed25519 identity, persisted in the data directory.

One 32-byte seed is both the libp2p host key (so the peer id is stable across
restarts) and the PyNaCl signing key for our envelopes and game records. The file
holds the raw seed, mode 0600; it is created atomically (written to a private
temporary file, then hard-linked into place, which fails rather than overwrites if
another process won the race) and refused on load if others can read it or its
length is wrong.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID
from nacl.signing import SigningKey

from net._errors import IdentityError

KEY_FILE = "identity.key"
SEED_BYTES = 32


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
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as err:
            raise IdentityError(f"cannot open identity key {path}: {err.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            if mode & 0o077:
                raise IdentityError(
                    f"identity key {path} has mode {mode:04o}; it must be private "
                    f"(run: chmod 600 {path})"
                )
            seed = f.read(SEED_BYTES + 1)
        if len(seed) != SEED_BYTES:
            raise IdentityError(
                f"identity key {path} holds {len(seed)} bytes, expected {SEED_BYTES}; "
                "it is damaged or not ours (move it away to create a new identity)"
            )
        return cls.from_seed(seed)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Identity:
        """The identity stored in `data_dir`, created on first use."""
        path = data_dir / KEY_FILE
        if path.exists() or path.is_symlink():
            return cls.load(path)
        try:
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise IdentityError(f"cannot create data directory {data_dir}: {err}") from None
        identity = cls.generate()
        tmp = data_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(identity.seed)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return cls.load(path)  # another process created it first: use theirs
        except OSError as err:
            raise IdentityError(f"cannot write identity key {path}: {err}") from None
        finally:
            tmp.unlink(missing_ok=True)
        return identity
