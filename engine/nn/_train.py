"""Local training: the one function both ``p2pgo-train`` and a federated peer call.

:func:`train_local` takes a network (a model, a weight file, or a config plus named
arrays), training data (an :class:`ExampleSet` or game records) and a
:class:`TrainConfig`, and returns a :class:`TrainResult`: the new float32 weights, the
delta (new - old) that federated averaging sums, the number of examples and the
training metrics. :class:`Trainer` is the resumable engine underneath, used directly by
``p2pgo-train`` for checkpoints and per-epoch evaluation; :func:`evaluate` measures a
network on examples without training.

Loss (per batch, averaged over examples)::

    policy cross-entropy with the target distribution (examples of policy weight 0 skipped)
    + value_weight * binary cross-entropy of the win logit
    + score_weight * smooth-L1 of the score lead / SCORE_SCALE (score heads only,
      examples with a known margin only)

**FedProx.** The proximal term ``(mu/2) * ||w - w0||^2`` is applied as its exact
proximal step after every optimizer step, ``w <- (w + lr*mu*w0) / (1 + lr*mu)``,
rather than as a gradient: the gradient form ``lr*mu*(w - w0)`` overshoots and
diverges once ``lr*mu > 2``, while the proximal step minimises the same objective for
every ``mu`` (a huge ``mu`` pins ``w`` to ``w0``, as it should). Weight decay is the
optimizer's own (decoupled for AdamW).

**Determinism and resumption.** The order of batches in epoch ``e`` and the symmetry
chosen for each example depend only on ``(seed, e, batch)``; the learning rate only
on the step. So a run stopped after any step and resumed from a checkpoint
(:meth:`Trainer.state_dict`, the weights plus the optimizer state) continues exactly
as if it had not stopped, and on the CPU the same seed gives the same weights.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from engine._record import GameRecord
from engine.nn._config import ModelConfig
from engine.nn._dataset import ExampleArrays, ExampleSet, SkippedGame, augment_batch, build_examples
from engine.nn._model import SCORE_SCALE, PolicyValueNet
from engine.nn._weights import arrays_to_model, load_weights, model_to_arrays

__all__ = [
    "LrSchedule",
    "Metrics",
    "OptimizerKind",
    "Progress",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate",
    "pick_device",
    "train_local",
]


class OptimizerKind(enum.Enum):
    SGD = "sgd"  # with Nesterov momentum: the usual choice for federated clients
    ADAMW = "adamw"  # faster on short supervised runs


class LrSchedule(enum.Enum):
    CONSTANT = "constant"
    COSINE = "cosine"  # from lr down to lr/10 over the run


_DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyperparameters of a local training run; every value is checked (ValueError)."""

    lr: float = 1e-3
    epochs: int = 1
    batch_size: int = 64
    weight_decay: float = 1e-4
    prox_mu: float = 0.0  # FedProx: adds (mu/2) * ||w - w0||^2
    max_steps: int | None = None  # stop early after this many optimizer steps
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA if available), "cpu" or "cuda"
    optimizer: OptimizerKind = OptimizerKind.ADAMW
    momentum: float = 0.9  # SGD only
    schedule: LrSchedule = LrSchedule.CONSTANT
    value_weight: float = 1.0
    score_weight: float = 0.05
    max_grad_norm: float | None = 10.0
    augment: bool = True  # a random one of the 8 board symmetries per example

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay", "prox_mu", "momentum", "value_weight", "score_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.lr <= 0:
            raise ValueError("lr must be > 0")
        if self.momentum >= 1:
            raise ValueError("momentum must be below 1")
        for name in ("epochs", "batch_size", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer")
        if self.epochs < 1 or self.batch_size < 1 or self.seed < 0:
            raise ValueError("epochs and batch_size must be >= 1 and seed >= 0")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool)
            or not isinstance(self.max_steps, int)
            or self.max_steps < 1
        ):
            raise ValueError("max_steps must be None or an integer >= 1")
        if self.device not in _DEVICES:
            raise ValueError(f"device must be one of {_DEVICES}")
        if not isinstance(self.optimizer, OptimizerKind):
            raise ValueError("optimizer must be an OptimizerKind")
        if not isinstance(self.schedule, LrSchedule):
            raise ValueError("schedule must be an LrSchedule")
        if self.max_grad_norm is not None and not (
            isinstance(self.max_grad_norm, int | float)
            and math.isfinite(self.max_grad_norm)
            and self.max_grad_norm > 0
        ):
            raise ValueError("max_grad_norm must be None or a finite number > 0")
        if not isinstance(self.augment, bool):
            raise ValueError("augment must be a boolean")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.value if isinstance(value, enum.Enum) else value
        return out


