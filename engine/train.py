"""Supervised training of the policy/value network from game records (``p2pgo-train``).

Reads SGF files and directories (recursively) and/or a game store, splits the games
deterministically into training and held-out parts (:func:`engine.nn.split_records`),
trains with :class:`engine.nn.Trainer` (the same code :func:`engine.nn.train_local`
runs on a federated peer), and writes the final weights and their BLAKE3 id.

Progress goes to stdout every ``--log-every`` steps (loss, learning rate, speed) and
after every epoch (training loss and accuracy, held-out top-1/top-3, policy and
value loss). Checkpoints (``--checkpoint-dir``, default ``OUT.ckpt``) are written every
``--checkpoint-every`` steps, at each epoch's end and when ``--time-limit`` runs out:

* ``weights.cbor``: the network, as a float32 p2pgo weight file (never pickle);
* ``state.pt``: ``torch.save`` of plain data only (the step, the optimizer's tensors,
  the hyperparameters and a fingerprint of the training games), read back with
  ``torch.load(weights_only=True)``.

``--resume`` continues from the checkpoint exactly where it stopped (same batches,
same augmentation), provided the data and hyperparameters are the same; otherwise it
refuses with a message. ``--average A B ...`` trains nothing: it writes the mean of
weight files that share one config (a model soup) to ``--out``, and, given games,
reports its held-out metrics on them. Exit status 0 on success, 2 for bad arguments or
input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import blake3
import torch
from nacl.signing import SigningKey

from engine._store import GameStore
from engine.nn._config import ModelConfig, ModelFormatError
from engine.nn._dataset import (
    DatasetError,
    ExampleSet,
    SkippedGame,
    build_examples,
    load_records,
    records_from_store,
    split_records,
)
from engine.nn._model import PolicyValueNet
from engine.nn._train import (
    LrSchedule,
    Metrics,
    OptimizerKind,
    Progress,
    TrainConfig,
    Trainer,
    evaluate,
)
from engine.nn._weights import encode_weights, load_weights, model_to_arrays, weights_id

__all__ = ["load_checkpoint", "main", "save_checkpoint"]

_WEIGHTS = "weights.cbor"
_STATE = "state.pt"


class _UsageError(Exception):
    """Bad arguments or input: reported in one line, exit status 2."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(directory: Path, trainer: Trainer, meta: dict[str, Any]) -> None:
    """Write ``weights.cbor`` and ``state.pt`` (plain data only) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    _atomic_write(
        directory / _WEIGHTS, encode_weights(model.config, model_to_arrays(model), "float32")
    )
    tmp = directory / f".tmp-{_STATE}"
    torch.save({**trainer.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, directory / _STATE)


def load_checkpoint(directory: Path) -> tuple[PolicyValueNet, dict[str, Any]]:
    """The network and the state saved by :func:`save_checkpoint`."""
    try:
        model = load_weights((directory / _WEIGHTS).read_bytes())
        state = torch.load(directory / _STATE, weights_only=True, map_location="cpu")
    except (OSError, ModelFormatError, RuntimeError, EOFError, ValueError) as exc:
        raise _UsageError(f"cannot resume from {directory}: {exc}") from exc
    if not isinstance(state, dict) or not isinstance(state.get("meta"), dict):
        raise _UsageError(f"cannot resume from {directory}: not a p2pgo training state")
    return model, state


def _fingerprint(records: Sequence[object]) -> str:
    ids = sorted(r.record_id for r in records if not isinstance(r, SkippedGame))  # type: ignore[attr-defined]
    return blake3.blake3("\n".join(ids).encode()).hexdigest()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p2pgo-train",
        description="Train p2pgo's policy/value network on game records (supervised).",
        epilog="example: p2pgo-train games/ --out model.cbor --epochs 4 --dtype float16",
    )
    p.add_argument("inputs", nargs="*", type=Path, help="SGF files or directories")
    p.add_argument("--store", type=Path, help="also read the finished games of this game store")
    p.add_argument(
        "--store-key",
        type=Path,
        help="the store owner's Ed25519 seed (32 raw bytes or 64 hex digits)",
    )
    p.add_argument("--out", type=Path, required=True, help="where to write the final weights")
    p.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    p.add_argument("--init", type=Path, help="start from this weight file (default: fresh)")
    p.add_argument("--blocks", type=int, default=6, help="fresh network: residual blocks")
    p.add_argument("--channels", type=int, default=64, help="fresh network: channels")
    p.add_argument("--score-head", action="store_true", help="fresh network: add a score head")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--optimizer", choices=[o.value for o in OptimizerKind], default="adamw")
    p.add_argument("--schedule", choices=[s.value for s in LrSchedule], default="cosine")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    p.add_argument("--held-out", type=float, default=0.1, help="fraction of games held out")
    p.add_argument("--no-augment", action="store_true", help="no random board symmetries")
    p.add_argument("--checkpoint-dir", type=Path, help="default: OUT with .ckpt appended")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    p.add_argument("--log-every", type=int, default=50, help="steps between progress lines")
    p.add_argument(
        "--time-limit", type=float, help="stop (checkpoint, evaluate, save) after this many s"
    )
    p.add_argument("--json", type=Path, help="also write the final metrics as JSON here")
    p.add_argument(
        "--average",
        type=Path,
        nargs="+",
        metavar="MODEL",
        help="write the average of these weight files (one config) instead of training",
    )
    return p


def _read_store(root: Path, key_file: Path | None) -> list[Any]:
    if key_file is None:
        raise _UsageError("--store needs --store-key (the key its games are signed with)")
    try:
        raw = key_file.read_bytes().strip()
        seed = bytes.fromhex(raw.decode("ascii")) if len(raw) == 64 else raw
        key = SigningKey(seed)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _UsageError(f"cannot read the store key {key_file}: {exc}") from exc
    except Exception as exc:  # PyNaCl raises its own types for a bad seed length
        raise _UsageError(f"bad store key {key_file}: {exc}") from exc
    with GameStore(root, key) as store:
        records: list[Any] = list(records_from_store(store))
        records.extend(SkippedGame(str(p.path), p.reason) for p in store.problems)
    return records


def _config(args: argparse.Namespace) -> TrainConfig:
    try:
        return TrainConfig(
            lr=args.lr,
            epochs=args.epochs,
            batch_size=args.batch_size,
            weight_decay=args.weight_decay,
            max_steps=args.max_steps,
            seed=args.seed,
            device=args.device,
            optimizer=OptimizerKind(args.optimizer),
            schedule=LrSchedule(args.schedule),
            augment=not args.no_augment,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc


def _line(m: Metrics) -> str:
    return (
        f"top1 {m.top1:.1%} top3 {m.top3:.1%} policy loss {m.policy_loss:.3f} "
        f"value loss {m.value_loss:.3f}"
    )


def _read_records(args: argparse.Namespace) -> list[Any]:
    """The games of ``args.inputs`` and ``args.store``; _UsageError if unreadable."""
    if not 0.0 <= args.held_out < 1.0:
        raise _UsageError("--held-out must be in [0, 1)")
    try:
        records: list[Any] = load_records(args.inputs) if args.inputs else []
    except DatasetError as exc:
        raise _UsageError(str(exc)) from exc
    if args.store is not None:
        records.extend(_read_store(args.store, args.store_key))
    return records


def _average(args: argparse.Namespace) -> int:
    from engine.nn._weights import average_weights

    if args.init is not None or args.resume:
        raise _UsageError("--average does not train: --init and --resume do not apply")
    try:
        config, arrays = average_weights([path.read_bytes() for path in args.average])
    except OSError as exc:
        raise _UsageError(f"cannot read a model: {exc}") from exc
    except ModelFormatError as exc:
        raise _UsageError(f"cannot average: {exc}") from exc
    data = encode_weights(config, arrays, args.dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out, data)
    ident = weights_id(data)
    print(f"averaged {len(args.average)} models", flush=True)
    report: dict[str, Any] = {"weights": str(args.out), "id": ident, "averaged": len(args.average)}
    if args.inputs or args.store is not None:
        records = _read_records(args)
        _, test_records = split_records(records, args.held_out)
        test = build_examples(test_records if args.held_out > 0 else records)
        if len(test):
            metrics = evaluate(load_weights(data), test, device=args.device)
            print(f"held-out: {_line(metrics)}", flush=True)
            report["metrics"] = metrics.to_dict()
    print(f"wrote {args.out} ({len(data):,} bytes, {args.dtype}); id {ident}", flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.average:
        return _average(args)
    if not args.inputs and args.store is None:
        raise _UsageError("give SGF files or directories, or --store")
    if args.threads < 1 or args.log_every < 1 or args.checkpoint_every < 1:
        raise _UsageError("--threads, --log-every and --checkpoint-every must be >= 1")
    config = _config(args)
    torch.set_num_threads(args.threads)
    started = time.monotonic()
    records = _read_records(args)
    train_records, test_records = split_records(records, args.held_out)
    train = build_examples(train_records)
    test = build_examples(test_records)
    print(
        f"data: {train.games} training games ({len(train)} positions), {test.games} held out "
        f"({len(test)} positions), {len(train.skipped) + len(test.skipped)} skipped; "
        f"read in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    for skipped in (train.skipped + test.skipped)[:10]:
        print(f"  skipped {skipped.source}: {skipped.reason}", flush=True)
    if len(train) == 0:
        raise _UsageError("no training examples")
    ckpt = args.checkpoint_dir or args.out.with_name(args.out.name + ".ckpt")
    meta = {"data": _fingerprint(train_records), "config": json.dumps(config.to_dict())}
    if args.resume:
        model, state = load_checkpoint(ckpt)
        saved = state["meta"]
        if saved.get("data") != meta["data"]:
            raise _UsageError("cannot resume: the training games differ from the checkpoint's")
        if saved.get("config") != meta["config"]:
            raise _UsageError("cannot resume: the hyperparameters differ from the checkpoint's")
    elif args.init is not None:
        try:
            model = load_weights(args.init.read_bytes())
        except (OSError, ModelFormatError) as exc:
            raise _UsageError(f"cannot load {args.init}: {exc}") from exc
    else:
        try:
            cfg = ModelConfig(
                blocks=args.blocks, channels=args.channels, score_head=args.score_head
            )
        except ValueError as exc:
            raise _UsageError(str(exc)) from exc
        torch.manual_seed(args.seed)
        model = PolicyValueNet(cfg)
    trainer = Trainer(model, train, config)
    if args.resume:
        try:
            trainer.load_state_dict(state)
        except ValueError as exc:
            raise _UsageError(f"cannot resume: {exc}") from exc
        print(f"resumed at step {trainer.step}", flush=True)
    print(
        f"model: {model.config.blocks} blocks x {model.config.channels} channels, "
        f"{model.num_parameters():,} parameters; {trainer.total_steps} steps "
        f"({trainer.steps_per_epoch} per epoch) on {trainer.device}",
        flush=True,
    )
    _train_loop(args, trainer, test, ckpt, meta, started)
    final = test if len(test) else train
    metrics = evaluate(trainer.model, final, device=args.device)
    data = encode_weights(trainer.model.config, model_to_arrays(trainer.model), args.dtype)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out, data)
    ident = weights_id(data)
    where = "held-out" if len(test) else "training"
    print(f"final {where}: {_line(metrics)}", flush=True)
    print(f"wrote {args.out} ({len(data):,} bytes, {args.dtype}); id {ident}", flush=True)
    if args.json is not None:
        report = {
            "weights": str(args.out),
            "id": ident,
            "steps": trainer.step,
            "seconds": round(time.monotonic() - started, 1),
            "train_positions": len(train),
            "held_out_positions": len(test),
            "metrics": metrics.to_dict(),
            "on": where,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _train_loop(
    args: argparse.Namespace,
    trainer: Trainer,
    test: ExampleSet,
    ckpt: Path,
    meta: dict[str, Any],
    started: float,
) -> None:
    spe = trainer.steps_per_epoch
    deadline = None if args.time_limit is None else started + args.time_limit
    window: list[float] = []
    tick = time.monotonic()

    def report(p: Progress) -> None:
        nonlocal tick
        window.append(p.loss)
        if p.step % args.log_every == 0:
            now = time.monotonic()
            rate = len(window) / max(now - tick, 1e-9)
            print(
                f"step {p.step}/{p.total} epoch {p.epoch + 1} loss {sum(window) / len(window):.3f} "
                f"lr {p.lr:.2e} ({rate:.1f} steps/s)",
                flush=True,
            )
            window.clear()
            tick = now

    while trainer.step < trainer.total_steps:
        epoch = trainer.step // spe
        epoch_end = min((epoch + 1) * spe, trainer.total_steps)
        out_of_time = False
        parts: list[Metrics] = []
        while trainer.step < epoch_end:
            every = args.checkpoint_every
            stop = min(epoch_end, (trainer.step // every + 1) * every)
            parts.append(trainer.run(until=stop, progress=report))
            save_checkpoint(ckpt, trainer, meta)
            if deadline is not None and time.monotonic() >= deadline:
                out_of_time = True
                break
        line = f"epoch {epoch + 1}: train {_line(_combine(parts))}"
        if len(test):
            line += f" | held-out {_line(evaluate(trainer.model, test, device=args.device))}"
            trainer.model.train()
        print(line, flush=True)
        if out_of_time:
            print(f"time limit reached at step {trainer.step}", flush=True)
            return


def _combine(parts: Sequence[Metrics]) -> Metrics:
    """Metrics of consecutive chunks of one epoch, weighted by their examples."""
    n = sum(m.examples for m in parts) or 1
    return Metrics(
        **{
            name: sum(getattr(m, name) * m.examples for m in parts) / n
            for name in ("loss", "policy_loss", "value_loss", "top1", "top3")
        },
        examples=n,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The ``p2pgo-train`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except _UsageError as exc:
        print(f"p2pgo-train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
