"""The issue's acceptance test: a relay coordinating 8 peers in two peer processes through
3 federated rounds of the real Go network, one peer SIGKILLed mid-round.

Every process imports libp2p, torch and scipy (~6 s of CPU), so the peers share
processes: one holds seven nodes (``--bots 6``), the victim is alone in the other.
"""

from __future__ import annotations

import queue
import random
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import blake3
import cbor2
import pytest

from engine import GameRecord, GameStore, Position, Rules
from engine._scoring import score
from fl import PrivacyEvent, PrivacyLedger, Sampling, compute_epsilon
from net import Identity
from tests.net.test_relay_processes import Proc, free_port, processes

NOISE = 2.0
ROUNDS = 3
FREEZE_ROUND = 2  # the victim stops answering after its masked input in this round


def _game(seed: int, size: int = 5, moves: int = 12) -> GameRecord:
    rng = random.Random(seed)
    pos = Position(size, Rules.named("chinese", 0.5))
    for _ in range(moves):
        legal = pos.legal_points()
        pos = pos.play_at(rng.choice(legal) if legal else None)
    record = GameRecord.from_position(pos, game_id=f"g{seed}")
    return replace(record, result=score(pos).result())


def _seed_peer(data_dir: Path, seed: int) -> None:
    """An identity and three finished games of its own, as if it had played them."""
    identity = Identity.load_or_create(data_dir)
    with GameStore(data_dir / "gamestore", identity.signing_key) as store:
        for k in range(3):
            store.save(_game(seed * 10 + k))


def _tiny_model(path: Path) -> None:
    import torch

    from engine.nn import ModelConfig, PolicyValueNet, save_weights

    torch.manual_seed(0)
    config = ModelConfig(blocks=1, channels=8, head_channels=4, value_hidden=8, global_pool_every=0)
    path.write_bytes(save_weights(PolicyValueNet(config)))


class Events:
    """Every JSON line a process printed so far, searchable."""

    def __init__(self, proc: Proc, start: float) -> None:
        self.proc = proc
        self.start = start
        self.lines: list[dict[str, Any]] = []

    def poll(self) -> None:
        while True:
            try:
                line = self.proc.events.get_nowait()
            except queue.Empty:
                return
            line["t"] = round(time.monotonic() - self.start, 2)  # when we read it
            self.lines.append(line)

    def find(self, event: str, **match: Any) -> list[dict[str, Any]]:
        self.poll()
        return [
            e
            for e in self.lines
            if e["event"] == event and all(e.get(k) == v for k, v in match.items())
        ]


def _wait(condition: Any, deadline: float, what: str, logs: list[Events]) -> Any:
    while time.monotonic() < deadline:
        got = condition()
        if got:
            return got
        time.sleep(0.1)
    for log in logs:
        log.poll()
    tails = "\n".join(
        f"{log.proc.log.name}: {log.lines[-12:]}\n{log.proc.log.read_text(errors='replace')[-1500:]}"
        for log in logs
    )
    raise AssertionError(f"timed out waiting for {what}; event and stderr tails:\n{tails}")


