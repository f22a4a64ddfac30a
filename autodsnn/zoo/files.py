"""Raw data-set files: find them in a directory and decode them into uint8 tensors.

IDX is (Fashion-)MNIST's format, python pickles are CIFAR's. Decoders return
``{"train_x", "train_y", "test_x", "test_y"}``: images ``(N, C, H, W)`` uint8, labels ``(N,)``
int64. Nothing here knows data-set names; the records in :mod:`autodsnn.zoo.data` do.
"""
from __future__ import annotations

import gzip
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .errors import ZooError

__all__ = ["IDX_STEMS", "read_idx", "find_idx_files", "decode_idx", "find_all_files", "decode_cifar"]

# IDX file stems of (Fashion-)MNIST; both sets use the same names.
IDX_STEMS = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open  # sniff: names lie sometimes
    with opener(path, "rb") as fh:
        return fh.read()


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode one IDX file (gzipped or plain) of unsigned bytes into a numpy uint8 array of the
    shape its header gives. Raises :class:`ZooError` for other files or a truncated one."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ZooError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - offset != expected:
        raise ZooError(f"{path}: header says {dims}, file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def find_idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (gzipped or not; '-' or '.' before 'idx'), keyed like
    :data:`IDX_STEMS`, or None when any is missing."""
    if not directory.is_dir():
        return None
    found: dict[str, Path] = {}
    for key, stem in IDX_STEMS.items():
        dotted = stem.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
        for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
            path = directory / candidate
            if path.is_file():
                found[key] = path
                break
        else:
            return None
    return found


def decode_idx(files: Mapping[str, Path]) -> dict[str, torch.Tensor]:
    """Train and test tensors from the four IDX files of :func:`find_idx_files`; images get a
    channel axis: ``(N, 1, H, W)``."""
    out: dict[str, torch.Tensor] = {}
    for part in ("train", "test"):
        x = read_idx(files[f"{part}_x"])
        y = read_idx(files[f"{part}_y"])
        if x.ndim != 3 or len(x) != len(y):
            raise ZooError(f"IDX shapes do not match: images {x.shape}, labels {y.shape}")
        out[f"{part}_x"] = torch.from_numpy(x.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
        out[f"{part}_y"] = torch.from_numpy(y.astype(np.int64))
    return out


def find_all_files(directory: Path, parts: Mapping[str, Sequence[str]]) -> dict[str, list[Path]] | None:
    """``{part: [directory / name, ...]}`` when every named file exists, else None."""
    found = {part: [directory / n for n in names] for part, names in parts.items()}
    if all(p.is_file() for paths in found.values() for p in paths):
        return found
    return None


# All a CIFAR batch holds besides plain containers, strings, bytes and numbers: numpy arrays
# (pickled with numpy 1's or numpy 2's module paths), and bytes as Python 3 writes them in
# protocol 2 (_codecs.encode: a pure function, it runs nothing).
_CIFAR_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                  for name in ("_reconstruct", "scalar")}
_CIFAR_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _CifarUnpickler(pickle.Unpickler):
    """Loads only what CIFAR's format holds: any other global (a function to call, a class to
    build) is refused, so a hostile file in --data-dir cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refusing {module}.{name}")
        with warnings.catch_warnings():  # numpy 2 still resolves numpy.core, with a deprecation notice
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    """One CIFAR batch (a python pickle), through :class:`_CifarUnpickler`; raises ZooError naming
    the file for anything that is not such a batch."""
    try:
        with open(path, "rb") as fh:
            obj = _CifarUnpickler(fh, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise ZooError(f"{path} is not a CIFAR batch ({exc}): a CIFAR batch holds only dicts, lists, strings, "
                       "bytes, numbers and numpy arrays; replace the file with the official one") from None
    except (EOFError, ValueError, TypeError) as exc:
        raise ZooError(f"{path} is not a readable CIFAR batch ({type(exc).__name__}: {exc}); replace it with "
                       "the official file") from None
    if not isinstance(obj, dict):
        raise ZooError(f"{path} holds a {type(obj).__name__}, not a CIFAR batch dict")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def decode_cifar(files: Mapping[str, Sequence[Path]], *, label_key: str, name: str) -> dict[str, torch.Tensor]:
    """Train and test tensors ``(N, 3, 32, 32)`` from CIFAR's python batches (``files["train"]``,
    ``files["test"]``); labels under ``label_key`` ("labels" for CIFAR-10, "fine_labels" for
    CIFAR-100). ``name`` only goes into error messages."""
    out: dict[str, torch.Tensor] = {}
    for part in ("train", "test"):
        xs, ys = [], []
        for path in files[part]:
            batch = _unpickle(path)
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[label_key], dtype=np.int64))
        out[f"{part}_x"] = torch.from_numpy(np.concatenate(xs))
        out[f"{part}_y"] = torch.from_numpy(np.concatenate(ys))
        if len(out[f"{part}_x"]) != len(out[f"{part}_y"]):
            raise ZooError(f"{name}: image and label counts differ in the {part} files")
    return out
