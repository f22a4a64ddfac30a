"""The records a trial is asked with and answers with: :class:`TrialRequest` -> :class:`TrialResult`.

Both cross Dask as they are (pickled dataclasses), so the driver, the store and the analysis
read typed fields, never ``dict.get`` guesses. :class:`TrialStatus` is the one list of outcomes.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .energy import format_emissions, format_energy
from .hparams import Task


class TrialStatus(str, enum.Enum):
    """How a trial ended (Optuna's TrialState, in our words)."""

    OK = "ok"                  # trained for its whole budget and evaluated
    FAILED = "failed"          # raised, diverged, ran out of memory, or its worker died
    CUT_SHORT = "cut_short"    # stopped at the run's deadline or its timeout, with partial metrics
    LOST = "lost"              # still running when the driver gave up on it

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:  # f"{status:<9}" reads "ok", not "TrialStatus.OK"
        return format(self.value, spec)


@dataclass(frozen=True)
class TrialRequest:
    """One (configuration, budget) to train, with everything a worker needs and nothing it must
    look up. Paths are absolute, resolved by the driver."""

    hparams: Mapping[str, Any]       # the configuration plus the experiment's fixed values
    budget: float                    # epochs (fractions allowed)
    task: Task
    seed: int = 0
    threads: int = 0                 # torch threads on the worker; 0 keeps the worker's setting
    checkpoint: str | None = None    # where to save the trial's checkpoint: a path or an fsspec URL
    resume_from: str | None = None   # a lower-budget checkpoint of the same configuration (path or URL)
    deadline: float | None = None    # time.time() after which the trial stops (cut short)
    # "path": the worker reaches ``checkpoint`` and ``resume_from`` itself; "dask": the checkpoint to
    # continue arrives as ``resume_blob`` and the new one goes back as the result's checkpoint_blob
    # (workers without the driver's disk; search.checkpoints)
    checkpoint_via: str = "path"
    resume_blob: bytes | None = field(default=None, repr=False)


@dataclass
class TrialResult:
    """Everything one trial produced."""

    status: TrialStatus
    reason: str | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    budget: float = 0.0
    epochs_done: float = 0.0
    resumed_from_epochs: float = 0.0
    val_error: float | None = None
    val_samples: int | None = None      # how many images the validation error is over
    val_loss: float | None = None
    train_loss: float | None = None
    wall_time: float = 0.0
    # Training energy; None where the meter could not take a valid reading (the reason is in
    # ``missing``), never a silent 0.
    energy_kwh: float | None = None
    energy_kwh_total: float | None = None   # including the checkpoint this trial continued from
    emissions_kg: float | None = None
    energy: dict[str, Any] = field(default_factory=dict)   # the reading: window, components, methods
    # Inference through the deployed kernels (trial.inference): per-image medians over repetitions
    inference_energy_uj: float | None = None   # at the throughput batch, total (idle included)
    inference_latency_ms: float | None = None  # at batch 1
    inference_samples: int | None = None
    inference_path: str | None = None
    inference_error: float | None = None   # validation error of the model that ran the inference pass
    inference: dict[str, Any] = field(default_factory=dict)  # the whole profile: batches, IQRs, idle, dynamic
    missing: dict[str, str] = field(default_factory=dict)    # measurement -> why it could not be taken
    analytic: dict[str, Any] = field(default_factory=dict)
    converted_layers: int = 0
    device: str = "cpu"
    checkpoint: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    worker: str | None = None            # host:pid of the Dask worker that ran it
    threads: int | None = None
    traceback: str | None = None         # of a failed trial
    resumed_from: str | None = None      # the lower-budget checkpoint this trial continued (run folder or URL)
    notes: list[str] = field(default_factory=list)  # what the trial worked around (the driver logs them)
    # The checkpoint itself, on its way from a remote worker to the driver (checkpoint_via="dask");
    # the driver writes it into the run and drops it: never stored, never in to_dict().
    checkpoint_blob: bytes | None = field(default=None, repr=False, metadata={"transient": True})

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)

    @property
    def ok(self) -> bool:
        return self.status is TrialStatus.OK

    @classmethod
    def failed(cls, reason: str, *, budget: float, **fields: Any) -> "TrialResult":
        return cls(status=TrialStatus.FAILED, reason=reason, budget=float(budget), **fields)

    def to_dict(self) -> dict[str, Any]:
        blob, self.checkpoint_blob = self.checkpoint_blob, None  # asdict would copy the bytes first
        try:
            d = asdict(self)
        finally:
            self.checkpoint_blob = blob
        for name in TRANSIENT_FIELDS:
            d.pop(name, None)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TrialResult":
        """From :meth:`to_dict` output (a stored trial); keys a newer version added are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def summary(self) -> str:
        """One line for a terminal."""
        if not self.ok and self.val_error is None:
            return f"{self.status}: {self.reason}"
        acc = 100 * (1 - (self.val_error or 0.0))
        emissions = format_emissions(self.emissions_kg)
        return (f"{self.status}: val acc {acc:.2f}% after {self.epochs_done:g} epochs, {self.wall_time:.1f}s, "
                f"training energy {format_energy(self.energy_kwh)}, emissions {emissions}"
                + (f" ({self.reason})" if self.reason else ""))


# Fields that travel between worker and driver but are never stored.
TRANSIENT_FIELDS = tuple(f.name for f in dataclasses.fields(TrialResult) if f.metadata.get("transient"))
