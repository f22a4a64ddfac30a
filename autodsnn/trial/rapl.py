"""RAPL energy counters through Linux powercap (``/sys/class/powercap/intel-rapl:*``; AMD CPUs
expose theirs under the same names): package and DRAM energy, read directly over a window.

The counters are machine-wide. With several trials on one machine, a process is charged the
share of the machine's busy CPU time that was its own over the window (``/proc/stat`` and the
process's CPU time), so concurrent trials do not each count the whole package. The root is
``$AUTODSNN_POWERCAP`` (read at call time; tests point it at a fake tree) or the real one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path


MIN_BUSY_S = 0.05  # machine CPU time below which a window is not split between processes


@dataclass(frozen=True)
class RaplDomain:
    name: str            # "package-0", "dram", ...
    kind: str            # "package" | "dram" (the parts a trial's energy is made of)
    path: Path
    max_range_uj: int    # the counter wraps to 0 after this

    def read_uj(self) -> int:
        return int((self.path / "energy_uj").read_text().strip())


def powercap_root() -> Path:
    return Path(os.environ.get("AUTODSNN_POWERCAP", "/sys/class/powercap"))


def find_domains(root: Path | None = None) -> list[RaplDomain]:
    """Readable package domains (``intel-rapl:N``) and their DRAM subdomains
    (``intel-rapl:N:M`` named "dram"); empty where there are none or they are not readable."""
    root = powercap_root() if root is None else root
    domains = []
    for path in sorted(root.glob("intel-rapl:*")) if root.is_dir() else []:
        try:
            name = (path / "name").read_text().strip()
            max_range = int((path / "max_energy_range_uj").read_text().strip())
            int((path / "energy_uj").read_text().strip())  # readable (root-only on many kernels)
        except (OSError, ValueError):
            continue
        depth = path.name.count(":")
        if depth == 1 and name.startswith("package"):
            domains.append(RaplDomain(name, "package", path, max_range))
        elif depth == 2 and name == "dram":
            domains.append(RaplDomain(name, "dram", path, max_range))
    return domains


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores spent busy since boot (``/proc/stat``), None where unreadable."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    except (OSError, ValueError, IndexError):
        return None
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class RaplWindow:
    """Counter values at the start of a window; :meth:`stop` gives the joules since, per kind,
    machine-wide and charged to this process."""

    def __init__(self, domains: list[RaplDomain]) -> None:
        self.domains = domains
        self._start = {d.path: d.read_uj() for d in domains}
        self._busy = _machine_busy_seconds()
        self._own = time.process_time()

    def stop(self) -> tuple[dict[str, float], dict[str, float], float]:
        """(machine joules per kind, this process's joules per kind, its share of busy CPU)."""
        machine: dict[str, float] = {}
        for d in self.domains:
            delta = d.read_uj() - self._start[d.path]
            if delta < 0:  # wrapped around once
                delta += d.max_range_uj
            machine[d.kind] = machine.get(d.kind, 0.0) + delta / 1e6
        busy_now = _machine_busy_seconds()
        own = time.process_time() - self._own
        busy = None if busy_now is None or self._busy is None else busy_now - self._busy
        # /proc/stat counts 10 ms ticks: below a few of them (or without it) there is no load to
        # split, and the process is charged the machine (an idle window measures the idle machine).
        share = 1.0 if busy is None or busy < MIN_BUSY_S else min(1.0, own / busy)
        return machine, {k: v * share for k, v in machine.items()}, share
