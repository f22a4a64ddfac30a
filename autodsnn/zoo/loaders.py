"""Batches for training and evaluation: index slicing for in-memory tensors, DataLoader otherwise.

On CPU, slicing a normalized ``(N, C, H, W)`` tensor is far faster than
``torch.utils.data.DataLoader`` for small images; augmentation runs on whole batches.
:func:`make_loader` picks the right one for a dataset, so callers never inspect its type.
"""
from __future__ import annotations

import os
from typing import Any, Iterator, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .errors import ZooError

__all__ = ["Batches", "TensorLoader", "augment_batch", "iterate_batches", "make_loader"]

Batch = tuple[torch.Tensor, torch.Tensor]


class Batches(Protocol):
    """What training loops need: ``len()`` batches per epoch, each ``iter()`` one epoch of (x, y)."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Batch]: ...


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
) -> Iterator[Batch]:
    """One epoch of ``(x_batch, y_batch)`` by index slicing of in-memory tensors.

    With ``shuffle`` every call draws a fresh permutation from ``generator``, so calling it
    once per epoch shuffles every epoch. Without shuffling, batches are views (no copies).
    Raises :class:`ZooError` when x and y differ in length or ``batch_size`` < 1.
    """
    n = len(x)
    if len(y) != n:
        raise ZooError(f"x has {n} samples but y has {len(y)}")
    if batch_size < 1:
        raise ZooError(f"batch_size must be positive, got {batch_size}")
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
            raise ZooError(f"x has {len(x)} samples but y has {len(y)}")
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

    def __iter__(self) -> Iterator[Batch]:
        return iterate_batches(self.x, self.y, self.batch_size, self.shuffle, self.generator,
                               augment=self.augment, drop_last=self.drop_last)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: bool = False,
) -> Batches:
    """Batches of ``dataset``: a :class:`TensorLoader` for a ``TensorDataset`` (batch
    augmentation when ``augment``), else a ``DataLoader`` with up to 4 worker processes whose
    augmentation is the dataset's own transform (``augment`` is ignored there).

    ``generator`` draws the shuffling order (and the DataLoader's worker seeds), so a seeded
    one makes epochs reproducible. Raises :class:`ZooError` when ``batch_size`` < 1.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ZooError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(dataset, TensorDataset):
        return TensorLoader.from_dataset(dataset, int(batch_size), shuffle=shuffle, generator=generator,
                                         augment=augment)
    # Lazy datasets decode images per item (ImageFolder): worth worker processes.
    return DataLoader(dataset, int(batch_size), shuffle=shuffle, generator=generator,
                      num_workers=min(4, os.cpu_count() or 1))
