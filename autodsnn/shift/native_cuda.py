"""Loading the compiled CUDA shift kernels (native/shift_cuda.cu) once per process.

Built on first use with ``torch.utils.cpp_extension`` (a few minutes) into the autodsnn cache directory
(``$AUTODSNN_CACHE`` or ``~/.cache/autodsnn``, under ``extensions/torch-<version>-cuda``) and reused
afterwards. Without a CUDA device this returns None at once and builds nothing; without a working
toolkit (nvcc, CUDA headers and runtime) callers get None (and one warning) and use their PyTorch
paths. ``scripts/build_cuda_check.sh`` compiles the same source on a machine without a GPU.

Functions of the module (all tensors on one CUDA device, float32/int32/uint8 contiguous)::

    linear_float(x, packed, code_bits, values, bias)
    linear_int(x, packed, code_bits, shifts, in_scale, lo, hi, offset, out_scale, bias_float)
    conv2d_float(x, packed, code_bits, values, bias, out_channels, kh, kw, stride_h, stride_w,
                 pad_h, pad_w, dil_h, dil_w, groups)
    conv2d_int(x, packed, code_bits, shifts, in_scale, lo, hi, offset, out_scale, bias_float,
               out_channels, kh, kw, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)
"""
from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import torch

from ..resources import project_folder
from .native import cache_dir

EXTENSION_NAME = "autodsnn_shift_cuda"
# No --use_fast_math: the integer mode must be exact and the float mode within float32 rounding.
CUDA_FLAGS = ["-O3"]
_LOCK = threading.Lock()
_NATIVE: Any = None
_NATIVE_ERROR: str | None = None


def _is_toolkit(root: str | os.PathLike | None) -> bool:
    """A CUDA toolkit root: bin/nvcc and the CUDA runtime library beside it."""
    if not root:
        return False
    path = Path(root)
    libs = [path / "lib64", path / "lib"] + [Path(p) for p in glob.glob(str(path / "targets" / "*" / "lib"))]
    return (path / "bin" / "nvcc").is_file() and any(any(lib.glob("libcudart*")) for lib in libs if lib.is_dir())


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", Path(path).name))


def find_cuda_home() -> str | None:
    """The CUDA toolkit root: $CUDA_HOME/$CUDA_PATH if set, else the first real toolkit among the
    one matching torch's CUDA version, /usr/local/cuda, the newest /usr/local/cuda-*, /opt/cuda and
    the one around the nvcc on PATH (which may be a wrapper script living elsewhere)."""
    env = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if env:
        return env
    candidates: list[str] = []
    if torch.version.cuda:
        candidates.append(f"/usr/local/cuda-{torch.version.cuda}")
    candidates.append("/usr/local/cuda")
    candidates += sorted(glob.glob("/usr/local/cuda-*"), key=_version_key, reverse=True)
    candidates.append("/opt/cuda")
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    return next((c for c in candidates if _is_toolkit(c)), None)


def _arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST for the visible devices, e.g. '9.0' or '8.0;9.0'."""
    caps = {torch.cuda.get_device_capability(i) for i in range(torch.cuda.device_count())}
    return ";".join(f"{major}.{minor}" for major, minor in sorted(caps))


def build_extension(build_dir: Path, cuda_home: str | None = None, arch_list: str | None = None,
                    verbose: bool = False) -> Any:
    """Compile (or load the cached build of) native/shift_cuda.cu. ``cuda_home``/``arch_list`` fill
    in CUDA_HOME and TORCH_CUDA_ARCH_LIST only while building, and only where unset. Needs no GPU
    when both are given (scripts/build_cuda_check.sh)."""
    import torch.utils.cpp_extension as cpp_extension

    cuda_home = os.environ.get("CUDA_HOME") or cuda_home or find_cuda_home()
    if not _is_toolkit(cuda_home):
        raise RuntimeError(f"no CUDA toolkit found (CUDA_HOME={cuda_home!r}); set CUDA_HOME to the directory "
                           "holding bin/nvcc and lib64/libcudart.so")
    arch = os.environ.get("TORCH_CUDA_ARCH_LIST") or arch_list or _arch_list()
    saved = {key: os.environ.get(key) for key in ("CUDA_HOME", "TORCH_CUDA_ARCH_LIST")}
    saved_module_home = cpp_extension.CUDA_HOME
    os.environ["CUDA_HOME"], os.environ["TORCH_CUDA_ARCH_LIST"] = str(cuda_home), arch
    # cpp_extension guessed CUDA_HOME at import (from the nvcc on PATH, possibly a wrapper script)
    cpp_extension.CUDA_HOME = str(cuda_home)
    # The arch list is not part of torch's rebuild check: put it in the flags so that another GPU
    # generation sharing the cache rebuilds instead of loading kernels it cannot run.
    arch_tag = re.sub(r"[^0-9A-Za-z]+", "_", arch)
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        return cpp_extension.load(name=EXTENSION_NAME, sources=[str(project_folder("native") / "shift_cuda.cu")],
                                  extra_cflags=["-O3"],
                                  extra_cuda_cflags=CUDA_FLAGS + [f"-DAUTODSNN_CUDA_ARCHS={arch_tag}"],
                                  build_directory=str(build_dir), verbose=verbose)
    finally:
        cpp_extension.CUDA_HOME = saved_module_home
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def native_cuda() -> Any | None:
    """The compiled CUDA module, building it on first use; None without a CUDA device (no build
    attempted, no warning) or, with one warning, if it cannot be built."""
    global _NATIVE, _NATIVE_ERROR
    if _NATIVE is not None or _NATIVE_ERROR is not None:  # fast path: no lock once decided
        return _NATIVE
    if not torch.cuda.is_available():
        return None
    with _LOCK:
        if _NATIVE is not None or _NATIVE_ERROR is not None:
            return _NATIVE
        try:
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _NATIVE = build_extension(cache_dir("-cuda"))
        except Exception as exc:  # noqa: BLE001 - no toolkit, no ninja, compile error: fall back
            _NATIVE_ERROR = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            warnings.warn(f"autodsnn: CUDA shift kernels unavailable ({_NATIVE_ERROR}); using the PyTorch "
                          "fallback on the GPU. Install the CUDA toolkit matching torch (or set CUDA_HOME) and "
                          "ninja to build them.", stacklevel=2)
        return _NATIVE
