"""Scale-out: an existing Dask cluster whose workers share nothing with the driver.

The scheduler and two workers run as `dask scheduler` / `dask worker` processes, each in its own
working directory with its own private scratch (TMPDIR, --local-directory), so no checkpoint
folder is shared: promotions must get their checkpoints through Dask.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autodsnn.search.checkpoints import CheckpointStore, choose_transport
from autodsnn.search.cluster import ClusterError, security
from autodsnn.store import Run

RUN_FLAGS = ["--dataset", "mnist", "--model", "mnist-fc", "--train-subset", "0.02", "--min-budget", "1",
             "--max-budget", "3", "--eta", "3", "--inference-window", "0.05"]
# A default that barely trains (plain SGD at lr 1e-4): Hyperband never promotes it, so the first
# bracket's promotion is a trial that must continue a checkpoint (a promoted default would be told
# from its stored top-budget trial instead).
SPACE = """name: cluster-test
hyperparameters:
  shift_type: {choices: [none, ps], default: none}
  optimizer: {choices: [sgd, adam], default: sgd}
  lr: {low: 0.0001, high: 0.01, log: true, default: 0.0001}
"""


def _tls_files(folder: Path) -> list[str]:
    """Dask's temporary self-signed credentials, written as PEM files (one certificate for every role)."""
    from distributed.security import Security

    creds = Security.temporary()
    files = {"ca": creds.tls_ca_file, "cert": creds.tls_client_cert, "key": creds.tls_client_key}
    for name, pem in files.items():
        (folder / f"{name}.pem").write_text(pem)
    return ["--tls-ca-file", str(folder / "ca.pem"), "--tls-cert", str(folder / "cert.pem"),
            "--tls-key", str(folder / "key.pem")]


