"""A data set's facts and its train / validation / test parts.

The validation part is always carved from the training set; the test set is only for the
final evaluation of a chosen configuration.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import ZooError
from .loaders import Batches, make_loader

__all__ = ["DatasetInfo", "DataSplits", "PARTS", "split_indices"]

PARTS = ("train", "val", "test")


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

    def loader(
        self,
        part: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> Batches:
        """Batches of ``part`` ("train", "val" or "test"): ``len()`` is batches per epoch, each
        ``iter()`` one epoch of ``(x (B, C, H, W) float32, y (B,) int64)``.

        In-memory parts give a :class:`~autodsnn.zoo.loaders.TensorLoader`, with random crop +
        flip on "train" when ``info.augment``; lazy parts (ImageFolder) give a ``DataLoader``
        whose training transform already augments. Raises :class:`ZooError` for another part.
        """
        if part not in PARTS:
            raise ZooError(f"unknown data split {part!r}: use 'train', 'val' or 'test'")
        augment = part == "train" and self.info.augment
        return make_loader(getattr(self, part), batch_size, shuffle=shuffle, generator=generator,
                           augment=augment)


def split_indices(
    n: int, val_fraction: float, split_seed: int, train_subset: float | int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted (train, val) indices into ``n`` training samples: val is a ``split_seed``-random
    ``val_fraction``; ``train_subset`` (fraction in (0, 1] or a count) keeps a prefix of the
    same random order, so smaller fidelities nest in larger ones. Raises :class:`ZooError`."""
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ZooError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(split_seed)))
    n_val = int(round(n * float(val_fraction)))
    val_idx, rest = perm[:n_val], perm[n_val:]
    if len(rest) == 0:
        raise ZooError(f"val_fraction={val_fraction} leaves no training samples out of {n}")
    if train_subset is not None:
        k = _subset_count(train_subset, len(rest))
        rest = rest[:k]  # a prefix of a random order: smaller fidelities nest in larger ones
    # Sorted indices keep gathers cache-friendly; batches are shuffled later anyway.
    return rest.sort().values, val_idx.sort().values


def _subset_count(train_subset: float | int, available: int) -> int:
    if isinstance(train_subset, bool):
        raise ZooError("train_subset must be a fraction in (0, 1] or a positive count")
    if isinstance(train_subset, (int, np.integer)):
        k = int(train_subset)
        if not 1 <= k <= available:
            raise ZooError(f"train_subset={k} must be between 1 and {available} samples")
        return k
    frac = float(train_subset)
    if not 0.0 < frac <= 1.0:
        raise ZooError(f"train_subset fraction must be in (0, 1], got {train_subset}")
    return max(1, int(round(frac * available)))
