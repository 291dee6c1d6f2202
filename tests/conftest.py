"""Shared fixtures: external programs the tests drive (GnuGo, our own GTP engine)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Debian installs GnuGo to /usr/games, which is often not on PATH.
_GNUGO_FALLBACKS = ("/usr/games/gnugo", "/usr/local/games/gnugo")


def _find_gnugo() -> str | None:
    found = shutil.which("gnugo")
    if found:
        return found
    for candidate in _GNUGO_FALLBACKS:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def gnugo() -> str:
    """Path of the gnugo binary; a failure under CI (CI=true), a skip elsewhere."""
    path = _find_gnugo()
    if path is None:
        message = (
            "gnugo not found on PATH or in /usr/games; install it (apt-get install gnugo) "
            "to run the tests that play against it"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def p2pgo_gtp_argv(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Command line that starts our GTP engine as a child process (from this checkout).

    It plays with the heuristic player: these tests are about GTP and match plumbing,
    and the network's search would make each game ten times slower.
    """
    pythonpath = os.environ.get("PYTHONPATH", "")
    parts = [str(REPO_ROOT), *(p for p in pythonpath.split(os.pathsep) if p)]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(parts))
    return [sys.executable, "-m", "engine.gtp", "--player", "heuristic"]


@pytest.fixture
def restore_threads() -> Iterator[None]:
    """The network's Predictor sets torch's process-wide thread count; put it back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
