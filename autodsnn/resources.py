"""The project's data folders (``experiments/``, ``search_spaces/``, ``native/``), found the same
way from a checkout and from an installed wheel.

A checkout (or an editable install) keeps them at the repository's top level, beside
``pyproject.toml``; a wheel installs copies under ``<prefix>/share/autodsnn/`` (pyproject's
``data-files``). The checkout wins, so edits there take effect at once.
"""
from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from .errors import AutoDSNNError

FOLDERS = ("experiments", "search_spaces", "native", "benchmarks")  # benchmarks/: checkouts only


def _checkout() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    # pyproject.toml marks a checkout: site-packages may hold an unrelated top-level "native/".
    return root if (root / "pyproject.toml").is_file() else None


def _installed_roots() -> list[Path]:
    prefixes = dict.fromkeys([sysconfig.get_path("data"), sys.prefix, sys.base_prefix])
    return [Path(p) / "share" / "autodsnn" for p in prefixes if p]


def project_folder(name: str) -> Path:
    """The folder ``name`` (one of ``FOLDERS``). Raises :class:`AutoDSNNError` when neither a
    checkout nor an installation holds it."""
    if name not in FOLDERS:
        raise AutoDSNNError(f"unknown project folder {name!r}: use one of {', '.join(FOLDERS)}")
    roots = ([_checkout()] if _checkout() else []) + _installed_roots()
    for root in roots:
        if (root / name).is_dir():
            return root / name
    looked = ", ".join(str(r / name) for r in roots)
    raise AutoDSNNError(f"the project folder {name}/ is missing (looked in {looked}): reinstall autodsnn "
                        "or run from a checkout of the repository")


def cache_root() -> Path:
    """``$AUTODSNN_CACHE`` or ``~/.cache/autodsnn``: decoded data sets and compiled kernels (read
    at call time, so a test or a worker may point it elsewhere)."""
    env = os.environ.get("AUTODSNN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autodsnn"
