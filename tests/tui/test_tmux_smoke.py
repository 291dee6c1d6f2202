"""Runs tests/e2e/tmux_smoke.sh: the real app in a real terminal (tmux)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "e2e" / "tmux_smoke.sh"


@pytest.mark.slow
def test_the_app_plays_moves_in_a_real_terminal() -> None:
    if shutil.which("tmux") is None:
        message = "tmux is not installed (apt-get install tmux): the terminal smoke test needs it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "tmux smoke: OK" in result.stdout
