"""Which weight file the AI plays with, and installing the federated model as it.

The AI's model is one file in ``DATA_DIR/models``, the directory the MCP server
(``p2pgo-mcp --data-dir DATA_DIR``) serves models from, named ``<version>.cbor`` where
the version is the BLAKE3 hex of its bytes (``engine.nn.weights_id``, the id the rounds
and the server use too). :class:`ModelChoice` holds the one in use and keeps it in
``DATA_DIR/models/active`` (the version, one line), so the next start of the app plays
with it again. Without that file the AI uses what the server calls "latest": the newest
``*.cbor`` there, else the shipped ``engine/models/default-9x9.cbor``.

:meth:`ModelChoice.install` is how a model the player's federated participant adopted
becomes the AI's: its bytes come from the network, so they go through the validating
loader (``engine.nn.load_weights``) first, and a file that does not load raises
:class:`ModelInstallError` and leaves the model in use as it was. The backends in
``p2pgo_tui._model_ai`` read :attr:`ModelChoice.current` on every request, so the next
move and hint come from the new model: the MCP server is asked for that version by id
(it rescans its directory on every request) and the in-process fallback reloads.

Thread-safe; :meth:`install` imports torch (the validation), so call it in a worker
thread, never on the UI thread. Nothing here imports torch at start-up.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import blake3

from engine.gtp import DEFAULT_MODEL

__all__ = ["ACTIVE_FILE", "ModelChoice", "ModelInstallError", "ModelOrigin", "ModelRef"]

log = logging.getLogger(__name__)

ACTIVE_FILE = "active"
# engine.nn.MAX_WEIGHTS_BYTES, repeated so that reading a file's size needs no torch.
_MAX_BYTES = 64 * 1024 * 1024


class ModelInstallError(Exception):
    """A weight file that cannot become the AI's model (unreadable, too big, invalid)."""


class ModelOrigin(enum.Enum):
    SHIPPED = "shipped"  # engine/models/default-9x9.cbor
    INSTALLED = "installed"  # a file in DATA_DIR/models (the federated model)


@dataclass(frozen=True, slots=True)
class ModelRef:
    """One weight file and its version (the BLAKE3 hex of its bytes)."""

    version: str
    path: Path
    origin: ModelOrigin

    @property
    def short(self) -> str:
        return self.version[:10]

    def describe(self) -> str:
        """``model 1a2b3c4d5e (federated)`` for the side panel."""
        kind = "shipped" if self.origin is ModelOrigin.SHIPPED else "federated"
        return f"model {self.short} ({kind})"


def _version_of(path: Path) -> str | None:
    try:
        if path.stat().st_size > _MAX_BYTES:
            return None
        return blake3.blake3(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ModelChoice:
    """The AI's model (see the module docstring)."""

    def __init__(self, data_dir: Path, default_model: Path | None = DEFAULT_MODEL) -> None:
        self.models_dir = data_dir / "models"
        self.default_model = default_model
        self._lock = threading.Lock()
        self._shipped = _version_of(default_model) if default_model is not None else None
        self._current = self._find()

    @property
    def current(self) -> ModelRef | None:
        """The model in use (None: no model at all, the AI is the heuristic player)."""
        return self._current

    @property
    def version(self) -> str:
        current = self._current
        return current.version if current is not None else ""

    def _find(self) -> ModelRef | None:
        """The persisted choice if its file is intact, else the server's "latest"."""
        try:
            wanted = (self.models_dir / ACTIVE_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            wanted = ""
        if wanted:
            path = self.models_dir / f"{wanted}.cbor"
            if _version_of(path) == wanted:
                return ModelRef(wanted, path, self._origin(wanted))
            log.warning("the chosen model %s is missing or changed: using the newest", wanted[:12])
        try:
            files = [p for p in self.models_dir.glob("*.cbor") if p.is_file()]
        except OSError:
            files = []
        for path in sorted(files, key=lambda p: -p.stat().st_mtime_ns):
            version = _version_of(path)
            if version is not None:
                return ModelRef(version, path, self._origin(version))
        default = self.default_model
        if default is not None and self._shipped is not None:
            return ModelRef(self._shipped, default, ModelOrigin.SHIPPED)
        return None

    def _origin(self, version: str) -> ModelOrigin:
        # The first federated model is the shipped one: say so rather than "federated".
        return ModelOrigin.SHIPPED if version == self._shipped else ModelOrigin.INSTALLED

    def install_file(self, source: Path) -> ModelRef:
        """:meth:`install` the bytes of ``source`` (e.g. the participant's model.bin)."""
        try:
            if source.stat().st_size > _MAX_BYTES:
                raise ModelInstallError(f"{source.name} is larger than {_MAX_BYTES} bytes")
            data = source.read_bytes()
        except OSError as exc:
            raise ModelInstallError(f"cannot read {source}: {exc.strerror or exc}") from None
        return self.install(data)

    def install(self, data: bytes) -> ModelRef:
        """Validate ``data`` and make it the AI's model, now and on the next start.

        Raises :class:`ModelInstallError` (nothing changes) for weights that do not
        load. Imports torch: call it in a worker thread.
        """
        version = blake3.blake3(data).hexdigest()
        current = self._current
        if current is not None and current.version == version:
            return current
        if len(data) > _MAX_BYTES:
            raise ModelInstallError(f"the weight file is larger than {_MAX_BYTES} bytes")
        from engine.nn import ModelFormatError, load_weights

        try:
            load_weights(data)  # untrusted bytes: the validating loader decides
        except ModelFormatError as exc:
            raise ModelInstallError(f"not a valid weight file: {exc}") from None
        path = self.models_dir / f"{version}.cbor"
        with self._lock:
            try:
                self.models_dir.mkdir(parents=True, exist_ok=True)
                if _version_of(path) != version:
                    _atomic_write(path, data)
                _atomic_write(self.models_dir / ACTIVE_FILE, f"{version}\n".encode("ascii"))
            except OSError as exc:
                raise ModelInstallError(f"cannot save the model: {exc.strerror or exc}") from None
            self._current = ref = ModelRef(version, path, self._origin(version))
        log.info("the AI now uses model %s (%s)", version[:12], path)
        return ref
