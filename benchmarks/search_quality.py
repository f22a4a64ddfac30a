"""Search quality: SMAC against its baselines on the same job, over seeds, under one reference point.

Each optimizer (``smac``, ``hyperband``, ``random``; ``autodsnn optimize --optimizer``) runs the
same experiment (default: the embedded default, Fashion-MNIST with DeepShift's MNIST conv net on
a quarter of the training split, budgets 1..9 epochs, error vs measured inference energy) for the
same wall clock, once per seed. Runs go seed by seed with the optimizer order rotated, so a
noisy machine hits every optimizer alike. Then, at the top budget and under one reference point
shared by all runs (the worst value of every objective over all runs plus 10% of its range):

* the hypervolume over wall-clock time per optimizer (median and interquartile range over seeds);
* the final hypervolume per optimizer;
* each optimizer's time to reach random search's final hypervolume (the median over random's
  seeds), as a fraction of the budget (never: missing); the JSON field
  ``time_to_random_final_hv_ratio`` is SMAC's median of it (the goal: at most 0.5);
* the final fronts side by side (plot).

Runs are kept under ``--out`` and reused when the script is run again, so an interrupted
benchmark continues where it stopped (a run folder without
finished.json is moved aside, never deleted, and run again from scratch).

    python benchmarks/search_quality.py [--experiment default] [--budget 5m] [--seeds 0 1 2]
                                        [--optimizers smac hyperband random] [--out runs/search_quality]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from autodsnn.analysis.pareto import front_info, hypervolume_curve, reference_point
from autodsnn.search.experiment import Experiment, parse_duration
from autodsnn.search.optimize import optimize
from autodsnn.store import Run

from common import RESULTS, markdown_table, set_aside_unfinished, write_json

OPTIMIZERS = ("smac", "hyperband", "random")


def run_all(args: argparse.Namespace) -> dict[tuple[str, int], Path]:
    """Every (optimizer, seed) run, run or reused; rotated order per seed."""
    out = Path(args.out)
    dirs: dict[tuple[str, int], Path] = {}
    for i, seed in enumerate(args.seeds):
        order = list(args.optimizers[i % len(args.optimizers):]) + list(args.optimizers[:i % len(args.optimizers)])
        for name in order:
            run_dir = out / f"{name}-seed{seed}"
            dirs[(name, seed)] = run_dir
            done = run_dir / "finished.json"
            if done.exists():
                print(f"reusing {run_dir}", flush=True)
                continue
            set_aside_unfinished(run_dir)
            exp = Experiment.from_file(args.experiment, optimizer=name, seed=seed, budget=args.budget,
                                       name=f"sq-{name}-{seed}")
            print(f"running {name} seed {seed} for {args.budget} ...", flush=True)
            started = time.time()
            outcome = optimize(exp, run_dir)
            done.write_text(json.dumps({"seconds": time.time() - started, "stopped": outcome.stopped}))
    return dirs


def curve(run: Run, objectives: tuple[str, ...], ref: np.ndarray) -> list[tuple[float, float]]:
    """(seconds since the run's first trial started, hypervolume of the top-budget front so far),
    starting at (0, 0)."""
    return [(0.0, 0.0)] + hypervolume_curve(run, objectives, ref, "max", against="time")


def at(c: list[tuple[float, float]], t: float) -> float:
    """The curve's hypervolume at time t (a step function)."""
    return max((hv for x, hv in c if x <= t), default=0.0)


def first_reach(c: list[tuple[float, float]], target: float) -> float | None:
    return next((x for x, hv in c if hv >= target * (1 - 1e-12)), None)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])


def read_runs(dirs: dict[Any, Path]) -> tuple[tuple[str, ...], dict, np.ndarray, dict, dict]:
    """(objectives, top-budget front info per run, the reference point shared by all runs,
    hypervolume curve per run, trial count per run) of finished runs."""
    runs = {key: Run.open(path) for key, path in dirs.items()}
    try:
        objectives = tuple(next(iter(runs.values())).objectives)
        infos = {key: front_info(run, objectives, "max") for key, run in runs.items()}
        ref = reference_point(np.vstack([i.points for i in infos.values() if len(i.points)]))
        curves = {key: curve(run, objectives, ref) for key, run in runs.items()}
        trials = {key: len(run.trials()) for key, run in runs.items()}
    finally:
        for run in runs.values():
            run.close()
    return objectives, infos, ref, curves, trials


