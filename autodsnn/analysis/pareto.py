"""Pareto analysis of a run: non-dominated sets, exact hypervolume, knee, comparison with the
default configuration. Pure functions over arrays plus :func:`front_info`, which reads a run
store (also while the run is still going). All objectives are minimized.

Reference point (documented, reproducible): unless given, for each objective the worst value
among the points considered plus 10% of that objective's range (or 10% of |worst| when the
range is zero), so every point on the front adds volume. Compare hypervolumes only under one
reference point: pass ``ref`` explicitly when comparing runs (``front_info`` over several runs
computes one shared reference point).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import AutoDSNNError
from ..store import Run, TrialRow
from ..trial import TrialStatus
from ..trial.objectives import ObjectiveError, check_objectives, objective_spreads


class ParetoError(AutoDSNNError, ValueError):
    """An analysis that cannot be made; the message says why and what to change."""


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (<= in every objective, < in one).
    Duplicates are all kept."""
    p = np.asarray(points, dtype=float)
    if p.ndim != 2:
        raise ParetoError(f"points must be a 2-D array (n points x k objectives), got shape {p.shape}")
    mask = np.ones(len(p), dtype=bool)
    for i in range(len(p)):
        dominated_by = np.all(p <= p[i], axis=1) & np.any(p < p[i], axis=1)
        mask[i] = not dominated_by.any()
    return mask


def reference_point(points: np.ndarray, margin: float = 0.1) -> np.ndarray:
    """Worst value per objective plus ``margin`` of its range (see module doc)."""
    p = np.asarray(points, dtype=float)
    worst, best = p.max(axis=0), p.min(axis=0)
    span = worst - best
    span = np.where(span > 0, span, np.abs(worst))
    span = np.where(span > 0, span, 1.0)
    return worst + margin * span