@pytest.mark.slow
def test_three_rounds_over_the_network_survive_a_killed_peer(tmp_path: Path) -> None:
    start = time.monotonic()
    deadline = start + 85
    model = tmp_path / "model.bin"
    _tiny_model(model)
    layout = {"a": 6, "victim": 0}  # bots besides each process's own node
    seed = 0
    for name, bots in layout.items():
        for data_dir in [
            tmp_path / name,
            *(tmp_path / name / "bots" / str(i) for i in range(bots)),
        ]:
            seed += 1
            _seed_peer(data_dir, seed)
    # Everything starts at once (imports dominate): the peers dial the relay's known
    # address and retry until it listens.
    port = free_port()
    relay_addr = (
        f"/ip4/127.0.0.1/tcp/{port}/p2p/{Identity.load_or_create(tmp_path / 'relay').peer_id}"
    )
    with processes() as started:
        relay = Proc(
            "net.relay",
            tmp_path / "relay",
            "--listen",
            f"/ip4/127.0.0.1/tcp/{port}",
            "--coordinate-rounds",
            "--model-file",
            str(model),
            "--rounds",
            str(ROUNDS),
            "--per-round",
            "8",
            "--min-participants",
            "5",
            "--wait-for-peers",
            "8",
            "--ready-timeout",
            "3",
            "--train-timeout",
            "30",
            "--stage-timeout",
            "4",
            "--round-interval",
            "0.5",
            "--noise-multiplier",
            str(NOISE),
            "--expected-dropout",
            "0",
        )
        started.append(relay)
        common = ["--connect", relay_addr, "--join-rounds", "--epsilon-budget", "50"]
        common += ["--train-max-steps", "2"]
        peers = {}
        for name, bots in layout.items():
            extra = ["--bots", str(bots)] if bots else ["--fl-freeze-round", str(FREEZE_ROUND)]
            peers[name] = Proc("net.peer", tmp_path / name, *common, *extra)
            started.append(peers[name])
        logs = {name: Events(proc, start) for name, proc in peers.items()}
        relay_log = Events(relay, start)
        procs = [relay_log, *logs.values()]

        victim = _wait(lambda: logs["victim"].find("listening"), deadline, "victim", procs)
        victim_id = victim[0]["peer_id"]
        frozen = _wait(lambda: logs["victim"].find("fl_frozen"), deadline, "the freeze", procs)
        assert frozen[0]["round_id"] == FREEZE_ROUND
        peers["victim"].proc.send_signal(signal.SIGKILL)  # mid-round, just after its input
        assert peers["victim"].proc.wait(timeout=10) == -signal.SIGKILL

        done = _wait(
            lambda: (
                len(relay_log.find("fl_round_done")) >= ROUNDS and relay_log.find("fl_round_done")
            ),
            deadline,
            "three rounds",
            procs,
        )
        reports = {r["round_id"]: r for r in done}
        assert sorted(reports) == [1, 2, 3]
        assert all(r["completed"] for r in reports.values()), reports
        for r_id in (2, 3):
            assert reports[r_id]["parent_version"] == reports[r_id - 1]["model_version"]
        # The coordinator waited for all 8 sessions; readiness is on a 3 s deadline.
        assert len(reports[1]["selected"]) >= 7
        # The victim went silent inside round 2: a stage waited for it until its
        # deadline, and the round still finished.
        silent = [s for s in reports[2]["stages"] if victim_id in s["missing"]]
        assert silent and all(s["closed"] == "timeout" for s in silent)
        assert victim_id not in reports[3]["selected"] and len(reports[3]["selected"]) >= 5

        # Every surviving node (seven, in the other process) adopted round 3's verified model.
        final = reports[3]["model_version"]
        survivors = {
            e["peer_id"] for e in logs["a"].find("listening") + logs["a"].find("bot_listening")
        }
        assert len(survivors) == 7
        adopted = _wait(
            lambda: (
                {
                    e["peer_id"]
                    for e in logs["a"].find("fl_adopted", round_id=3, model_version=final)
                }
                >= survivors
            ),
            deadline,
            "every survivor adopting round 3",
            procs,
        )
        assert adopted

        # On disk: each survivor's model file is the final version; its ledger holds
        # one unamplified round per round it was ready for (q = 1: no amplification).
        expected = compute_epsilon([PrivacyEvent(NOISE, Sampling.POISSON_SECRET, 1.0, ROUNDS)])
        dirs = [tmp_path / "a", *(tmp_path / "a" / "bots" / str(i) for i in range(layout["a"]))]
        for data_dir in dirs:
            assert blake3.blake3((data_dir / "fl" / "model.bin").read_bytes()).hexdigest() == final
            ledger = PrivacyLedger.from_dict(
                cbor2.loads((data_dir / "fl" / "ledger.cbor").read_bytes())
            )
            assert ledger.events == (PrivacyEvent(NOISE, Sampling.POISSON_SECRET, 1.0, ROUNDS),)
            assert ledger.spent() == pytest.approx(expected)
        last = {e["peer_id"]: e["epsilon"] for e in logs["a"].find("fl_adopted", round_id=3)}
        assert len(last) == 7 and all(eps == pytest.approx(expected) for eps in last.values())
        # The victim's ledger, read after the SIGKILL, counts the two rounds it joined.
        victim_ledger = PrivacyLedger.from_dict(
            cbor2.loads((tmp_path / "victim" / "fl" / "ledger.cbor").read_bytes())
        )
        assert victim_ledger.events == (PrivacyEvent(NOISE, Sampling.POISSON_SECRET, 1.0, 2),)

        started.remove(peers["victim"])
        assert peers["victim"].stop() == -signal.SIGKILL  # closes its pipes
        assert all(p.stop() == 0 for p in started)
