"""`p2pgo-sim`: the command line runs real rounds and reports what the issue asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fl import RoundStage, SimConfig, Simulation
from fl.sim import main

ROOT = Path(__file__).resolve().parents[2]


def test_json_lines_per_round(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--peers", "12", "--per-round", "6", "--rounds", "2", "--dropout", "0.2"]
    assert main([*argv, "--params", "300", "--seed", "3", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["round"] for line in lines] == [0, 1]
    for line in lines:
        assert line["completed"], line["abort_reason"]
        assert 0 < line["survivors"] <= line["selected"] <= 12
        assert line["completion"] == pytest.approx(line["survivors"] / line["selected"], abs=1e-4)
        assert line["coordinator_s"] > 0 and line["participant_mean_s"] > 0
        # Masked vector: 300 params x 2 bytes, plus the CBOR messages.
        assert line["upload_bytes_per_participant"] > 600
        assert 0 < line["max_abs_error"] < 0.05
        assert line["verified"] >= line["survivors"] - 2
    assert lines[1]["epsilon"] > lines[0]["epsilon"] > 0


def test_human_readable_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--peers", "5", "--per-round", "4", "--params", "50", "--dropout", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("round 0: ok;") and "epsilon" in out and "max |secure - plain|" in out


def test_train_flag_fails_clearly(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--peers", "5", "--per-round", "4", "--train"]) == 2
    assert "--train needs --games" in capsys.readouterr().err


def test_bad_arguments_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--peers", "3", "--per-round", "5"]) == 2
    assert "per_round" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--peers", "x"])


def test_a_peer_out_of_budget_stops_joining() -> None:
    sim = Simulation(
        SimConfig(peers=6, per_round=4, rounds=3, params=20, epsilon_budget=6.0, dropout=0.0)
    )
    reports = [sim.run_round(r) for r in range(3)]
    # Two amplified rounds cost ~5.6; a third would exceed 6, so every peer refuses it.
    assert [r.ready for r in reports] == [6, 6, 0]
    assert [r.completed for r in reports] == [True, True, False]
    assert reports[1].epsilon_max == reports[2].epsilon_max <= 6.0


def test_fixed_dropout_stage_and_fedadam() -> None:
    config = SimConfig(
        peers=8,
        per_round=4,
        params=40,
        dropout=0.5,
        seed=1,
        dropout_stage=RoundStage.MASKED_INPUT,
        strategy="fedadam",
    )
    report = Simulation(config).run_round(0)
    assert report.completed and report.survivors < report.selected


def test_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fl.sim",
            "--peers",
            "4",
            "--per-round",
            "3",
            "--params",
            "20",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["completed"] is True
