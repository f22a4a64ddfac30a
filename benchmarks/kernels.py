"""Speed of the deployed shift kernels against float PyTorch, side by side in one run.

    .venv/bin/python benchmarks/kernels.py            # writes benchmarks/results/kernels_cpu.json
    autodsnn bench kernels --quick                    # the same from a checkout, fewer repetitions

Every figure is a median over
repeated calls (``torch.no_grad``, the process's thread count). Linear layers are timed with
weights in cache ("warm": the same call repeated) and from DRAM ("cold": a buffer larger than
the last-level cache is read before every call, outside the timed region); each row also gives
the time it takes just to stream that layer's weight bytes at the measured DRAM bandwidth.

Freed memory is kept by the process during a run (glibc's mmap and trim thresholds raised): with
glibc's adaptive defaults, whether a 2 MB activation tensor is page-faulted in afresh on every
forward depended on what the process had run before (measured: 7,354 minor faults per ResNet-20
batch-32 forward in one order, 1,053 in another, 1.6x in time), which made comparisons depend
on the order they ran in.
"""
from __future__ import annotations

import argparse
import copy
import json
import ctypes
import ctypes.util
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from common import markdown_table, write_json

from autodsnn.shift import ShiftConfig, ShiftLinear, convert, deploy, freeze, inference_path
from autodsnn.shift.kernels import DEPLOYED_LAYERS, DeployedShiftLinear

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


def steady_memory() -> bool:
    """Keep freed heap memory in the process (glibc only); True if the setting took effect."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc and libc.mallopt(m_mmap_threshold, 64 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))
    except (OSError, AttributeError):  # not glibc
        return False


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


def linear_rows(features: int = 4096, batches: tuple[int, ...] = (1, 64), reps: int = 30,
                memory: tuple[float, Callable[[], Any]] | None = None) -> list[Row]:
    """``memory``: :func:`dram_bandwidth`'s result, when the caller measured it already."""
    bandwidth, flush = memory or dram_bandwidth()
    rows: list[Row] = []
    torch.manual_seed(0)
    dense = nn.Linear(features, features).eval()
    variants = [("4-bit float", 4, "float"), ("4-bit integer", 4, "integer"), ("8-bit float", 8, "float")]
    deployed = {name: DeployedShiftLinear(_shift_linear(features, bits, act=mode == "integer"), mode)
                for name, bits, mode in variants}
    portable = _portable_module()
    if portable is not None:  # what a CPU without AVX-512 gets (the same machine, AVX2 code)
        layer = DeployedShiftLinear(_shift_linear(features, 4, act=False), "float")
        layer.native_module = portable
        deployed["4-bit float, portable build"] = layer
    case = f"linear {features}x{features}"
    with torch.no_grad():
        for batch in batches:
            x = torch.randn(batch, features)
            fns = {"torch fp32": lambda: dense(x)}
            fns.update({name: (lambda layer=layer: layer(x)) for name, layer in deployed.items()})
            for cache, before in (("warm", None), ("cold", flush)):
                ms = _interleaved(fns, reps, before)
                base = ms["torch fp32"]
                rows.append(Row(case, batch, cache, "torch fp32", "torch", base, 1.0,
                                1e3 * features * features * 4 / bandwidth))
                for name, layer in deployed.items():
                    path = layer.path + (" (no AVX-512)" if layer.native_module is not None else "")
                    rows.append(Row(case, batch, cache, f"shift {name}", path, ms[name], base / ms[name],
                                    1e3 * layer.panels.numel() / bandwidth))
    return rows


def resnet_rows(batches: tuple[int, ...] = (1, 32), reps: int = 20) -> list[Row]:
    from autodsnn.zoo.models import create_model

    torch.manual_seed(0)
    base = create_model("resnet20", num_classes=10).eval()
    emulated = copy.deepcopy(base)
    convert(emulated, ShiftConfig(mode="ps", weight_bits=4, shift_max="auto", act_int_bits=4, act_frac_bits=8))
    emulated.eval()
    models = {"torch fp32 (float model)": base, "shift emulation (torch)": emulated}
    for mode, fold in (("float", False), ("float", True), ("integer", True)):
        m = copy.deepcopy(emulated)
        deploy(m, mode, fold_batchnorm=fold)
        models[f"shift deployed {mode}" + (", BatchNorm folded" if fold and mode == "float" else "")] = m
    portable = _portable_module()
    if portable is not None:
        m = copy.deepcopy(emulated)
        deploy(m, "float")
        for layer in m.modules():
            if isinstance(layer, DEPLOYED_LAYERS):
                layer.native_module = portable
        models["shift deployed float, BatchNorm folded, portable build"] = m
    rows: list[Row] = []
    with torch.no_grad():
        for batch in batches:
            x = torch.randn(batch, 3, 32, 32)
            ms = _interleaved({name: (lambda model=model: model(x)) for name, model in models.items()}, reps)
            base_ms = ms["torch fp32 (float model)"]
            for name, model in models.items():
                path = "torch" if model is base else inference_path(model)
                if "portable" in name:
                    path += " (no AVX-512)"
                rows.append(Row("resnet20 cifar", batch, "-", name, path, ms[name], base_ms / ms[name]))
    return rows


