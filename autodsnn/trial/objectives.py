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
    description: str
    read: Callable[[TrialResult], float | None]
    crash_cost: float = CRASH_OTHER


def _training_emissions(r: TrialResult) -> float | None:
    # emissions of this trial's own training, scaled to the energy of the whole chain of promotions
    scale = r.energy_kwh_total / r.energy_kwh if r.energy_kwh else 1.0
    return r.emissions_kg * scale


OBJECTIVES: dict[str, Objective] = {o.name: o for o in (
    Objective("error", "validation error", "validation error (fraction)", lambda r: r.val_error, crash_cost=1.0),
    Objective("energy", "training energy (kWh)",
              "measured energy of the trial's training, kWh (CodeCarbon; cumulative over promotions)",
              lambda r: r.energy_kwh_total),
    Objective("emissions", "emissions (kg CO2eq)", "measured emissions of the trial's training, kg CO2eq",
              _training_emissions),
    Objective("inference_energy", "inference energy (kWh)",
              "measured energy of one inference pass over the validation set, kWh", lambda r: r.inference_energy_kwh),
    Objective("analytic_energy", "analytic inference energy (pJ/image)",
              "analytic inference energy per image from autodsnn.shift.cost, pJ",
              lambda r: r.analytic.get("energy_pj_per_sample")),
    Objective("model_bits", "model size (bits)", "model size in bits", lambda r: r.analytic.get("model_bits")),
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


def crash_costs(names: Sequence[str]) -> list[float]:
    return [OBJECTIVES[o].crash_cost for o in check_objectives(names)]


def label(name: str) -> str:
    return OBJECTIVES[name].label if name in OBJECTIVES else name
