"""One trial: train a DSNN configuration for a budget of epochs, evaluate it, measure its energy.

    result = train_trial({"shift_type": "ps", "weight_bits": 5, "optimizer": "radam", "lr": 0.01},
                         budget=2.0, task=Task(dataset="mnist", model="mnist-conv"))

Reads top to bottom: hyperparameters and task, data, model, optimizer, the epoch loop inside one
energy meter, the measured inference pass, the analytic cost, the result. Every failure (NaN
loss, out of memory, any exception) comes back as a failed ``TrialResult`` with its reason.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..zoo import data as datasets
from ..zoo import models
from .energy import EnergyMeter, EnergyReading
from .loop import DivergedError, evaluate, train_epoch
from .optim import MOMENTUM_OPTIMIZERS, OPTIMIZERS, build_optimizer
from ..shift import ShiftConfig, convert, cost, deploy, export, inference_path
from ..shift.quant import ShiftConfigError

SHIFT_TYPES = ("none", "q", "ps", "dense")
SCHEDULES = ("constant", "cosine", "step")
CHECKPOINT_FORMAT = "autodsnn-trial-checkpoint"


@dataclass(frozen=True)
class HParams:
    """The DSNN and training hyperparameters of one trial (what the optimizer searches)."""

    shift_type: str = "ps"           # none (float) | q | ps | dense
    shift_depth: int | str = "all"   # first N convertible layers in forward order
    weight_bits: int = 5
    shift_max: int | str = "auto"    # per layer, least rounding error (fixed 0 kills 2-3 bit nets)
    act_int_bits: int | None = None  # fixed-point activations; None keeps them float
    act_frac_bits: int | None = None
    act_signed: bool = True
    rounding: str = "deterministic"
    optimizer: str = "radam"
    lr: float = 0.01
    momentum: float = 0.0
    weight_decay: float = 0.0
    batch_size: int = 64
    schedule: str = "constant"       # constant | cosine | step
    lr_step: int = 0                 # step schedule: decay every lr_step epochs (0: never)
    lr_gamma: float = 0.1

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        set_("shift_type", str(self.shift_type).lower())
        set_("optimizer", str(self.optimizer).lower())
        if self.shift_type not in SHIFT_TYPES:
            raise ValueError(f"unknown shift_type {self.shift_type!r}: use one of {', '.join(SHIFT_TYPES)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}: use one of {', '.join(SCHEDULES)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.momentum and self.optimizer not in MOMENTUM_OPTIMIZERS:
            raise ValueError(f"momentum={self.momentum} has no effect with {self.optimizer}: it applies to "
                             f"{', '.join(MOMENTUM_OPTIMIZERS)}")
        if self.shift_type != "none":
            self.shift_config("all")  # validates bits, range, rounding, activation format

    def shift_config(self, depth: int | str | None = None) -> ShiftConfig:
        depth = self.shift_depth if depth is None else depth
        return ShiftConfig(mode=self.shift_type, weight_bits=int(self.weight_bits), shift_max=self.shift_max,
                           rounding=self.rounding, act_int_bits=self.act_int_bits, act_frac_bits=self.act_frac_bits,
                           act_signed=bool(self.act_signed), shift_depth=depth)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "HParams":
        """Build from a (SMAC) configuration: numpy scalars are cast, unknown keys rejected."""
        unknown = sorted(set(values) - set(cls.names()))
        if unknown:
            raise ValueError(f"unknown hyperparameter {unknown[0]!r}: valid ones are {', '.join(cls.names())}")
        clean = {k: _plain(v) for k, v in values.items()}
        if isinstance(clean.get("shift_depth"), float):
            clean["shift_depth"] = int(clean["shift_depth"])
        return cls(**clean)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


INFERENCE_KERNELS = ("float", "integer", "auto", "emulation")  # deploy modes, or the training emulation


@dataclass(frozen=True)
class Task:
    """What a trial trains on (fixed for a whole optimization run)."""

    dataset: str = "mnist"
    model: str = "mnist-conv"
    data_dir: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    train_subset: float | None = None   # fraction of the training part (a second fidelity)
    weights: str | None = None          # our own float checkpoint to start from
    pretrained: bool = False            # torchvision weights (needs a network)
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    schedule_epochs: float | None = None  # LR schedule horizon; the optimizer sets max budget
    eval_batch_size: int = 1000
    measure_inference: bool = True
    inference_kernels: str = "float"   # deploy mode for the measured inference pass, or "emulation"
    country: str | None = None

    def __post_init__(self) -> None:
        if self.inference_kernels not in INFERENCE_KERNELS:
            raise ShiftConfigError(f"inference_kernels={self.inference_kernels!r}: use one of "
                                   f"{', '.join(INFERENCE_KERNELS)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrialResult:
    """Everything one trial produced. ``status``: ok | failed | cut_short."""

    status: str
    reason: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    budget: float = 0.0
    epochs_done: float = 0.0
    resumed_from_epochs: float = 0.0
    val_error: float | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    wall_time: float = 0.0
    energy_kwh: float = 0.0
    energy_kwh_total: float = 0.0       # including the checkpoint this trial continued from
    emissions_kg: float = 0.0
    energy: dict[str, Any] = field(default_factory=dict)
    inference_energy_kwh: float | None = None
    inference_emissions_kg: float | None = None
    inference_seconds: float | None = None
    inference_samples: int | None = None
    inference_path: str | None = None
    inference_error: float | None = None   # validation error of the model that ran the inference pass
    inference_energy: dict[str, Any] = field(default_factory=dict)
    analytic: dict[str, Any] = field(default_factory=dict)
    converted_layers: int = 0
    device: str = "cpu"
    checkpoint: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _plain(value: Any) -> Any:
    """numpy scalars (as SMAC hands them over) -> Python scalars."""
    return value.item() if hasattr(value, "item") and not isinstance(value, torch.Tensor) else value


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return device


def config_key(hparams: HParams, task: Task) -> str:
    """A stable id of (hyperparameters, task): checkpoints continue only the same configuration."""
    payload = json.dumps({"h": hparams.to_dict(), "t": {k: v for k, v in task.to_dict().items()
                                                         if k not in ("device", "eval_batch_size", "measure_inference", "inference_kernels", "country")}},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def build_model(hparams: HParams, task: Task, info: datasets.DatasetInfo) -> tuple[nn.Module, int]:
    """Model for the data set's input shape and classes, float weights loaded, then converted."""
    model = models.create_model(task.model, num_classes=info.num_classes, input_size=info.input_shape,
                                pretrained=task.pretrained)
    if task.weights:
        models.load_weights(model, task.weights)
    converted = 0
    if hparams.shift_type != "none":
        example = torch.zeros(1, *info.input_shape)
        converted = len(convert(model, hparams.shift_config(), example_inputs=example))
    return model, converted


