"""The AI follows the federated model: ModelChoice, the backends, and the app's install.

A distinct small network stands in for the model a round produced; the AI's answers
carry the version of the model that made them, which is what these tests check.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from engine import HeuristicPlayer, Move, Position, from_gtp
from engine.gtp import DEFAULT_MODEL
from engine.nn import weights_id
from p2pgo_tui import GameSettings, make_app
from p2pgo_tui._board_screen import BoardScreen
from p2pgo_tui._fl_runtime import RoundsRuntime
from p2pgo_tui._model_ai import (
    LocalModel,
    McpModel,
    ModelAdvisor,
    ModelOpponent,
    heuristic_advisor,
)
from p2pgo_tui._model_choice import (
    ACTIVE_FILE,
    ModelChoice,
    ModelInstallError,
    ModelOrigin,
)
from p2pgo_tui._netmodel import NetworkHost, NetworkPlan
from tests.net.test_mcp_server import tiny_weights

from .conftest import current, run, settle

SHIPPED = weights_id(DEFAULT_MODEL.read_bytes())


@pytest.fixture(scope="module")
def federated() -> bytes:
    """A model that is not the shipped one (as a round would make)."""
    return tiny_weights(11)


def _opening() -> Position:
    position = Position(9)
    for vertex in ("E5", "C3"):
        point = from_gtp(vertex, 9)
        assert point is not None
        position = position.play(Move.play(position.to_play, point))
    return position


def test_a_new_choice_is_the_shipped_model_and_an_install_persists(
    tmp_path: Path, federated: bytes
) -> None:
    choice = ModelChoice(tmp_path)
    assert choice.current is not None and choice.version == SHIPPED
    assert choice.current.origin is ModelOrigin.SHIPPED
    ref = choice.install(federated)
    assert ref.version == weights_id(federated) == choice.version
    assert ref.path == tmp_path / "models" / f"{ref.version}.cbor"
    assert ref.path.read_bytes() == federated and ref.origin is ModelOrigin.INSTALLED
    assert ref.describe() == f"model {ref.version[:10]} (federated)"
    # The next start of the app: the persisted choice, even when a newer file exists.
    (tmp_path / "models" / "newer.cbor").write_bytes(tiny_weights(12))
    again = ModelChoice(tmp_path)
    assert again.current == ref
    # A chosen file that changed on disk is not trusted: the newest file is used.
    ref.path.write_bytes(b"changed")
    os.utime(ref.path, (0, 0))  # and older than the other file
    assert ModelChoice(tmp_path).version == weights_id(tiny_weights(12))


def test_a_bad_weight_file_leaves_the_model_in_use(tmp_path: Path) -> None:
    choice = ModelChoice(tmp_path)
    for bad in (b"", b"\xa1\x61v\x01", b"not cbor at all" * 10):
        with pytest.raises(ModelInstallError, match="not a valid weight file"):
            choice.install(bad)
    with pytest.raises(ModelInstallError, match="cannot read"):
        choice.install_file(tmp_path / "absent.bin")
    assert choice.version == SHIPPED
    assert not (tmp_path / "models" / ACTIVE_FILE).exists()
    assert ModelChoice(tmp_path).version == SHIPPED


def test_the_ai_and_the_hints_switch_to_the_installed_model(
    tmp_path: Path, federated: bytes
) -> None:
    choice = ModelChoice(tmp_path)
    backends = [LocalModel(choice)]
    ai = ModelOpponent(backends, HeuristicPlayer(0))
    advisor = ModelAdvisor(backends, heuristic_advisor(1))
    position = _opening()
    ai.choose(position)
    advisor.suggest(position)
    assert ai.last_version == advisor.last_version == SHIPPED
    choice.install(federated)
    ai.choose(position)
    advisor.suggest(position)
    assert ai.last_version == advisor.last_version == weights_id(federated)


class _RecordingClient:
    """Stands in for McpModelClient: records the arguments of each call."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def call(self, tool: str, arguments: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.asked.append(arguments["model_version"])
        return {
            "top_moves": [{"move": "D4", "probability": 0.5}],
            "value": 0.5,
            "model_version": arguments["model_version"],
        }


