"""Where a run's trial checkpoints live, and how they reach the worker that needs them.

Hyperband promotes a configuration from one rung to the next; the promoted trial continues from
the lower-budget checkpoint instead of training again from scratch. Three layouts, chosen by
:func:`choose_transport`:

* ``shared``: the driver's run folder (``<run>/checkpoints``), written and read by the workers
  directly. Used with the local cluster, whose workers share the driver's disk.
* ``dask``: the run folder again, but the workers never see it: the driver sends the checkpoint
  a promotion continues from inside the trial request and receives the new one inside the
  result. Used with an existing scheduler (``--scheduler``), since a remote worker's disk is not
  the driver's (cloud Dask, Kubernetes, node-local scratch on SLURM).
* ``shared`` also for a folder the user names with ``--checkpoint-store /nfs/...``: a shared
  file system every worker mounts at the same path.
* ``url``: a storage URL every worker can reach (``--checkpoint-store s3://bucket/run``,
  ``gs://``, ``file:///shared/fs/run``; anything fsspec opens). Workers read and write it
  directly; the driver only lists and prunes it. For large models on remote clusters, where
  sending every checkpoint through the scheduler would cost more than a storage round trip.

Workers always train into a private scratch folder (deleted when the trial ends) and publish
the finished checkpoint from there, so nothing is left in a worker's working directory.
"""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..atomic import write_atomically

TRANSPORTS = ("shared", "dask", "url")
_NAME = re.compile(r"^config(\d+)-budget([0-9.eE+-]+)\.pt$")


def is_url(location: str | os.PathLike | None) -> bool:
    """Whether ``location`` names a storage URL (``s3://...``, ``file://...``) rather than a path."""
    return location is not None and "://" in str(location)


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        protocol = url.split("://", 1)[0]
        raise ValueError(f"checkpoint store {url}: fsspec cannot open {protocol}:// ({exc}); install the "
                         f"package fsspec names for it (s3fs for s3://, gcsfs for gs://) on the driver and "
                         f"every worker") from None


class CheckpointStore:
    """The checkpoints of one run under ``root``: a local folder or an fsspec URL.

    Names are ``config<id>-budget<epochs>.pt``; :meth:`best_below` finds the one a promotion to
    ``budget`` continues from."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.url = is_url(root)
        self.root = str(root).rstrip("/") if self.url else str(Path(root).resolve())
        if self.url:
            self.fs, self._base = _filesystem(self.root)
        else:
            self.fs, self._base = None, self.root

    def prepare(self) -> "CheckpointStore":
        """Create the folder (a URL's prefix needs none): once the run exists, before any trial."""
        if not self.url:
            Path(self.root).mkdir(parents=True, exist_ok=True)
        return self

    def location(self, config_id: int, budget: float) -> str:
        """Where the checkpoint of ``config_id`` after ``budget`` epochs goes (absolute)."""
        return f"{self.root}/config{config_id}-budget{budget:g}.pt"

    def _listing(self, config_id: int) -> list[tuple[float, str]]:
        if self.url:
            names = [p.rsplit("/", 1)[-1] for p in self.fs.glob(f"{self._base}/config{config_id}-budget*.pt")]
        else:
            names = [p.name for p in Path(self.root).glob(f"config{config_id}-budget*.pt")]
        found = []
        for name in names:
            m = _NAME.match(name)
            if m and int(m.group(1)) == config_id:
                try:
                    found.append((float(m.group(2)), f"{self.root}/{name}"))
                except ValueError:
                    continue
        return found

    def best_below(self, config_id: int, budget: float) -> str | None:
        """The highest-budget checkpoint of ``config_id`` at or below ``budget``; None if none."""
        below = [(b, loc) for b, loc in self._listing(config_id) if b <= budget]
        return max(below)[1] if below else None

    def prune(self, config_id: int, budget: float) -> None:
        """Keep only the checkpoint a later promotion of ``config_id`` past ``budget`` continues from."""
        keep = self.best_below(config_id, budget)
        for _, loc in self._listing(config_id):
            if loc != keep:
                self._remove(loc)

    def _remove(self, location: str) -> None:
        if self.url:
            self.fs.rm(location.replace(self.root, self._base, 1))
        else:
            Path(location).unlink(missing_ok=True)

    def read_bytes(self, location: str) -> bytes:
        if self.url:
            return self.fs.cat_file(location.replace(self.root, self._base, 1))
        return Path(location).read_bytes()

    def write_bytes(self, location: str, data: bytes) -> None:
        """Write atomically: a driver killed mid-write never leaves half a checkpoint."""
        if self.url:
            self.fs.pipe_file(location.replace(self.root, self._base, 1), data)
            return
        write_atomically(location, data)


def choose_transport(checkpoint_store: str | None, own_local_cluster: bool) -> str:
    """``url`` when the user names a store URL, ``shared`` for a folder the user names (a shared
    file system every worker mounts at the same path) or for our own local cluster (its workers
    share this disk), ``dask`` otherwise: a remote worker's disk is not ours."""
    if is_url(checkpoint_store):
        return "url"
    return "shared" if checkpoint_store is not None or own_local_cluster else "dask"


@contextmanager
def trial_scratch() -> Iterator[Path]:
    """A private folder for one trial's files, removed when the trial ends (under the worker's
    TMPDIR, never its working directory)."""
    with tempfile.TemporaryDirectory(prefix="autodsnn-trial-") as scratch:
        yield Path(scratch)


def fetch(location: str, scratch: Path) -> Path:
    """A local copy of the checkpoint at ``location`` (a URL) in ``scratch``."""
    fs, path = _filesystem(location)
    local = scratch / "resume.pt"
    local.write_bytes(fs.cat_file(path))
    return local


def publish(local: Path, location: str) -> None:
    """Upload the checkpoint ``local`` to the URL ``location``."""
    fs, path = _filesystem(location)
    fs.pipe_file(path, local.read_bytes())
