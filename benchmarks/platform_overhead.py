"""Platform overhead of `optimize` (SMAC ask/tell + Dask + run store + CodeCarbon per trial), and
its scaling to more workers.

Every trial is `autodsnn.search.worker.sleep_trial_task`: it sleeps a fixed time inside an energy
meter, as a real trial trains inside one, so everything beyond the sleep is the platform's overhead.
Reports trials/hour, the overhead per trial (workers x elapsed / trials - sleep) and the scaling
efficiency: trials/hour against the ideal workers / sleep, over the whole span (first trial's
start to last trial's end: it includes the ramp-up while the first trials are asked for and the
drain after the deadline) and in the steady state (trials ending in the middle 80% of the span:
what a run of hours sees).

    python benchmarks/platform_overhead.py [--sleep 1.0] [--seconds 40] [--workers 1 2 4]
    python benchmarks/platform_overhead.py --remote --no-meter --workers 2 4 8 16 --name platform_scaling

``--remote`` starts `dask scheduler` and `dask worker --nworkers N --nthreads 1` processes and runs
against that address, as `--scheduler` does (workers may outnumber cores: the trials sleep);
``--no-meter`` leaves out the energy meter, whose own CPU time would otherwise compete for the
cores when workers outnumber them.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from autodsnn.search.experiment import Experiment
from autodsnn.search.optimize import optimize
from autodsnn.store import Run
from autodsnn.search.worker import sleep_trial_task

from common import markdown_table, write_json


@contextmanager
def remote_cluster(workers: int, folder: Path) -> Iterator[str]:
    """`dask scheduler` plus one `dask worker` process holding ``workers`` single-thread workers."""
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    sched_file = folder / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                              env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        while not (sched_file.exists() and sched_file.stat().st_size):
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--nworkers", str(workers), "--no-dashboard", "--memory-limit", "0"],
                                      env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address) as client:
            client.wait_for_workers(workers, timeout=300)
            # every worker imports the trial code (torch) once before the clock starts, as a
            # long-lived cluster's workers have: the steady state is what is measured
            client.run(importlib.import_module, "autodsnn.search.worker")
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=60)


def measure(workers: int, sleep: float, seconds: float, remote: bool, meter: bool) -> tuple[int, float, float]:
    """(trials, span in seconds, trials per second in the steady state)."""
    trial = functools.partial(sleep_trial_task, seconds=sleep, meter=meter)
    with tempfile.TemporaryDirectory() as tmp:
        exp = Experiment(dataset="mnist", model="mnist-fc", space="small", min_budget=1, max_budget=9,
                         workers=workers, budget=seconds)
        if remote:
            with remote_cluster(workers, Path(tmp)) as address:
                optimize(exp.replace(scheduler=address), Path(tmp) / "run", trial_fn=trial)
        else:
            optimize(exp, Path(tmp) / "run", trial_fn=trial)
        with Run.open(Path(tmp) / "run") as run:
            trials = run.trials()
    # Steady state: from the first trial's start (cluster start-up excluded) to the last end.
    start = min(t.started_at for t in trials)
    end = max(t.ended_at for t in trials)
    lo, hi = start + 0.1 * (end - start), end - 0.1 * (end - start)
    steady = sum(lo <= t.ended_at < hi for t in trials) / (hi - lo)
    return len(trials), end - start, steady


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sleep", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--remote", action="store_true", help="an existing cluster (dask scheduler + dask worker)")
    ap.add_argument("--no-meter", dest="meter", action="store_false", help="trials only sleep")
    ap.add_argument("--name", default="platform_overhead")
    args = ap.parse_args()
    rows, out = [], {}
    for n in args.workers:
        count, span, steady = measure(n, args.sleep, args.seconds, args.remote, args.meter)
        rate = count / span
        overhead = n * span / count - args.sleep
        eff, steady_eff = rate * args.sleep / n, steady * args.sleep / n
        out[n] = {"trials": count, "seconds": span, "trials_per_hour": rate * 3600, "overhead_s": overhead,
                  "scaling_efficiency": eff, "steady_trials_per_hour": steady * 3600,
                  "steady_scaling_efficiency": steady_eff}
        rows.append([n, count, f"{rate * 3600:.0f}", f"{overhead:.3f}", f"{100 * eff:.0f}%",
                     f"{100 * steady_eff:.0f}%"])
    where = "remote cluster (dask scheduler + dask worker)" if args.remote else "local cluster"
    print(f"{where}, sleep {args.sleep}s per trial{' in an energy meter' if args.meter else ''}, "
          f"{args.seconds:.0f}s budget per setting, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}")
    print(markdown_table(["workers", "trials", "trials/hour", "overhead s/trial", "scaling efficiency vs ideal",
                          "steady state (middle 80%)"], rows))
    print(f"wrote {write_json(args.name, {'args': vars(args), 'results': out})}")


if __name__ == "__main__":
    main()
