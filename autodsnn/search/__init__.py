"""The search: experiment, space, SMAC's ask/tell loop on Dask workers. May import: store, trial, zoo."""
from .experiment import Experiment, ExperimentError, parse_duration
from .facade import build_facade
from .optimize import OptimizeError, RunOutcome, optimize
from .space import SpaceError, load_space

__all__ = ["Experiment", "ExperimentError", "parse_duration", "OptimizeError", "RunOutcome", "build_facade", "optimize",
           "SpaceError", "load_space"]