@dataclass(frozen=True, slots=True)
class Metrics:
    """Losses and move-prediction accuracy, averaged over examples.

    ``top1``/``top3``: how often the target's most likely move is the network's first
    (first three) choice, over examples with a policy target. ``loss`` is the data loss
    (policy + weighted value + weighted score), without the proximal term.
    """

    loss: float
    policy_loss: float
    value_loss: float
    top1: float
    top3: float
    examples: int

    def to_dict(self) -> dict[str, float | int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True, slots=True)
class Progress:
    """Reported to a progress callback after every optimizer step."""

    step: int  # steps done so far (resumed runs count the earlier ones)
    total: int
    epoch: int  # 0-based epoch of the step just done
    loss: float  # this step's data loss
    lr: float


@dataclass(frozen=True, slots=True, eq=False)
class TrainResult:
    """What local training produced: ``weights`` and ``delta`` are float32 by name."""

    config: ModelConfig
    weights: dict[str, np.ndarray]
    delta: dict[str, np.ndarray]
    num_examples: int
    metrics: Metrics
    steps: int
    seconds: float


def pick_device(device: str) -> torch.device:
    """``"auto"``: CUDA when torch sees a GPU, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device")
    return torch.device(device)


class _Sums:
    """Running sums for :class:`Metrics` (weighted by examples)."""

    def __init__(self) -> None:
        self.loss = self.policy = self.value = 0.0
        self.top1 = self.top3 = 0.0
        self.examples = 0
        self.policy_examples = 0.0

    def add(
        self, n: int, loss: float, policy: float, value: float, acc: tuple[float, float, float]
    ) -> None:
        self.examples += n
        self.loss += loss * n
        self.value += value * n
        hits1, hits3, counted = acc
        self.policy += policy * counted
        self.top1 += hits1
        self.top3 += hits3
        self.policy_examples += counted

    def metrics(self) -> Metrics:
        n = max(self.examples, 1)
        p = max(self.policy_examples, 1.0)
        return Metrics(
            loss=self.loss / n,
            policy_loss=self.policy / p,
            value_loss=self.value / n,
            top1=self.top1 / p,
            top3=self.top3 / p,
            examples=self.examples,
        )


def _batch_tensors(
    group: ExampleArrays, idx: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(group.planes[idx].astype(np.float32)).to(device),  # (B, C, n, n)
        torch.from_numpy(group.policy[idx]).to(device),  # (B, n*n + 1)
        torch.from_numpy(group.policy_weight[idx]).to(device),  # (B,)
        torch.from_numpy(group.value[idx]).to(device),  # (B,)
        torch.from_numpy(group.score[idx]).to(device),  # (B,)
    )


def _losses(
    model: PolicyValueNet,
    batch: tuple[torch.Tensor, ...],
    config: TrainConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[float, float, float]]:
    """(total data loss, policy loss, value loss, (top-1 hits, top-3 hits, counted))."""
    planes, target, weight, value, score = batch
    out = model(planes)
    logp = F.log_softmax(out.policy_logits, dim=1)  # (B, n*n + 1)
    ce = -(target * logp).sum(dim=1)  # (B,)
    counted = weight.sum()
    policy_loss = (weight * ce).sum() / counted.clamp(min=1.0)
    value_loss = F.binary_cross_entropy_with_logits(out.value_logit, value)
    total = policy_loss + config.value_weight * value_loss
    if out.score_lead is not None and config.score_weight > 0:
        known = torch.isfinite(score)
        if bool(known.any()):
            lead = out.score_lead[known] / SCORE_SCALE
            total = total + config.score_weight * F.smooth_l1_loss(lead, score[known] / SCORE_SCALE)
    with torch.no_grad():
        best = target.argmax(dim=1, keepdim=True)  # (B, 1)
        top3 = out.policy_logits.topk(min(3, target.shape[1]), dim=1).indices  # (B, 3)
        has = weight > 0
        hits1 = ((top3[:, :1] == best).any(dim=1) & has).sum().item()
        hits3 = ((top3 == best).any(dim=1) & has).sum().item()
    return total, policy_loss, value_loss, (float(hits1), float(hits3), float(has.sum().item()))


def _as_examples(data: ExampleSet | Iterable[GameRecord | SkippedGame]) -> ExampleSet:
    return data if isinstance(data, ExampleSet) else build_examples(data)


def _as_model(
    source: PolicyValueNet | bytes | tuple[ModelConfig, Mapping[str, np.ndarray]],
) -> PolicyValueNet:
    """A private float32 copy of the network, so the caller's model is never changed."""
    if isinstance(source, PolicyValueNet):
        return arrays_to_model(source.config, model_to_arrays(source))
    if isinstance(source, bytes | bytearray):
        return load_weights(bytes(source))
    config, arrays = source
    return arrays_to_model(config, arrays)


