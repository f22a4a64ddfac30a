"""Helpers shared by the benchmark scripts: result files and plain-text tables."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Sequence

import torch

RESULTS = Path(__file__).parent / "results"


def environment() -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.machine(), "processor": platform.processor(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2))
    return path


def set_aside_unfinished(run_dir: Path) -> Path | None:
    """Move a run folder that has no ``finished.json`` (an interrupted run, or one this script
    did not start) to ``NAME.interrupted-YYYYmmdd-HHMMSS`` beside it, so the benchmark can run it
    again from scratch without deleting anyone's work. Returns where it went (None: nothing there).
    An interrupted run is not resumed: its wall clock would not compare with the others'."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.interrupted-{stamp}")
    n = 1
    while target.exists():  # two in one second
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.interrupted-{stamp}-{n}")
    run_dir.rename(target)
    print(f"{run_dir} did not finish: moved to {target.name}; running it again from scratch", flush=True)
    return target


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text Markdown table (pastes into the README as is)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])

