"""Energy and emissions of a block of work, measured by CodeCarbon's offline tracker.

``with EnergyMeter() as meter: ...`` then ``meter.reading`` gives kWh, kg CO2eq and which parts
were measured (RAPL counters for the CPU, NVML for GPUs) and which CodeCarbon estimated (CPU from
load x TDP when there is no RAPL, RAM always from a per-GB model). The offline tracker never
touches the network; the country sets the carbon intensity (default: $AUTODSNN_COUNTRY or DEU,
read when the meter is made).
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_COUNTRY = "DEU"
_MEASURED_CPU_MODES = {"intel_rapl", "intel_power_gadget", "apple_powermetrics", "amd_rapl"}


@dataclass
class EnergyReading:
    """Totals over one measured block."""

    energy_kwh: float = 0.0
    emissions_kg: float = 0.0
    seconds: float = 0.0
    cpu_kwh: float = 0.0
    gpu_kwh: float = 0.0
    ram_kwh: float = 0.0
    measured: dict[str, bool] = field(default_factory=dict)  # part -> measured (True) / estimated
    source: str = "codecarbon"
    error: str | None = None

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
        # "process" mode: concurrent trials on one machine each count only their own process.
        return OfflineEmissionsTracker(country_iso_code=country, tracking_mode="process", save_to_file=False,
                                       log_level="error", measure_power_secs=measure_power_secs)


def _measured_parts(tracker: Any, gpu_kwh: float) -> dict[str, bool]:
    parts: dict[str, bool] = {"ram": False}
    for hw in getattr(tracker, "_hardware", []):
        kind = type(hw).__name__.lower()
        if kind == "cpu":
            parts["cpu"] = getattr(hw, "_mode", "") in _MEASURED_CPU_MODES
        elif kind == "gpu":
            parts["gpu"] = True  # NVML energy counters
    if gpu_kwh > 0:
        parts["gpu"] = True
    return parts


class EnergyMeter:
    """Context manager around a CodeCarbon offline tracker. Never raises for tracker failures:
    the reading then carries ``error`` and zeros (a trial must not die for its meter)."""

    def __init__(self, country: str | None = None, measure_power_secs: float = 1.0) -> None:
        self.country = country or default_country()
        self.measure_power_secs = measure_power_secs
        self.reading = EnergyReading()
        self._tracker: Any = None
        self._start = 0.0

    def __enter__(self) -> "EnergyMeter":
        self._start = time.perf_counter()
        try:
            self._tracker = _make_tracker(self.country, self.measure_power_secs)
            self._tracker.start()
        except Exception as exc:  # noqa: BLE001 - report, don't crash the trial
            self._tracker = None
            self.reading.error = f"{type(exc).__name__}: {exc}"
        return self

    def so_far(self) -> float:
        """Energy in kWh up to now (for progress lines), 0 if unknown."""
        try:
            return float(self._tracker._total_energy.kWh) if self._tracker is not None else 0.0
        except Exception:  # noqa: BLE001
            return 0.0

    def __exit__(self, *exc_info: Any) -> None:
        self.reading.seconds = time.perf_counter() - self._start
        if self._tracker is None:
            return
        try:
            emissions = self._tracker.stop()
            data = self._tracker.final_emissions_data
            self.reading.emissions_kg = float(emissions or 0.0)
            self.reading.energy_kwh = float(data.energy_consumed)
            self.reading.cpu_kwh = float(data.cpu_energy)
            self.reading.gpu_kwh = float(data.gpu_energy)
            self.reading.ram_kwh = float(data.ram_energy)
            self.reading.measured = _measured_parts(self._tracker, self.reading.gpu_kwh)
        except Exception as exc:  # noqa: BLE001
            self.reading.error = f"{type(exc).__name__}: {exc}"
