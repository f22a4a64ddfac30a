"""The driver's own per-trial overhead as a run's history grows (issue: flat overhead at 5,000 trials).

Every trial is `autodsnn.search.worker.instant_trial_task` (no time of its own), run on local Dask
workers, so the gap between one finished trial and the next is what the driver spends per trial:
SMAC's ask (surrogate refits, acquisition search) and tell, saving SMAC's state, the SQLite store,
the trial log. Prints the median and mean gap over windows of the run and writes
benchmarks/results/driver_overhead.json.

    python benchmarks/driver_overhead.py [--trials 5000] [--workers 2] [--space dsnn] [--profile FILE]

Goal: the median gap at the last window within 2x of that at trials 50-150.
"""
from __future__ import annotations

import argparse
import cProfile
import statistics
import tempfile
import time
from pathlib import Path

from autodsnn.search.experiment import Experiment
from autodsnn.search.optimize import optimize
from autodsnn.search.worker import instant_trial_task
from autodsnn.store import Run

from common import markdown_table, write_json


def gaps_by_window(ended: list[float], width: int, at: list[int]) -> list[dict]:
    """Median and mean gap between consecutive finished trials, over ``width`` trials centred on each of ``at``."""
    gaps = [b - a for a, b in zip(ended, ended[1:])]
    rows = []
    for centre in at:
        lo, hi = max(0, centre - width // 2), min(len(gaps), centre + width // 2)
        window = gaps[lo:hi]
        if len(window) >= 5:
            rows.append({"trials": f"{lo}-{hi}", "centre": centre, "median_s": statistics.median(window),
                         "mean_s": statistics.fmean(window), "p90_s": sorted(window)[int(0.9 * len(window))]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--space", default="dsnn")
    ap.add_argument("--optimizer", default="smac")
    ap.add_argument("--width", type=int, default=100, help="trials per window")
    ap.add_argument("--profile", default=None, help="write a cProfile of the driver here")
    ap.add_argument("--name", default="driver_overhead")
    args = ap.parse_args()
    exp = Experiment(dataset="mnist", model="mnist-fc", space=args.space, optimizer=args.optimizer, min_budget=1,
                     max_budget=9, workers=args.workers, budget=None, trials=args.trials)
    with tempfile.TemporaryDirectory() as tmp:
        profiler = cProfile.Profile() if args.profile else None
        start = time.time()
        if profiler:
            profiler.enable()
        optimize(exp, Path(tmp) / "run", trial_fn=instant_trial_task)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        wall = time.time() - start
        with Run.open(Path(tmp) / "run") as run:
            ended = sorted(t.ended_at for t in run.trials())
    centres = {c for c in (100, 500, 1000, 2000, 3000, 4000, 5000) if c < len(ended)}
    at = sorted(centres | {len(ended) - args.width // 2})
    windows = gaps_by_window(ended, args.width, at)
    first = windows[0]["median_s"]
    rows = [[w["trials"], f"{1000 * w['median_s']:.1f}", f"{1000 * w['mean_s']:.1f}", f"{1000 * w['p90_s']:.1f}",
             f"{w['median_s'] / first:.2f}x"] for w in windows]
    print(f"{len(ended)} instant trials, {args.workers} workers, space {args.space}, optimizer {args.optimizer}: "
          f"{wall:.0f}s in all ({time.strftime('%Y-%m-%d')})")
    print(markdown_table(["trials", "median gap ms", "mean gap ms", "p90 gap ms", "median vs first"], rows))
    print(f"wrote {write_json(args.name, {'args': vars(args), 'wall_s': wall, 'windows': windows})}")


if __name__ == "__main__":
    main()
