"""A SLURM cluster of trial workers through dask-jobqueue, set up the way our local cluster is.

Each SLURM job runs ``trials_per_job`` Dask worker processes with one trial slot each (the
trials are processes, not threads: torch trains best that way) and ``threads_per_trial`` cores
each; GPUs, if asked for, are split one per worker (search.worker). Checkpoints go through Dask
by default, so node-local scratch is enough; pass ``checkpoint_store`` to the experiment for a
shared file system or an object store.

    from distributed import Client
    from autodsnn.search import Experiment, optimize
    from autodsnn.search.slurm import slurm_cluster

    cluster = slurm_cluster(queue="cpu", walltime="48:00:00", trials_per_job=4, threads_per_trial=4)
    cluster.scale(jobs=8)                     # 32 trials at once
    with Client(cluster) as client:
        optimize(Experiment.from_file("experiments/cifar10.yaml", budget="47h"), "runs/slurm", client=client)

Needs the optional dependency dask-jobqueue (``pip install autodsnn[slurm]``).
"""
from __future__ import annotations

from typing import Any, Sequence

from .cluster import ClusterError, configure_dask


def worker_environment(threads_per_trial: int) -> list[str]:
    """Job-script lines that give every worker process our settings (search.cluster.configure_dask):
    the nanny must not set MALLOC_TRIM_THRESHOLD_ (it halves torch's CPU speed) nor pin torch to
    one thread, trial processes are not daemons, and nothing inherited overrides that."""
    threads = int(threads_per_trial)
    environ = ("{'MALLOC_TRIM_THRESHOLD_': None, "
               f"'OMP_NUM_THREADS': {threads}, 'MKL_NUM_THREADS': {threads}, 'OPENBLAS_NUM_THREADS': {threads}}}")
    # sbatch exports the submitting shell's environment: a Dask config inherited from a local
    # cluster started there (DASK_INTERNAL_INHERIT_CONFIG) would override these settings
    # (and a thread count exported there wins over the nanny's settings)
    return ["unset DASK_INTERNAL_INHERIT_CONFIG",
            f"export OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads}",
            f'export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{environ}"',
            "export DASK_DISTRIBUTED__WORKER__DAEMON=False"]


def slurm_cluster(*, queue: str, walltime: str, trials_per_job: int = 1, threads_per_trial: int = 4,
                  memory_per_trial: str = "8GB", gpus_per_trial: int = 0, account: str | None = None,
                  local_directory: str = "$TMPDIR", extra_directives: Sequence[str] = (),
                  prologue: Sequence[str] = (), python: str | None = None, **jobqueue_options: Any) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` whose jobs each run ``trials_per_job`` single-trial
    workers. Nothing is submitted until ``cluster.scale(jobs=N)`` or ``cluster.adapt(...)``;
    ``cluster.job_script()`` shows the script each job runs.

    ``walltime`` is SLURM's ``HH:MM:SS``; ``memory_per_trial`` a Dask size (``"8GB"``);
    ``local_directory`` the node-local scratch where workers keep their files (default the job's
    $TMPDIR). ``extra_directives`` are more ``#SBATCH`` options (``"--constraint=avx512"``),
    ``prologue`` lines run before the workers start (``"module load cuda"``, ``"source
    venv/bin/activate"``). Other keywords go to ``SLURMCluster`` as they are.

    Raises :class:`ClusterError` when dask-jobqueue is not installed or a count is not positive."""
    try:
        from dask.utils import format_bytes, parse_bytes
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ClusterError("SLURM clusters need dask-jobqueue: pip install 'autodsnn[slurm]' "
                           "(or pip install dask-jobqueue)") from None
    for name, value in (("trials_per_job", trials_per_job), ("threads_per_trial", threads_per_trial)):
        if int(value) < 1:
            raise ClusterError(f"slurm_cluster: {name}={value}: use a positive count")
    if int(gpus_per_trial) < 0:
        raise ClusterError(f"slurm_cluster: gpus_per_trial={gpus_per_trial}: use 0 or more")
    directives = list(extra_directives)
    if gpus_per_trial:
        directives.append(f"--gres=gpu:{int(gpus_per_trial) * int(trials_per_job)}")
    memory = format_bytes(parse_bytes(memory_per_trial) * int(trials_per_job))
    configure_dask()  # the scheduler starts here, in this process: a killed trial must fail, not re-run
    return SLURMCluster(
        queue=queue, account=account, walltime=walltime,
        # Dask's nthreads is cores / processes: one trial slot per worker process; SLURM gets
        # the real core count through job_cpu.
        cores=int(trials_per_job), processes=int(trials_per_job),
        job_cpu=int(trials_per_job) * int(threads_per_trial), memory=memory,
        local_directory=local_directory, job_extra_directives=directives,
        job_script_prologue=[*worker_environment(threads_per_trial), *prologue],
        python=python, **jobqueue_options)
