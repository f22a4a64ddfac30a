"""One trial: train a DSNN configuration for a budget of epochs, evaluate it, measure its energy.

    result = train_trial({"shift_type": "ps", "weight_bits": 5, "optimizer": "radam", "lr": 0.01},
                         budget=2.0, task=Task(dataset="mnist", model="mnist-conv"))

Reads top to bottom: hyperparameters and task, data, model, optimizer, the epoch loop inside one
energy meter, checkpoint and export, the measured inference pass, the analytic cost. Every
failure (NaN loss, out of memory, any exception) comes back as a failed result with its reason.
"""
from __future__ import annotations

import os
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import torch

from ..shift import export
from .checkpoint import UnreadableCheckpointError, restore_checkpoint, save_checkpoint
from .energy import EnergyMeter
from .hparams import HParams, HParamsError, Task
from .loop import DivergedError, evaluate
from .records import TrialRequest, TrialResult, TrialStatus
from .inference import profile_inference
from .training import analytic_cost, build_model, load_task_data, make_optimizer, resolve_device, run_epochs


def train_trial(config: HParams | Mapping[str, Any], budget: float, *, task: Task = Task(), seed: int = 0,
                checkpoint_path: str | os.PathLike | None = None, resume_from: str | os.PathLike | None = None,
                deadline: float | None = None, export_path: str | os.PathLike | None = None) -> TrialResult:
    """Train ``config`` for ``budget`` epochs (fractions allowed) and evaluate on the validation
    split. ``resume_from``: a checkpoint of the same configuration at a lower budget to continue
    from. ``deadline``: a ``time.time()`` after which training stops and the trial is recorded as
    cut short with its partial metrics. Never raises for training failures."""
    start = time.time()
    try:
        hparams = config if isinstance(config, HParams) else HParams.from_dict(config)
    except HParamsError as exc:
        return TrialResult.failed(f"bad configuration: {exc}", budget=budget)
    if not budget > 0:
        return TrialResult.failed(f"budget must be positive, got {budget}", budget=budget,
                                  hparams=hparams.to_dict())
    result = TrialResult(status=TrialStatus.OK, hparams=hparams.to_dict(), budget=float(budget))
    meter = EnergyMeter(task.country)
    prior_energy: float | None = 0.0   # kWh spent by the checkpoint this trial continues (None: unknown)
    try:
        device = resolve_device(task.device)
        result.device = str(device)
        torch.manual_seed(seed)
        splits = load_task_data(task)
        shuffle = torch.Generator()
        train = splits.loader("train", hparams.batch_size, shuffle=True, generator=shuffle)
        val = splits.loader("val", task.eval_batch_size)
        model, result.converted_layers = build_model(hparams, task, splits.info)
        model.to(device)
        optimizer = make_optimizer(hparams, model)
        epochs_done = 0.0
        if resume_from is not None:
            try:
                epochs_done, prior_energy = restore_checkpoint(resume_from, model, optimizer, hparams, task, budget)
                result.resumed_from_epochs = epochs_done
            except UnreadableCheckpointError as exc:  # a damaged file is no reason to fail the trial
                result.notes.append(f"{exc}: trained from scratch")

        with meter:
            progress = run_epochs(model, optimizer, train, hparams, generator=shuffle, seed=seed, start=epochs_done,
                                  stop=budget, horizon=task.schedule_epochs or budget, device=device,
                                  val=val if task.validate_each_epoch else None,
                                  deadline=deadline, meter=meter)
            # validated once here: trials validate only after their last epoch, or a checkpoint
            # at the full budget already left nothing to train
            val_stats = progress.val or evaluate(model, val, device=device)
            if progress.history and "val_error" not in progress.history[-1]:
                progress.history[-1].update(val_loss=val_stats.loss, val_error=val_stats.error)
        result.epochs_done, result.history = progress.epochs_done, progress.history
        result.train_loss, result.val_loss, result.val_error = progress.train_loss, val_stats.loss, val_stats.error
        result.val_samples = val_stats.samples
        if progress.stopped:
            result.status = TrialStatus.CUT_SHORT
            result.reason = f"deadline reached after {progress.epochs_done:.3g} of {budget:g} epochs"

        if checkpoint_path is not None:
            spent = None if prior_energy is None or meter.reading.energy_kwh is None else \
                prior_energy + meter.reading.energy_kwh
            result.checkpoint = str(save_checkpoint(Path(checkpoint_path), model, optimizer, progress.epochs_done,
                                                    hparams, task, extra={"energy_kwh_total": spent}))
        if export_path is not None and result.converted_layers:
            export(model, export_path)
        if task.measure_inference:
            profile = profile_inference(model, val, device, kernels=task.inference_kernels,
                                        batch_sizes=tuple(dict.fromkeys((1, task.inference_batch))),
                                        window_s=task.inference_window,
                                        repeats=task.inference_repeats, country=task.country,
                                        model_stats=val_stats)
            throughput, latency = profile.at(task.inference_batch), profile.at(1)
            result.inference_path, result.inference_error = profile.path, profile.error
            result.inference_samples = profile.samples
            result.inference_energy_uj, result.inference_latency_ms = throughput["energy_uj"], latency["latency_ms"]
            result.inference = profile.to_dict()
            if result.inference_energy_uj is None:
                result.missing["inference_energy"] = throughput["missing"] or "not measured"
        result.analytic = analytic_cost(model, splits.info.input_shape)
    except DivergedError as exc:
        result.status, result.reason = TrialStatus.FAILED, f"diverged: {exc}"
    except torch.OutOfMemoryError as exc:
        result.status, result.reason = TrialStatus.FAILED, f"out of memory: {str(exc).splitlines()[0]}"
    except Exception as exc:  # noqa: BLE001 - a trial reports its failure, it never crashes the caller
        result.status = TrialStatus.FAILED
        result.reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        result.traceback = traceback.format_exc(limit=8)
    finally:
        reading = meter.reading
        result.energy_kwh, result.emissions_kg = reading.energy_kwh, reading.emissions_kg
        result.energy_kwh_total = None if reading.energy_kwh is None or prior_energy is None else \
            prior_energy + reading.energy_kwh
        if reading.missing:
            result.missing["energy"] = reading.missing
        elif prior_energy is None:
            result.missing["energy"] = f"the energy of the checkpoint this trial continued ({resume_from}) is missing"
        result.energy.update(reading.to_dict())
        result.wall_time = time.time() - start
    return result


def run_request(request: TrialRequest) -> TrialResult:
    """Train what a :class:`TrialRequest` asks for (the worker's entry point, minus the worker's
    own setup)."""
    return train_trial(request.hparams, request.budget, task=request.task, seed=request.seed,
                       checkpoint_path=request.checkpoint, resume_from=request.resume_from,
                       deadline=request.deadline)
