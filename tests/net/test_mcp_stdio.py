"""The real ``p2pgo-mcp`` process over stdio: raw JSON-RPC, and the official MCP Inspector CLI.

The Inspector test needs ``npx`` (Node 20) and the npm registry the first time; it is
skipped with a message when ``npx`` is missing, and fails instead when ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from engine.nn import weights_id
from tests.net.test_mcp_board import KO_EXAMPLE
from tests.net.test_mcp_server import _model_update, finished_games, tiny_weights

REPO = Path(__file__).resolve().parents[2]
INSPECTOR = "@modelcontextprotocol/inspector@0.15.0"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _server_args(tmp_path: Path) -> list[str]:
    models = tmp_path / "models"
    if not models.is_dir():
        models.mkdir()
        (models / "a.cbor").write_bytes(tiny_weights(1))
    return [
        "-m",
        "net.mcp",
        "--model-dir",
        str(models),
        "--no-default-model",
        "--data-dir",
        str(tmp_path / "data"),
    ]


def test_stdio_server_answers_json_rpc_and_writes_nothing_else_to_stdout(tmp_path: Path) -> None:
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "pytest", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "predict_move", "arguments": {"board_state": KO_EXAMPLE}},
        },
        {
            "jsonrpc": "2.0",
            "id": 4,
            "method": "tools/call",
            "params": {"name": "predict_move", "arguments": {"board_state": "XX;b"}},
        },
        {"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": "models://list"}},
    ]
    with subprocess.Popen(
        [sys.executable, *_server_args(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        watchdog = threading.Timer(120, proc.kill)  # a hung server fails the test, not the run
        watchdog.start()
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("".join(json.dumps(r) + "\n" for r in requests))
            proc.stdin.flush()
            answers: dict[int, dict[str, Any]] = {}
            while len(answers) < 5:
                line = proc.stdout.readline()
                assert line, "the server closed stdout early"
                message = json.loads(line)  # every line on stdout is a JSON-RPC message
                assert message["jsonrpc"] == "2.0"
                if "id" in message:
                    answers[message["id"]] = message
            proc.stdin.close()  # end of input: the server exits
            rest = proc.stdout.read()
            assert proc.wait(timeout=30) == 0
            err = proc.stderr.read() if proc.stderr else ""
        finally:
            watchdog.cancel()
            proc.kill()
    assert all(json.loads(line)["jsonrpc"] == "2.0" for line in rest.splitlines())
    assert answers[1]["result"]["serverInfo"]["name"] == "p2pgo-mcp"
    names = {t["name"] for t in answers[2]["result"]["tools"]}
    assert names == {"predict_move", "train_local", "verify_model", "cache_stats"}
    predicted = answers[3]["result"]
    assert predicted.get("isError") is not True
    assert predicted["structuredContent"]["to_play"] == "b"
    assert predicted["structuredContent"]["move"] != "D5"  # the ko point is not legal
    assert answers[4]["result"]["isError"] is True
    assert "a board is 2 to 25 rows" in answers[4]["result"]["content"][0]["text"]
    listing = json.loads(answers[5]["result"]["contents"][0]["text"])
    assert listing["latest"] == weights_id(tiny_weights(1))
    assert "serving MCP on stdio" in err  # logs go to stderr


def _npx() -> str:
    npx = shutil.which("npx")
    if npx is None:
        message = "npx (Node 20) not found: install nodejs to run the MCP Inspector test"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return npx


@pytest.mark.slow
def test_the_official_inspector_cli_lists_and_calls_every_tool(tmp_path: Path) -> None:
    npx = _npx()
    args = _server_args(tmp_path)
    old = tiny_weights(1)
    new = tiny_weights(2)
    (tmp_path / "models" / "b.cbor").write_bytes(new)
    key = SigningKey.generate()
    proof = {
        "update": _model_update(key, weights_id(old), weights_id(new)),
        "coordinator_key": bytes(key.verify_key).hex(),
    }
    calls: dict[str, list[str]] = {
        "list": ["--method", "tools/list"],
        "predict": [
            "--method",
            "tools/call",
            "--tool-name",
            "predict_move",
            "--tool-arg",
            f"board_state={KO_EXAMPLE}",
            "top_k=3",
        ],
        "train": [
            "--method",
            "tools/call",
            "--tool-name",
            "train_local",
            "--tool-arg",
            "games=" + json.dumps(finished_games(2)),
            f"model_weights={weights_id(old)}",
            'hyperparams={"max_steps": 2, "batch_size": 4}',
        ],
        "verify": [
            "--method",
            "tools/call",
            "--tool-name",
            "verify_model",
            "--tool-arg",
            f"old_weights={weights_id(old)}",
            f"new_weights={base64.b64encode(new).decode()}",
            "proof=" + json.dumps(proof),
        ],
    }
    # All four at once: each starts its own server, which spends seconds importing.
    procs = {
        name: subprocess.Popen(
            [npx, "-y", INSPECTOR, "--cli", sys.executable, *args, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for name, extra in calls.items()
    }
    outputs: dict[str, Any] = {}
    for name, proc in procs.items():
        with proc:
            try:
                out, err = proc.communicate(timeout=240)
            finally:
                proc.kill()
        # The Inspector exits 0 even when a tool reports isError: the JSON is what counts.
        assert proc.returncode == 0, f"{name}: {err[-2000:]}"
        outputs[name] = json.loads(out)
    assert {t["name"] for t in outputs["list"]["tools"]} >= {
        "predict_move",
        "train_local",
        "verify_model",
    }
    for name in ("predict", "train", "verify"):
        assert outputs[name].get("isError") is not True, outputs[name]
    assert len(outputs["predict"]["structuredContent"]["top_moves"]) == 3
    trained = outputs["train"]["structuredContent"]
    assert trained["metrics"]["steps"] == 2 and trained["update"]["encoding"] == "p2pgo-tensors"
    assert outputs["verify"]["structuredContent"]["valid"] is True
