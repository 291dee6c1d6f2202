"""The participant's opt-in that the Rounds screen drives (``FlParticipantService`` with
``auto_join=False``), over real libp2p in one trio run: it follows the model without
taking part, refuses a round that costs more than was confirmed, and takes part in
exactly one round per confirmed join. (It tests ``net/``; it lives here beside the
screen that needs it.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
import trio

from fl import PrivacyLedger
from net import FlCoordinatorService, RoundSettings, TensorCodec
from tests.net._helpers import run_trio
from tests.net.test_fl_round import Federation, PullTrainer, _model


def test_an_opted_out_peer_follows_and_takes_part_only_in_a_confirmed_round(
    tmp_path: Path,
) -> None:
    settings = RoundSettings(
        per_round=6,
        min_participants=3,
        wait_for_peers=4,
        ready_s=1.5,
        train_s=10.0,
        stage_s=5.0,
        rounds=3,
        interval_s=60.0,  # rounds start only when asked (request_round)
        expected_dropout=0.0,
    )

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            fed = Federation(tmp_path, nursery, settings)
            coordinator = FlCoordinatorService(
                TensorCodec(), _model(), settings, on_event=fed._record, first_round_delay_s=60
            )
            fed.coordinator = coordinator
            await fed.start()
            for i in range(3):
                await fed.add_peer(f"p{i}", PullTrainer(i))
            me = await fed.add_peer("me", PullTrainer(5), auto_join=False)
            mine = fed.ids["me"]

            async def status(round_id: int) -> dict[str, Any]:
                # The peer records its own outcome a moment after the coordinator's
                # round ends; wait for it (under the deadline below).
                while not (found := fed.find("fl_round", round_id=round_id, peer_id=mine)):
                    await trio.sleep(0.05)
                (event,) = found
                return event

            with trio.fail_after(40):
                while len(coordinator.sessions) < 4:
                    await trio.sleep(0.05)  # polling the condition, under the deadline
                assert not me.joining and me.planned_event() is None
                coordinator.request_round()
                await coordinator.wait_round(1)
                first = await status(1)
                assert first["status"] == "skipped" and first["reason"] == "not joining"
                await me.wait_model(coordinator.version)  # it still follows the model
                assert me.view().status == "" and me.view().last_seen_round == 1

                me.join_next(max_epsilon=0.1)  # one round at z = 1 costs ~4.4
                assert me.joining
                coordinator.request_round()
                await coordinator.wait_round(2)
                second = await status(2)
                assert second["status"] == "refused"
                assert "more than the 0.100 confirmed" in second["reason"]
                assert not me.joining and me.view().status == "refused"
                assert not (tmp_path / "me" / "fl" / "ledger.cbor").exists()

                event = me.planned_event()
                assert event is not None
                me.join_next(max_epsilon=me.epsilon_after(event))
                coordinator.request_round()
                await coordinator.wait_round(3)
                assert (await status(3))["status"] == "verified" and not me.joining
                assert coordinator.reports[-1].completed
                assert mine in coordinator.reports[-1].survivors
                saved = (tmp_path / "me" / "fl" / "ledger.cbor").read_bytes()
                assert PrivacyLedger.from_dict(cbor2.loads(saved)).events == (event,)
            nursery.cancel_scope.cancel()

    run_trio(main, timeout=60)
