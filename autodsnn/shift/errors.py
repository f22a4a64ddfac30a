"""`ShiftConfigError`, the error of every shift request that cannot work."""
from __future__ import annotations

from ..errors import AutoDSNNError


class ShiftConfigError(AutoDSNNError, ValueError):
    """A shift configuration that cannot work; the message says what to change. Also a
    ``ValueError``: it reports a bad value, and callers catching those keep working."""


__all__ = ["ShiftConfigError"]
