"""The Dask side of a run: worker settings measured to matter for torch, and the client (a local
cluster of single-trial worker processes, or an existing scheduler by address)."""
from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import AutoDSNNError


class ClusterError(AutoDSNNError, RuntimeError):
    """The Dask scheduler cannot be reached or has no workers."""


def configure_dask() -> None:
    """Worker settings measured to matter for torch on CPU (design.md)."""
    import dask

    dask.config.set({
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which halves torch CPU training speed.
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        # A worker killed mid-trial (OOM killer) must surface as a failure, not a silent re-run.
        "distributed.scheduler.allowed-failures": 0,
        "distributed.worker.daemon": False,
    })


def worker_slots(client: Any) -> int:
    """How many trials the cluster runs at once (its worker threads)."""
    return max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))


def start_client(workers: int, scheduler: str | None) -> tuple[Any, Any, int, int]:
    """(client, cluster or None, trial slots, torch threads per trial). A LocalCluster of
    single-task worker processes splits the cores; an existing scheduler is used as it is."""
    import dask
    from distributed import Client, LocalCluster

    configure_dask()
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; start it with "
                               "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`") from None
        if not client.scheduler_info().get("workers"):
            client.wait_for_workers(1, timeout=60)
        return client, None, worker_slots(client), 0
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)  # CPU threads split evenly: oversubscribing was 5x slower
    dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": threads,
                     "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": threads})
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.CRITICAL)  # we report failures ourselves
    return Client(cluster), cluster, workers, threads
