"""Energy and emissions of a block of work, measured by CodeCarbon's offline tracker.

``with EnergyMeter() as meter: ...`` then ``meter.reading`` gives kWh, kg CO2eq, the window it
covers, and per component (cpu, ram, gpu) whether a counter measured it (RAPL, NVML) or
CodeCarbon estimated it (CPU: TDP x the process's CPU load where there is no RAPL; RAM: a
per-GB model), and by which method. The offline tracker never touches the network; the country
sets the carbon intensity (default: $AUTODSNN_COUNTRY or DEU, read when the meter is made).

A reading is valid or missing, never silently wrong: a tracker that could not start (another
CodeCarbon instance holding its lock, a hardware probe that failed), a window too short to
read, or zero energy for real work make ``reading.missing`` say why, and ``energy_kwh`` is None.
Per-second power does not depend on the window's length: the window starts after the tracker's
own start-up, and the tracker takes a last sample at the end however fresh its previous one
(CodeCarbon skips it within 50 ms, which read a 30 ms block as almost free). Samples never
overlap: CodeCarbon's background sampler and that last sample are serialized, since the
tracker moves its "last measured" mark only after a sample ends, and two samples running at
once both charged the same interval (a window ending on a sampler tick read twice its RAM power).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from . import rapl

DEFAULT_COUNTRY = "DEU"
MIN_WINDOW_S = 0.01  # shorter: CPU time accounting (10 ms ticks) cannot see the work
_COUNTER_CPU_MODES = {"intel_rapl": "RAPL energy counter", "intel_power_gadget": "Intel Power Gadget",
                      "apple_powermetrics": "powermetrics", "amd_rapl": "RAPL energy counter",
                      "windows_emi": "Windows EMI counter"}
_ESTIMATED_CPU_MODES = {"cpu_load": "estimate: TDP x process CPU load",
                        "constant": "estimate: a constant share of TDP"}


@dataclass
class EnergyReading:
    """Totals over one metered window; ``None`` where the value could not be read."""

    energy_kwh: float | None = None
    emissions_kg: float | None = None
    seconds: float = 0.0                   # the metered window, the tracker's start-up excluded
    cpu_kwh: float | None = None
    gpu_kwh: float | None = None
    ram_kwh: float | None = None
    measured: dict[str, bool] = field(default_factory=dict)   # component -> measured (True) / estimated
    methods: dict[str, str] = field(default_factory=dict)     # component -> how it was obtained
    source: str = "codecarbon"
    counters: dict[str, float] = field(default_factory=dict)  # RAPL: machine-wide joules and the process share
    missing: str | None = None             # why the reading is not valid (None: it is)

    @property
    def valid(self) -> bool:
        return self.missing is None and self.energy_kwh is not None

    @property
    def watts(self) -> float | None:
        """Mean power over the window (W)."""
        if not self.valid or self.seconds <= 0:
            return None
        return self.energy_kwh * 3.6e6 / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_country() -> str:
    return os.environ.get("AUTODSNN_COUNTRY", DEFAULT_COUNTRY)


def _make_tracker(country: str, measure_power_secs: float):  # noqa: ANN202
    os.environ.setdefault("CODECARBON_LOG_LEVEL", "error")  # read by codecarbon at its first import
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    with warnings.catch_warnings():  # save_to_file's deprecation notice says nothing to our users
        warnings.simplefilter("ignore", DeprecationWarning)
        # "process" mode: concurrent trials on one machine each count only their own process, so
        # CodeCarbon's single-instance lock (which would refuse the second trial) is not taken.
        return OfflineEmissionsTracker(country_iso_code=country, tracking_mode="process", save_to_file=False,
                                       log_level="error", measure_power_secs=measure_power_secs,
                                       allow_multiple_runs=True)


def _serialize_samples(tracker: Any) -> None:
    """Route every energy sample of ``tracker`` (its periodic sampler, its start and stop
    samples, ours) through one lock, so each interval is charged once."""
    lock = threading.Lock()
    sample = tracker._measure_power_and_energy

    def one_at_a_time() -> None:
        with lock:
            sample()

    tracker._measure_power_and_energy = one_at_a_time  # start(), stop() and __exit__ look it up here
    scheduler = getattr(tracker, "_scheduler", None)
    if scheduler is not None:
        scheduler.function = one_at_a_time  # the sampler captured the bound method when it was made


def _components(tracker: Any, gpu_kwh: float) -> tuple[dict[str, bool], dict[str, str]]:
    """Per component: measured by a counter or estimated, and how."""
    measured, methods = {"ram": False}, {"ram": "estimate: CodeCarbon's RAM power model"}
    for hw in getattr(tracker, "_hardware", []):
        kind = type(hw).__name__.lower()
        if kind == "cpu":
            mode = getattr(hw, "_mode", "")
            measured["cpu"] = mode in _COUNTER_CPU_MODES
            methods["cpu"] = _COUNTER_CPU_MODES.get(mode) or _ESTIMATED_CPU_MODES.get(mode, f"estimate: {mode}")
    if gpu_kwh > 0 or any(type(hw).__name__.lower() == "gpu" for hw in getattr(tracker, "_hardware", [])):
        measured["gpu"], methods["gpu"] = True, "NVML energy counter"
    return measured, methods


class EnergyMeter:
    """Context manager around a CodeCarbon offline tracker. Never raises for tracker failures:
    the reading then says why it is missing (a trial must not die for its meter)."""

    def __init__(self, country: str | None = None, measure_power_secs: float = 1.0) -> None:
        self.country = country or default_country()
        self.measure_power_secs = measure_power_secs
        self.reading = EnergyReading()
        self._tracker: Any = None
        self._rapl: rapl.RaplWindow | None = None
        self._start = 0.0

    def __enter__(self) -> "EnergyMeter":
        try:
            tracker = _make_tracker(self.country, self.measure_power_secs)
            if getattr(tracker, "_another_instance_already_running", False):
                raise RuntimeError("another CodeCarbon tracker holds its single-instance lock "
                                   "(CODECARBON_ALLOW_MULTIPLE_RUNS=false?)")
            _serialize_samples(tracker)
            tracker.start()
            if getattr(tracker, "_start_time", None) is None:
                raise RuntimeError("the CodeCarbon tracker did not start")
            self._tracker = tracker
        except Exception as exc:  # noqa: BLE001 - report, don't crash the trial
            self.reading.missing = f"the energy meter could not start: {type(exc).__name__}: {exc}".splitlines()[0]
        domains = rapl.find_domains()
        self._rapl = rapl.RaplWindow(domains) if domains else None
        self._start = time.perf_counter()  # after the tracker's start-up (its hardware probe takes ~1 s)
        return self

    def so_far(self) -> float | None:
        """Energy in kWh up to now (for progress lines), None if unknown."""
        try:
            return float(self._tracker._total_energy.kWh) if self._tracker is not None else None
        except Exception:  # noqa: BLE001 - a progress line must not fail
            return None

    def __exit__(self, *exc_info: Any) -> None:
        self.reading.seconds = time.perf_counter() - self._start
        counted = self._rapl.stop() if self._rapl is not None else None
        if self._tracker is None:
            self._check()
            return
        try:
            # The last stretch of the window, however short: without it a 30 ms block reads ~0.
            self._tracker._measure_power_and_energy()
            emissions = self._tracker.stop()
            data = self._tracker.final_emissions_data
            reading = self.reading
            reading.emissions_kg = float(emissions or 0.0)
            reading.energy_kwh = float(data.energy_consumed)
            reading.cpu_kwh, reading.gpu_kwh, reading.ram_kwh = (float(data.cpu_energy), float(data.gpu_energy),
                                                                 float(data.ram_energy))
            reading.measured, reading.methods = _components(self._tracker, reading.gpu_kwh)
            if counted is not None:
                self._use_rapl(*counted)
        except Exception as exc:  # noqa: BLE001
            self.reading.missing = f"the energy meter failed: {type(exc).__name__}: {exc}".splitlines()[0]
        self._check()

    def _use_rapl(self, machine: dict[str, float], own: dict[str, float], share: float) -> None:
        """Counters beat estimates: RAPL package energy replaces CodeCarbon's CPU figure and RAPL
        DRAM energy its RAM model; emissions follow the energy at the same carbon intensity."""
        reading = self.reading
        how = f"RAPL {{}} counter (powercap), this process's share {share:.0%} of the machine's busy CPU time"
        if "package" in own:
            reading.cpu_kwh = own["package"] / 3.6e6
            reading.measured["cpu"], reading.methods["cpu"] = True, how.format("package")
        if "dram" in own:
            reading.ram_kwh = own["dram"] / 3.6e6
            reading.measured["ram"], reading.methods["ram"] = True, how.format("DRAM")
        total = (reading.cpu_kwh or 0.0) + (reading.ram_kwh or 0.0) + (reading.gpu_kwh or 0.0)
        if reading.energy_kwh and reading.emissions_kg is not None:
            reading.emissions_kg *= total / reading.energy_kwh
        reading.energy_kwh = total
        reading.counters = {**{f"machine_{k}_j": v for k, v in machine.items()}, "process_share": share}

    def _check(self) -> None:
        """A reading that cannot be trusted becomes missing, with the reason."""
        reading = self.reading
        if reading.missing is None and reading.seconds < MIN_WINDOW_S:
            reading.missing = (f"window of {reading.seconds * 1e3:.1f} ms is too short to meter "
                               f"(at least {MIN_WINDOW_S * 1e3:.0f} ms): repeat the work inside one meter")
        elif reading.missing is None and not reading.energy_kwh:
            reading.missing = f"the meter read zero energy for {reading.seconds:.2f} s of work"
        if reading.missing is not None:
            reading.energy_kwh = reading.emissions_kg = None


def format_emissions(kg: float | None) -> str:
    """Emissions in grams of CO2eq ("missing" for None)."""
    return "missing" if kg is None else f"{kg * 1e3:.3g} g CO2eq"


def format_energy(kwh: float | None) -> str:
    """Energy in the unit people read: mJ, J, kJ, Wh or kWh ("missing" for None)."""
    if kwh is None:
        return "missing"
    joules = kwh * 3.6e6
    for limit, unit, scale in ((1.0, "mJ", 1e3), (1e3, "J", 1.0), (3.6e4, "kJ", 1e-3), (3.6e6, "Wh", 1 / 3600)):
        if abs(joules) < limit:
            return f"{joules * scale:.3g} {unit}"
    return f"{kwh:.3g} kWh"
