"""The app's MCP client: the worker, restarts, timeouts, fallbacks, and the AI it feeds.

Fake servers (small MCP programs written to a temporary directory) make crashes and
hangs happen on cue; one test drives the real ``p2pgo-mcp``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from engine import Color, HeuristicPlayer, Move, Position, Rules, from_gtp
from p2pgo_tui import P2PGoApp, Suggestion
from p2pgo_tui.__main__ import main
from p2pgo_tui._mcp_client import (
    ClientState,
    McpModelClient,
    ModelServiceError,
    ModelToolError,
    ServerCommand,
    server_command,
)
from p2pgo_tui._model_ai import (
    AiKind,
    LocalModel,
    McpModel,
    ModelAdvisor,
    ModelAnswer,
    ModelOpponent,
    MoveChoice,
    build_ai,
)
from p2pgo_tui._model_choice import ModelChoice

REPO = Path(__file__).resolve().parents[2]

FAKE_SERVER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import anyio
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
    from pydantic import BaseModel

    class Top(BaseModel):
        move: str
        probability: float
        win_rate: float | None = None

    class Out(BaseModel):
        move: str
        confidence: float
        top_moves: list[Top]
        value: float
        model_version: str

    marker = Path(sys.argv[1])
    print("fake server started", file=sys.stderr, flush=True)
    server = MCPServer("fake")

    @server.tool()
    async def predict_move(
        board_state: str, model_version: str = "latest", top_k: int = 1, analyze: bool = False
    ) -> Out:
        if board_state == "error":
            raise ToolError("no model available")
        if board_state == "hang":
            await anyio.Event().wait()
        if board_state == "crash" or (board_state == "crash-once" and not marker.exists()):
            marker.touch()
            os._exit(3)
        tops = [Top(move="C3", probability=0.6, win_rate=0.7 if analyze else None),
                Top(move="pass", probability=0.1, win_rate=0.2 if analyze else None)]
        return Out(move="C3", confidence=0.6, top_moves=tops[:top_k], value=0.55,
                   model_version="f" * 64)

    server.run("stdio")
    """
)


@pytest.fixture
def fake_command(tmp_path: Path) -> ServerCommand:
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    return ServerCommand((sys.executable, str(script), str(tmp_path / "crashed")))


@pytest.fixture
def client_for(tmp_path: Path) -> Iterator[list[McpModelClient]]:
    clients: list[McpModelClient] = []
    yield clients
    for client in clients:
        client.close()


def _client(
    clients: list[McpModelClient], command: ServerCommand, tmp_path: Path, **kw: float
) -> McpModelClient:
    client = McpModelClient(
        command, errlog=tmp_path / "logs" / "server.log", start_timeout=60, **kw
    )  # type: ignore[arg-type]
    clients.append(client)
    client.start()
    return client


def test_calls_go_through_and_tool_errors_come_back_as_such(
    fake_command: ServerCommand, tmp_path: Path, client_for: list[McpModelClient]
) -> None:
    client = _client(client_for, fake_command, tmp_path)
    assert client.wait_ready(60), client.last_error
    out = client.call("predict_move", {"board_state": "x", "top_k": 2})
    assert out["move"] == "C3" and [m["move"] for m in out["top_moves"]] == ["C3", "pass"]
    with pytest.raises(ModelToolError, match="no model available"):
        client.call("predict_move", {"board_state": "error"})
    assert client.state is ClientState.READY and client.restarts == 0
    # The server's stderr goes to the log file, never to the terminal.
    assert "fake server started" in (tmp_path / "logs" / "server.log").read_text()


def test_a_call_that_times_out_fails_alone(
    fake_command: ServerCommand, tmp_path: Path, client_for: list[McpModelClient]
) -> None:
    client = _client(client_for, fake_command, tmp_path)
    with pytest.raises(ModelServiceError, match=r"timed out after 0\.5 s"):
        client.call("predict_move", {"board_state": "hang"}, timeout=0.5)
    assert client.call("predict_move", {"board_state": "x"})["value"] == 0.55
    assert client.restarts == 0


def test_a_crashed_server_is_restarted_and_the_call_retried(
    fake_command: ServerCommand, tmp_path: Path, client_for: list[McpModelClient]
) -> None:
    client = _client(client_for, fake_command, tmp_path)
    assert client.call("predict_move", {"board_state": "crash-once"})["move"] == "C3"
    assert client.restarts == 1
    # A server that dies on every try of a call: the call fails, the next one works.
    with pytest.raises(ModelServiceError, match="went away"):
        client.call("predict_move", {"board_state": "crash"})
    assert client.call("predict_move", {"board_state": "x"})["move"] == "C3"
    assert client.restarts == 3
    assert (tmp_path / "logs" / "server.log").read_text().count("fake server started") == 4


