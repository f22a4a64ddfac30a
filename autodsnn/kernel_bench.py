"""Speed of the deployed shift kernels against float PyTorch, side by side in one run.

Used by ``autodsnn bench kernels`` and ``benchmarks/kernels.py``. Every figure is a median over
repeated calls (``torch.no_grad``, the process's thread count). Linear layers are timed with
weights in cache ("warm": the same call repeated) and from DRAM ("cold": a buffer larger than
the last-level cache is read before every call, outside the timed region); each row also gives
the time it takes just to stream that layer's weight bytes at the measured DRAM bandwidth.
"""
from __future__ import annotations

import copy
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch
from torch import nn

from .shift import ShiftConfig, ShiftLinear, convert, deploy, freeze, inference_path
from .shift.kernels import DeployedShiftLinear
from .tables import markdown_table

FLUSH_BYTES = 256 * 2 ** 20  # larger than any last-level cache we run on


@dataclass
class Row:
    case: str        # e.g. "linear 4096x4096"
    batch: int
    cache: str       # warm | cold | -
    impl: str        # what ran
    path: str        # the arithmetic path that ran
    ms: float
    vs_float: float  # float baseline time / this time (> 1: faster)
    bytes_floor_ms: float | None = None


def _median_ms(fn: Callable[[], Any], reps: int, before: Callable[[], Any] | None = None) -> float:
    return _interleaved({"": fn}, reps, before)[""]


def _interleaved(fns: dict[str, Callable[[], Any]], reps: int,
                 before: Callable[[], Any] | None = None) -> dict[str, float]:
    """Median ms of each function, timed in turns (round robin) so that they share the machine's
    slow and fast moments: the ratios are then fair even on a noisy machine. Without ``before``
    each timed call follows an untimed one (its data warm in cache, whatever ran before it)."""
    for fn in fns.values():
        fn()  # warm up (first-call builds, allocations)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            (before or fn)()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: 1e3 * statistics.median(ts) for name, ts in times.items()}


def dram_bandwidth() -> tuple[float, Callable[[], Any]]:
    """(measured read bandwidth in bytes/s, a function that evicts the caches)."""
    buf = torch.ones(FLUSH_BYTES // 4)
    buf.sum()
    seconds = _median_ms(lambda: buf.sum(), 5) / 1e3
    return FLUSH_BYTES / seconds, lambda: buf.sum()


def _shift_linear(features: int, bits: int, act: bool, seed: int = 0) -> ShiftLinear:
    torch.manual_seed(seed)
    lin = nn.Linear(features, features)
    cfg = ShiftConfig(mode="ps", weight_bits=bits, shift_max="auto",
                      **({"act_int_bits": 3, "act_frac_bits": 8} if act else {}))
    return freeze(ShiftLinear.from_float(lin, cfg).eval())


def linear_rows(features: int = 4096, batches: tuple[int, ...] = (1, 64), reps: int = 30) -> list[Row]:
    bandwidth, flush = dram_bandwidth()
    rows: list[Row] = []
    torch.manual_seed(0)
    dense = nn.Linear(features, features).eval()
    variants = [("4-bit float", 4, "float"), ("4-bit integer", 4, "integer"), ("8-bit float", 8, "float")]
    deployed = {name: DeployedShiftLinear(_shift_linear(features, bits, act=mode == "integer"), mode)
                for name, bits, mode in variants}
    case = f"linear {features}x{features}"
    with torch.no_grad():
        for batch in batches:
            x = torch.randn(batch, features)
            fns = {"torch fp32": lambda: dense(x)}
            fns.update({name: (lambda layer=layer: layer(x)) for name, layer in deployed.items()})
            for cache, before in (("warm", None), ("cold", flush)):
                ms = _interleaved(fns, reps, before)
                base = ms["torch fp32"]
                rows.append(Row(case, batch, cache, "torch fp32", "torch", base, 1.0, 1e3 * features * features * 4 / bandwidth))
                for name, layer in deployed.items():
                    rows.append(Row(case, batch, cache, f"shift {name}", layer.path, ms[name], base / ms[name],
                                    1e3 * layer.panels.numel() / bandwidth))
    return rows


def resnet_rows(batches: tuple[int, ...] = (1, 32), reps: int = 20) -> list[Row]:
    from .models import create_model

    torch.manual_seed(0)
    base = create_model("resnet20", num_classes=10).eval()
    emulated = copy.deepcopy(base)
    convert(emulated, ShiftConfig(mode="ps", weight_bits=4, shift_max="auto", act_int_bits=4, act_frac_bits=8))
    emulated.eval()
    models = {"torch fp32 (float model)": base, "shift emulation (torch)": emulated}
    for mode in ("float", "integer"):
        m = copy.deepcopy(emulated)
        deploy(m, mode)
        models[f"shift deployed {mode}"] = m
    rows: list[Row] = []
    with torch.no_grad():
        for batch in batches:
            x = torch.randn(batch, 3, 32, 32)
            ms = _interleaved({name: (lambda model=model: model(x)) for name, model in models.items()}, reps)
            base_ms = ms["torch fp32 (float model)"]
            for name, model in models.items():
                path = "torch" if model is base else inference_path(model)
                rows.append(Row("resnet20 cifar", batch, "-", name, path, ms[name], base_ms / ms[name]))
    return rows


def run(quick: bool = False) -> dict[str, Any]:
    """All CPU kernel benchmarks; ``quick`` uses fewer repetitions."""
    reps = 10 if quick else 30
    bandwidth, _ = dram_bandwidth()
    rows = linear_rows(reps=reps) + resnet_rows(reps=max(5, reps // 2))
    from .shift.native import native_cpu

    native = native_cpu()
    return {"dram_read_gbs": bandwidth / 1e9, "threads": torch.get_num_threads(),
            "avx512": bool(native and native.has_avx512()), "rows": [asdict(r) for r in rows]}


def format_rows(rows: list[dict[str, Any]]) -> str:
    headers = ["case", "batch", "cache", "implementation", "path", "median ms", "speed vs fp32", "bytes floor ms"]
    body = [[r["case"], r["batch"], r["cache"], r["impl"], r["path"], f"{r['ms']:.3f}", f"{r['vs_float']:.2f}x",
             "-" if r["bytes_floor_ms"] is None else f"{r['bytes_floor_ms']:.3f}"] for r in rows]
    return markdown_table(headers, body)
