"""Local training: loss goes down, FedProx pulls towards the start, resuming is exact."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import GameRecord, Position, Rules, dump_sgf
from engine._scoring import score
from engine.nn import (
    ExampleSet,
    LrSchedule,
    ModelConfig,
    OptimizerKind,
    PolicyValueNet,
    Progress,
    TrainConfig,
    Trainer,
    build_examples,
    evaluate,
    load_weights,
    model_to_arrays,
    save_weights,
    train_local,
    weights_id,
)
from engine.train import load_checkpoint, main, save_checkpoint

TINY = ModelConfig(blocks=1, channels=8, head_channels=4, value_hidden=8, global_pool_every=0)


def _game(seed: int, size: int = 5, moves: int = 14) -> GameRecord:
    """A random game of ``moves`` plies, scored as it stands."""
    rng = random.Random(seed)
    pos = Position(size, Rules.named("chinese", 0.5))
    for _ in range(moves):
        legal = pos.legal_points()
        pos = pos.play_at(rng.choice(legal) if legal else None)
    record = GameRecord.from_position(pos, game_id=f"g{seed}")
    return replace(record, result=score(pos).result())


@pytest.fixture(scope="module")
def small_set() -> ExampleSet:
    return build_examples([_game(s) for s in range(6)])


@pytest.fixture(autouse=True)
def one_thread(restore_threads: None) -> None:
    # Tiny networks gain nothing from threads, and on a busy machine OpenMP's threads
    # wait on each other (several times slower).
    torch.set_num_threads(1)


def _fresh(seed: int = 0, config: ModelConfig = TINY) -> PolicyValueNet:
    torch.manual_seed(seed)
    return PolicyValueNet(config)


def test_a_tiny_training_run_lowers_the_loss(small_set: ExampleSet) -> None:
    model = _fresh()
    before = evaluate(model, small_set, device="cpu")
    seen: list[Progress] = []
    config = TrainConfig(
        lr=2e-2, epochs=20, batch_size=32, augment=False, device="cpu", schedule=LrSchedule.COSINE
    )
    result = train_local(model, small_set, config, progress=seen.append)
    after_model = PolicyValueNet(TINY)
    after_model.load_state_dict({k: torch.from_numpy(v) for k, v in result.weights.items()})
    after = evaluate(after_model, small_set, device="cpu")
    assert after.loss < 0.8 * before.loss
    assert after.top1 > before.top1
    assert result.steps == len(seen) == seen[-1].total == 20 * 3  # 84 examples, batches of 32
    assert [p.step for p in seen[:3]] == [1, 2, 3]
    assert seen[-1].lr < seen[0].lr  # cosine decay
    assert result.num_examples == len(small_set) == 84
    assert set(result.delta) == set(result.weights)
    # The caller's model is untouched; delta is new - old.
    start = model_to_arrays(model)
    for name, delta in result.delta.items():
        assert delta.dtype == np.float32
        np.testing.assert_allclose(start[name] + delta, result.weights[name], atol=1e-6)
    assert any(np.abs(d).max() > 0 for d in result.delta.values())


def test_train_local_takes_weight_files_arrays_and_game_records() -> None:
    model = _fresh(1)
    config = TrainConfig(max_steps=2, device="cpu", batch_size=16)
    games = [_game(10), _game(11)]
    from_bytes = train_local(save_weights(model), games, config)
    from_arrays = train_local((TINY, model_to_arrays(model)), games, config)
    from_model = train_local(model, games, config)
    for name in from_model.weights:
        np.testing.assert_array_equal(from_bytes.weights[name], from_model.weights[name])
        np.testing.assert_array_equal(from_arrays.weights[name], from_model.weights[name])
    assert from_model.steps == 2 and from_model.metrics.examples == 28  # 16 + 12
    with pytest.raises(ValueError):
        train_local(model, [replace(_game(12), result="")], config)


def _delta_norm(delta: dict[str, np.ndarray]) -> float:
    return float(np.sqrt(sum(float((d.astype(np.float64) ** 2).sum()) for d in delta.values())))


def test_fedprox_pulls_towards_the_initial_weights(small_set: ExampleSet) -> None:
    model = _fresh(2)
    base = TrainConfig(
        lr=1e-2, max_steps=12, batch_size=16, device="cpu", optimizer=OptimizerKind.SGD
    )
    free = _delta_norm(train_local(model, small_set, base).delta)
    mild = _delta_norm(train_local(model, small_set, replace(base, prox_mu=10.0)).delta)
    pinned = train_local(model, small_set, replace(base, prox_mu=1e9))
    assert free > 0.0
    assert mild < free
    assert _delta_norm(pinned.delta) < 1e-3 * free  # float rounding only
    # AdamW too: a huge mu keeps the weights where they started.
    adam = replace(base, optimizer=OptimizerKind.ADAMW, lr=1e-3, prox_mu=1e9)
    assert _delta_norm(train_local(model, small_set, adam).delta) < 1e-3


def test_training_is_deterministic_and_resumes_exactly(
    small_set: ExampleSet, tmp_path: Path
) -> None:
    config = TrainConfig(lr=5e-3, epochs=2, batch_size=16, device="cpu", seed=3)
    straight = Trainer(_fresh(4), small_set, config)
    straight.run()
    again = Trainer(_fresh(4), small_set, config)
    again.run()

    first = Trainer(_fresh(4), small_set, config)
    first.run(until=5)  # stop mid-epoch (6 batches per epoch)
    save_checkpoint(tmp_path, first, {"note": "test"})
    model, state = load_checkpoint(tmp_path)
    resumed = Trainer(model, small_set, config)
    resumed.load_state_dict(state)
    assert resumed.step == 5 and state["meta"] == {"note": "test"}
    resumed.run()
    assert resumed.step == straight.step == 12
    for a, b, c in zip(
        straight.model.parameters(),
        again.model.parameters(),
        resumed.model.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)
        assert torch.allclose(a, c, atol=1e-6)


@pytest.mark.parametrize(
    "bad",
    [
        {"lr": 0.0},
        {"lr": float("nan")},
        {"epochs": 0},
        {"batch_size": 0},
        {"batch_size": 2.5},
        {"prox_mu": -1.0},
        {"max_steps": 0},
        {"device": "tpu"},
        {"momentum": 1.0},
        {"optimizer": "adam"},
        {"max_grad_norm": 0.0},
        {"weight_decay": True},
    ],
)
def test_train_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**bad)  # type: ignore[arg-type]


def test_p2pgo_train_checkpoints_and_resumes_to_the_same_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    games = tmp_path / "games"
    games.mkdir()
    for s in range(12):
        (games / f"g{s}.sgf").write_bytes(dump_sgf(_game(100 + s)))
    common = [
        str(games),
        "--blocks",
        "1",
        "--channels",
        "8",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--held-out",
        "0.25",
        "--device",
        "cpu",
        "--log-every",
        "2",
    ]
    straight = tmp_path / "straight.cbor"
    assert main([*common, "--out", str(straight)]) == 0
    out = capsys.readouterr().out
    assert "held-out top1" in out and "epoch 2:" in out and weights_id(straight.read_bytes()) in out

    # Stopped by the time limit after the first checkpoint, then resumed.
    split = tmp_path / "split.cbor"
    args = [*common, "--out", str(split), "--checkpoint-every", "3"]
    assert main([*args, "--time-limit", "0"]) == 0
    assert "time limit reached at step 3" in capsys.readouterr().out
    assert main([*args, "--resume"]) == 0
    assert "resumed at step 3" in capsys.readouterr().out
    assert split.read_bytes() == straight.read_bytes()
    assert load_weights(split.read_bytes()).config.blocks == 1

    # Resuming with other hyperparameters is refused, as are missing inputs.
    assert main([*args, "--resume", "--lr", "0.5"]) == 2
    assert "hyperparameters differ" in capsys.readouterr().err
    assert main(["--out", str(split)]) == 2
    assert main([str(tmp_path / "nowhere"), "--out", str(split)]) == 2

    # --average: a model soup of the two runs' weights, scored on the same held-out games.
    capsys.readouterr()
    soup = tmp_path / "soup.cbor"
    two = ["--average", str(straight), str(tmp_path / "split.cbor.ckpt" / "weights.cbor")]
    assert main([str(games), *two, "--out", str(soup), "--held-out", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "averaged 2 models" in out and "held-out: top1" in out
    assert weights_id(soup.read_bytes()) in out
    assert load_weights(soup.read_bytes()).config.blocks == 1
    assert main(["--average", str(straight), str(games / "g0.sgf"), "--out", str(soup)]) == 2
    assert "cannot average: file 2" in capsys.readouterr().err
    assert main(["--average", str(straight), "--init", str(straight), "--out", str(soup)]) == 2
    # Games to score it on that cannot be read: a message, not a traceback.
    capsys.readouterr()
    assert main([str(tmp_path / "nowhere"), "--average", str(straight), "--out", str(soup)]) == 2
    assert "p2pgo-train: error:" in capsys.readouterr().err
