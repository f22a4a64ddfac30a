"""What a Dask worker runs for one trial. Importable (never __main__), so Dask can ship it."""
from __future__ import annotations

import dataclasses
import os
import socket
import time
from typing import Any

import torch

from ..trial.run import Task, train_trial


def run_trial_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Train one (configuration, budget) and return the TrialResult as a dict.

    The payload is plain data: ``hparams``, ``budget``, ``task`` (Task fields), ``seed``,
    ``threads`` (torch threads for this worker: workers must not oversubscribe cores),
    ``checkpoint``/``resume_from`` paths and ``deadline`` (time.time()).
    """
    threads = int(payload.get("threads") or 0)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    task = Task(**payload["task"])
    if task.device == "auto" and torch.cuda.device_count() > 1:
        task = dataclasses.replace(task, device=f"cuda:{_worker_index() % torch.cuda.device_count()}")
    result = train_trial(payload["hparams"], float(payload["budget"]), task=task,
                         seed=int(payload.get("seed", 0)), checkpoint_path=payload.get("checkpoint"),
                         resume_from=payload.get("resume_from"), deadline=payload.get("deadline"), progress=False)
    out = result.to_dict()
    out["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    out["threads"] = torch.get_num_threads()
    return out


def _worker_index() -> int:
    """This Dask worker's number (LocalCluster names workers 0..N-1): one GPU per worker."""
    try:
        from distributed import get_worker

        name = get_worker().name
        return int(name) if str(name).isdigit() else abs(hash(name))
    except (ImportError, ValueError):
        return 0


def sleep_trial_task(payload: dict[str, Any], seconds: float = 1.0) -> dict[str, Any]:
    """A stand-in trial for measuring the platform's own overhead (benchmarks/platform_overhead.py):
    it sleeps inside an energy meter, as a real trial trains inside one."""
    from ..trial.energy import EnergyMeter

    start = time.time()
    with EnergyMeter() as meter:
        time.sleep(seconds)
    return {"status": "ok", "val_error": 0.5, "energy_kwh": meter.reading.energy_kwh,
            "energy_kwh_total": meter.reading.energy_kwh, "wall_time": time.time() - start, "budget": payload["budget"],
            "analytic": {"energy_pj_per_sample": 1.0, "model_bits": 1}, "worker": f"{socket.gethostname()}:{os.getpid()}"}
