"""The p2pgo-tui command line: flags, errors, light start-up, logging to a file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine import Color
from p2pgo_tui import P2PGoApp, StoreStorage
from p2pgo_tui.__main__ import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--size", "9", "--handicap", "12"], "handicap"),
        (["--size", "40"], "board size"),
        (["--color", "red"], "invalid choice"),
    ],
)
def test_bad_flags_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_main_builds_the_app_from_the_flags_and_logs_to_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[P2PGoApp] = []

    def fake_run(self: P2PGoApp) -> None:
        seen.append(self)

    monkeypatch.setattr(P2PGoApp, "run", fake_run)
    data = tmp_path / "data"
    argv = ["--data-dir", str(data), "--size", "13", "--handicap", "3", "--color", "white"]
    assert main([*argv, "--seed", "3"]) == 0
    (app,) = seen
    settings = app.services.settings
    assert (settings.size, settings.handicap, settings.komi, settings.human) == (
        13,
        3,
        0.5,
        Color.WHITE,
    )
    assert isinstance(app.services.storage, StoreStorage)
    assert app.services.storage.data_dir == data
    assert app.services.advisor is not None
    log_text = (data / "logs" / "p2pgo-tui.log").read_text()
    assert "starting: data dir" in log_text and "13x13" in log_text


def test_start_up_imports_neither_torch_nor_the_network() -> None:
    code = (
        "import sys\n"
        "import p2pgo_tui.__main__, p2pgo_tui._app, p2pgo_tui._storage\n"
        "import engine\n"
        "heavy = ('torch', 'libp2p', 'trio', 'engine.nn')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == "[]"
