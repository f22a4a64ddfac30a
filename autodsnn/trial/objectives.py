"""The objectives a run can minimize, each declared once: name, label, unit, how it is read from
a :class:`TrialResult`, and the cost SMAC is told when a trial crashes.

The experiment validates its ``objectives`` here, SMAC's scenario takes the crash costs, the
store reads every objective of a stored trial through :func:`objective_values`, and the plots
and report label their axes and columns with ``label``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import AutoDSNNError
from .energy import format_emissions, format_energy
from .records import TrialResult

# Crashed trials never enter SMAC's objective normalization (it uses successful trials only),
# so a large crash cost cannot squash the scale of real results.
CRASH_OTHER = 1e9


class ObjectiveError(AutoDSNNError, ValueError):
    """An unknown objective name, or an impossible combination."""


@dataclass(frozen=True)
class Objective:
    name: str
    label: str                      # axis and column label, with the unit
    description: str                # what it measures, and how
    read: Callable[[TrialResult], float | None]
    # Half-width of the value's noise: two values differ beyond noise when their intervals do
    # not overlap. None: not measured (a single reading); 0: exact.
    spread: Callable[[TrialResult], float | None] = lambda r: None
    crash_cost: float = CRASH_OTHER
    show: Callable[[float], str] = lambda v: f"{v:.4g}"   # the value in the unit people read
    positive: bool = True           # every value > 0, so the search may model its logarithm


def _error_spread(r: TrialResult) -> float | None:
    # two binomial standard errors of the validation error (a ~95% interval)
    if r.val_error is None or not r.val_samples:
        return None
    return 2 * math.sqrt(max(r.val_error * (1 - r.val_error), 0.0) / r.val_samples)


def _half_iqr(key: str, batch: Callable[[TrialResult], int | None]) -> Callable[[TrialResult], float | None]:
    """Half the interquartile range over the inference repetitions of ``key`` at one batch size."""
    def spread(r: TrialResult) -> float | None:
        size = batch(r)
        row = next((b for b in r.inference.get("batches", []) if b.get("batch_size") == size), None)
        iqr = None if row is None else row.get(f"{key}_iqr")
        return None if iqr is None else iqr / 2
    return spread


def _throughput_batch(r: TrialResult) -> int | None:
    sizes = [b.get("batch_size") for b in r.inference.get("batches", [])]
    return max(sizes) if sizes else None


def _training_emissions(r: TrialResult) -> float | None:
    # emissions of this trial's own training, scaled to the energy of the whole chain of promotions
    if r.emissions_kg is None or r.energy_kwh_total is None or not r.energy_kwh:
        return None
    return r.emissions_kg * r.energy_kwh_total / r.energy_kwh


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("error", "validation error", "top-1 error on the validation split (fraction)", lambda r: r.val_error,
              _error_spread, crash_cost=1.0, show=lambda v: f"{v:.4f}", positive=False),
    Objective("energy", "training energy (kWh)",
              "energy of the trial's training as CodeCarbon meters it, kWh, cumulative over promotions (CPU from "
              "RAPL where readable, else TDP x process load; RAM from a model; GPU from NVML)",
              lambda r: r.energy_kwh_total, show=format_energy),
    Objective("emissions", "emissions (kg CO2eq)", "the training energy times the country's carbon intensity",
              _training_emissions, show=format_emissions),
    Objective("inference_energy", "inference energy (uJ/image)",
              "energy per image through the deployed shift kernels at the throughput batch, median of repeated "
              "metered windows (idle power included; the dynamic part is reported beside it)",
              lambda r: r.inference_energy_uj, _half_iqr("energy_uj", _throughput_batch),
              show=lambda v: f"{v:.4g} uJ/image"),
    Objective("latency", "latency at batch 1 (ms/image)",
              "time per image through the deployed shift kernels at batch 1, median of repeated windows",
              lambda r: r.inference_latency_ms, _half_iqr("latency_ms", lambda r: 1),
              show=lambda v: f"{v:.3g} ms/image"),
    Objective("analytic_energy", "analytic inference energy (pJ/image)",
              "inference energy per image from autodsnn.shift.cost (Horowitz 45 nm table + DRAM weight reads)",
              lambda r: r.analytic.get("energy_pj_per_sample"), lambda r: 0.0,
              show=lambda v: f"{v / 1e6:.4g} uJ/image"),
    Objective("model_bits", "model size (bits)", "model size in bits", lambda r: r.analytic.get("model_bits"),
              lambda r: 0.0, show=lambda v: f"{v / 8192:.4g} KiB"),
)}


def check_objectives(names: Sequence[str]) -> tuple[str, ...]:
    """The names as a tuple; raises :class:`ObjectiveError` naming an unknown one and the valid ones."""
    names = tuple(names)
    bad = [o for o in names if o not in OBJECTIVES]
    if bad:
        raise ObjectiveError(f"unknown objective {bad[0]!r}: use {', '.join(OBJECTIVES)}")
    return names


def objective_values(result: TrialResult, names: Sequence[str]) -> dict[str, float] | None:
    """The objective vector of a successful trial; None when it did not succeed or one of the
    objectives could not be read (missing, NaN or infinite)."""
    if not result.ok or result.val_error is None:
        return None
    out = {}
    for name in check_objectives(names):
        value = OBJECTIVES[name].read(result)
        if value is None or not math.isfinite(float(value)):
            return None
        out[name] = float(value)
    return out


def all_objective_values(result: TrialResult) -> dict[str, float]:
    """Every registered objective ``result`` has a finite value for (none unless it succeeded):
    a run can be analysed under objectives it did not optimize."""
    values: dict[str, float] = {}
    for name in OBJECTIVES:
        values.update(objective_values(result, (name,)) or {})
    return values


def objective_spreads(result: TrialResult, names: Sequence[str]) -> dict[str, float | None]:
    """Each objective's noise half-width for ``result`` (None where it was not measured)."""
    return {name: OBJECTIVES[name].spread(result) for name in check_objectives(names)}


def crash_costs(names: Sequence[str]) -> list[float]:
    return [OBJECTIVES[o].crash_cost for o in check_objectives(names)]


def label(name: str) -> str:
    return OBJECTIVES[name].label if name in OBJECTIVES else name


def show(name: str, value: float | None) -> str:
    """``value`` of objective ``name`` in the unit people read ("missing" for None)."""
    return "missing" if value is None else OBJECTIVES[name].show(value)
