"""Files written so that a kill at any moment leaves either the previous file or the new one whole.

Every file the program reads back (SMAC's saved state, trial checkpoints, the data cache, a run's
space copy) is written into a temporary file beside it and renamed over it: ``os.replace`` is
atomic on POSIX and Windows within one file system, so a reader never sees half a file. The
temporary name carries the process and thread, so concurrent writers never share one.

A base module: every room may import it; it imports nothing of the package.
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def replaced_atomically(path: str | os.PathLike, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write the new content to; on leaving the block
    without an error, it is renamed over ``path``. On an error the temporary file is removed and
    ``path`` keeps its previous content (or stays absent). ``durable`` also flushes the content to
    the disk before the rename (a power cut, not only a killed process, leaves a whole file); a
    file written once per trial that nothing reads back can skip that cost.

    Example::

        with replaced_atomically(out / "model.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    # hidden, unique per writer, same suffix (some writers insist on theirs: SMAC's ".json")
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        if durable:
            with open(tmp, "rb+") as f:  # the data on disk before the name points at it
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def leftover_temporary_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files of :func:`replaced_atomically` for ``path`` that a killed writer left
    beside it (a writer that is still running would own one too: call this when none can be)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"))


def write_atomically(path: str | os.PathLike, data: str | bytes, *, durable: bool = True) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through :func:`replaced_atomically`."""
    with replaced_atomically(path, durable=durable) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
