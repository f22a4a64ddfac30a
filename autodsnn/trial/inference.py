"""Inference energy and latency of a trained model, measured the way the energy-measurement
literature asks: through the arithmetic it ships with (the deployed shift kernels), after a
warm-up, repeated to a minimum window per measurement, at batch 1 (latency) and at a
throughput batch, with the median and the spread over repetitions, and with the idle power of
the machine subtracted where it can be measured (dynamic) beside the total.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

from ..shift import ShiftConfigError, deploy, inference_path, is_shift_layer
from .energy import EnergyMeter
from .loop import EvalStats, evaluate

_IDLE_WATTS: dict[tuple[str, float], float | None] = {}  # per process: (country, window) -> W


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(25th, 50th, 75th percentile) with linear interpolation; one value gives it three times."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


@dataclass
class BatchMeasurement:
    """Repeated metered windows at one batch size; per-image figures per repetition."""

    batch_size: int
    window_s: float                              # minimum seconds per repetition
    latency_ms: list[float] = field(default_factory=list)         # per image
    energy_uj: list[float | None] = field(default_factory=list)   # per image, total
    dynamic_uj: list[float | None] = field(default_factory=list)  # per image, idle power subtracted
    images: list[int] = field(default_factory=list)
    missing: str | None = None                   # why energy could not be read (latency still is)

    def summary(self) -> dict[str, Any]:
        """Medians and interquartile ranges (None where not measured)."""
        out: dict[str, Any] = {"batch_size": self.batch_size, "repetitions": len(self.latency_ms),
                               "window_s": self.window_s, "images": sum(self.images), "missing": self.missing}
        for name, values in (("latency_ms", self.latency_ms), ("energy_uj", self.energy_uj),
                             ("dynamic_uj", self.dynamic_uj)):
            known = [v for v in values if v is not None]
            if known and len(known) == len(values):
                q1, q2, q3 = quartiles(known)
                out[name], out[f"{name}_iqr"] = q2, q3 - q1
            else:
                out[name] = out[f"{name}_iqr"] = None
        return out


@dataclass
class InferenceProfile:
    """What :func:`profile_inference` measured."""

    path: str                      # which arithmetic ran ("native-cpu float", "torch-emulation", ...)
    error: float                   # top-1 error of that model over all of ``batches``
    samples: int
    idle_watts: float | None       # the machine's idle power as the meter sees it (None: not measured)
    batches: list[BatchMeasurement]
    methods: dict[str, str] = field(default_factory=dict)  # component -> how its energy was obtained

    def at(self, batch_size: int) -> dict[str, Any]:
        return next(b.summary() for b in self.batches if b.batch_size == batch_size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["batches"] = [b.summary() for b in self.batches]
        return d


def profile_inference(model: nn.Module, batches: Iterable, device: torch.device, *, kernels: str = "float",
                      batch_sizes: tuple[int, ...] = (1, 64), window_s: float = 0.25, repeats: int = 3,
                      country: str | None = None, model_stats: EvalStats | None = None) -> InferenceProfile:
    """Measure ``model`` in eval mode through the deployed shift kernels in mode ``kernels`` (a
    packed copy; the model is left as it is), or the training emulation with
    ``kernels="emulation"``; a model without shift layers runs as it is.

    One unmetered pass over ``batches`` gives the error of what ran (``model_stats``, the
    caller's evaluation of ``model`` on ``batches``, stands for it when nothing is deployed). Then for each batch size,
    ``repeats`` metered windows of at least ``window_s`` seconds each run the first images of
    ``batches`` over and over; per image: latency (ms), energy (uJ) and dynamic energy (uJ, the
    idle power x time taken off). A window whose energy cannot be read leaves latency measured
    and energy missing, with the reason."""
    runner, path = model, "torch-emulation"
    if not any(is_shift_layer(m) for m in model.modules()):
        path = "torch float (no shift layers)"
    elif kernels != "emulation":
        try:
            runner = copy.deepcopy(model).eval()
            deploy(runner, kernels)
        except ShiftConfigError as exc:
            runner, path = model, f"torch-emulation (deploy failed: {exc})"
    # The model's own evaluation, when the caller has it, stands for a runner that is the model.
    runner.eval()
    stats = model_stats if runner is model and model_stats is not None else evaluate(runner, batches, device=device)
    if runner is not model:
        path = inference_path(runner)  # known once the layers have run: which kernels took each call
    images = torch.cat([x for x, _ in _take(batches, max(batch_sizes))])[:max(batch_sizes)]
    idle = idle_watts(window_s, country)
    measured, methods = [], {}
    for size in batch_sizes:
        measurement = BatchMeasurement(size, window_s)
        inputs = [images[i:i + size].to(device) for i in range(0, max(len(images) - size + 1, 1), size)]
        _run_window(runner, inputs, 0.0)  # warm-up: kernel builds, allocator growth, primitive creation
        for _ in range(repeats):
            with EnergyMeter(country) as meter:
                seconds, count = _run_window(runner, inputs, window_s)
            reading = meter.reading
            measurement.images.append(count)
            measurement.latency_ms.append(seconds * 1e3 / count)
            methods = reading.methods or methods
            if reading.valid:
                joules = reading.energy_kwh * 3.6e6
                measurement.energy_uj.append(joules * 1e6 / count)
                measurement.dynamic_uj.append(None if idle is None else (joules - idle * reading.seconds) * 1e6 / count)
            else:
                measurement.missing = reading.missing
                measurement.energy_uj.append(None)
                measurement.dynamic_uj.append(None)
        measured.append(measurement)
    return InferenceProfile(path, stats.error, stats.samples, idle, measured, methods)


def idle_watts(window_s: float, country: str | None = None) -> float | None:
    """Mean power the meter reads while this process sleeps for ``window_s`` seconds (once per
    process and window; None when the meter cannot read it)."""
    key = (country or "", float(window_s))
    if _IDLE_WATTS.get(key) is None:  # a reading that could not be taken is tried again next time
        with EnergyMeter(country) as meter:
            time.sleep(window_s)
        _IDLE_WATTS[key] = meter.reading.watts
    return _IDLE_WATTS[key]


def _take(batches: Iterable, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    taken, count = [], 0
    for x, y in batches:
        taken.append((x, y))
        count += len(x)
        if count >= n:
            break
    return taken


@torch.no_grad()
def _run_window(model: nn.Module, inputs: list[torch.Tensor], window_s: float) -> tuple[float, int]:
    """Forward ``inputs`` round robin until ``window_s`` seconds have passed (at least one pass
    over them); returns (seconds, images)."""
    start, count, i = time.perf_counter(), 0, 0
    while True:
        x = inputs[i % len(inputs)]
        model(x)
        count += len(x)
        i += 1
        if i >= len(inputs) and time.perf_counter() - start >= window_s:
            break
    if inputs and inputs[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, count
