"""The Dask side of a run: worker settings measured to matter for torch, and the client (a local
cluster of single-trial worker processes on 127.0.0.1, or an existing scheduler by address or
scheduler file, over TCP or TLS)."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
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


def security(scheduler: str, tls_ca_file: str | None = None, tls_cert: str | None = None,
             tls_key: str | None = None) -> Any:
    """Dask's ``Security`` for talking to ``scheduler``: the files given, else Dask's own
    configuration (``distributed.comm.tls``); None for a plain tcp:// scheduler without them.
    A tls:// scheduler without a certificate authority is refused here, not by a TLS handshake
    error later."""
    from distributed.security import Security

    given = {k: v for k, v in (("tls_ca_file", tls_ca_file), ("tls_client_cert", tls_cert),
                               ("tls_client_key", tls_key)) if v}
    for name, path in given.items():
        if not Path(path).expanduser().is_file():
            flag = {"tls_ca_file": "--tls-ca-file", "tls_client_cert": "--tls-cert", "tls_client_key": "--tls-key"}
            raise ClusterError(f"{flag[name]} {path}: no such file")
    sec = Security(**{k: str(Path(v).expanduser()) for k, v in given.items()}, require_encryption=bool(given))
    if scheduler.startswith("tls://") and not sec.tls_ca_file:
        raise ClusterError(f"scheduler {scheduler} speaks TLS: pass --tls-ca-file, --tls-cert and --tls-key "
                           "(or set distributed.comm.tls in Dask's configuration)")
    return sec if given or scheduler.startswith("tls://") else None


def connect(scheduler: str, security_: Any = None) -> Any:
    """A client of an existing scheduler, by address or by the JSON file `dask scheduler
    --scheduler-file` writes, waiting up to a minute for its first worker."""
    from distributed import Client

    where = {"scheduler_file": scheduler} if Path(scheduler).is_file() else {"address": scheduler}
    try:
        client = Client(**where, security=security_, timeout="20s")
    except (OSError, ValueError) as exc:  # unreachable, refused, or a TLS handshake that failed
        raise ClusterError(f"cannot reach the Dask scheduler at {scheduler}: {str(exc).splitlines()[0]}; start it "
                           "with `dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`") from None
    if not client.scheduler_info().get("workers"):
        try:
            client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            client.close()
            raise ClusterError(f"the Dask scheduler at {scheduler} has no workers after 60 s: start some with "
                               f"`dask worker {scheduler} --nthreads 1`") from None
    return client


@contextlib.contextmanager
def nanny_environ_kept() -> Iterator[None]:
    """Keep this process's environment as it was across a LocalCluster's life: Dask's nanny
    writes its ``pre-spawn-environ`` (OMP_NUM_THREADS=1, ...) into the driver's own
    ``os.environ`` before each worker spawn and never restores it, so later torch processes the
    driver starts would get one thread."""
    import dask

    keys = set(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {})
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def start_client(workers: int, scheduler: str | None, security_: Any = None) -> tuple[Any, Any, int, int]:
    """(client, cluster or None, trial slots, torch threads per trial). A LocalCluster of
    single-task worker processes on 127.0.0.1 splits the cores; an existing scheduler is used as
    it is (each worker's threads are its trial slots)."""
    import dask
    from distributed import Client, LocalCluster

    configure_dask()
    if scheduler:
        client = connect(scheduler, security_)
        return client, None, worker_slots(client), 0
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)  # CPU threads split evenly: oversubscribing was 5x slower
    dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": threads,
                     "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": threads})
    with nanny_environ_kept():
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.CRITICAL)  # we report failures ourselves
    return Client(cluster), cluster, workers, threads
