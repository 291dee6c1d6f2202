"""The model versions the MCP server knows, and an LRU cache of loaded networks.

A model version is the BLAKE3 hex digest of its weight file's bytes
(:func:`engine.nn.weights_id`), the same id the federated rounds use. The registry finds
versions in, from most to least preferred as ``"latest"``:

1. models added while the server runs (:meth:`ModelRegistry.add`), newest first;
2. ``*.cbor`` weight files in the model directory (``DATA_DIR/models``), newest
   modification time first (a peer that adopts a round's model writes it there);
3. the shipped default model (``engine/models/default-9x9.cbor``);
4. only when ``allow_fresh`` is set (``p2pgo-mcp --fresh-model``) and nothing above
   exists: a freshly initialised network from a fixed seed, so runs are reproducible.
   Without the flag a server with no model says "no model available"; it never makes
   one up.

Networks are loaded on demand and kept in an LRU cache of ``capacity`` entries; every
request counts as a hit or a miss (:class:`CacheStats`), and :meth:`ModelRegistry.warm_up`
(which the server runs in the background at start) preloads ``"latest"`` without
counting, so the first move is not slow. Inline weights sent with a request are cached
by their version too but are never listed.

torch is imported only when a network is first loaded, so the server answers
``initialize`` and ``tools/list`` before torch has finished loading. The registry is
thread-safe: the server runs tools in worker threads.
"""

from __future__ import annotations

import enum
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

if TYPE_CHECKING:
    from engine.nn import ModelConfig, PolicyValueNet, Predictor

__all__ = [
    "LATEST",
    "CacheStats",
    "LoadedModel",
    "ModelError",
    "ModelInfo",
    "ModelRegistry",
    "ModelSource",
    "is_version",
]

log = logging.getLogger(__name__)

LATEST = "latest"
_VERSION = re.compile(r"[0-9a-f]{64}")
# The weight format's own limit (engine.nn.MAX_WEIGHTS_BYTES), repeated here so that
# scanning a directory does not need torch.
_MAX_FILE_BYTES = 64 * 1024 * 1024


def is_version(text: str) -> bool:
    """Whether ``text`` has the form of a model version (64 lowercase hex digits)."""
    return bool(_VERSION.fullmatch(text))


class ModelError(ValueError):
    """No such model version, no model at all, or a weight file that does not load."""


class ModelSource(enum.StrEnum):
    """Where a version came from."""

    ADDED = "added"
    FILE = "file"
    DEFAULT = "default"
    FRESH = "fresh"
    INLINE = "inline"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One known version: where it lives and how big its weight file is."""

    version: str
    source: ModelSource
    size_bytes: int
    added: float  # seconds since the epoch: file modification or registration time
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters of the loaded-model cache (requests only; preloads counted apart)."""

    hits: int
    misses: int
    evictions: int
    preloads: int
    capacity: int
    loaded: tuple[str, ...]  # versions in the cache, least recently used first

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass(frozen=True, slots=True, eq=False)
class LoadedModel:
    """A loaded network and its predictor (shared: never train or move it in place)."""

    version: str
    model: PolicyValueNet
    predictor: Predictor
    config: ModelConfig
    parameters: int
    size_bytes: int


@dataclass(slots=True)
class _FileMemo:
    mtime_ns: int
    size: int
    version: str


