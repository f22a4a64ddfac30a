"""The pieces every training run is made of, shared by a search trial (`train_trial`) and the
full-budget retraining of a chosen design (`autodsnn.analysis.retrain`): data, model,
optimizer, the epoch loop with its learning-rate schedule and partial-epoch rule, and the
analytic cost (the measured inference pass is `autodsnn.trial.inference`).
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import AutoDSNNError
from ..shift import convert, convertible_layers, cost
from ..zoo import DataSplits, DatasetInfo, create_model, load_dataset, load_weights
from .energy import EnergyMeter, format_energy
from .hparams import HParams, Task
from .loop import EvalStats, evaluate, train_epoch
from .optim import build_optimizer

log = logging.getLogger(__name__)


class DeviceError(AutoDSNNError, ValueError):
    """A device that this machine does not have."""


def resolve_device(name: str) -> torch.device:
    """"auto" (a GPU where there is one), "cpu", "cuda" or "cuda:N"; raises :class:`DeviceError`
    for a device this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"--device {name}: autodsnn trains on cpu or cuda; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: no CUDA device is available here; use --device cpu")
    return device


def load_task_data(task: Task) -> DataSplits:
    return load_dataset(task.dataset, data_dir=task.data_dir, val_fraction=task.val_fraction,
                        split_seed=task.split_seed, train_subset=task.train_subset)


def build_model(hparams: HParams, task: Task, info: DatasetInfo) -> tuple[nn.Module, int]:
    """Model for the data set's input shape and classes, float weights loaded, then converted.
    Returns (model, number of shift layers)."""
    model = create_model(task.model, num_classes=info.num_classes, input_size=info.input_shape,
                         pretrained=task.pretrained)
    if task.weights:
        load_weights(model, task.weights)
    converted = 0
    if hparams.shifts:
        example = torch.zeros(1, *info.input_shape)
        config = hparams.shift_config() if hparams.layer_designs is None else _present(hparams.layer_map(), model)
        converted = len(convert(model, config, example_inputs=example))
    return model, converted


def _present(layer_map: dict, model: nn.Module) -> dict:
    """The map's patterns that name a convertible layer of ``model``: of a group's two patterns
    (``g``, ``g.*``) usually only one does, and convert() refuses patterns that match nothing."""
    import fnmatch

    names = convertible_layers(model)  # walked once, not once per pattern
    return {p: c for p, c in layer_map.items() if any(fnmatch.fnmatchcase(n, p) for n in names)}


def make_optimizer(hparams: HParams, model: nn.Module) -> torch.optim.Optimizer:
    return build_optimizer(hparams.optimizer, model, hparams.lr, momentum=hparams.momentum,
                           weight_decay=hparams.weight_decay)


def lr_factor(hparams: HParams, epoch: int, horizon: float) -> float:
    """The schedule's multiplier of the base learning rate during ``epoch`` (0-based) of a
    schedule spanning ``horizon`` epochs."""
    if hparams.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(epoch / max(horizon, 1e-9), 1.0)))
    if hparams.schedule == "step" and hparams.lr_step > 0:
        return hparams.lr_gamma ** int(epoch // hparams.lr_step)
    return 1.0


@dataclass
class Progress:
    """Where an epoch loop ended: epochs done, whether the deadline cut it short, the last
    validation (None without a validation loader) and one history row per (partial) epoch."""

    epochs_done: float
    stopped: bool = False
    train_loss: float | None = None
    val: EvalStats | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def run_epochs(model: nn.Module, optimizer: torch.optim.Optimizer, train: Any, hparams: HParams, *,
               generator: torch.Generator, seed: int, start: float, stop: float, horizon: float,
               device: torch.device, val: Iterable | None = None, deadline: float | None = None,
               meter: EnergyMeter | None = None) -> Progress:
    """Train from epoch ``start`` to ``stop`` (fractions allowed), validating after each (partial)
    epoch when ``val`` is given. ``train`` is a loader drawing its shuffle from ``generator``.

    The partial-epoch rule: epoch k always sees the batch order seeded by (``seed``, k) and the
    fraction f of it is its first round(f x batches) batches, so a run continued from a checkpoint
    at any fraction trains exactly as one uninterrupted run. ``deadline`` (``time.time()``) stops
    training mid-epoch; the progress then says ``stopped``."""
    per_epoch = len(train)
    stop_check = (lambda: time.time() >= deadline) if deadline is not None else None
    progress = Progress(epochs_done=start)
    while progress.epochs_done < stop - 1e-9 and not progress.stopped:
        k = int(math.floor(progress.epochs_done + 1e-9))
        first = int(round((progress.epochs_done - k) * per_epoch))
        last = max(first + 1, int(round((min(k + 1.0, stop) - k) * per_epoch)))
        generator.manual_seed(seed * 100_003 + k)
        for group in optimizer.param_groups:  # from hparams: a restored optimizer holds a scheduled lr
            group["lr"] = hparams.lr * lr_factor(hparams, k, horizon)
        stats = train_epoch(model, itertools.islice(iter(train), first, last), optimizer, device=device,
                            should_stop=stop_check)
        done = first + stats.batches
        progress.epochs_done = min(stop, k + 1.0) if done >= last else k + done / per_epoch
        progress.stopped = deadline is not None and time.time() >= deadline and progress.epochs_done < stop - 1e-9
        progress.train_loss = stats.loss
        row = {"epoch": round(progress.epochs_done, 4), "train_loss": stats.loss, "train_accuracy": stats.accuracy,
               "seconds": stats.seconds}
        line = f"epoch {progress.epochs_done:g}/{stop:g}  loss {stats.loss:.4f}  train acc {100 * stats.accuracy:.2f}%"
        if val is not None:
            progress.val = evaluate(model, val, device=device)
            row.update(val_loss=progress.val.loss, val_error=progress.val.error)
            line += f"  val acc {100 * progress.val.accuracy:.2f}%"
        if meter is not None:
            row["energy_kwh_so_far"] = meter.so_far()
            line += f"  energy {format_energy(row['energy_kwh_so_far'])}"
        progress.history.append(row)
        log.info("%s  %.1fs", line, stats.seconds)
    return progress


def analytic_cost(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """`autodsnn.shift.cost` of one sample, as the trial records it."""
    c = cost(model, (1, *input_shape))
    return {"energy_pj_per_sample": c.total_energy_pj, "energy_breakdown_pj": c.energy_pj, "params": c.params,
            "shift_params": c.shift_params, "macs": c.macs, "shifts": c.shifts, "adds": c.adds,
            "model_bits": c.model_bits}