def test_a_server_that_cannot_start_is_given_up_on_and_the_ai_falls_back(
    tmp_path: Path, client_for: list[McpModelClient]
) -> None:
    command = ServerCommand((sys.executable, "-c", "import sys; print('boom', file=sys.stderr)"))
    client = _client(client_for, command, tmp_path, max_start_failures=2)
    assert not client.wait_ready(60)
    assert client.state is ClientState.FAILED and client.restarts == 1
    with pytest.raises(ModelServiceError, match="could not be started"):
        client.call("predict_move", {"board_state": "x"})
    assert "boom" in (tmp_path / "logs" / "server.log").read_text()
    ai = ModelOpponent([McpModel(client), LocalModel(None)], HeuristicPlayer(0))
    position = Position(5)
    assert position.is_legal(ai.choose(position)) and ai.last_source == "HeuristicPlayer"


class FakeBackend:
    def __init__(self, *moves: str, fail: bool = False) -> None:
        self.moves = moves
        self.fail = fail
        self.calls = 0

    def predict(self, position: Position, *, top_k: int = 1, analyze: bool = False) -> ModelAnswer:
        self.calls += 1
        if self.fail:
            raise ModelServiceError("down")
        me = position.to_play
        choices = []
        for i, vertex in enumerate(self.moves[:top_k]):
            point = from_gtp(vertex, position.size)
            move = Move.pass_(me) if point is None else Move.play(me, point)
            choices.append(MoveChoice(move, 0.5 / (i + 1), 0.6 - i / 10 if analyze else None))
        return ModelAnswer(tuple(choices), 0.5, "0" * 64, "fake")


def test_calls_on_a_client_never_started_or_closed_fail_at_once(
    fake_command: ServerCommand, tmp_path: Path
) -> None:
    client = McpModelClient(fake_command, errlog=tmp_path / "log")
    with pytest.raises(ModelServiceError, match="never started"):
        client.call("predict_move", {"board_state": "x"})
    client.start()
    client.close()
    assert client.state is ClientState.CLOSED
    with pytest.raises(ModelServiceError, match="closed"):
        client.call("predict_move", {"board_state": "x"})


def test_the_opponent_asks_each_backend_in_turn() -> None:
    position = Position(5).play_at((2, 2))
    down, illegal, good = FakeBackend(fail=True), FakeBackend("C3"), FakeBackend("B2")
    ai = ModelOpponent([down, illegal, good], HeuristicPlayer(0))
    assert ai.choose(position) == Move.play(Color.WHITE, (3, 1))
    assert (down.calls, illegal.calls, good.calls) == (1, 1, 1)
    over = Position(5).play_at(None).play_at(None)
    assert ai.choose(over) == Move.pass_(Color.BLACK) and good.calls == 1


def test_the_opponent_does_not_pass_while_dame_are_left_under_area_scoring() -> None:
    # Column C (the middle) is neutral: the network's pass becomes its best move there.
    dame = "\n".join([". X . O ."] * 5)
    backend = FakeBackend("pass", "A1", "C4")
    ai = ModelOpponent([backend], HeuristicPlayer(0))
    assert ai.choose(Position.from_ascii(dame)) == Move.play(Color.BLACK, (1, 2))
    # Under Japanese rules a stone at home costs a point: the pass stands.
    japanese = Position.from_ascii(dame, rules=Rules.named("japanese"))
    assert ai.choose(japanese) == Move.pass_(Color.BLACK)
    # So it does when nothing is left to play for.
    settled = "\n".join([". X X O ."] * 5)
    assert ai.choose(Position.from_ascii(settled)) == Move.pass_(Color.BLACK)


def test_hints_carry_the_networks_win_rates_and_reasons() -> None:
    position = Position(5)
    advisor = ModelAdvisor([FakeBackend(fail=True), FakeBackend("C3", "A1", "pass")], _NoHints())
    hints = advisor.suggest(position)
    assert [h.move for h in hints] == [
        Move.play(Color.BLACK, (2, 2)),
        Move.play(Color.BLACK, (4, 0)),
        Move.pass_(Color.BLACK),
    ]
    assert [h.win_rate for h in hints] == pytest.approx([0.6, 0.5, 0.4])
    assert "first choice (50%" in hints[0].reason and "quiet move" in hints[0].reason
    fallback = ModelAdvisor([FakeBackend(fail=True)], _NoHints())
    assert fallback.suggest(position) == [Suggestion(Move.pass_(Color.BLACK), "nothing else")]


class _NoHints:
    def suggest(self, position: Position) -> Sequence[Suggestion]:
        return [Suggestion(Move.pass_(position.to_play), "nothing else")]


