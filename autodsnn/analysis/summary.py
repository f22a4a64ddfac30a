"""What a run amounts to so far: trial counts, time used and the Pareto front at the highest
budget reached, with how it compares with the default DSNN (`autodsnn status`, and the end of
`autodsnn optimize`)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..store import Run, TrialRow
from ..trial import TrialStatus
from .pareto import FrontInfo, ParetoError, front_info


@dataclass
class RunSummary:
    run_dir: Path
    objectives: tuple[str, ...]
    counts: dict[TrialStatus, int]
    elapsed: float                    # wall-clock seconds the run has used
    info: FrontInfo | None = None     # None until a trial succeeds
    stopped: str = ""

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
        lines = [f"run {self.run_dir}: {sum(self.counts.values())} trials ({counts}) in {self.elapsed:.0f}s; "
                 f"{self.stopped}".rstrip("; ")]
        if self.info is None:
            lines.append("no trial finished: no Pareto front")
            return "\n".join(lines)
        lines.append(f"Pareto front at the highest budget reached ({self.highest_budget:g} epochs):")
        for row in self.front:
            tag = " (default)" if row.is_default else ""
            lines.append(f"  trial {row.trial_id:>4}  {self._values(row)}  {short_config(row.config)}{tag}")
        if self.default is not None:
            lines.append(f"default configuration: {self._values(self.default)}")
            dominating = sum(c["dominates_default"] for c in self.info.comparisons.values())
            lines.append(f"{dominating} front configuration(s) dominate the default")
        return "\n".join(lines)

    def _values(self, row: TrialRow) -> str:
        return "  ".join(f"{o} {row.objectives[o]:.4g}" for o in self.objectives)


def short_config(config: dict[str, Any]) -> str:
    keys = ("shift_type", "shift_depth", "weight_bits", "act_int_bits", "act_frac_bits", "optimizer", "lr")
    return " ".join(f"{k}={config[k]:.3g}" if isinstance(config[k], float) else f"{k}={config[k]}"
                    for k in keys if k in config)


def summarize(run: Run, objectives: Sequence[str] | None = None, stopped: str = "") -> RunSummary:
    """The front at the highest budget that has successful trials, and the default's row there.
    ``objectives`` default to the run's own."""
    objectives = tuple(objectives or run.experiment.get("objectives") or ("error", "energy"))
    counts, elapsed = run.counts(), float(run.meta("elapsed_seconds") or 0.0)
    try:
        info = front_info(run, objectives)
    except ParetoError:  # no successful trial yet
        info = None
    return RunSummary(run.path, objectives, counts, elapsed, info, stopped)