def _staircase_area(p: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by 2-D points (sorted by x) and bounded by ``ref``."""
    area, prev_y = 0.0, ref[1]
    for x, y in p[np.argsort(p[:, 0], kind="stable")]:
        if y < prev_y:
            area += (ref[0] - x) * (prev_y - y)
            prev_y = y
    return area


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, ref: Sequence[float] | np.ndarray) -> float:
    """Exact hypervolume dominated by ``points`` and bounded by ``ref`` (2 or 3 objectives;
    one objective gives the length ``ref - min``). Points outside the box add nothing."""
    p = np.asarray(points, dtype=float)
    r = np.asarray(ref, dtype=float)
    if p.size == 0:
        return 0.0
    if p.ndim != 2 or p.shape[1] != len(r):
        raise ParetoError(f"points of shape {p.shape} do not match a reference point of {len(r)} objectives")
    p = p[np.all(p < r, axis=1)]
    if len(p) == 0:
        return 0.0
    k = p.shape[1]
    if k == 1:
        return float(r[0] - p[:, 0].min())
    if k == 2:
        return float(_staircase_area(p, r))
    if k == 3:
        # Slice along the third objective: between consecutive z levels the dominated region is
        # the 2-D staircase of the points at or below that level.
        order = np.argsort(p[:, 2], kind="stable")
        p = p[order]
        zs = list(p[:, 2]) + [r[2]]
        volume = 0.0
        for i in range(len(p)):
            height = zs[i + 1] - zs[i]
            if height > 0:
                volume += height * _staircase_area(p[: i + 1, :2], r[:2])
        return float(volume)
    raise ParetoError(f"exact hypervolume is implemented for 1-3 objectives, got {k}")


def knee(front: Sequence[Sequence[float]] | np.ndarray) -> int:
    """Index of the knee of a front: after scaling every objective to [0, 1] over the front, the
    point closest to the ideal point (the best value of every objective)."""
    f = np.asarray(front, dtype=float)
    if len(f) == 0:
        raise ParetoError("the front is empty: no knee")
    lo, hi = f.min(axis=0), f.max(axis=0)
    scaled = (f - lo) / np.where(hi > lo, hi - lo, 1.0)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def compare(point: Sequence[float], default: Sequence[float], objectives: Sequence[str],
            point_spread: Sequence[float | None] | None = None,
            default_spread: Sequence[float | None] | None = None) -> dict[str, Any]:
    """How a configuration compares with the default, in view of the noise.

    Spreads are each value's noise half-width (``Objective.spread``: two standard errors of the
    validation error, half the IQR of repeated measurements, 0 for exact figures, None where not
    measured and then taken as 0). Per objective the verdict is "better" or "worse" only when the
    difference exceeds the two spreads together, else "within noise"; the configuration dominates
    the default when it is better beyond noise in one objective and worse beyond noise in none.
    % changes are negative for lower (better) values."""
    p, d = np.asarray(point, dtype=float), np.asarray(default, dtype=float)
    ps = [None] * len(p) if point_spread is None else list(point_spread)
    ds = [None] * len(d) if default_spread is None else list(default_spread)
    verdicts, change, known = {}, {}, {}
    for o, a, b, sa, sb in zip(objectives, p, d, ps, ds):
        noise = (sa or 0.0) + (sb or 0.0)
        verdicts[o] = "within noise" if abs(a - b) <= noise else "better" if a < b else "worse"
        change[o] = float(100.0 * (a - b) / abs(b)) if b != 0 else float("nan")
        known[o] = sa is not None and sb is not None
    better = [o for o, v in verdicts.items() if v == "better"]
    worse = [o for o, v in verdicts.items() if v == "worse"]
    return {"dominates_default": bool(better) and not worse, "dominated_by_default": bool(worse) and not better,
            "within_noise": not better and not worse, "verdicts": verdicts, "change_percent": change,
            "spread_known": known}


def comparison_text(cmp: dict[str, Any]) -> str:
    """One phrase: "dominates the default (error -31%, ...)", with a % change only where it
    exceeds the noise ("~" where it does not, "?" marks a spread that was not measured)."""
    parts = [f"{o} {cmp['change_percent'][o]:+.1f}%" if v != "within noise" else f"{o} ~ (within noise)"
             for o, v in cmp["verdicts"].items()]
    parts = [p + ("" if cmp["spread_known"][o] else "?") for p, o in zip(parts, cmp["verdicts"])]
    head = ("dominates the default" if cmp["dominates_default"] else
            "within noise of the default" if cmp["within_noise"] else
            "dominated by the default" if cmp["dominated_by_default"] else "trades off against the default")
    return f"{head} ({', '.join(parts)})"


@dataclass
class FrontInfo:
    """Everything a plot, table or report needs about one budget level of one or more runs."""

    objectives: tuple[str, ...]
    budget: float | None
    trials: list[TrialRow]             # successful trials considered (at this budget)
    points: np.ndarray                 # their objective vectors
    spreads: np.ndarray                # each value's noise half-width (NaN: not measured)
    front_mask: np.ndarray
    ref: np.ndarray
    hypervolume: float
    knee_index: int | None             # index into trials
    default_index: int | None
    comparisons: dict[int, dict[str, Any]] = field(default_factory=dict)  # trial index -> compare()
    all_trials: list[TrialRow] = field(default_factory=list)  # every budget, for the scatter

    @property
    def front_indices(self) -> list[int]:
        """Indices into ``trials`` of the front, ordered by the first objective."""
        indices = np.nonzero(self.front_mask)[0]
        return [int(i) for i in indices[np.argsort(self.points[indices, 0], kind="stable")]]

    @property
    def front(self) -> list[TrialRow]:
        return [self.trials[i] for i in self.front_indices]


def usable_trials(rows: Iterable[TrialRow], objectives: Sequence[str]) -> list[TrialRow]:
    """The successful trials that have a value for every one of ``objectives``."""
    return [r for r in rows if r.status is TrialStatus.OK and all(o in r.objectives for o in objectives)]


def front_info(run: Run, objectives: Sequence[str] | None = None, budget: str | float = "max",
               ref: Sequence[float] | None = None) -> FrontInfo:
    """The front of a run at one budget: "max" (highest budget with results), or a number."""
    objectives = tuple(objectives or run.objectives)
    try:
        check_objectives(objectives)
    except ObjectiveError as exc:
        raise ParetoError(str(exc)) from None
    every = run.trials()
    rows = usable_trials(every, objectives)
    if not rows:
        raise ParetoError(f"run {run.path} has no successful trial with objectives {', '.join(objectives)} yet")
    budgets = sorted({r.budget for r in rows})
    level = budgets[-1] if budget == "max" else float(budget)
    if level not in budgets:
        raise ParetoError(f"no successful trial at budget {budget}: budgets with results are "
                          f"{', '.join(f'{b:g}' for b in budgets)}")
    at = [r for r in rows if r.budget == level]
    points = np.array([[r.objectives[o] for o in objectives] for r in at])
    spreads = np.array([[np.nan if v is None else v for v in objective_spreads(r.result, objectives).values()]
                        for r in at], dtype=float)
    mask = non_dominated(points)
    reference = np.asarray(ref, dtype=float) if ref is not None else reference_point(points)
    hv = hypervolume(points[mask], reference)
    front_idx = np.nonzero(mask)[0]
    k = int(front_idx[knee(points[mask])]) if len(front_idx) else None
    default_index = next((i for i, r in enumerate(at) if r.is_default), None)
    comparisons = {}
    if default_index is not None:
        for i in front_idx:
            comparisons[int(i)] = compare(points[i], points[default_index], objectives, _spread(spreads[i]),
                                          _spread(spreads[default_index]))
    return FrontInfo(objectives, level, at, points, spreads, mask, reference, hv, k, default_index, comparisons,
                     every)


def _spread(row: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in row]


def hypervolume_curve(run: Run, objectives: Sequence[str], ref: Sequence[float] | None = None,
                      budget: str | float = "max", against: str = "time") -> list[tuple[float, float]]:
    """The hypervolume of the front so far after each finished trial at the chosen budget, under
    one reference point for the whole curve, against ``against``: "time" (seconds since the
    run's first trial started) or "energy" (kWh that all the run's trials had spent by then,
    failed and cut-short ones included; trials whose energy is missing add nothing)."""
    if against not in ("time", "energy"):
        raise ParetoError(f"against={against!r}: use 'time' or 'energy'")
    info = front_info(run, objectives, budget, ref)
    every = sorted(info.all_trials, key=lambda r: r.ended_at or 0.0)
    start = min((r.started_at or r.ended_at or 0.0) for r in every) if every else 0.0
    on_front_level = {id(r) for r in info.trials}
    curve, spent, points = [], 0.0, []
    for row in every:
        spent += row.result.energy_kwh or 0.0
        if id(row) not in on_front_level:
            continue
        points.append([row.objectives[o] for o in objectives])
        pts = np.array(points)
        x = spent if against == "energy" else float((row.ended_at or 0.0) - start)
        curve.append((x, hypervolume(pts[non_dominated(pts)], info.ref)))
    return curve


@dataclass
class Footprint:
    """What the search itself cost: every trial, failed and cut-short ones included."""

    trials: int
    energy_kwh: float          # sum of the trials' own training energy (promotions counted once)
    emissions_kg: float
    missing: int               # trials whose energy could not be measured (not in the sums)


def footprint(rows: Sequence[TrialRow]) -> Footprint:
    known = [r.result for r in rows if r.result.energy_kwh is not None]
    return Footprint(len(rows), sum(r.energy_kwh for r in known), sum(r.emissions_kg or 0.0 for r in known),
                     len(rows) - len(known))


@dataclass
class MultiRunInfo:
    """Several runs (e.g. seeds) at their highest budgets, under one reference point."""

    objectives: tuple[str, ...]
    infos: list[FrontInfo]
    ref: np.ndarray
    hypervolumes: list[float]
    grid: np.ndarray | None = None          # x values of the attainment curves (2 objectives)
    attainment: dict[str, np.ndarray] = field(default_factory=dict)  # "25%", "50%", "75%" -> y

    @property
    def median_hypervolume(self) -> float:
        return float(np.median(self.hypervolumes))


def attainment_curves(fronts: Sequence[np.ndarray], ref: np.ndarray, levels: Sequence[float] = (0.25, 0.5, 0.75),
                      points: int = 400) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Empirical attainment of 2-D fronts: at each x of a grid, the best y every run reached with
    x' <= x; the q-level curve is what at least a fraction q of the runs attained (the 50% curve
    is the median front). y is ``inf`` where too few runs reached that x."""
    xs_all = np.concatenate([f[:, 0] for f in fronts if len(f)])
    grid = np.unique(np.concatenate([xs_all, np.linspace(xs_all.min(), ref[0], points)]))
    per_run = np.full((len(fronts), len(grid)), np.inf)
    for r, f in enumerate(fronts):
        for x, y in f:
            per_run[r, grid >= x] = np.minimum(per_run[r, grid >= x], y)
    ordered = np.sort(per_run, axis=0)
    curves = {}
    for q in levels:
        k = max(1, int(np.ceil(q * len(fronts))))  # attained by at least k runs
        curves[f"{int(round(100 * q))}%"] = ordered[k - 1]
    return grid, curves


def multi_run_info(runs: Sequence[Run], objectives: Sequence[str] | None = None, budget: str | float = "max",
                   ref: Sequence[float] | None = None) -> MultiRunInfo:
    """Fronts of several runs with a shared reference point, their hypervolumes, and for two
    objectives the median front with its 25-75% spread (attainment curves)."""
    if not runs:
        raise ParetoError("give at least one run")
    objectives = tuple(objectives or runs[0].objectives)
    infos = [front_info(r, objectives, budget) for r in runs]
    reference = (np.asarray(ref, dtype=float) if ref is not None
                 else reference_point(np.vstack([i.points for i in infos])))
    for i in infos:
        i.ref = reference
        i.hypervolume = hypervolume(i.points[i.front_mask], reference)
    out = MultiRunInfo(objectives, infos, reference, [i.hypervolume for i in infos])
    if len(objectives) == 2:
        out.grid, out.attainment = attainment_curves([i.points[i.front_mask] for i in infos], reference)
    return out
