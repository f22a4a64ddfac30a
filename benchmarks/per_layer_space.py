"""The per-layer design space against the global one: same job, same wall clock, over seeds.

Both arms run SMAC (`autodsnn optimize`) on the same experiment (default: the embedded default,
Fashion-MNIST with DeepShift's MNIST conv net on 5% of the training split, budgets 1..9 epochs,
error vs measured inference energy per image); only the space differs: ``small`` (one global
shift type, depth and weight width) or ``per_layer`` (each of the net's four layers picks its own
type, float included, and its own width; search_spaces/per_layer.yaml). Runs go seed by seed with
the arm order alternating. Then, at the top budget and under one reference point shared by all
runs: hypervolume over time (median and quartiles over seeds), final hypervolume, and the final
fronts. Runs are kept under ``--out`` and reused when the script is run again.

    python benchmarks/per_layer_space.py [--experiment default] [--budget 4m] [--seeds 0 1 2]

Goal: the per-layer space's median final hypervolume at least the global space's.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from autodsnn.search.experiment import Experiment, parse_duration
from autodsnn.search.optimize import optimize
from autodsnn.trial.hparams import layer_designs_of

from common import RESULTS, markdown_table, set_aside_unfinished, write_json
from search_quality import at, quartiles, read_runs

ARMS = {"global": "small", "per-layer": "per_layer"}


def run_all(args: argparse.Namespace) -> dict[tuple[str, int], Path]:
    out = Path(args.out)
    dirs: dict[tuple[str, int], Path] = {}
    for i, seed in enumerate(args.seeds):
        for arm in (list(ARMS) if i % 2 == 0 else list(reversed(ARMS))):
            run_dir = out / f"{arm}-seed{seed}"
            dirs[(arm, seed)] = run_dir
            if (run_dir / "finished.json").exists():
                print(f"reusing {run_dir}", flush=True)
                continue
            set_aside_unfinished(run_dir)
            exp = Experiment.from_file(args.experiment, space=ARMS[arm], seed=seed, budget=args.budget,
                                       name=f"pl-{arm}-{seed}")
            print(f"running {arm} seed {seed} for {args.budget} ...", flush=True)
            started = time.time()
            outcome = optimize(exp, run_dir)
            (run_dir / "finished.json").write_text(json.dumps({"seconds": time.time() - started,
                                                               "stopped": outcome.stopped}))
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="default")
    ap.add_argument("--budget", default="4m", help="wall clock per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="runs/per_layer_space")
    ap.add_argument("--name", default="per_layer_space")
    args = ap.parse_args()
    budget_s = parse_duration(args.budget)
    dirs = run_all(args)
    objectives, infos, ref, curves, trials = read_runs(dirs)
    grid = np.linspace(0, budget_s, 61)
    seeds = sorted({s for _, s in dirs})
    result: dict = {"objectives": list(objectives), "reference_point": ref.tolist(), "seeds": seeds,
                    "budget_s": budget_s, "grid_s": grid.tolist(), "arms": {}}
    rows = []
    for arm in ARMS:
        keys = [(arm, s) for s in seeds]
        final = [curves[k][-1][1] for k in keys]
        fronts = [[{"error": float(p[0]), objectives[1]: float(p[1]),
                    "design": layer_designs_of(t.config) or {k: t.config.get(k) for k in
                                                             ("shift_type", "shift_depth", "weight_bits")}}
                   for p, t in ((infos[k].points[i], infos[k].trials[i]) for i in infos[k].front_indices)]
                  for k in keys]
        result["arms"][arm] = {"space": ARMS[arm], "final_hv": final, "final_hv_quartiles": quartiles(final),
                               "trials": [trials[k] for k in keys],
                               "top_budget_trials": [len(infos[k].trials) for k in keys],
                               "curve_quartiles": [quartiles([at(curves[k], t) for k in keys]) for t in grid],
                               "fronts": fronts}
        lo, med, hi = quartiles(final)
        rows.append([arm, ARMS[arm], len(keys), f"{med:.4g} [{lo:.4g}, {hi:.4g}]",
                     f"{statistics.median(trials[k] for k in keys):g}",
                     f"{statistics.median(len(infos[k].trials) for k in keys):g}"])
    print(f"\n{args.experiment}, {args.budget} per run, SMAC, top-budget hypervolume under one reference point "
          f"{[round(v, 4) for v in ref]} ({', '.join(objectives)})")
    print(markdown_table(["arm", "space", "seeds", "final HV median [IQR]", "trials (median)",
                          "top-budget trials (median)"], rows))
    _plot(result, RESULTS / f"{args.name}.png")
    print(f"wrote {write_json(args.name, {'args': vars(args), **result})} and {RESULTS / (args.name + '.png')}")


def _plot(result: dict, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    ax_hv, ax_front = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    grid = np.array(result["grid_s"]) / 60
    for (arm, data), colour in zip(result["arms"].items(), ("tab:blue", "tab:red")):
        q = np.array(data["curve_quartiles"])
        ax_hv.plot(grid, q[:, 1], color=colour, label=f"{arm} (median)")
        ax_hv.fill_between(grid, q[:, 0], q[:, 2], color=colour, alpha=0.2)
        for i, front in enumerate(data["fronts"]):
            pts = sorted((p["error"], p[result["objectives"][1]]) for p in front)
            if pts:
                xs, ys = zip(*pts)
                ax_front.step(xs, ys, where="post", color=colour, alpha=0.7, label=arm if i == 0 else None)
                ax_front.scatter(xs, ys, color=colour, s=14)
    ax_hv.set(xlabel="minutes", ylabel="top-budget hypervolume", title="hypervolume over time")
    ax_front.set(xlabel="validation error", ylabel=result["objectives"][1], title="final fronts (every seed)")
    for ax in (ax_hv, ax_front):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
