"""What a Dask worker runs for one trial. Importable (never __main__), so Dask can ship it."""
from __future__ import annotations

import os
import socket
from typing import Any

import torch

from .train import Task, train_trial


def run_trial_task(payload: dict[str, Any]) -> dict[str, Any]:
    """Train one (configuration, budget) and return the TrialResult as a dict.

    The payload is plain data: ``hparams``, ``budget``, ``task`` (Task fields), ``seed``,
    ``threads`` (torch threads for this worker: workers must not oversubscribe cores),
    ``checkpoint``/``resume_from`` paths and ``deadline`` (time.time()).
    """
    threads = int(payload.get("threads") or 0)
    if threads > 0 and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    result = train_trial(payload["hparams"], float(payload["budget"]), task=Task(**payload["task"]),
                         seed=int(payload.get("seed", 0)), checkpoint_path=payload.get("checkpoint"),
                         resume_from=payload.get("resume_from"), deadline=payload.get("deadline"), progress=False)
    out = result.to_dict()
    out["worker"] = f"{socket.gethostname()}:{os.getpid()}"
    out["threads"] = torch.get_num_threads()
    return out
