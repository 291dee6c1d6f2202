"""The app's federated rounds, on the network thread: coordinator, bots and the player.

Imported by ``p2pgo_tui._network`` (so lazily, with trio and libp2p). Three parts:

- embedded mode: an `net.FlCoordinatorService` on the embedded relay node, starting
  from the shipped ``engine/models/default-9x9.cbor`` (or its saved state in
  ``<data>/net/relay/fl``), with :func:`embedded_round_settings`;
- embedded mode: each bot runs an `net.FlParticipantService` that joins every round,
  training on its own small game store (``<data>/net/bots/<name>/gamestore``), seeded
  once with a few games the bot plays against itself with `engine.HeuristicPlayer`
  (~30 ms a game): games never leave a device, so a bot needs games of its own;
- the player's own participant (``auto_join=False``): it follows the model and takes
  part only in the next round after the player confirmed what it costs
  (:meth:`RoundsRuntime.quote`, :meth:`RoundsRuntime.join`); its ledger lives in
  ``<data>/net/player/fl``. It trains on the player's finished games: the network
  games and the app's own store.

Training. Every trainer in this process shares one lock, so one local training runs at
a time, with one torch thread: measured here on 2 loaded cores, 12 steps of batch 16
of the 6x64 network took 2.2 s with one thread and 8.3 s with two, and a single
training thread leaves a core for the UI. `FlParticipantService` already runs the
training in a worker thread, never on the trio thread.

Everything here runs on the trio thread except the constructors of services (disk and
model decoding: the caller runs them in a worker thread) and the ledger arithmetic.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from engine import HeuristicPlayer
from fl import DEFAULT_EPSILON, NamedTensors, PrivacyEvent, Sampling
from net import (
    MODEL_FILE,
    ConfigError,
    FlCoordinatorService,
    FlParticipantService,
    GoModelCodec,
    GoTrainer,
    RoundSettings,
    load_coordinator_state,
    load_model,
)
from p2pgo_tui._engine import GameRecord, GameStore, Position, RecordPlayer, Rules, score
from p2pgo_tui._netmodel import ModelSink, NetworkError, NetworkPlan
from p2pgo_tui._roundsmodel import JoinQuote, MyStatus, RoundSummary, RoundsView

__all__ = ["RoundsRuntime", "embedded_round_settings", "seed_selfplay_games", "warm_up_training"]

log = logging.getLogger(__name__)

# Bots hold synthetic self-play games, not a person's: their budget only has to outlast
# a long session. The player's budget is never this (see RoundsRuntime.player_service).
BOT_EPSILON_BUDGET = 1e4
MIN_GAMES = 1
_KEEP_ROUNDS = 100
_FINAL = (MyStatus.VERIFIED, MyStatus.FAILED, MyStatus.REFUSED, MyStatus.LEFT)
# The AI follows the models the player's participant adopts after verifying a round's
# signed update. Not the ones it merely follows from the coordinator ("fl_model"): the
# first of those is the shipped network re-encoded (other bytes, so another version,
# same weights), and telling the player "the AI changed" for it would be false.
_MODEL_EVENTS = frozenset({"fl_adopted"})


def embedded_round_settings(plan: NetworkPlan) -> RoundSettings:
    """Rounds for the embedded network: ~4 bots and the player on one machine.

    - min 3 participants (the DP noise assumes 3 honest inputs); the first round waits
      for 3 peers holding the model; all ready peers take part (q = 1, no
      amplification claimed);
    - noise multiplier 6: one round costs epsilon ~0.59 at delta 1e-5 (PLD), two
      ~0.87 in total, so the default budget of epsilon 1 lets the player join two
      rounds and refuses a third; a larger budget is the player's choice;
    - clip norm 0.001: DP noise on the mean of 5 updates is z*C*sqrt(5/3)/5 ~ 0.0016
      per weight and round, small beside the shipped network's weights (std ~0.06).
      With 5 peers DP leaves little signal either: the rounds are real, the learning
      is modest, as the per-round charts show;
    - timeouts for serialised training of 5 peers on a loaded 2-core machine;
      rounds every `plan.round_interval_s`, sooner when the player asks to join.
    """
    return RoundSettings(
        per_round=8,
        min_participants=3,
        wait_for_peers=3,
        ready_s=5.0,
        train_s=90.0,
        stage_s=15.0,
        interval_s=plan.round_interval_s,
        clip_norm=0.001,
        noise_multiplier=6.0,
        sampling=Sampling.POISSON_SECRET,
        sampling_rate=1.0,
        expected_dropout=0.0,
    )


def seed_selfplay_games(store: GameStore, name: str, seed: int, count: int) -> int:
    """Give a bot `count` finished 9x9 games against itself, once (0 if it has games)."""
    if store.games(finished=True):
        return 0
    for i in range(count):
        player = HeuristicPlayer(seed * 1000 + i)
        position = Position(9, Rules.named("chinese"))
        while not position.is_game_over and position.move_number < 300:
            position = position.play(player.choose(position))
        record = GameRecord.from_position(
            position,
            black=RecordPlayer(name),
            white=RecordPlayer(name),
            date=datetime.date.today().isoformat(),
            result=score(position).result(),
            game_id=f"{name}-selfplay-{seed}-{i}",
        )
        store.save(record)
    return count


def warm_up_training() -> None:
    """Take one optimizer step on a scalar, so torch's lazy imports happen now.

    Measured here: the first ``optimizer.step()`` of a process imports torch._dynamo
    (824 modules, ~5 s of CPU on the loaded 2-core machine, holding the GIL in long
    stretches). Run in a worker thread when the player first opens the Rounds screen,
    that cost lands before a round rather than stalling the UI in the middle of one.
    """
    import torch

    weight = torch.zeros(1, requires_grad=True)
    (weight * 2).sum().backward()  # type: ignore[no-untyped-call]
    torch.optim.SGD([weight], lr=0.1).step()


class _AppTrainer(GoTrainer):
    """`GoTrainer` with this process's training lock, one torch thread, step progress,
    and optionally more games (the app's own store) besides the network store."""

    def __init__(
        self,
        store: GameStore,
        codec: GoModelCodec,
        config: Any,
        lock: threading.Lock,
        extra: Callable[[], Sequence[GameRecord]] | None = None,
    ) -> None:
        super().__init__(store, codec, config, progress=self._step)
        self._lock = lock
        self._extra = extra
        self._steps_planned = int(config.max_steps or 0)
        self.steps = 0  # written by the training thread, read on the trio thread
        self.total = 0
        self.games = 0

    def _step(self, done: int, total: int) -> None:
        self.steps, self.total = done, total

    def records(self) -> list[Any]:
        records = list(super().records())
        if self._extra is not None:
            try:
                records.extend(self._extra())
            except Exception as exc:  # the app's store is optional here: train on the rest
                log.warning("the app's game store could not be read for training: %r", exc)
        unique = {r.record_id: r for r in records}
        self.games = len(unique)
        return list(unique.values())

    def train(
        self, weights: NamedTensors, hyperparams: Mapping[str, float]
    ) -> tuple[NamedTensors, int, Mapping[str, float]]:
        self.steps, self.total = 0, self._steps_planned
        with self._lock:
            import torch

            torch.set_num_threads(1)
            return super().train(weights, hyperparams)


@dataclass
class _Seen:
    """A round the player saw (without an embedded coordinator to ask)."""

    parent: str
    status: str = ""
    reason: str = ""
    model: str = ""


class RoundsRuntime:
    """The rounds side of ``NetRuntime`` (see the module docstring)."""

    def __init__(
        self,
        plan: NetworkPlan,
        net_dir: Path,
        local_games: Callable[[], Sequence[GameRecord]] | None = None,
        on_model: ModelSink | None = None,
    ) -> None:
        self.plan = plan
        self._net_dir = net_dir
        self._local_games = local_games
        self._on_model = on_model
        self._lock = threading.Lock()
        self.coordinator: FlCoordinatorService | None = None
        self.player: FlParticipantService | None = None
        self._trainer: _AppTrainer | None = None
        self.coordinator_ids: tuple[str, ...] = ()
        self.error = ""  # why the player cannot join rounds at all
        self._metrics: dict[int, list[Mapping[str, float]]] = defaultdict(list)
        self._mine: dict[int, str] = {}
        self._seen: dict[int, _Seen] = {}

    def _train_config(self) -> Any:
        from engine.nn import TrainConfig

        return TrainConfig(device="cpu", batch_size=16, max_steps=self.plan.train_steps)

    # -- building the services (worker threads) -----------------------------------------

    def coordinator_service(self, state_dir: Path) -> FlCoordinatorService:
        """The embedded relay's coordinator (decodes the model: call in a worker thread)."""
        saved = load_coordinator_state(state_dir)
        if saved is not None:
            codec, weights, first_round, parent = saved
        else:
            from engine.gtp import DEFAULT_MODEL

            codec, weights = load_model(DEFAULT_MODEL.read_bytes())
            first_round, parent = 1, ""
        self.coordinator = FlCoordinatorService(
            codec,
            weights,
            embedded_round_settings(self.plan),
            state_dir=state_dir,
            parent_version=parent,
            first_round=first_round,
            on_event=self._sink("coordinator"),
            first_round_delay_s=min(60.0, self.plan.round_interval_s),
        )
        return self.coordinator

    def bot_service(
        self, name: str, number: int, data_dir: Path, signing_key: Any, coordinator: str
    ) -> tuple[FlParticipantService, GameStore]:
        """A bot's participant and its game store, seeded once (call in a worker thread)."""
        store = GameStore(data_dir / "gamestore", signing_key)
        seeded = seed_selfplay_games(store, name, number, self.plan.bot_games)
        if seeded:
            log.info("%s: seeded %d self-play games", name, seeded)
        codec = GoModelCodec()
        service = FlParticipantService(
            _AppTrainer(store, codec, self._train_config(), self._lock),
            state_dir=data_dir / "fl",
            coordinators=[coordinator],
            codec=codec,
            epsilon_budget=BOT_EPSILON_BUDGET,
            on_event=self._sink(name),
        )
        return service, store

    def player_service(
        self, store: GameStore, coordinators: Sequence[str]
    ) -> FlParticipantService | None:
        """The player's participant (None, with `error` set, if it cannot run)."""
        self.coordinator_ids = tuple(coordinators)
        if not coordinators:
            self.error = "no relay to coordinate rounds"
            return None
        codec = GoModelCodec()
        self._trainer = _AppTrainer(
            store, codec, self._train_config(), self._lock, self._local_games
        )
        budget = self.plan.epsilon_budget
        try:
            self.player = FlParticipantService(
                self._trainer,
                state_dir=self._net_dir / "player" / "fl",
                coordinators=coordinators,
                codec=codec,
                epsilon_budget=DEFAULT_EPSILON if budget is None else budget,
                min_games=MIN_GAMES,
                on_event=self._sink("player"),
                auto_join=False,
            )
        except ConfigError as err:  # e.g. an unreadable ledger: never guess what was spent
            self.error = str(err)
            log.error("the player cannot join rounds: %s", err)
            return None
        self._trainer.data_summary()  # the game count the screen shows from the start
        return self.player

    # -- events (trio thread) -------------------------------------------------------------

    def _sink(self, who: str) -> Callable[[str, dict[str, Any]], None]:
        def on_event(event: str, fields: dict[str, Any]) -> None:
            log.debug("%s: %s %s", who, event, fields)
            if who == "player" and event in _MODEL_EVENTS:
                self._player_model(fields)
            round_id = fields.get("round_id")
            if not isinstance(round_id, int):
                return
            if event == "fl_round":
                status = str(fields.get("status", ""))
                metrics = fields.get("train_metrics")
                if metrics:
                    self._metrics[round_id].append(metrics)
                if who == "player" and status not in ("skipped", ""):
                    self._mine[round_id] = status
                    seen = self._seen.setdefault(round_id, _Seen(""))
                    seen.status, seen.reason = status, str(fields.get("reason", ""))
            elif who == "player" and event == "fl_round_start":
                self._seen[round_id] = _Seen(str(fields.get("model_version", "")))
            elif who == "player" and event == "fl_adopted":
                self._seen.setdefault(round_id, _Seen("")).model = str(fields["model_version"])
            elif who == "coordinator" and event == "fl_round_done":
                log.info("round %d done: %s", round_id, fields.get("completed"))
            for table in (self._metrics, self._mine, self._seen):
                for old in [k for k in table if k <= round_id - _KEEP_ROUNDS]:
                    del table[old]

        return on_event

    def _player_model(self, fields: Mapping[str, Any]) -> None:
        """Tell the app the model the player's participant holds now, so its AI plays
        with it (the app validates the file before it uses it)."""
        version = fields.get("model_version")
        if self._on_model is not None and isinstance(version, str) and version:
            self._on_model(version, self._net_dir / "player" / "fl" / MODEL_FILE)

    # -- what the screen asks (trio thread) -------------------------------------------------

    def _summaries(self) -> tuple[RoundSummary, ...]:
        out = []
        if self.coordinator is not None:
            for report in list(self.coordinator.reports)[-_KEEP_ROUNDS:]:
                loss, top1 = self._mean_metrics(report.round_id)
                out.append(
                    RoundSummary(
                        report.round_id,
                        "completed" if report.completed else "aborted",
                        report.reason,
                        len(report.survivors),
                        report.parent_version,
                        report.model_version,
                        report.seconds,
                        loss,
                        top1,
                        self._mine.get(report.round_id, ""),
                    )
                )
            return tuple(out)
        for round_id, seen in sorted(self._seen.items()):
            loss, top1 = self._mean_metrics(round_id)
            outcome = "completed" if seen.model else seen.status or "running"
            out.append(
                RoundSummary(
                    round_id,
                    outcome,
                    seen.reason,
                    participants=-1,  # unknown without the coordinator's report
                    parent_version=seen.parent,
                    model_version=seen.model,
                    seconds=0.0,
                    loss=loss,
                    top1=top1,
                    mine=self._mine.get(round_id, ""),
                )
            )
        return tuple(out)

    def _mean_metrics(self, round_id: int) -> tuple[float | None, float | None]:
        runs = self._metrics.get(round_id) or []
        losses = [float(m["loss"]) for m in runs if "loss" in m]
        top1 = [float(m["top1"]) for m in runs if "top1" in m]
        return (
            sum(losses) / len(losses) if losses else None,
            sum(top1) / len(top1) if top1 else None,
        )

    def view(self) -> RoundsView:
        coordinator, player, trainer = self.coordinator, self.player, self._trainer
        history = self._summaries()
        live = coordinator.live_round() if coordinator is not None else None
        pv = player.view() if player is not None else None
        next_at = coordinator.next_round_at if coordinator is not None else None
        round_id: int | None
        if live is not None:
            round_id, stage = live.round_id, live.stage.replace("_", " ")
            participants = max(live.ready, live.selected)
        elif coordinator is not None:
            round_id = history[-1].round_id if history else None
            stage = "between rounds" if history or next_at else "waiting for peers"
            participants = 0
        else:
            round_id = pv.last_seen_round if pv is not None and pv.last_seen_round >= 0 else None
            stage = "round running" if pv is not None and pv.active else "between rounds"
            participants = 0
        if pv is None:
            status, reason = MyStatus.IDLE, self.error or "the network is starting"
        elif pv.active:
            status, reason = MyStatus.of(pv.status), pv.reason
        elif pv.joining:
            status, reason = MyStatus.JOINING, "takes part in the next round"
        elif MyStatus.of(pv.status) in _FINAL and pv.round_id == pv.last_seen_round:
            status, reason = MyStatus.of(pv.status), pv.reason
        else:
            status, reason = MyStatus.IDLE, ""
        return RoundsView(
            coordinator="embedded coordinator"
            if coordinator is not None
            else ", ".join(self.coordinator_ids) or "none",
            round_id=round_id,
            stage=stage,
            participants=participants,
            sessions=len(coordinator.sessions) if coordinator is not None else -1,
            next_round_at=next_at,
            my_status=status,
            my_reason=reason,
            training=(trainer.steps, trainer.total) if trainer is not None else (0, 0),
            epsilon_spent=pv.epsilon_spent if pv is not None else None,
            epsilon_budget=pv.epsilon_budget if pv is not None else 0.0,
            delta=pv.delta if pv is not None else 0.0,
            model_version=pv.model_version if pv is not None else "",
            games=trainer.games if trainer is not None else 0,
            min_games=MIN_GAMES,
            history=history,
        )

    def _ready(self) -> FlParticipantService:
        if self.player is None:
            raise NetworkError(self.error or "rounds are not available yet")
        return self.player

    async def quote(self) -> JoinQuote:
        """What joining the next round costs (the ledger arithmetic in a worker thread)."""
        player = self._ready()
        event: PrivacyEvent | None = player.planned_event()
        if event is None and self.coordinator is not None:
            # The privacy event depends on the noise and sampling only, not the model size.
            event = self.coordinator.settings.params(1).privacy_event()
        if event is None:
            raise NetworkError("no round seen from the coordinator yet: try once one starts")
        assert self._trainer is not None
        games, _ = self._trainer.data_summary()
        ledger = player.ledger
        planned = event
        spent, after = await trio.to_thread.run_sync(
            lambda: (ledger.spent(), player.epsilon_after(planned))
        )
        budget = ledger.epsilon_budget
        reason = ""
        if after > budget:
            reason = (
                f"Joining would spend epsilon {after:.3f} in total, over your privacy budget "
                f"of {budget:g} (spent so far: {spent:.3f}). Not joined."
            )
        elif games < MIN_GAMES:
            reason = "You have no finished games to train on: finish a game first."
        return JoinQuote(
            spent,
            after,
            budget,
            ledger.delta,
            event.noise_multiplier,
            event.amplified,
            allowed=not reason,
            reason=reason,
        )

    def join(self, max_epsilon: float) -> None:
        """Take part in the next round, if it keeps the total at most `max_epsilon`."""
        player = self._ready()
        if player.view().active:
            raise NetworkError("you are already taking part in this round")
        player.join_next(max_epsilon)
        if self.coordinator is not None:
            self.coordinator.request_round()  # our own coordinator: no need to wait

    def leave(self) -> str:
        """Withdraw from the next round or the one running; says what happened."""
        player = self._ready()
        view = player.view()
        if not (view.active or view.joining):
            raise NetworkError("you are not in a round and have not asked to join one")
        player.leave()
        if view.active:
            return f"You left round {view.round_id}; the privacy budget it spent stays spent."
        return "You will not join the next round."
