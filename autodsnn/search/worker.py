"""What a Dask worker runs for one trial. Importable (never __main__), so Dask can ship it."""
from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
from pathlib import Path

import torch

from ..trial import EnergyMeter, TrialRequest, TrialResult, TrialStatus, run_request
from .checkpoints import fetch, is_url, publish, trial_scratch


def run_trial_task(request: TrialRequest) -> TrialResult:
    """Train one (configuration, budget) on this worker: set its torch threads (workers must not
    oversubscribe cores), give it one GPU of several, bring the checkpoint it continues from and
    hand back the one it writes (search.checkpoints), and say which worker ran it."""
    if request.threads > 0 and torch.get_num_threads() != request.threads:
        torch.set_num_threads(request.threads)
    if request.task.device == "auto" and torch.cuda.device_count() > 1:
        device = f"cuda:{_worker_index() % torch.cuda.device_count()}"
        request = dataclasses.replace(request, task=dataclasses.replace(request.task, device=device))
    with trial_scratch() as scratch:
        result = run_request(_with_local_checkpoints(request, scratch))
        _hand_back_checkpoint(request, result)
    result.worker, result.threads = _worker_name(), torch.get_num_threads()
    return result


def _with_local_checkpoints(request: TrialRequest, scratch: Path) -> TrialRequest:
    """The request with checkpoints the trial can open as files: one that arrived as bytes or
    lives at a URL is copied into ``scratch``, and a checkpoint bound for the driver or a URL is
    written there first."""
    changes: dict = {"resume_blob": None}
    if request.resume_blob is not None:
        local = scratch / "resume.pt"
        local.write_bytes(request.resume_blob)
        changes["resume_from"] = str(local)
    elif is_url(request.resume_from):
        changes["resume_from"] = str(fetch(request.resume_from, scratch))
    if request.checkpoint is not None and (request.checkpoint_via == "dask" or is_url(request.checkpoint)):
        changes["checkpoint"] = str(scratch / "checkpoint.pt")
    return dataclasses.replace(request, **changes)


def _hand_back_checkpoint(request: TrialRequest, result: TrialResult) -> None:
    """Publish a checkpoint written to scratch: as bytes in the result (the driver stores it) or
    to its URL. Called before the scratch folder goes."""
    if result.checkpoint is None or request.checkpoint is None:
        return
    local = Path(result.checkpoint)
    if request.checkpoint_via == "dask":
        result.checkpoint_blob, result.checkpoint = local.read_bytes(), None
    elif is_url(request.checkpoint):
        publish(local, request.checkpoint)
        result.checkpoint = request.checkpoint


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _worker_index() -> int:
    """This Dask worker's number, for one GPU per worker: the number its name ends in (LocalCluster
    names workers 0..N-1, dask-jobqueue ``<job>-0``, ``<job>-1`` within a job, `dask worker --name
    gpu1` by hand); 0 without one."""
    try:
        from distributed import get_worker

        digits = re.search(r"(\d+)$", str(get_worker().name))
        return int(digits.group(1)) if digits else 0
    except (ImportError, ValueError):
        return 0


def sleep_trial_task(request: TrialRequest, seconds: float = 1.0, meter: bool = True) -> TrialResult:
    """A stand-in trial for measuring the platform's own overhead (benchmarks/platform_overhead.py):
    it sleeps inside an energy meter, as a real trial trains inside one (``meter=False``: it only
    sleeps, for scaling to more workers than cores)."""
    start = time.time()
    if meter:
        with EnergyMeter() as energy:
            time.sleep(seconds)
        kwh = energy.reading.energy_kwh
    else:
        time.sleep(seconds)
        kwh = 1e-9 * seconds
    return TrialResult(status=TrialStatus.OK, val_error=0.5, energy_kwh=kwh, inference_energy_uj=1.0,
                       energy_kwh_total=kwh, wall_time=time.time() - start,
                       budget=request.budget, analytic={"energy_pj_per_sample": 1.0, "model_bits": 1},
                       worker=_worker_name())


def instant_trial_task(request: TrialRequest) -> TrialResult:
    """A trial that takes no time, for measuring the driver's own per-trial overhead as the run
    history grows (benchmarks/driver_overhead.py). Its error and energy are a smooth function of
    the configuration plus budget-dependent noise, so SMAC's model has something to fit."""
    import math
    import random

    h = request.hparams
    lr = float(h.get("lr", 0.01))
    bits = float(h.get("weight_bits", 5) if h.get("shift_type", "none") != "none" else 32)
    rng = random.Random(hash((tuple(sorted(map(str, h.items()))), request.budget)))
    error = min(0.99, 0.05 + 0.2 * abs(math.log10(lr) + 2.3) + 0.3 / (1 + request.budget) + 0.02 * rng.random())
    energy_pj = 50.0 * bits * (1 + 0.05 * rng.random())
    return TrialResult(status=TrialStatus.OK, val_error=error, budget=request.budget, epochs_done=request.budget,
                       energy_kwh=1e-9 * request.budget, energy_kwh_total=1e-9 * request.budget,
                       inference_energy_uj=energy_pj, analytic={"energy_pj_per_sample": energy_pj, "model_bits": bits},
                       worker=_worker_name())