def _lr_factor(hparams: HParams, epoch: float, horizon: float) -> float:
    if hparams.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(epoch / max(horizon, 1e-9), 1.0)))
    if hparams.schedule == "step" and hparams.lr_step > 0:
        return hparams.lr_gamma ** int(epoch // hparams.lr_step)
    return 1.0


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epochs_done: float,
                    hparams: HParams, task: Task, extra: dict[str, Any] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "epochs_done": float(epochs_done),
                "hparams": hparams.to_dict(), "task": task.to_dict(), "config_key": config_key(hparams, task),
                # dropout and stochastic rounding draw from torch's RNG: a resumed trial continues it
                "rng_cpu": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                **(extra or {})}, tmp)
    os.replace(tmp, path)  # atomic: a killed trial never leaves half a checkpoint
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an autodsnn trial checkpoint")
    return ckpt


class _Progress:
    """One line per epoch on a terminal; silent otherwise (logs stay clean)."""

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def __call__(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)


def train_trial(config: HParams | Mapping[str, Any], budget: float, *, task: Task = Task(), seed: int = 0,
                checkpoint_path: str | os.PathLike | None = None, resume_from: str | os.PathLike | None = None,
                deadline: float | None = None, progress: bool | None = None,
                export_path: str | os.PathLike | None = None) -> TrialResult:
    """Train ``config`` for ``budget`` epochs (fractions allowed) and evaluate on the validation
    split. ``resume_from``: a checkpoint of the same configuration at a lower budget to continue
    from. ``deadline``: a ``time.time()`` after which training stops and the trial is recorded as
    cut short with its partial metrics. Never raises for training failures."""
    start = time.time()
    say = _Progress(progress)
    try:
        hparams = config if isinstance(config, HParams) else HParams.from_dict(config)
    except (ValueError, TypeError, ShiftConfigError) as exc:
        return TrialResult(status="failed", reason=f"bad configuration: {exc}", budget=float(budget))
    result = TrialResult(status="ok", hparams=hparams.to_dict(), budget=float(budget))
    if not budget > 0:
        result.status, result.reason = "failed", f"budget must be positive, got {budget}"
        return result
    meter = EnergyMeter(**({"country": task.country} if task.country else {}))
    prior_energy = 0.0
    try:
        device = resolve_device(task.device)
        result.device = str(device)
        torch.manual_seed(seed)
        splits = datasets.load_dataset(task.dataset, data_dir=task.data_dir, val_fraction=task.val_fraction,
                                       split_seed=task.split_seed, train_subset=task.train_subset)
        in_memory = hasattr(splits.train, "tensors")
        gen = torch.Generator().manual_seed(seed)
        if in_memory:
            train_batches = datasets.TensorLoader.from_dataset(splits.train, hparams.batch_size, shuffle=True,
                                                               generator=gen, augment=splits.info.augment)
            val_batches = datasets.TensorLoader.from_dataset(splits.val, task.eval_batch_size)
        else:
            train_batches = torch.utils.data.DataLoader(splits.train, hparams.batch_size, shuffle=True, generator=gen,
                                                        num_workers=min(4, os.cpu_count() or 1))
            val_batches = torch.utils.data.DataLoader(splits.val, task.eval_batch_size,
                                                      num_workers=min(4, os.cpu_count() or 1))
        model, result.converted_layers = build_model(hparams, task, splits.info)
        model.to(device)
        optimizer = build_optimizer(hparams.optimizer, model, hparams.lr, momentum=hparams.momentum,
                                    weight_decay=hparams.weight_decay)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        epochs_done = 0.0
        if resume_from is not None:
            ckpt = load_checkpoint(resume_from)
            if ckpt["config_key"] != config_key(hparams, task):
                raise ValueError(f"checkpoint {resume_from} belongs to another configuration")
            if ckpt["epochs_done"] > budget:
                raise ValueError(f"checkpoint {resume_from} is at {ckpt['epochs_done']} epochs, past the budget {budget}")
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            epochs_done = result.resumed_from_epochs = float(ckpt["epochs_done"])
            prior_energy = float(ckpt.get("energy_kwh_total", 0.0))
            torch.set_rng_state(ckpt["rng_cpu"])
            if ckpt.get("rng_cuda") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        horizon = task.schedule_epochs or budget
        per_epoch = len(train_batches)
        stop_check = (lambda: time.time() >= deadline) if deadline is not None else None
        stopped = False
        with meter:
            while epochs_done < budget - 1e-9 and not stopped:
                # One segment = the rest of epoch k up to the budget. Epoch k always sees the same
                # batch order, so a trial resumed from a checkpoint continues exactly where it was.
                k = int(math.floor(epochs_done + 1e-9))
                first = int(round((epochs_done - k) * per_epoch))
                last = max(first + 1, int(round((min(k + 1.0, budget) - k) * per_epoch)))
                gen.manual_seed(seed * 100_003 + k)
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * _lr_factor(hparams, k, horizon)
                segment = itertools.islice(iter(train_batches), first, last)
                stats = train_epoch(model, segment, optimizer, device=device, should_stop=stop_check)
                done = first + stats.batches
                epochs_done = min(budget, k + 1.0) if done >= last else k + done / per_epoch
                stopped = deadline is not None and time.time() >= deadline and epochs_done < budget - 1e-9
                val = evaluate(model, val_batches, device=device)
                result.history.append({"epoch": round(epochs_done, 4), "train_loss": stats.loss,
                                       "train_accuracy": stats.accuracy, "val_loss": val.loss, "val_error": val.error,
                                       "seconds": stats.seconds, "energy_kwh_so_far": meter.so_far()})
                say(f"epoch {epochs_done:g}/{budget:g}  loss {stats.loss:.4f}  val acc {100 * val.accuracy:.2f}%  "
                    f"{stats.seconds:.1f}s  energy {meter.so_far() * 1e3:.4f} Wh")
                result.train_loss, result.val_loss, result.val_error = stats.loss, val.loss, val.error
            if not result.history:  # resumed at the full budget already: evaluate once
                val = evaluate(model, val_batches, device=device)
                result.val_loss, result.val_error = val.loss, val.error
        result.epochs_done = epochs_done
        if stopped:
            result.status, result.reason = "cut_short", f"deadline reached after {epochs_done:.3g} of {budget:g} epochs"
        if checkpoint_path is not None:
            total = prior_energy + meter.reading.energy_kwh
            result.checkpoint = str(save_checkpoint(Path(checkpoint_path), model, optimizer, epochs_done, hparams, task,
                                                    extra={"energy_kwh_total": total}))
        if export_path is not None and result.converted_layers:
            export(model, export_path)
        if task.measure_inference:
            _measure_inference(model, val_batches, device, result, task)
        result.analytic = _analytic_cost(model, splits.info.input_shape)
    except DivergedError as exc:
        result.status, result.reason = "failed", f"diverged: {exc}"
    except torch.OutOfMemoryError as exc:
        result.status, result.reason = "failed", f"out of memory: {str(exc).splitlines()[0]}"
    except Exception as exc:  # noqa: BLE001 - a trial reports its failure, it never crashes the caller
        result.status = "failed"
        result.reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.energy["traceback"] = traceback.format_exc(limit=8)
    finally:
        reading = meter.reading
        result.energy_kwh, result.emissions_kg = reading.energy_kwh, reading.emissions_kg
        result.energy_kwh_total = prior_energy + reading.energy_kwh
        result.energy.update(reading.to_dict())
        result.wall_time = time.time() - start
    return result


