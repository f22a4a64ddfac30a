"""Pareto analysis: non-dominated sets over any objectives (all minimized)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def non_dominated(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of the points no other point dominates (<= in every objective, < in one).
    Duplicates are all kept."""
    p = np.asarray(points, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"points must be a 2-D array (n points x k objectives), got shape {p.shape}")
    n = len(p)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated_by = np.all(p <= p[i], axis=1) & np.any(p < p[i], axis=1)
        mask[i] = not dominated_by.any()
    return mask
