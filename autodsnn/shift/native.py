"""Loading the compiled shift kernels (native/shift_cpu.cpp) once per process.

Built on first use with ``torch.utils.cpp_extension`` (about 25 s) into the autodsnn cache
directory and reused afterwards; ``scripts/setup.sh`` warms it. Without a compiler, callers get
None (and one warning) and use their PyTorch paths.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from ..resources import cache_root, project_folder

_LOCK = threading.Lock()
_NATIVE: Any = None
_NATIVE_ERROR: str | None = None
_PORTABLE: Any = None


def cache_dir(suffix: str = "") -> Path:
    """Where compiled extensions live, under $AUTODSNN_CACHE or ~/.cache/autodsnn: per torch
    version and per source folder, so two checkouts (or a checkout and a wheel) never take turns
    rebuilding one shared build directory (each rebuild costs 30-40 s)."""
    source = hashlib.sha1(str(project_folder("native").resolve()).encode()).hexdigest()[:10]
    return cache_root() / "extensions" / f"torch-{torch.__version__.split('+')[0]}{suffix}-{source}"


def _build(portable: bool) -> Any:
    # torch warns that no CUDA runtime exists when building a CPU-only extension: expected
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.cpp_extension import load

    build = cache_dir() / ("portable" if portable else "native")
    build.mkdir(parents=True, exist_ok=True)
    # -march=native picks AVX-512 where the CPU has it; the portable build leaves it out so the
    # scalar fallback is compiled (and tested) too. No FMA contraction: integer-mode epilogues
    # must round exactly like the reference.
    arch = ["-march=native", "-mno-avx512f"] if portable else ["-march=native"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load(name="autodsnn_shift_cpu_portable" if portable else "autodsnn_shift_cpu",
                    sources=[str(project_folder("native") / "shift_cpu.cpp")],
                    extra_cflags=["-O3", "-fopenmp", *arch, "-fno-math-errno", "-ffp-contract=off"],
                    extra_ldflags=["-fopenmp"], build_directory=str(build), verbose=False)


def native_cpu() -> Any | None:
    """The compiled CPU module, building it on first use; None (with one warning) if it cannot be built."""
    global _NATIVE, _NATIVE_ERROR
    if _NATIVE is not None or _NATIVE_ERROR is not None:  # fast path: no lock once decided
        return _NATIVE
    with _LOCK:
        if _NATIVE is not None or _NATIVE_ERROR is not None:
            return _NATIVE
        try:
            _NATIVE = _build(portable=False)
        except Exception as exc:  # noqa: BLE001 - no compiler, no ninja, no headers: fall back
            _NATIVE_ERROR = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"autodsnn: native shift kernels unavailable ({_NATIVE_ERROR}); using the PyTorch "
                          "fallback. Install a C++ compiler and ninja (pip install ninja) to build them.",
                          stacklevel=2)
        return _NATIVE


def native_cpu_portable() -> Any:
    """The same kernels compiled without AVX-512 (the vector-extension build), for tests and
    comparison; built once per process, like :func:`native_cpu`."""
    global _PORTABLE
    with _LOCK:
        if _PORTABLE is None:
            _PORTABLE = _build(portable=True)
        return _PORTABLE
