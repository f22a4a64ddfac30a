"""Decoded data sets kept on disk and in this process, so repeated loads in a worker cost nothing.

Disk: uint8 tensors in ``cache_dir()/tensors/<name>-<key>.pt``, the key built from the source
files' paths, sizes and mtimes. Process: the normalized tensors, and the last few splits of them.
"""
from __future__ import annotations

import collections
import hashlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Hashable, Sequence, TypeVar

import torch

from ..atomic import replaced_atomically
from ..resources import cache_root

__all__ = ["cache_dir", "clear_memory_cache", "source_key", "load_uint8", "remember", "remember_splits"]

log = logging.getLogger(__name__)

# Bump when the on-disk cache format changes so stale files are never read.
_CACHE_FORMAT = 1

Tensors = dict[str, torch.Tensor]
S = TypeVar("S")

_MEMORY: dict[Hashable, Tensors] = {}
_SPLITS: "collections.OrderedDict[Hashable, tuple[Tensors, Any]]" = collections.OrderedDict()
_SPLITS_MAX = 4  # a few fidelities of one data set; each MNIST entry holds ~190 MB
_LOCK = threading.RLock()


def cache_dir() -> Path:
    """Where decoded data sets and downloads live: :func:`autodsnn.resources.cache_root` (read at
    call time, so ``$AUTODSNN_CACHE`` set later still counts)."""
    return cache_root()


def clear_memory_cache() -> None:
    """Forget data held in this process (the on-disk cache stays)."""
    with _LOCK:
        _MEMORY.clear()
        _SPLITS.clear()


def source_key(name: str, paths: Sequence[Path]) -> str:
    """20 hex digits naming the decoded form of ``paths``; changes when a file does."""
    # Path + size + mtime identify a source cheaply; hashing 50+ MB per load would not be.
    h = hashlib.sha1(f"{name}|{_CACHE_FORMAT}".encode())
    for p in sorted(paths):
        st = p.stat()
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def load_uint8(name: str, paths: Sequence[Path], decode: Callable[[], Tensors]) -> Tensors:
    """uint8 tensors of ``name``, from the disk cache when its key matches, else ``decode()``d
    and written there (a read-only cache only logs a warning)."""
    key = source_key(name, paths)
    cache_file = cache_dir() / "tensors" / f"{name}-{key}.pt"
    if cache_file.is_file():
        try:
            return torch.load(cache_file, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: decode again
            log.warning("ignoring unreadable cache file %s (%s)", cache_file, exc)
    raw = decode()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with replaced_atomically(cache_file, durable=False) as tmp:  # concurrent workers never read half a file
            torch.save(raw, tmp)
    except OSError as exc:  # read-only home etc.: work without the disk cache
        log.warning("could not write data cache %s (%s)", cache_file, exc)
    return raw


def remember(key: Hashable, make: Callable[[], Tensors]) -> Tensors:
    """The tensors held under ``key`` in this process, made once (under a lock, so threads
    sharing a process decode a set only once)."""
    with _LOCK:
        tensors = _MEMORY.get(key)
        if tensors is None:
            tensors = _MEMORY[key] = make()
        return tensors


def remember_splits(tensors: Tensors, info: Any, split_args: tuple, make: Callable[[], S]) -> S:
    """Splits of ``tensors`` for ``split_args``: the held ones when the same base tensors (by
    identity) and ``info`` were split so before, else ``make()``; keeps the last few."""
    key = (id(tensors), *split_args)
    with _LOCK:
        hit = _SPLITS.get(key)
        if hit is not None and hit[0] is tensors and hit[1].info == info:
            _SPLITS.move_to_end(key)
            return hit[1]
    splits = make()
    with _LOCK:
        _SPLITS[key] = (tensors, splits)  # holding tensors keeps id() unique
        while len(_SPLITS) > _SPLITS_MAX:
            _SPLITS.popitem(last=False)
    return splits
