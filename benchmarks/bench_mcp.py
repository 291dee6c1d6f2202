"""The MCP model server over stdio, as JSON lines: round trips, verify_model, cache hits.

Targets (issue 7): ``predict_move`` round trip over stdio p50 < 10 ms (the plan asks
< 50 ms); ``verify_model`` < 1 s for the default model; model-cache hit rate over a
played game > 90%. It starts the real server (``python -m net.mcp``, one torch thread,
no background warm-up so that no import runs under the measurements) on the shipped
default model (a fresh network of the default size when there is none), then:

* ``server_start``: seconds to ``initialize`` and to the first answer (model loaded);
* plays one game on 9x9, each move the server's choice for the position sent as SGF
  (as the app sends it): ``predict_rtt_sgf_9`` and the cache counters over the game
  (``cache_game``); the same positions as compact strings: ``predict_rtt_compact_9``;
  ``predict_rtt_analyze_9`` with ``analyze`` (the hint's request, top 5 evaluated);
  ``predict_inprocess_compact_9``: the same work in this process, without MCP;
* ``verify_model``: a correctly signed ModelUpdate from the default model to a perturbed
  copy, measured on held-out games (random finished games, about 500 positions); the
  first call (fl imported, examples built) and the median of the next ones, as the
  server measures it (``seconds``) and as the client sees it.

    PYTHONPATH=. .venv/bin/python -m benchmarks.bench_mcp
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from nacl.signing import SigningKey

from engine import GameRecord, Move, Position, dump_sgf, from_gtp
from engine.gtp import DEFAULT_MODEL
from fl import ModelUpdate, encode_round_message, merkle_root, sign_message
from net._mcp_board import format_board_state

REPO = Path(__file__).resolve().parent.parent
TARGET_P50_MS = 10.0
TARGET_VERIFY_S = 1.0
TARGET_HIT_RATE = 0.9


def _emit(record: dict[str, Any]) -> None:
    print(json.dumps({"bench": "mcp", **record}), flush=True)


def _stats(name: str, samples: list[float], **extra: Any) -> None:
    ms = sorted(1000 * s for s in samples)
    _emit(
        {
            "what": name,
            "n": len(ms),
            "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
            **extra,
        }
    )


def _perturbed(data: bytes, seed: int) -> bytes:
    import numpy as np

    from engine.nn import decode_weights, encode_weights

    config, arrays = decode_weights(data)
    rng = np.random.default_rng(seed)
    noisy = {k: v + rng.normal(0, 1e-3, v.shape).astype(np.float32) for k, v in arrays.items()}
    return encode_weights(config, noisy)


def _held_out_games(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    games = []
    for i in range(count):
        pos = Position(9)
        for _ in range(60):
            legal = pos.legal_points()
            pos = pos.play_at(rng.choice(legal) if legal else None)
        result = "B+2.5" if i % 2 else "W+4.5"
        games.append(dump_sgf(GameRecord.from_position(pos, result=result)).decode())
    return games


async def _call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    if result.is_error or not isinstance(result.structured_content, dict):
        raise RuntimeError(f"{tool} failed: {result.content}")
    return result.structured_content


async def _run(args: argparse.Namespace, work: Path) -> None:
    models = work / "models"
    models.mkdir()
    if DEFAULT_MODEL.is_file():
        default = DEFAULT_MODEL.read_bytes()
    else:
        import torch

        from engine.nn import PolicyValueNet, save_weights

        torch.manual_seed(0)
        default = save_weights(PolicyValueNet())
    newer = _perturbed(default, 1)
    (models / "old.cbor").write_bytes(default)
    from engine.nn import weights_id

    old_id, new_id = weights_id(default), weights_id(newer)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    params = StdioServerParameters(
        command=sys.executable,
        # No warm-up: the first predict_move loads torch and the model, the first
        # verify_model imports fl, so no background import runs under the round trips.
        args=["-m", "net.mcp", "--data-dir", str(work), "--no-default-model", "--no-warm-up"],
        env=env,
    )
    started = time.perf_counter()
    with (work / "server.log").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            initialized = time.perf_counter() - started
            empty = "/".join(["." * 9] * 9) + ";b"
            await _call(session, "predict_move", board_state=empty)
            _emit(
                {
                    "what": "server_start",
                    "initialize_s": round(initialized, 2),
                    "first_answer_s": round(time.perf_counter() - started, 2),
                    "model": DEFAULT_MODEL.name if DEFAULT_MODEL.is_file() else "fresh",
                }
            )

            before = await _call(session, "cache_stats")
            pos = Position(9)
            positions: list[Position] = []
            rtt: list[float] = []
            while not pos.is_game_over and len(positions) < args.moves:
                sgf = dump_sgf(GameRecord.from_position(pos)).decode()
                t0 = time.perf_counter()
                out = await _call(session, "predict_move", board_state=sgf)
                rtt.append(time.perf_counter() - t0)
                positions.append(pos)
                point = from_gtp(out["move"], 9)
                move = Move.pass_(pos.to_play) if point is None else Move.play(pos.to_play, point)
                pos = pos.play(move)
            after = await _call(session, "cache_stats")
            _stats("predict_rtt_sgf_9", rtt, target_p50_ms=TARGET_P50_MS)
            hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
            _emit(
                {
                    "what": "cache_game",
                    "moves": len(positions),
                    "hits": hits,
                    "misses": misses,
                    "preloads": after["preloads"],
                    "hit_rate": round(hits / max(hits + misses, 1), 4),
                    "target": TARGET_HIT_RATE,
                }
            )
            for name, analyze in (
                ("predict_rtt_compact_9", False),
                ("predict_rtt_analyze_9", True),
            ):
                samples = []
                for p in positions:
                    text = format_board_state(p)
                    t0 = time.perf_counter()
                    await _call(session, "predict_move", board_state=text, analyze=analyze)
                    samples.append(time.perf_counter() - t0)
                _stats(name, samples, target_p50_ms=TARGET_P50_MS)

            # The same work without MCP (this process, one thread): the rest of a round
            # trip is the protocol, the pipes and the scheduler.
            from net._mcp_models import ModelRegistry
            from net._mcp_tasks import ModelTasks

            local = ModelTasks(ModelRegistry(models, None, threads=1))
            samples = []
            for p in positions:
                text = format_board_state(p)
                t0 = time.perf_counter()
                local.predict(text)
                samples.append(time.perf_counter() - t0)
            _stats("predict_inprocess_compact_9", samples)

            key = SigningKey.generate()
            subs = tuple(bytes([i]) * 32 for i in range(1, 11))
            update = sign_message(
                ModelUpdate(
                    1, bytes(key.verify_key), new_id, old_id, 10, merkle_root(subs), subs, ()
                ),
                key,
            )
            proof = {
                "update": base64.b64encode(encode_round_message(update)).decode(),
                "coordinator_key": bytes(key.verify_key).hex(),
            }
            games = _held_out_games(args.held_out_games, seed=7)
            inline = base64.b64encode(newer).decode()
            server_s, client_s = [], []
            positions_seen = 0
            for _ in range(1 + args.verify_repeats):
                t0 = time.perf_counter()
                out = await _call(
                    session,
                    "verify_model",
                    old_weights=old_id,
                    new_weights=inline,
                    proof=proof,
                    games=games,
                )
                client_s.append(time.perf_counter() - t0)
                server_s.append(out["seconds"])
                positions_seen = out["held_out_positions"]
                if not out["valid"]:
                    raise RuntimeError(f"verify_model refused the update: {out['reason']}")
            _emit(
                {
                    "what": "verify_model",
                    "held_out_positions": positions_seen,
                    "first_server_s": round(server_s[0], 3),
                    "first_client_s": round(client_s[0], 3),
                    "server_s": round(statistics.median(server_s[1:]), 3),
                    "client_s": round(statistics.median(client_s[1:]), 3),
                    "target_s": TARGET_VERIFY_S,
                }
            )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=80, help="longest game to play")
    parser.add_argument("--held-out-games", type=int, default=8)
    parser.add_argument("--verify-repeats", type=int, default=3)
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-mcp-") as tmp:
        anyio.run(_run, args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