def _cuda_ms(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, float]:
    """Median GPU time per call (CUDA events around each call, in turns)."""
    for fn in fns.values():
        fn()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end))
    return {name: statistics.median(ts) for name, ts in times.items()}


def gpu_rows(features: int = 4096, reps: int = 50) -> list[Row]:
    """Linear batch 1 and 64 against cuBLAS fp16, ResNet-20 batch 128 against cuDNN fp32 (only
    where CUDA and the CUDA kernels are available)."""
    from autodsnn.zoo.models import create_model
    from autodsnn.shift.native_cuda import native_cuda

    if not torch.cuda.is_available() or native_cuda() is None:
        return []
    dev = torch.device("cuda")
    rows: list[Row] = []
    torch.manual_seed(0)
    dense16 = nn.Linear(features, features).to(dev, torch.float16).eval()
    shift4 = DeployedShiftLinear(_shift_linear(features, 4, act=True), "float").to(dev)
    shift4i = DeployedShiftLinear(_shift_linear(features, 4, act=True), "integer").to(dev)
    peak = torch.cuda.get_device_properties(dev)
    with torch.no_grad():
        for batch in (1, 64):
            x16 = torch.randn(batch, features, device=dev, dtype=torch.float16)
            x = x16.float()
            ms = _cuda_ms({"fp16": lambda: dense16(x16), "f": lambda: shift4(x), "i": lambda: shift4i(x)}, reps)
            case = f"linear {features}x{features} ({peak.name})"
            rows.append(Row(case, batch, "-", "cuBLAS fp16", "torch", ms["fp16"], 1.0))
            rows.append(Row(case, batch, "-", "shift 4-bit float", shift4.path, ms["f"], ms["fp16"] / ms["f"]))
            rows.append(Row(case, batch, "-", "shift 4-bit integer", shift4i.path, ms["i"], ms["fp16"] / ms["i"]))
        base = create_model("resnet20", num_classes=10).eval()
        shifted = copy.deepcopy(base)
        convert(shifted, ShiftConfig(mode="ps", weight_bits=4, shift_max="auto", act_int_bits=4, act_frac_bits=8))
        models = {"cuDNN fp32 (float model)": base.to(dev)}
        for mode in ("float", "integer"):
            m = copy.deepcopy(shifted).eval()
            deploy(m, mode)
            models[f"shift deployed {mode}"] = m.to(dev)
        x = torch.randn(128, 3, 32, 32, device=dev)
        ms = _cuda_ms({name: (lambda m=m: m(x)) for name, m in models.items()}, max(10, reps // 2))
        first = ms["cuDNN fp32 (float model)"]
        for name, m in models.items():
            rows.append(Row(f"resnet20 cifar ({peak.name})", 128, "-", name,
                            "torch" if m is models["cuDNN fp32 (float model)"] else inference_path(m), ms[name],
                            first / ms[name]))
    return rows


def _portable_module() -> Any:
    """The kernels built without AVX-512 (None where the default build has none either)."""
    from autodsnn.shift.native import native_cpu, native_cpu_portable

    native = native_cpu()
    return native_cpu_portable() if native is not None and native.has_avx512() else None


def run(quick: bool = False) -> dict[str, Any]:
    """All kernel benchmarks (GPU rows where a GPU and the CUDA kernels exist); ``quick`` uses
    fewer repetitions."""
    reps = 10 if quick else 30
    steady = steady_memory()
    memory = dram_bandwidth()  # one measurement for the bytes floors and the reported bandwidth
    bandwidth = memory[0]
    rows = linear_rows(reps=reps, memory=memory) + resnet_rows(reps=max(5, reps // 2)) + gpu_rows(reps=reps)
    from autodsnn.shift.native import native_cpu

    native = native_cpu()
    return {"dram_read_gbs": bandwidth / 1e9, "threads": torch.get_num_threads(), "steady_memory": steady,
            "avx512": bool(native and native.has_avx512()), "rows": [asdict(r) for r in rows]}


def format_rows(rows: list[dict[str, Any]]) -> str:
    headers = ["case", "batch", "cache", "implementation", "path", "median ms", "speed vs fp32", "bytes floor ms",
               "time / floor"]
    body = [[r["case"], r["batch"], r["cache"], r["impl"], r["path"], f"{r['ms']:.3f}", f"{r['vs_float']:.2f}x",
             "-" if r["bytes_floor_ms"] is None else f"{r['bytes_floor_ms']:.3f}",
             "-" if r["bytes_floor_ms"] is None else f"{r['ms'] / r['bytes_floor_ms']:.1f}x"] for r in rows]
    return markdown_table(headers, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--name", default="kernels_cpu", help="results file name (benchmarks/results/NAME.json)")
    parser.add_argument("--json", default=None, help="write the results to this file instead ('' : nowhere)")
    args = parser.parse_args()
    result = run(quick=args.quick)
    print(f"DRAM read {result['dram_read_gbs']:.1f} GB/s, {result['threads']} threads, AVX-512: {result['avx512']}")
    print(format_rows(result["rows"]))
    if args.json is None:
        print(f"wrote {write_json(args.name, result)}")
    elif args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
