"""What a run amounts to so far: trial counts, time used and the Pareto front at the highest
budget reached, with how it compares with the default DSNN (`autodsnn status`, and the end of
`autodsnn optimize`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..store import Run, TrialRow
from ..trial import TrialStatus
from ..trial.energy import format_emissions, format_energy
from ..trial.hparams import layer_designs_of
from ..trial.objectives import check_objectives, show
from .pareto import Footprint, FrontInfo, ParetoError, comparison_text, footprint, front_info


@dataclass
class RunSummary:
    run_dir: Path
    objectives: tuple[str, ...]
    counts: dict[TrialStatus, int]
    elapsed: float                    # wall-clock seconds the run has used
    info: FrontInfo | None = None     # None until a trial succeeds
    stopped: str = ""
    spent: Footprint | None = None    # what all the run's trials cost
    strategy: str = ""                # the search strategy and space, e.g. "smac over small"
    default_state: str = ""           # where the default stands when it is not on the front's budget

    @property
    def highest_budget(self) -> float | None:
        return None if self.info is None else self.info.budget

    @property
    def front(self) -> list[TrialRow]:
        return [] if self.info is None else self.info.front

    @property
    def default(self) -> TrialRow | None:
        if self.info is None or self.info.default_index is None:
            return None
        return self.info.trials[self.info.default_index]

    def describe(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        n = sum(self.counts.values())
        how = f" ({self.strategy})" if self.strategy else ""
        lines = [f"run {self.run_dir}{how}: {n} trial{'' if n == 1 else 's'} ({counts}) in {self.elapsed:.0f}s; "
                 f"{self.stopped}".rstrip("; ")]
        if self.spent is not None:
            lines.append(footprint_text(self.spent))
        if self.info is None:
            lines.append("no trial finished: no Pareto front")
            if self.default_state:
                lines.append(self.default_state)
            return "\n".join(lines)
        lines.append(f"Pareto front at the highest budget reached ({self.highest_budget:g} epochs):")
        for index, row in zip(self.info.front_indices, self.front):
            cmp = self.info.comparisons.get(index)
            tag = " (default)" if row.is_default else "" if cmp is None else f"  {comparison_text(cmp)}"
            lines.append(f"  trial {row.trial_id:>4}  {self._values(row)}  {short_config(row.config)}{tag}")
            lines.append(f"              {beside(row)}")
        if self.default is not None:
            lines.append(f"default configuration: {self._values(self.default)}")
            others = [c for i, c in self.info.comparisons.items() if i != self.info.default_index]
            dominating = sum(c["dominates_default"] for c in others)
            within = sum(c["within_noise"] for c in others)
            lines.append(f"{dominating} front configuration(s) dominate the default beyond the measured noise"
                         + (f"; {within} within noise of it" if within else ""))
        elif self.default_state:
            lines.append(self.default_state)
        return "\n".join(lines)

    def _values(self, row: TrialRow) -> str:
        return "  ".join(f"{o} {show(o, row.objectives.get(o))}" for o in self.objectives)


def beside(row: TrialRow) -> str:
    """The energy figures reported beside the objectives: training energy and the analytic estimate."""
    r = row.result
    analytic = r.analytic.get("energy_pj_per_sample")
    return (f"training {format_energy(r.energy_kwh_total)}, analytic "
            + ("-" if analytic is None else f"{analytic / 1e6:.3g} uJ/image")
            + ("" if r.inference_latency_ms is None else f", {r.inference_latency_ms:.3g} ms/image at batch 1"))


def short_config(config: dict[str, Any]) -> str:
    keys = ("shift_type", "shift_depth", "weight_bits", "act_int_bits", "act_frac_bits", "optimizer", "lr")
    designs = layer_designs_of(config)
    layers = "" if designs is None else "layers=" + ",".join(f"{g}:{d}" for g, d in designs.items()) + " "
    return layers + " ".join(f"{k}={config[k]:.3g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                             for k in keys if k in config)


def summarize(run: Run, objectives: Sequence[str] | None = None, stopped: str = "") -> RunSummary:
    """The front at the highest budget that has successful trials, and the default's row there.
    ``objectives`` default to the run's own."""
    objectives = check_objectives(objectives or run.objectives)  # a bad name is an error, not "no front"
    counts, elapsed = run.counts(), float(run.meta("elapsed_seconds") or 0.0)
    try:
        info = front_info(run, objectives)
    except ParetoError:  # no successful trial yet
        info = None
    every = info.all_trials if info is not None else run.trials()
    exp = run.experiment
    strategy = f"{exp.get('optimizer', 'smac')} over {exp.get('space', '?')}" if exp else ""
    default_state = "" if info is not None and info.default_index is not None else \
        _default_state(every, exp.get("max_budget"), objectives)
    return RunSummary(run.path, objectives, counts, elapsed, info, stopped, footprint(every), strategy, default_state)


def _default_state(trials: Sequence[TrialRow], top: float | None, objectives: Sequence[str]) -> str:
    """Why the default DSNN is not compared with the front: not finished at the top budget yet,
    its last attempt there ended otherwise, or it has no value for an objective."""
    at_top = [t for t in trials if t.is_default and (top is None or t.budget == float(top))]
    if not at_top:
        where = "" if top is None else f" at the top budget ({float(top):g} epochs)"
        return (f"default configuration: no result{where} yet (it runs first; a run stopped before it "
                "finished runs it on --resume): no comparison with it")
    last = at_top[-1]
    if last.status is TrialStatus.OK:
        missing = [o for o in objectives if o not in last.objectives]
        return "" if not missing else (f"default configuration: trial {last.trial_id} has no "
                                       f"{', '.join(missing)} value: no comparison with it")
    reason = f" ({last.reason})" if last.reason else ""
    return (f"default configuration: its last attempt at {last.budget:g} epochs (trial {last.trial_id}) was "
            f"{last.status.value}{reason}: no comparison with it")


def footprint_text(spent: Footprint) -> str:
    """The search's own cost in one line (Green AutoML reporting)."""
    missing = f"; {spent.missing} trial(s) without a valid energy reading are not in it" if spent.missing else ""
    return (f"the search's own footprint: {format_energy(spent.energy_kwh)} of training energy, "
            f"{format_emissions(spent.emissions_kg)} over {spent.trials} trials (failed and cut short included)"
            f"{missing}")