class Trainer:
    """Resumable training of ``model`` (in place) on ``data``; see the module docstring."""

    def __init__(
        self,
        model: PolicyValueNet,
        data: ExampleSet,
        config: TrainConfig,
        *,
        anchor: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """``anchor``: the FedProx reference weights (default: the model's weights now)."""
        if len(data) == 0:
            raise ValueError("no training examples")
        self.config = config
        self.data = data
        self.device = pick_device(config.device)
        self.model = model.to(self.device).train()
        self.step = 0
        self._plans: dict[int, list[tuple[int, np.ndarray]]] = {}
        params = list(self.model.parameters())
        if config.optimizer is OptimizerKind.SGD:
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                params,
                lr=config.lr,
                momentum=config.momentum,
                nesterov=config.momentum > 0,
                weight_decay=config.weight_decay,
            )
        else:
            self.optimizer = torch.optim.AdamW(
                params, lr=config.lr, weight_decay=config.weight_decay
            )
        self._anchor: list[torch.Tensor] | None = None
        if config.prox_mu > 0:
            base = anchor if anchor is not None else model_to_arrays(self.model)
            named = dict(self.model.named_parameters())
            self._anchor = [
                torch.from_numpy(np.asarray(base[n], np.float32)).to(self.device) for n in named
            ]

    @property
    def steps_per_epoch(self) -> int:
        b = self.config.batch_size
        return sum(math.ceil(len(g) / b) for g in self.data.groups)

    @property
    def total_steps(self) -> int:
        total = self.config.epochs * self.steps_per_epoch
        return min(total, self.config.max_steps) if self.config.max_steps else total

    def _plan(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """The batches of ``epoch``: (group index, example indices), in training order."""
        plan = self._plans.get(epoch)
        if plan is None:
            rng = np.random.default_rng([self.config.seed, epoch])
            plan = []
            b = self.config.batch_size
            for gi, group in enumerate(self.data.groups):
                order = rng.permutation(len(group))
                plan.extend((gi, order[i : i + b]) for i in range(0, len(group), b))
            plan = [plan[i] for i in rng.permutation(len(plan))]
            self._plans = {epoch: plan}  # one epoch at a time is all a run needs
        return plan

    def lr_at(self, step: int) -> float:
        lr = self.config.lr
        if self.config.schedule is LrSchedule.COSINE:
            t = min(step / max(self.total_steps, 1), 1.0)
            lr *= 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t))
        return lr

    def run(
        self,
        until: int | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> Metrics:
        """Train from the current step up to ``until`` (default: the end); the metrics of
        the steps run now (measured on the augmented training batches, before each step)."""
        end = self.total_steps if until is None else min(until, self.total_steps)
        sums = _Sums()
        spe = self.steps_per_epoch
        config = self.config
        while self.step < end:
            epoch, index = divmod(self.step, spe)
            gi, idx = self._plan(epoch)[index]
            group = self.data.groups[gi]
            batch = _batch_tensors(group, idx, self.device)
            if config.augment:
                rng = np.random.default_rng([config.seed, epoch, index, 1])
                syms = rng.integers(0, 8, size=len(idx))
                planes, target = augment_batch(batch[0], batch[1], syms)
                batch = (planes, target, *batch[2:])
            lr = self.lr_at(self.step)
            for param_group in self.optimizer.param_groups:
                param_group["lr"] = lr
            total, policy_loss, value_loss, acc = _losses(self.model, batch, config)
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()  # type: ignore[no-untyped-call]
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
            self.optimizer.step()
            self._proximal_step(lr)
            self.step += 1
            loss = float(total.item())
            sums.add(len(idx), loss, float(policy_loss.item()), float(value_loss.item()), acc)
            if progress is not None:
                progress(Progress(self.step, self.total_steps, epoch, loss, lr))
        return sums.metrics()

    def _proximal_step(self, lr: float) -> None:
        if self._anchor is None:
            return
        shrink = lr * self.config.prox_mu
        with torch.no_grad():
            for p, w0 in zip(self.model.parameters(), self._anchor, strict=True):
                p.add_(w0, alpha=shrink).div_(1.0 + shrink)

    def state_dict(self) -> dict[str, Any]:
        """The trainer's state besides the weights (loadable with ``weights_only=True``)."""
        return {"step": self.step, "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the model must hold the matching weights)."""
        step = state.get("step")
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError("training state has no valid step")
        try:
            self.optimizer.load_state_dict(dict(state["optimizer"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"training state does not fit this optimizer: {exc}") from exc
        self.step = step


def evaluate(
    model: PolicyValueNet,
    data: ExampleSet,
    *,
    batch_size: int = 256,
    device: str = "auto",
) -> Metrics:
    """Losses and top-1/top-3 accuracy of ``model`` on ``data`` (no augmentation)."""
    dev = pick_device(device)
    was_training = model.training
    model.to(dev).eval()
    config = TrainConfig()
    sums = _Sums()
    with torch.inference_mode():
        for group in data.groups:
            for start in range(0, len(group), batch_size):
                idx = np.arange(start, min(start + batch_size, len(group)))
                batch = _batch_tensors(group, idx, dev)
                total, policy_loss, value_loss, acc = _losses(model, batch, config)
                sums.add(len(idx), float(total), float(policy_loss), float(value_loss), acc)
    model.train(was_training)
    return sums.metrics()


def train_local(
    model_or_weights: PolicyValueNet | bytes | tuple[ModelConfig, Mapping[str, np.ndarray]],
    data: ExampleSet | Iterable[GameRecord | SkippedGame],
    config: TrainConfig | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Train a copy of the network on ``data``; see the module docstring.

    ``model_or_weights``: a :class:`PolicyValueNet` (not modified), a weight file's
    bytes, or ``(config, arrays)``. Raises ``ValueError`` for bad hyperparameters or no
    usable examples, :class:`engine.nn.ModelFormatError` for bad weights.
    """
    config = config or TrainConfig()
    started = time.monotonic()
    examples = _as_examples(data)
    if len(examples) == 0:
        raise ValueError("the games gave no training examples")
    model = _as_model(model_or_weights)
    before = model_to_arrays(model)
    torch.manual_seed(config.seed)
    trainer = Trainer(model, examples, config, anchor=before)
    metrics = trainer.run(progress=progress)
    after = model_to_arrays(trainer.model)
    delta = {name: after[name] - before[name] for name in before}
    return TrainResult(
        config=model.config,
        weights=after,
        delta=delta,
        num_examples=len(examples),
        metrics=metrics,
        steps=trainer.step,
        seconds=time.monotonic() - started,
    )