def _measure_inference(model: nn.Module, batches: Any, device: torch.device, result: TrialResult, task: Task) -> None:
    """One timed, metered pass over the validation set in eval mode, through the deployed shift
    kernels (a packed copy of the model; the trained model is left as it is) unless the task
    asks for the emulation. The path that ran is recorded, and so is the deployed model's error."""
    runner, path = model, "torch-emulation"
    if result.converted_layers == 0:
        path = "torch float (no shift layers)"
    elif task.inference_kernels != "emulation":
        try:
            runner = copy.deepcopy(model).eval()
            deploy(runner, task.inference_kernels)
        except ShiftConfigError as exc:
            runner, path = model, f"torch-emulation (deploy failed: {exc})"
    _warm_up(runner, batches, device)
    with EnergyMeter(**({"country": task.country} if task.country else {})) as meter:
        stats = evaluate(runner, batches, device=device)
    reading: EnergyReading = meter.reading
    result.inference_energy_kwh, result.inference_emissions_kg = reading.energy_kwh, reading.emissions_kg
    result.inference_seconds, result.inference_samples = stats.seconds, stats.samples
    result.inference_path = inference_path(runner) if runner is not model else path
    result.inference_error = stats.error
    result.inference_energy = reading.to_dict()


@torch.no_grad()
def _warm_up(model: nn.Module, batches: Any, device: torch.device) -> None:
    """One batch through the model before the metered pass: first-call costs (a kernel build,
    allocator growth, oneDNN primitive creation) are not inference energy."""
    model.eval()
    for x, _ in batches:
        model(x[:64].to(device))
        break


def _analytic_cost(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    c = cost(model, (1, *input_shape))
    return {"energy_pj_per_sample": c.total_energy_pj, "energy_breakdown_pj": c.energy_pj, "params": c.params,
            "shift_params": c.shift_params, "macs": c.macs, "shifts": c.shifts, "adds": c.adds,
            "model_bits": c.model_bits}


def result_summary(result: TrialResult) -> str:
    if not result.ok and result.val_error is None:
        return f"{result.status}: {result.reason}"
    acc = 100 * (1 - (result.val_error or 0.0))
    return (f"{result.status}: val acc {acc:.2f}% after {result.epochs_done:g} epochs, {result.wall_time:.1f}s, "
            f"{result.energy_kwh * 1e3:.4f} Wh, {result.emissions_kg * 1e3:.4f} g CO2eq"
            + (f" ({result.reason})" if result.reason else ""))

