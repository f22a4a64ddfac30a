"""SMAC's saved state (``RUN/smac/smac/<seed>/``): saved so that a kill leaves a whole state, and
set aside on resume when it cannot be read.

SMAC 2 writes its state files in place (``open(path, "w")`` then ``json.dump``), so a process
killed mid-save leaves a cut-off file, and a later ``SMBO.load`` fails on it (``optimization.json``,
``scenario.json``) or drops the whole run history with a log line (``runhistory.json``,
``intensifier.json``). The run's store (SQLite) is the record of every trial; SMAC's files are a
cache of what SMAC made of them. So the loop saves them here atomically; a resume keeps a copy
of the whole state before SMAC rewrites it in place, and one that finds the state unreadable
(cut off by a kill during SMAC's own writes, or by an older version of this code) moves it
aside and restores the copy, or lets SMAC start afresh; either way the store catches SMAC up.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..atomic import replaced_atomically, write_atomically

log = logging.getLogger(__name__)

# What SMAC 2.4 writes to its output directory and reads back on a resume.
STATE_FILES = ("scenario.json", "configspace.json", "runhistory.json", "intensifier.json", "optimization.json")
WHOLE_COPY = "smac-whole"  # in the run folder: the whole state as the last resume found it


def save_smac_state(facade: Any) -> None:
    """Save ``facade``'s run history, intensifier and optimizer counters, each file replaced
    atomically; the run history first, so a kill between files never leaves an intensifier that
    names configurations the run history lacks. Writes what ``SMBO.save`` writes (SMAC 2.4)."""
    smbo = facade.optimizer
    folder = Path(facade.scenario.output_directory)
    folder.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(folder / "runhistory.json") as tmp:
        facade.runhistory.save(tmp)
    with replaced_atomically(folder / "intensifier.json") as tmp:
        facade.intensifier.save(tmp)
    # the fields SMBO.load reads back
    counters = {"used_walltime": smbo.used_walltime,
                "used_target_function_walltime": smbo.used_target_function_walltime,
                "used_target_function_cputime": smbo.used_target_function_cputime,
                "last_update": time.time(), "finished": bool(getattr(smbo, "_finished", False))}
    write_atomically(folder / "optimization.json", json.dumps(counters, indent=2))


def unreadable_state_files(folder: Path) -> list[str]:
    """The state files in ``folder`` that SMAC could not load, each as ``"name (why)"``: cut off
    (not JSON) or missing while others exist. Empty when the state is whole or absent."""
    present = [name for name in STATE_FILES if (folder / name).exists()]
    if not present:
        return []
    problems = []
    for name in STATE_FILES:
        path = folder / name
        if not path.exists():
            problems.append(f"{name} (missing)")
            continue
        try:
            json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            problems.append(f"{name} (cut off: {exc})" if path.stat().st_size else f"{name} (empty)")
    return problems


def prepare_to_resume(folder: Path, run_dir: Path) -> None:
    """Before SMAC loads its state from ``folder`` on a resume: make the state whole, then keep a
    copy of it in ``run_dir/smac-whole``.

    SMAC rewrites its files in place while a facade is built (``SMBO._initialize_state``), so a
    kill at that moment cuts one off; the copy, taken just before, holds what SMAC had loaded.
    A state that cannot be read (:func:`unreadable_state_files`) is moved to
    ``run_dir/smac-unreadable-<time>`` (kept for inspection) and replaced by the copy when the
    copy is whole; without one, SMAC starts afresh and the resume catches it up from the store."""
    copy = Path(run_dir) / WHOLE_COPY
    problems = unreadable_state_files(folder)
    if problems:
        aside = _move_aside(folder, run_dir)
        restorable = copy.is_dir() and any(copy.iterdir()) and not unreadable_state_files(copy)
        if restorable:
            _copy_state(copy, folder)
        log.warning(f"SMAC's saved state in {folder} could not be read ({'; '.join(problems)}; a kill while it was "
                    f"being saved?): moved to {aside}; "
                    + (f"restored from the copy kept when the previous resume started ({copy}), and caught up from "
                       "the run's store" if restorable else
                       "SMAC starts afresh and is caught up from the run's store (every trial kept; its "
                       "intensifier starts again: Hyperband, new brackets)"))
        return  # the copy already holds the restored state, or there is no state left to keep
    if (folder / "runhistory.json").exists():
        _copy_state(folder, copy)


def _copy_state(source: Path, target: Path) -> None:
    """Copy the state files, each replaced whole, the run history before the intensifier (as saved)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in STATE_FILES:
        write_atomically(target / name, (source / name).read_bytes())


def _move_aside(folder: Path, run_dir: Path) -> Path:
    aside = Path(run_dir) / f"smac-unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while aside.exists():  # two resumes within a second
        n += 1
        aside = aside.with_name(f"{aside.name.split('.')[0]}.{n}")
    folder.rename(aside)
    return aside