class ModelRegistry:
    """Known versions plus the LRU cache; see the module docstring."""

    def __init__(
        self,
        model_dir: Path | None = None,
        default_model: Path | None = None,
        *,
        capacity: int = 4,
        allow_fresh: bool = False,
        fresh_seed: int = 0,
        threads: int | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("the cache needs room for at least one model")
        if threads is not None and threads < 1:
            raise ValueError("threads must be at least 1")
        self.model_dir = model_dir
        self.default_model = default_model
        self.capacity = capacity
        self.allow_fresh = allow_fresh
        self.fresh_seed = fresh_seed
        self.threads = threads
        self._lock = threading.RLock()
        self._cache: OrderedDict[str, LoadedModel] = OrderedDict()
        self._memo: dict[Path, _FileMemo] = {}
        self._added: dict[str, tuple[ModelInfo, bytes]] = {}
        self._fresh: tuple[ModelInfo, bytes] | None = None
        self._described: dict[str, tuple[ModelConfig, int]] = {}
        self._hits = self._misses = self._evictions = self._preloads = 0

    # ---- versions -----------------------------------------------------------------

    def _file_info(self, path: Path, source: ModelSource) -> ModelInfo | None:
        try:
            st = path.stat()
        except OSError:
            return None
        if not path.is_file() or st.st_size > _MAX_FILE_BYTES:
            return None
        memo = self._memo.get(path)
        if memo is None or (memo.mtime_ns, memo.size) != (st.st_mtime_ns, st.st_size):
            try:
                data = path.read_bytes()
            except OSError as exc:
                log.warning("cannot read model file %s: %s", path, exc)
                return None
            memo = _FileMemo(st.st_mtime_ns, st.st_size, blake3.blake3(data).hexdigest())
            self._memo[path] = memo
        return ModelInfo(memo.version, source, memo.size, st.st_mtime_ns / 1e9, path)

    def versions(self) -> list[ModelInfo]:
        """Every known version, the one ``"latest"`` names first (no duplicates)."""
        with self._lock:
            found: list[ModelInfo] = sorted(
                (info for info, _ in self._added.values()), key=lambda i: -i.added
            )
            files: list[ModelInfo] = []
            if self.model_dir is not None and self.model_dir.is_dir():
                for path in self.model_dir.glob("*.cbor"):
                    info = self._file_info(path, ModelSource.FILE)
                    if info is not None:
                        files.append(info)
            found.extend(sorted(files, key=lambda i: (-i.added, i.version)))
            if self.default_model is not None:
                info = self._file_info(self.default_model, ModelSource.DEFAULT)
                if info is not None:
                    found.append(info)
            if not found and self.allow_fresh:
                found.append(self._fresh_model()[0])
            seen: set[str] = set()
            unique = []
            for info in found:
                if info.version not in seen:
                    seen.add(info.version)
                    unique.append(info)
            return unique

    def resolve(self, version: str) -> ModelInfo:
        """The version ``version`` names (``"latest"`` or a 64-digit hex id)."""
        if version != LATEST and not is_version(version):
            raise ModelError(
                f"model_version must be 'latest' or a 64-digit hex BLAKE3 id, not {version[:70]!r}"
            )
        known = self.versions()
        if not known:
            raise ModelError(
                "no model available: no weight files in the model directory and no default "
                "model (start p2pgo-mcp with --fresh-model to use an untrained network)"
            )
        if version == LATEST:
            return known[0]
        for info in known:
            if info.version == version:
                return info
        raise ModelError(f"unknown model version {version[:16]}...; see the models://list resource")

    def weight_bytes(self, info: ModelInfo) -> bytes:
        """The weight file of a known version (checked against its id)."""
        with self._lock:
            if info.version in self._added:
                return self._added[info.version][1]
            if self._fresh is not None and self._fresh[0].version == info.version:
                return self._fresh[1]
        if info.path is None:
            raise ModelError(f"model {info.version[:16]}... has no weight file")
        try:
            data = info.path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read model file {info.path}: {exc.strerror}") from None
        if blake3.blake3(data).hexdigest() != info.version:
            raise ModelError(f"model file {info.path} changed while it was being read")
        return data

    def add(self, data: bytes) -> ModelInfo:
        """Register a weight file (validated) as the newest version; kept in memory."""
        self._decode(data)
        version = blake3.blake3(data).hexdigest()
        info = ModelInfo(version, ModelSource.ADDED, len(data), time.time())
        with self._lock:
            self._added[version] = (info, bytes(data))
        return info

    def _fresh_model(self) -> tuple[ModelInfo, bytes]:
        if self._fresh is None:
            import torch

            from engine.nn import PolicyValueNet, save_weights

            # fork_rng: a fixed seed for this network without touching anyone else's RNG.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.fresh_seed)
                data = save_weights(PolicyValueNet())
            version = blake3.blake3(data).hexdigest()
            self._fresh = (ModelInfo(version, ModelSource.FRESH, len(data), 0.0), data)
            log.warning("no model found: using a fresh, untrained network %s", version[:12])
        return self._fresh

    # ---- the cache ----------------------------------------------------------------

    def get(self, version: str = LATEST) -> LoadedModel:
        """The loaded network of ``version``; a cache hit or a miss (then loaded)."""
        with self._lock:
            info = self.resolve(version)
            return self._cached(info.version, lambda: self.weight_bytes(info), count=True)

    def get_inline(self, data: bytes) -> LoadedModel:
        """The network of a weight file sent with a request (cached by its version)."""
        version = blake3.blake3(data).hexdigest()
        with self._lock:
            return self._cached(version, lambda: data, count=True)

    def warm_up(self) -> None:
        """Import torch and load ``"latest"`` ahead of the first request (not counted)."""
        try:
            import engine.nn  # noqa: F401 - the import is the slow part being done early

            with self._lock:
                info = self.resolve(LATEST)
                if info.version not in self._cache:
                    self._cached(info.version, lambda: self.weight_bytes(info), count=False)
                    self._preloads += 1
        except ModelError as exc:
            log.info("warm-up: %s", exc)

    def _cached(self, version: str, data: Callable[[], bytes], *, count: bool) -> LoadedModel:
        hit = self._cache.get(version)
        if hit is not None:
            self._cache.move_to_end(version)
            if count:
                self._hits += 1
            return hit
        if count:
            self._misses += 1
        loaded = self._load(version, data())
        self._cache[version] = loaded
        while len(self._cache) > self.capacity:
            old, _ = self._cache.popitem(last=False)
            self._evictions += 1
            log.info("cache: evicted model %s", old[:12])
        return loaded

    def _decode(self, data: bytes) -> tuple[ModelConfig, dict[str, Any]]:
        from engine.nn import ModelFormatError, decode_weights

        try:
            return decode_weights(data)
        except ModelFormatError as exc:
            raise ModelError(f"not a valid weight file: {exc}") from None

    def _load(self, version: str, data: bytes) -> LoadedModel:
        from engine.nn import Predictor, arrays_to_model

        started = time.perf_counter()
        config, arrays = self._decode(data)
        model = arrays_to_model(config, arrays)
        predictor = Predictor(model, threads=self.threads)
        parameters = sum(int(a.size) for a in arrays.values())
        log.info(
            "loaded model %s (%d parameters) in %.0f ms",
            version[:12],
            parameters,
            1000 * (time.perf_counter() - started),
        )
        return LoadedModel(version, model, predictor, config, parameters, len(data))

    def describe(self, info: ModelInfo) -> tuple[ModelConfig, int]:
        """The architecture and parameter count of a known version (not a cache access)."""
        with self._lock:
            loaded = self._cache.get(info.version)
            if loaded is not None:
                return loaded.config, loaded.parameters
            memo = self._described.get(info.version)
            if memo is None:
                config, arrays = self._decode(self.weight_bytes(info))
                memo = (config, sum(int(a.size) for a in arrays.values()))
                self._described[info.version] = memo
            return memo

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                preloads=self._preloads,
                capacity=self.capacity,
                loaded=tuple(self._cache),
            )

    def cached(self, version: str) -> bool:
        with self._lock:
            return version in self._cache