def test_the_real_server_plays_the_same_move_as_the_local_network(
    tmp_path: Path, client_for: list[McpModelClient]
) -> None:
    from tests.net.test_mcp_server import tiny_weights

    models = tmp_path / "data" / "models"
    models.mkdir(parents=True)
    (models / "m.cbor").write_bytes(tiny_weights(5))
    client = _client(client_for, server_command(tmp_path / "data", "--no-default-model"), tmp_path)
    mcp, local = McpModel(client), LocalModel(models / "m.cbor")
    position = Position(9)
    for vertex in ("E5", "C3", "G7"):
        position = position.play(Move.play(position.to_play, from_gtp(vertex, 9)))  # type: ignore[arg-type]
    remote, here = (
        mcp.predict(position, top_k=3, analyze=True),
        local.predict(position, top_k=3, analyze=True),
    )
    assert remote.source == "mcp" and remote.model_version == here.model_version
    assert [c.move for c in remote.candidates] == [c.move for c in here.candidates]
    assert remote.value == pytest.approx(here.value, abs=1e-5)
    assert [c.win_rate for c in remote.candidates] == pytest.approx(
        [c.win_rate for c in here.candidates], abs=1e-5
    )
    # The same opponent logic (pass guard included) over either backend plays the same.
    ai = ModelOpponent([mcp], HeuristicPlayer(0))
    assert ai.choose(position) == ModelOpponent([local], HeuristicPlayer(0)).choose(position)
    assert ai.last_source == "McpModel"
    # The federated model installed while the server runs: the next answer comes from it.
    choice = ModelChoice(tmp_path / "data", None)
    assert choice.version == here.model_version
    installed = choice.install(tiny_weights(6))
    ai = ModelOpponent([McpModel(client, choice=choice)], HeuristicPlayer(0))
    ai.choose(position)
    assert ai.last_source == "McpModel" and ai.last_version == installed.version
    assert installed.version != here.model_version


def test_build_ai_chooses_mcp_only_when_a_model_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(McpModelClient, "start", lambda self: None)
    monkeypatch.setattr("p2pgo_tui._model_ai.DEFAULT_MODEL", tmp_path / "absent.cbor")
    setup = build_ai(None, tmp_path, seed=1)
    assert setup.kind is AiKind.HEURISTIC and setup.client is None
    assert isinstance(setup.ai, HeuristicPlayer)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.cbor").write_bytes(b"weights")
    setup = build_ai(None, tmp_path, seed=1)
    assert setup.kind is AiKind.MCP and isinstance(setup.client, McpModelClient)
    # net.mcp through the bootstrap that skips net/__init__ (see server_command).
    argv = setup.client.command.argv
    assert argv[1] == "-c" and "net.mcp" in argv[2]
    assert argv[3:] == ("--data-dir", str(tmp_path))
    assert setup.client.errlog == tmp_path / "logs" / "p2pgo-mcp.log"


def test_main_wires_the_ai_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[P2PGoApp] = []
    started: list[McpModelClient] = []
    closed: list[McpModelClient] = []
    monkeypatch.setattr(P2PGoApp, "run", lambda self: seen.append(self))
    monkeypatch.setattr(McpModelClient, "start", lambda self: started.append(self))
    monkeypatch.setattr(McpModelClient, "close", lambda self, timeout=10.0: closed.append(self))
    data = str(tmp_path / "data")
    assert main(["--data-dir", data, "--ai", "mcp"]) == 0
    assert isinstance(seen[-1].services.ai, ModelOpponent) and "MCP" in seen[-1].services.ai_name
    assert isinstance(seen[-1].services.advisor, ModelAdvisor)
    # The app starts the client after its first frame (run is faked here); main closes it.
    assert started == [] and closed == [seen[-1].services.background_ai]
    assert seen[-1].services.models is not None
    assert main(["--data-dir", data, "--ai", "heuristic"]) == 0
    assert isinstance(seen[-1].services.ai, HeuristicPlayer) and len(closed) == 1
    assert seen[-1].services.background_ai is None and seen[-1].services.models is None
    assert main(["--data-dir", data, "--ai", "local"]) == 0
    assert isinstance(seen[-1].services.ai, ModelOpponent) and len(closed) == 1
    assert seen[-1].services.background_ai is None


def test_start_up_imports_neither_mcp_nor_torch() -> None:
    code = (
        "import sys\n"
        "import p2pgo_tui.__main__, p2pgo_tui._mcp_client, p2pgo_tui._model_ai\n"
        "heavy = ('mcp', 'torch', 'anyio', 'engine.nn', 'net')\n"
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
