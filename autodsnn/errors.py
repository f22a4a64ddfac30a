"""The base class of every error AutoDSNN raises for a request it cannot serve.

Each domain error (``ShiftConfigError``, ``DatasetNotFoundError``, ``ExperimentError``, ...)
derives from :class:`AutoDSNNError`, so a caller (the CLI, a notebook) catches one class. The
message is one line: the problem, where it is (file, layer, hyperparameter) and the fix.
"""
from __future__ import annotations


class AutoDSNNError(Exception):
    """A request AutoDSNN cannot serve; the message names the problem, where it is and the fix."""