class Cluster:
    """`dask scheduler` plus workers, each process in a folder of its own."""

    def __init__(self, root: Path, protocol: str, workers: int = 2) -> None:
        self.root, self.procs = root, []
        self.env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        self.tls = _tls_files(root) if protocol == "tls" else []
        sched_dir = self._folder("scheduler")
        sched_file = sched_dir / "scheduler.json"
        self._start(["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                     "--protocol", protocol, "--scheduler-file", str(sched_file), *self.tls], sched_dir)
        for _ in range(150):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.2)
        self.address = json.loads(sched_file.read_text())["address"]
        self.worker_dirs, self.scratch_dirs = [], []
        for i in range(workers):
            cwd, scratch = self._folder(f"worker{i}"), self._folder(f"scratch{i}")
            self.worker_dirs.append(cwd)
            self.scratch_dirs.append(scratch)
            self._start(["distributed.cli.dask_worker", self.address, "--nthreads", "1", "--no-dashboard",
                         "--name", f"w{i}", "--local-directory", str(scratch), *self.tls], cwd,
                        TMPDIR=str(scratch), OMP_NUM_THREADS="1")

    def _folder(self, name: str) -> Path:
        (self.root / name).mkdir()
        return self.root / name

    def _start(self, args: list[str], cwd: Path, **env: str) -> None:
        self.procs.append(subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, env={**self.env, **env},
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def close(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_remote_workers_without_shared_disk(tmp_path, protocol):
    cluster = Cluster(tmp_path, protocol)
    driver = tmp_path / "driver"
    driver.mkdir()
    (driver / "space.yaml").write_text(SPACE)
    try:
        assert cluster.address.startswith(f"{protocol}://127.0.0.1:")
        out = subprocess.run([sys.executable, "-m", "autodsnn", "optimize", *RUN_FLAGS, "--space", "space.yaml",
                              "--scheduler", cluster.address, *cluster.tls, "--trials", "12", "--budget", "300s",
                              "--run-dir", "runs/remote"], cwd=driver, capture_output=True, text=True, timeout=420)
        assert out.returncode == 0, out.stderr[-3000:]
        run_dir = driver / "runs" / "remote"
        with Run.open(run_dir) as run:
            trials = run.trials()
        ok = [t for t in trials if t.status == "ok"]
        assert len({t.result.worker for t in ok}) == 2  # both remote workers trained
        # Hyperband promoted at least one configuration, and it continued its lower-budget checkpoint,
        # which lives in the driver's run folder although no worker can see that folder
        promoted = [t for t in ok if t.result.resumed_from_epochs > 0]
        assert promoted, [(t.config_id, t.budget, t.result.resumed_from_epochs) for t in ok]
        for t in promoted:
            assert t.result.resumed_from == str(run_dir / "checkpoints" / f"config{t.config_id}-budget1.pt")
            assert t.result.resumed_from_epochs == 1 and t.result.epochs_done == t.budget
        kept = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
        assert kept and all(p.startswith("config") for p in kept)
        # pruned: one checkpoint per configuration, its highest budget
        assert len(kept) == len({name.split("-")[0] for name in kept})
        # nothing left behind on the workers: their working directories and scratch trial folders are empty
        for cwd in cluster.worker_dirs:
            assert list(cwd.iterdir()) == [], list(cwd.iterdir())
        for scratch in cluster.scratch_dirs:
            assert not list(scratch.rglob("autodsnn-trial-*"))
            assert not list(scratch.rglob("*.pt"))
        if protocol == "tls":
            return  # retrain reads only the driver's folder: once is enough
        # the driver's folder holds what retrain needs
        re = subprocess.run([sys.executable, "-m", "autodsnn", "retrain", "runs/remote", "--pick", "min-error",
                             "--epochs", "1"], cwd=driver, capture_output=True, text=True, timeout=300)
        assert re.returncode == 0, re.stderr[-2000:]
        assert (run_dir / "retrain-min-error").is_dir()
    finally:
        cluster.close()


def test_tls_scheduler_without_credentials_is_refused_in_one_line(tmp_path):
    with pytest.raises(ClusterError, match=r"speaks TLS: pass --tls-ca-file"):
        security("tls://127.0.0.1:8786")
    with pytest.raises(ClusterError, match=r"--tls-cert .*missing\.pem: no such file"):
        security("tls://127.0.0.1:8786", tls_ca_file=__file__, tls_cert=str(tmp_path / "missing.pem"))
    assert security("tcp://127.0.0.1:8786") is None


def test_checkpoint_layout_follows_the_cluster():
    assert choose_transport(None, own_local_cluster=True) == "shared"
    assert choose_transport(None, own_local_cluster=False) == "dask"
    assert choose_transport("/nfs/runs/a", own_local_cluster=False) == "shared"
    assert choose_transport("s3://bucket/run", own_local_cluster=True) == "url"


@pytest.mark.parametrize("as_url", [False, True])
def test_checkpoint_store_finds_prunes_and_round_trips(tmp_path, as_url):
    root = f"file://{tmp_path}/ck" if as_url else tmp_path / "ck"
    if as_url:
        (tmp_path / "ck").mkdir()
    store = CheckpointStore(root).prepare()
    for config, budget in [(1, 1.0), (1, 3.0), (1, 9.0), (2, 3.0), (12, 1.0)]:
        store.write_bytes(store.location(config, budget), f"{config}@{budget}".encode())
    assert store.best_below(1, 5.0).endswith("/config1-budget3.pt")
    assert store.best_below(1, 0.5) is None
    assert store.best_below(1, 9.0).endswith("/config1-budget9.pt")
    assert store.best_below(2, 9.0).endswith("/config2-budget3.pt")  # config 12 is not config 1 or 2
    assert store.read_bytes(store.best_below(12, 9.0)) == b"12@1.0"
    store.prune(1, 3.0)  # a promotion to 3 finished: budget 1 is not needed, budget 9 (later) neither
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["config1-budget3.pt", "config12-budget1.pt",
                                                                   "config2-budget3.pt"]


def test_relative_run_dir_and_data_dir_reach_workers_absolute(tmp_path, monkeypatch):
    from autodsnn.trial.hparams import Task

    monkeypatch.chdir(tmp_path)
    task = Task(dataset="mnist", data_dir="data/mnist", weights="~/w.pt").with_absolute_paths()
    assert task.data_dir == str(tmp_path / "data" / "mnist")
    assert task.weights == str(Path.home() / "w.pt")
    assert Task(dataset="mnist", data_dir="s3://b/mnist").with_absolute_paths().data_dir == "s3://b/mnist"


def test_a_checkpoint_in_flight_is_never_stored(tmp_path):
    from autodsnn.store import _COLUMNS
    from autodsnn.trial import TrialResult, TrialStatus

    result = TrialResult(status=TrialStatus.OK, checkpoint_blob=b"\0" * 64)
    assert "checkpoint_blob" not in result.to_dict() and result.checkpoint_blob == b"\0" * 64
    assert "checkpoint_blob" not in _COLUMNS
    with Run.create(tmp_path / "run", {"objectives": ["error"]}) as run:
        run.add(config_id=1, config={}, budget=1.0, seed=0, result=result)
        stored = run.trials()[0].result
    assert stored.checkpoint_blob is None


def _worker_settings(dask_worker):
    import torch

    return {"name": dask_worker.name, "nthreads": dask_worker.state.nthreads, "torch_threads": torch.get_num_threads(),
            "malloc_trim": os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "omp": os.environ.get("OMP_NUM_THREADS"), "tmp": os.environ.get("TMPDIR")}


def test_slurm_job_script_starts_workers_set_up_like_ours(tmp_path):
    from distributed import Client

    from autodsnn.search.slurm import slurm_cluster

    cluster = slurm_cluster(queue="gpu", walltime="47:30:00", trials_per_job=2, threads_per_trial=3, gpus_per_trial=1,
                            memory_per_trial="4GB", account="proj42", prologue=["echo prologue-ran"],
                            scheduler_options={"host": "127.0.0.1"})
    try:
        script = cluster.job_script()
        directives = [line for line in script.splitlines() if line.startswith("#SBATCH")]
        for expected in ("-p gpu", "-A proj42", "--cpus-per-task=6", "-t 47:30:00", "--gres=gpu:2"):
            assert any(line.endswith(expected) for line in directives), (expected, directives)
        command = script.strip().splitlines()[-1]
        assert "--nthreads 1" in command and "--nworkers 2" in command and "--local-directory $TMPDIR" in command
        # SLURM would run this script with sbatch; bash runs the same lines here (#SBATCH are comments)
        scratch = tmp_path / "node-scratch"
        scratch.mkdir()
        job = subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            import cloudpickle

            cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
            with Client(cluster) as client:
                client.wait_for_workers(2, timeout=120)
                settings = list(client.run(_worker_settings).values())
        finally:
            job.terminate()
            job.wait(timeout=60)
        assert "prologue-ran" in job.stdout.read()
        assert sorted(s["name"].rsplit("-", 1)[-1] for s in settings) == ["0", "1"]  # one GPU each (worker.py)
        for s in settings:
            # one trial slot, its cores for torch (which never takes more threads than this machine has)
            assert s["nthreads"] == 1 and s["omp"] == "3" and s["torch_threads"] == min(3, os.cpu_count()), str(s)
            assert s["malloc_trim"] is None  # the nanny's MALLOC_TRIM_THRESHOLD_ is off
            assert s["tmp"] == str(scratch)
    finally:
        cluster.close()
