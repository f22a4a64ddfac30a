#!/usr/bin/env bash
# Compile native/shift_cuda.cu without a GPU, to check that the CUDA kernels build (the same
# torch.utils.cpp_extension.load call and flags as autodsnn/shift/native_cuda.py). The result goes to
# build/cuda-check (or $1) and is not used at run time; native_cuda() builds its own copy on a GPU machine.
#   CUDA_HOME             toolkit root (default: found by native_cuda.find_cuda_home, e.g. /usr/local/cuda-13.0)
#   TORCH_CUDA_ARCH_LIST  target architectures (default 9.0)
#   PYTHON                interpreter with torch (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
export BUILD_DIR=${1:-build/cuda-check}
start=$(date +%s)
"$PY" - <<'PYEOF'
import logging, os, sys
from pathlib import Path

sys.path.insert(0, os.getcwd())
from autodsnn.shift import native_cuda
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "no CUDA runtime found": expected here

home = os.environ.get("CUDA_HOME") or native_cuda.find_cuda_home()
print(f"[build_cuda_check] CUDA_HOME={home} TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}", flush=True)
try:
    module = native_cuda.build_extension(Path(os.environ["BUILD_DIR"]), cuda_home=home, verbose=True)
except Exception as exc:  # noqa: BLE001
    print(f"[build_cuda_check] FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
names = sorted(n for n in ("linear_float", "linear_int", "conv2d_float", "conv2d_int") if hasattr(module, n))
print(f"[build_cuda_check] built and imported {module.__file__}: {', '.join(names)}")
PYEOF
echo "[build_cuda_check] ok in $(( $(date +%s) - start )) s"
