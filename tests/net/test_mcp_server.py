"""The MCP model server in memory (``mcp.Client(server)``): every tool, resource and error."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
import torch
from mcp import Client, MCPError
from nacl.signing import SigningKey

from engine import GameRecord, Position, dump_sgf
from engine.nn import ModelConfig, PolicyValueNet, save_weights, weights_id
from fl import (
    ModelUpdate,
    QuantSpec,
    decode_tensors,
    dequantize,
    encode_round_message,
    flatten,
    l2_norm,
    merkle_root,
    sign_message,
    unpack_quantized,
)
from net._mcp_models import ModelRegistry
from net._mcp_server import build_server
from net._mcp_tasks import ModelTasks

TINY = ModelConfig(blocks=1, channels=8, head_channels=4, value_hidden=8, global_pool_every=1)
EMPTY_5 = "...../...../...../...../.....;b"


def tiny_weights(seed: int) -> bytes:
    """A small network whose outputs depend on the input (fresh ones are nearly flat)."""
    torch.manual_seed(seed)
    model = PolicyValueNet(TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gain"):
                p.fill_(0.7)
            elif name.startswith(("policy_out", "pass_out", "value_out")):
                p.normal_(0.0, 0.5)
    return save_weights(model)


def finished_games(count: int, size: int = 5, seed: int = 0) -> list[str]:
    """SGF texts of short random games with a result (training and held-out data)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        pos = Position(size)
        for _ in range(rng.randint(6, 14)):
            legal = pos.legal_points()
            pos = pos.play_at(rng.choice(legal) if legal else None)
        result = "B+3.5" if i % 2 else "W+1.5"
        out.append(dump_sgf(GameRecord.from_position(pos, result=result)).decode())
    return out


@pytest.fixture(scope="module")
def weights() -> tuple[bytes, bytes]:
    return tiny_weights(1), tiny_weights(2)


@pytest.fixture
def tasks(tmp_path: Path, weights: tuple[bytes, bytes]) -> ModelTasks:
    models = tmp_path / "models"
    models.mkdir()
    (models / "old.cbor").write_bytes(weights[0])
    registry = ModelRegistry(models, None, capacity=2, threads=1)
    return ModelTasks(registry, data_dir=tmp_path / "data", max_inline_bytes=64 * 1024)


def session(tasks: ModelTasks, body: Callable[[Client], Awaitable[None]]) -> None:
    """Run ``body`` with an in-memory client connected to the server over ``tasks``."""

    async def main() -> None:
        with anyio.fail_after(60):
            async with Client(build_server(tasks)) as client:
                await body(client)

    anyio.run(main)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    # The text content carries the same JSON, for clients that read only text.
    assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


async def error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error and result.structured_content is None
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


