"""SMAC's saved state (``RUN/smac/smac/<seed>/``): saved so that a kill leaves a whole state, and
set aside on resume when it cannot be read.

SMAC 2 writes its state files in place (``open(path, "w")`` then ``json.dump``), so a process
killed mid-save leaves a cut-off file, and a later ``SMBO.load`` fails on it (``optimization.json``,
``scenario.json``) or drops the whole run history with a log line (``runhistory.json``,
``intensifier.json``). The run's store (SQLite) is the record of every trial; SMAC's files are a
cache of what SMAC made of them. So the loop saves them here atomically, and a resume that finds
them unreadable (cut off by a kill during SMAC's own save when a facade is built, or by an older
version of this code) moves them aside, lets SMAC start afresh and catches it up from the store.
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


def set_aside_unreadable_state(folder: Path, run_dir: Path) -> Path | None:
    """Move SMAC's state folder to ``run_dir/smac-unreadable-<time>`` when any of its files cannot
    be read (see :func:`unreadable_state_files`), so SMAC starts afresh and the resume catches it
    up from the store; the files are kept for inspection. Returns where they went, or None."""
    problems = unreadable_state_files(folder)
    if not problems:
        return None
    aside = Path(run_dir) / f"smac-unreadable-{time.strftime('%Y%m%d-%H%M%S')}"
    n = 1
    while aside.exists():  # two resumes within a second
        n += 1
        aside = aside.with_name(f"{aside.name.split('.')[0]}.{n}")
    folder.rename(aside)
    log.warning(f"SMAC's saved state in {folder} could not be read ({'; '.join(problems)}; a kill while it was "
                f"being saved?): moved to {aside}; SMAC starts afresh and is caught up from the run's store "
                "(every trial kept; Hyperband's brackets start again)")
    return aside
