"""Trial checkpoints: model, optimizer, epochs done, RNG state and the energy spent so far, so a
Hyperband promotion continues a lower-budget trial exactly where it stopped."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import replaced_atomically
from ..errors import AutoDSNNError
from .hparams import HParams, Task, config_key

CHECKPOINT_FORMAT = "autodsnn-trial-checkpoint"


class CheckpointError(AutoDSNNError, ValueError):
    """A checkpoint that cannot be continued from: not ours, another configuration, past the budget."""


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epochs_done: float,
                    hparams: HParams, task: Task, extra: dict[str, Any] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(path) as tmp:  # a killed trial never leaves half a checkpoint
        torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "epochs_done": float(epochs_done),
                    "hparams": hparams.to_dict(), "task": task.to_dict(), "config_key": config_key(hparams, task),
                    # dropout and stochastic rounding draw from torch's RNG: a resumed trial continues it
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                    **(extra or {})}, tmp)
    return path


class UnreadableCheckpointError(CheckpointError):
    """A checkpoint file that cannot be loaded at all (cut off, emptied, missing): a trial that
    was to continue it trains from scratch instead."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises EOFError, RuntimeError, UnpicklingError, OSError...
        raise UnreadableCheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: "
                                        f"{str(exc).splitlines()[0] if str(exc) else 'empty'})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an autodsnn trial checkpoint")
    return ckpt


def restore_checkpoint(path: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer,
                       hparams: HParams, task: Task, budget: float) -> tuple[float, float]:
    """Load a lower-budget checkpoint of the same configuration into ``model`` and ``optimizer``
    and continue its RNG. Returns (epochs done, energy in kWh spent to get there: None when
    that energy could not be measured)."""
    ckpt = load_checkpoint(path)
    if ckpt["config_key"] != config_key(hparams, task):
        raise CheckpointError(f"checkpoint {path} belongs to another configuration")
    if ckpt["epochs_done"] > budget:
        raise CheckpointError(f"checkpoint {path} is at {ckpt['epochs_done']} epochs, past the budget {budget}")
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng_cpu"])
    if ckpt.get("rng_cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
    spent = ckpt.get("energy_kwh_total")
    return float(ckpt["epochs_done"]), None if spent is None else float(spent)