def test_tools_list_has_every_tool_with_input_and_output_schemas(tasks: ModelTasks) -> None:
    async def body(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == {"predict_move", "train_local", "verify_model", "cache_stats"}
        for tool in tools.values():
            assert tool.output_schema is not None and tool.output_schema["type"] == "object"
            assert tool.description
        schemas = {name: t.output_schema or {} for name, t in tools.items()}
        assert tools["predict_move"].input_schema["required"] == ["board_state"]
        want = {"move", "confidence", "top_moves", "value"}
        assert set(schemas["predict_move"]["required"]) >= want
        assert set(schemas["verify_model"]["properties"]) >= {"valid", "improvement"}
        assert set(schemas["train_local"]["properties"]) == {"update", "metrics"}

    session(tasks, body)


def test_predict_move_from_a_compact_string_and_from_sgf(tasks: ModelTasks) -> None:
    version = weights_id((tasks.registry.model_dir / "old.cbor").read_bytes())  # type: ignore[operator]
    sgf = finished_games(1, size=5, seed=3)[0].replace("RE[", "XX[")  # unfinished

    async def body(client: Client) -> None:
        out = await call(client, "predict_move", board_state=EMPTY_5, top_k=4)
        assert out["model_version"] == version and out["to_play"] == "b"
        assert out["board_size"] == 5 and len(out["top_moves"]) == 4
        assert out["move"] == out["top_moves"][0]["move"]
        assert out["confidence"] == out["top_moves"][0]["probability"]
        probs = [m["probability"] for m in out["top_moves"]]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert 0 <= out["value"] <= 1
        assert all(m["win_rate"] is None for m in out["top_moves"])
        analysed = await call(client, "predict_move", board_state=EMPTY_5, analyze=True)
        assert all(0 <= m["win_rate"] <= 1 for m in analysed["top_moves"])
        assert await call(client, "predict_move", board_state=sgf, model_version=version)

    session(tasks, body)


def test_predict_move_errors_are_tool_errors_not_crashes(tasks: ModelTasks) -> None:
    async def body(client: Client) -> None:
        assert "side to move" in await error(client, "predict_move", board_state=".../.../...;q")
        assert "row 2" in await error(client, "predict_move", board_state=".../..../...;b")
        assert "not a usable SGF" in await error(client, "predict_move", board_state="(;B[zz")
        unknown = await error(client, "predict_move", board_state=EMPTY_5, model_version="a" * 64)
        assert "unknown model version" in unknown
        assert "64-digit hex" in await error(
            client, "predict_move", board_state=EMPTY_5, model_version="v1"
        )
        over = ".../.../...;b"
        game_over = dump_sgf(
            GameRecord.from_position(Position(3).play_at(None).play_at(None))
        ).decode()
        assert "over" in await error(client, "predict_move", board_state=game_over)
        assert "top_k" in await error(client, "predict_move", board_state=over, top_k=0)
        assert "board_state" in await error(client, "predict_move")  # missing argument
        # The server still answers after all of that.
        assert await call(client, "predict_move", board_state=over)

    session(tasks, body)


def test_no_model_is_a_clear_error_unless_a_fresh_model_is_allowed(tmp_path: Path) -> None:
    plain = ModelTasks(ModelRegistry(tmp_path / "none", tmp_path / "missing.cbor"))

    async def no_model(client: Client) -> None:
        assert "no model available" in await error(client, "predict_move", board_state=EMPTY_5)

    session(plain, no_model)
    fresh = ModelTasks(ModelRegistry(tmp_path / "none", None, allow_fresh=True))
    again = ModelTasks(ModelRegistry(tmp_path / "none", None, allow_fresh=True))

    async def fresh_model(client: Client) -> None:
        out = await call(client, "predict_move", board_state=EMPTY_5)
        assert out["model_version"] == again.registry.resolve("latest").version  # deterministic

    session(fresh, fresh_model)


def test_resources_list_versions_and_describe_them(
    tasks: ModelTasks, weights: tuple[bytes, bytes]
) -> None:
    old_id = weights_id(weights[0])
    added = tasks.registry.add(weights[1])

    async def body(client: Client) -> None:
        listing = json.loads((await client.read_resource("models://list")).contents[0].text)  # type: ignore[union-attr]
        assert listing["latest"] == added.version
        assert [m["version"] for m in listing["models"]] == [added.version, old_id]
        assert [m["source"] for m in listing["models"]] == ["added", "file"]
        meta = json.loads((await client.read_resource(f"models://{old_id}")).contents[0].text)  # type: ignore[union-attr]
        assert meta["config"] == TINY.to_dict() and meta["latest"] is False
        assert meta["parameters"] > 0 and meta["size_bytes"] == len(weights[0])
        latest = json.loads((await client.read_resource("models://latest")).contents[0].text)  # type: ignore[union-attr]
        assert latest["version"] == added.version and latest["latest"] is True
        with pytest.raises(MCPError, match="unknown model version"):
            await client.read_resource("models://" + "b" * 64)
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["models://{version}"]

    session(tasks, body)


def test_cache_counts_hits_and_misses_and_evicts_least_recently_used(
    tasks: ModelTasks, weights: tuple[bytes, bytes]
) -> None:
    third = tiny_weights(3)
    old_id, new_id, third_id = (weights_id(w) for w in (*weights, third))
    for w in (weights[1], third):
        tasks.registry.add(w)

    async def body(client: Client) -> None:
        for version in (old_id, old_id, new_id, old_id, third_id, new_id):
            await call(client, "predict_move", board_state=EMPTY_5, model_version=version)
        stats = await call(client, "cache_stats")
        # old miss, old hit, new miss, old hit, third miss (evicts new), new miss (evicts old)
        assert (stats["hits"], stats["misses"], stats["evictions"]) == (2, 4, 2)
        assert stats["loaded"] == [third_id, new_id] and stats["capacity"] == 2
        assert stats["hit_rate"] == pytest.approx(2 / 6)

    session(tasks, body)


def test_warm_up_preloads_without_counting(tasks: ModelTasks) -> None:
    tasks.registry.warm_up()
    stats = tasks.registry.stats()
    assert (stats.preloads, stats.hits, stats.misses, len(stats.loaded)) == (1, 0, 0, 1)
    tasks.registry.get("latest")
    assert tasks.registry.stats().hits == 1


def test_train_local_returns_a_clipped_update_with_metrics_and_progress(
    tasks: ModelTasks, weights: tuple[bytes, bytes]
) -> None:
    games = finished_games(4, seed=1)
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    async def body(client: Client) -> None:
        hyper = {"lr": 0.05, "epochs": 2, "batch_size": 4, "prox_mu": 0.1, "clip_norm": 0.01}
        result = await client.call_tool(
            "train_local",
            {"games": games, "hyperparams": hyper},
            progress_callback=on_progress,
        )
        assert not result.is_error, result.content
        out = result.structured_content
        assert out is not None
        update, metrics = out["update"], out["metrics"]
        assert update["encoding"] == "p2pgo-tensors"
        assert update["parent_version"] == weights_id(weights[0])
        delta = decode_tensors(base64.b64decode(update["data_base64"]))
        assert update["size_bytes"] == len(base64.b64decode(update["data_base64"]))
        assert l2_norm(delta) <= 0.01 * (1 + 1e-6)
        assert update["norm_before_clip"] > 0.01 and update["scale"] < 1
        assert metrics["games"] == 4 and metrics["examples"] > 0 and metrics["steps"] > 0
        assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0
        assert progress and progress[-1][0] == progress[-1][1] == metrics["steps"]
        assert "loss" in (progress[-1][2] or "")

        inline = base64.b64encode(weights[0]).decode()
        quant = await call(
            client,
            "train_local",
            games=[*games, "(;GM[1]SZ[5];B[zz])"],
            model_weights=inline,
            hyperparams=json.dumps({"encoding": "p2q1", "max_steps": 1, "clip_norm": 0.5}),
        )
        q = quant["update"]
        values, bits = unpack_quantized(base64.b64decode(q["data_base64"]))
        assert bits == q["quant_bits"] == 16
        spec = QuantSpec(q["quant_range"], 16, 16, 1)
        approx = dequantize(values, spec)
        assert approx.shape == flatten(delta)[0].shape
        assert float(np.linalg.norm(approx)) <= 0.5 * 1.05
        assert quant["metrics"]["steps"] == 1 and len(quant["metrics"]["skipped"]) == 1

    session(tasks, body)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"games": []}, "games"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": {"lr": 0}}, "lr"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": {"lr": "fast"}}, "lr"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": {"epochs": 0}}, "epochs"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": {"batch_size": 10**6}}, "batch_size"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": {"prox_mu": -1}}, "prox_mu"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": {"clip_norm": 0}}, "clip_norm"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": {"learning_rate": 1}}, "learning_rate"),
        ({"games": ["(;GM[1]SZ[5])"], "hyperparams": "{not json"}, "JSON text"),
        ({"games": ["(;GM[1]SZ[5])"]}, "no training examples"),
        ({"games": ["not a game"]}, "neither SGF"),
        ({"games": ["c" * 64]}, "cannot open the game store"),
        ({"games": ["(;GM[1]SZ[5])"], "model_weights": "@@@"}, "base64 of a weight file"),
        ({"games": ["(;GM[1]SZ[5])"], "model_weights": "QUJD"}, "not a valid weight file"),
        ({"games": ["(;GM[1]SZ[5])"], "model_weights": "A" * 200_000}, "the limit is 65536"),
        ({"games": ["(;GM[1]SZ[5])"], "model_weights": "d" * 64}, "unknown model version"),
    ],
)
def test_train_local_rejects_bad_input(
    tasks: ModelTasks, arguments: dict[str, Any], message: str
) -> None:
    async def body(client: Client) -> None:
        assert message in await error(client, "train_local", **arguments)

    session(tasks, body)