def test_the_mcp_backend_asks_the_server_for_the_chosen_version(
    tmp_path: Path, federated: bytes
) -> None:
    choice = ModelChoice(tmp_path)
    client = _RecordingClient()
    backend = McpModel(client, choice=choice)  # type: ignore[arg-type]
    backend.predict(_opening())
    choice.install(federated)
    answer = backend.predict(_opening())
    assert client.asked == [SHIPPED, weights_id(federated)]
    assert answer.model_version == weights_id(federated)
    # The server serves DATA_DIR/models: the chosen file is there, named by its version.
    assert (tmp_path / "models" / f"{weights_id(federated)}.cbor").is_file()


def test_the_players_model_events_reach_the_app_on_its_loop(tmp_path: Path) -> None:
    seen: list[tuple[str, Path, bool]] = []
    plan = NetworkPlan(tmp_path)
    rounds = RoundsRuntime(plan, tmp_path / "net", None, lambda v, p: seen.append((v, p, True)))
    sink = rounds._sink("player")
    sink("fl_adopted", {"round_id": 3, "model_version": "ab" * 32})
    sink("fl_model", {"model_version": "cd" * 32, "source": "sync"})
    rounds._sink("bot-1")("fl_adopted", {"round_id": 3, "model_version": "ef" * 32})
    sink("fl_round_start", {"round_id": 4, "model_version": "12" * 32})
    model_file = tmp_path / "net" / "player" / "fl" / "model.bin"
    assert seen == [("ab" * 32, model_file, True)]  # adopted after a verified round only

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        got: list[tuple[str, bool]] = []
        done = asyncio.Event()

        def on_model(version: str, path: Path) -> None:
            got.append((version, threading.current_thread() is threading.main_thread()))
            done.set()

        host = NetworkHost(plan, None, on_model)
        host._loop = loop  # what start() records before the runtime exists
        thread = threading.Thread(target=host._model_from_net, args=("ab" * 32, model_file))
        thread.start()
        await asyncio.wait_for(done.wait(), 5)
        thread.join()
        assert got == [("ab" * 32, True)]

    run(scenario)


def test_the_app_installs_the_adopted_model_and_the_ai_plays_with_it(
    tmp_path: Path, federated: bytes, notices: Any
) -> None:
    """The participant's model file -> installed -> the AI's next move and hint."""
    choice = ModelChoice(tmp_path / "data")
    backends = [LocalModel(choice)]
    ai = ModelOpponent(backends, HeuristicPlayer(0))
    advisor = ModelAdvisor(backends, heuristic_advisor(1))
    adopted = tmp_path / "model.bin"  # as FlParticipantService saves it

    async def scenario() -> None:
        app = make_app(ai=ai, advisor=advisor, settings=GameSettings(size=9), models=choice)
        async with app.run_test(size=(120, 40)) as pilot:
            board = current(app)
            assert isinstance(board, BoardScreen)
            assert board.panel.view.model == f"model {SHIPPED[:10]} (shipped)"
            await pilot.press("enter")
            await settle(pilot)
            assert ai.last_version == SHIPPED
            # A round ends: the participant saved a new model and says so.
            adopted.write_bytes(federated)
            app._model_offered(weights_id(federated), adopted)
            await settle(pilot)
            version = weights_id(federated)
            assert choice.version == version
            assert board.panel.view.model == f"model {version[:10]} (federated)"
            assert any(f"now plays with model {version[:10]}" in n for n in notices())
            position = board.session.position
            board.board.cursor = next(
                p
                for p in position.empty_points()
                if position.is_legal(Move.play(position.to_play, p))
            )
            await pilot.press("enter")
            await settle(pilot)
            assert board.session.position.move_number == 4
            assert ai.last_version == version
            await pilot.press("t")
            await settle(pilot)
            assert advisor.last_version == version
            # A bad file from the network: a warning, and the AI keeps its model.
            adopted.write_bytes(b"\xa2avx\x01bad")
            app._model_offered("ff" * 32, adopted)
            await settle(pilot)
            assert choice.version == version
            assert any("could not be used" in n and version[:10] in n for n in notices())

    run(scenario)
    # The next start of the app plays with the federated model again.
    assert ModelChoice(tmp_path / "data").version == weights_id(federated)
