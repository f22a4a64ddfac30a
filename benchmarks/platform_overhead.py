"""Platform overhead of `optimize` (SMAC ask/tell + Dask + run store + CodeCarbon per trial).

Every trial is `autodsnn.search.worker.sleep_trial_task`: it sleeps a fixed time inside an energy meter,
as a real trial trains inside one, so everything beyond the sleep is the platform's overhead.
Reports trials/hour at 1, 2 and 4 local workers, the overhead per trial
(workers x elapsed / trials - sleep) and the scaling efficiency against the 1-worker rate.

    python benchmarks/platform_overhead.py [--sleep 1.0] [--seconds 40] [--workers 1 2 4]
"""
from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

from autodsnn.search.experiment import Experiment
from autodsnn.search.optimize import optimize
from autodsnn.store import Run
from autodsnn.search.worker import sleep_trial_task

from common import markdown_table, write_json


def measure(workers: int, sleep: float, seconds: float) -> tuple[int, float]:
    exp = Experiment(dataset="mnist", model="mnist-fc", space="small", min_budget=1, max_budget=9, workers=workers,
                     budget=seconds)
    with tempfile.TemporaryDirectory() as tmp:
        optimize(exp, Path(tmp) / "run", trial_fn=functools.partial(sleep_trial_task, seconds=sleep))
        with Run.open(Path(tmp) / "run") as run:
            trials = run.trials()
    # Steady state: from the first trial's start (cluster start-up excluded) to the last end.
    start = min(t.started_at for t in trials)
    end = max(t.ended_at for t in trials)
    return len(trials), end - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = ap.parse_args()
    rows, out, per_worker = [], {}, None
    for n in args.workers:
        count, span = measure(n, args.sleep, args.seconds)
        rate = count / span
        per_worker = per_worker or rate / n
        overhead = n * span / count - args.sleep
        eff = rate / (per_worker * n)
        out[n] = {"trials": count, "seconds": span, "trials_per_hour": rate * 3600, "overhead_s": overhead,
                  "scaling_efficiency": eff}
        rows.append([n, count, f"{rate * 3600:.0f}", f"{overhead:.3f}", f"{100 * eff:.0f}%"])
    print(f"sleep {args.sleep}s per trial, {args.seconds:.0f}s budget per setting, {time.strftime('%Y-%m-%d')}")
    print(markdown_table(["workers", "trials", "trials/hour", "overhead s/trial", "scaling efficiency"], rows))
    print(f"wrote {write_json('platform_overhead', {'args': vars(args), 'results': out})}")


if __name__ == "__main__":
    main()