def _model_update(
    key: SigningKey, parent: str, new: str, *, signer: SigningKey | None = None
) -> str:
    submissions = tuple(bytes([i]) * 32 for i in (1, 2, 3))
    update = ModelUpdate(
        round_id=7,
        sender=bytes(key.verify_key),
        new_version=new,
        parent_version=parent,
        participant_count=len(submissions),
        merkle_root=merkle_root(submissions),
        submissions=submissions,
        metrics=(("loss", 1.0),),
    )
    if signer is None:
        signed = sign_message(update, key)
    else:  # a forgery: the coordinator's name, someone else's signature
        forged = sign_message(replace(update, sender=bytes(signer.verify_key)), signer)
        signed = replace(update, signature=forged.signature)
    return base64.b64encode(encode_round_message(signed)).decode()


def test_verify_model_accepts_a_signed_update_and_measures_improvement(
    tasks: ModelTasks, weights: tuple[bytes, bytes]
) -> None:
    key = SigningKey.generate()
    old_id, new_id = weights_id(weights[0]), weights_id(weights[1])
    tasks.registry.add(weights[1])
    proof = {
        "update": _model_update(key, old_id, new_id),
        "coordinator_key": bytes(key.verify_key).hex(),
    }
    games = finished_games(3, seed=9)

    async def body(client: Client) -> None:
        out = await call(
            client, "verify_model", old_weights=old_id, new_weights=new_id, proof=proof, games=games
        )
        assert out["valid"] is True and out["reason"] == "ok"
        assert (out["round_id"], out["participant_count"]) == (7, 3)
        assert out["held_out_positions"] > 0
        assert out["improvement"] == pytest.approx(out["old_loss"] - out["new_loss"])
        assert out["seconds"] < 5
        inline = base64.b64encode(weights[1]).decode()
        same = await call(
            client, "verify_model", old_weights=old_id, new_weights=inline, proof=json.dumps(proof)
        )
        assert same["valid"] is True and same["improvement"] is None  # no held-out games here

    session(tasks, body)


