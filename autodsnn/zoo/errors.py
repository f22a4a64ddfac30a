"""The zoo's errors: one class for names and arguments it cannot serve, one for missing files.

Both are :class:`autodsnn.errors.AutoDSNNError` (the CLI catches one class) and ``ValueError``
(callers written before the base class existed keep working). Messages are one line.
"""
from __future__ import annotations

from ..errors import AutoDSNNError

__all__ = ["ZooError", "DatasetNotFoundError"]


class ZooError(AutoDSNNError, ValueError):
    """An unknown model or data-set name, or an argument the zoo cannot serve."""


class DatasetNotFoundError(ZooError):
    """A known data set whose files could not be found or downloaded."""
