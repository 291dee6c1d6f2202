"""UI responsiveness while the embedded network starts and the Peers screen lists peers.

Runs the real app headless (Textual's ``run_test``) with its embedded relay and two
bot peers, and a :class:`~p2pgo_tui._netmodel.LagProbe` measuring how late the event
loop runs a 20 ms timer. Prints one JSON line: worst, p50 and p99 lag, and the seconds
until the network was up and both bots were listed. Target: no freeze (worst < 1 s).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path

from engine import HeuristicPlayer
from p2pgo_tui import GameSettings, make_app
from p2pgo_tui._netmodel import LagProbe, NetStatus, NetworkPlan
from p2pgo_tui._peers_screen import PeersScreen

DEADLINE_S = 60.0


async def _scenario(data_dir: Path) -> dict[str, object]:
    app = make_app(
        ai=HeuristicPlayer(1),
        settings=GameSettings(size=9, komi=7.5),
        player_name="Bench",
        network=NetworkPlan(data_dir, bots=2),
    )
    probe = LagProbe()
    start = time.monotonic()
    up_s = listed_s = None
    async with app.run_test(size=(150, 40)) as pilot:
        probe.start()
        while time.monotonic() - start < DEADLINE_S:
            network = app.network
            if up_s is None and network is not None and network.status is NetStatus.UP:
                up_s = time.monotonic() - start
                await pilot.press("f3")
            screen = app.screen
            if up_s is not None and isinstance(screen, PeersScreen):
                snap = screen.snapshot
                if snap is not None and len(snap.peers) >= 2:
                    listed_s = time.monotonic() - start
                    break
            await pilot.pause(0.05)
        probe.stop()
    return {
        "bench": "tui_lag_with_network",
        "network_up_s": None if up_s is None else round(up_s, 2),
        "peers_listed_s": None if listed_s is None else round(listed_s, 2),
        "samples": len(probe.lags),
        "lag_worst_ms": round(probe.worst * 1000, 1),
        "lag_p50_ms": round(probe.percentile(50) * 1000, 1),
        "lag_p99_ms": round(probe.percentile(99) * 1000, 1),
        "target_worst_ms": 1000,
    }


def main() -> None:
    logging.getLogger("libp2p").setLevel(logging.CRITICAL)  # keep the JSON lines readable
    with tempfile.TemporaryDirectory() as root:
        print(json.dumps(asyncio.run(_scenario(Path(root)))), flush=True)


if __name__ == "__main__":
    main()