def test_verify_model_rejects_forgeries_and_wrong_versions(
    tasks: ModelTasks, weights: tuple[bytes, bytes]
) -> None:
    key, mallory = SigningKey.generate(), SigningKey.generate()
    old_id, new_id = weights_id(weights[0]), weights_id(weights[1])
    tasks.registry.add(weights[1])
    hexkey = bytes(key.verify_key).hex()
    other = "e" * 64

    async def verify(update: str, **extra: Any) -> dict[str, Any]:
        proof = {"update": update, "coordinator_key": hexkey, **extra}
        return await call(
            client_ref[0], "verify_model", old_weights=old_id, new_weights=new_id, proof=proof
        )

    client_ref: list[Client] = []

    async def body(client: Client) -> None:
        client_ref.append(client)
        cases = {
            "not signed by the coordinator": await verify(
                _model_update(key, old_id, new_id, signer=mallory)
            ),
            "builds on": await verify(_model_update(key, other, new_id)),
            "announces": await verify(_model_update(key, old_id, other)),
            "my submission is missing": await verify(
                _model_update(key, old_id, new_id), my_submission="9" * 64
            ),
            "not a round message": await verify(base64.b64encode(b"junk").decode()),
        }
        for reason, out in cases.items():
            assert out["valid"] is False and reason in out["reason"], out
            assert out["improvement"] is None
        # Signed by its sender, but that is not the coordinator this server trusts.
        for extra in ({}, {"coordinator_key": bytes(mallory.verify_key).hex()}):
            proof = {"update": _model_update(mallory, old_id, new_id), **extra}
            out = await call(
                client, "verify_model", old_weights=old_id, new_weights=new_id, proof=proof
            )
            assert out["valid"] is False and "coordinator" in out["reason"]
        # Malformed arguments are tool errors.
        bad = {"update": "%%%", "coordinator_key": hexkey}
        assert "base64" in await error(
            client, "verify_model", old_weights=old_id, new_weights=new_id, proof=bad
        )
        short = {"update": "AAAA", "coordinator_key": "ab"}
        assert "coordinator_key" in await error(
            client, "verify_model", old_weights=old_id, new_weights=new_id, proof=short
        )

    tasks.coordinator_key = bytes(key.verify_key)  # the server trusts only this coordinator
    session(tasks, body)


def test_verify_model_needs_a_coordinator_key(
    tasks: ModelTasks, weights: tuple[bytes, bytes]
) -> None:
    old_id = weights_id(weights[0])

    async def body(client: Client) -> None:
        proof = {"update": base64.b64encode(b"x").decode()}
        text = await error(
            client, "verify_model", old_weights=old_id, new_weights=old_id, proof=proof
        )
        assert "no coordinator key" in text

    session(tasks, body)