def analyse(dirs: dict[tuple[str, int], Path], budget_s: float, optimizers: list[str]) -> dict[str, Any]:
    objectives, infos, ref, curves, trials = read_runs(dirs)
    fronts = {key: i.points[i.front_mask].tolist() for key, i in infos.items()}
    top_trials = {key: len(i.trials) for key, i in infos.items()}
    final = {key: c[-1][1] for key, c in curves.items()}
    seeds = sorted({s for _, s in dirs})
    random_final = statistics.median(final[("random", s)] for s in seeds) if "random" in optimizers else None
    grid = np.linspace(0, budget_s, 61)
    per: dict[str, Any] = {}
    for name in optimizers:
        keys = [(name, s) for s in seeds]
        reach = [first_reach(curves[k], random_final) if random_final else None for k in keys]
        fractions = [r / budget_s if r is not None else float("inf") for r in reach]
        per[name] = {
            "final_hv": [final[k] for k in keys], "final_hv_quartiles": quartiles([final[k] for k in keys]),
            "trials": [trials[k] for k in keys], "top_budget_trials": [top_trials[k] for k in keys],
            "time_to_random_final_hv_s": reach,
            "time_to_random_final_hv_ratio_median": statistics.median(fractions),
            "curve_quartiles": [quartiles([at(curves[k], t) for k in keys]) for t in grid],
            "fronts": [fronts[k] for k in keys],
        }
    ratio = per.get("smac", {}).get("time_to_random_final_hv_ratio_median")
    return {"objectives": list(objectives), "reference_point": ref.tolist(), "seeds": seeds, "budget_s": budget_s,
            "grid_s": grid.tolist(), "random_final_hv_median": random_final, "optimizers": per,
            "time_to_random_final_hv_ratio": None if ratio is None or ratio == float("inf") else ratio,
            "curves": {f"{n}-seed{s}": curves[(n, s)] for n, s in dirs}}


def plot(result: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    ax_hv, ax_front = fig.subplots(1, 2)
    grid = np.asarray(result["grid_s"]) / 60
    for name, data in result["optimizers"].items():
        q = np.asarray(data["curve_quartiles"])
        line = ax_hv.plot(grid, q[:, 1], label=name)[0]
        ax_hv.fill_between(grid, q[:, 0], q[:, 2], color=line.get_color(), alpha=0.2)
        for i, front in enumerate(data["fronts"]):
            f = np.asarray(sorted(front))
            if len(f):
                ax_front.step(f[:, 0], f[:, 1], where="post", color=line.get_color(), alpha=0.8,
                              marker="o", markersize=3, label=name if i == 0 else None)
    if result["random_final_hv_median"]:
        ax_hv.axhline(result["random_final_hv_median"], color="grey", linestyle=":", label="random's final (median)")
    ax_hv.set_xlabel("wall clock (min)")
    ax_hv.set_ylabel("hypervolume at the top budget")
    ax_hv.set_title("median and IQR over seeds")
    ax_hv.legend()
    obj = result["objectives"]
    ax_front.set_xlabel(obj[0])
    ax_front.set_ylabel(obj[1] if len(obj) > 1 else "")
    ax_front.set_title("final top-budget fronts, every seed")
    ax_front.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="default", help="experiment file or built-in name")
    ap.add_argument("--budget", default="5m", help="wall clock per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--optimizers", nargs="+", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    ap.add_argument("--out", default="runs/search_quality", help="where the runs are kept (and reused)")
    ap.add_argument("--name", default="search_quality", help="result file name in benchmarks/results/")
    args = ap.parse_args()
    budget_s = parse_duration(args.budget)
    dirs = run_all(args)
    result = analyse(dirs, budget_s, args.optimizers)
    rows = []
    for name, data in result["optimizers"].items():
        lo, med, hi = data["final_hv_quartiles"]
        ratio = data["time_to_random_final_hv_ratio_median"]
        rows.append([name, len(data["final_hv"]), f"{med:.4g} [{lo:.4g}, {hi:.4g}]",
                     f"{statistics.median(data['trials']):g}", f"{statistics.median(data['top_budget_trials']):g}",
                     "never" if ratio == float("inf") else f"{ratio:.2f}"])
    print(f"\n{args.experiment}, {args.budget} per run, top-budget hypervolume under one reference point "
          f"{[round(v, 4) for v in result['reference_point']]} ({', '.join(result['objectives'])})")
    print(markdown_table(["optimizer", "seeds", "final HV median [IQR]", "trials (median)",
                          "top-budget trials (median)", "time to random's final HV / budget (median)"], rows))
    plot(result, RESULTS / f"{args.name}.png")
    payload = {"args": vars(args), **result}
    payload["optimizers"] = {n: {k: (None if v == float("inf") else v) for k, v in d.items()}
                             for n, d in result["optimizers"].items()}
    print(f"wrote {write_json(args.name, payload)} and {RESULTS / (args.name + '.png')}")


if __name__ == "__main__":
    main()
