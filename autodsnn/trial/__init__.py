"""The trial: one configuration x budget -> result with energy. May import: zoo, shift."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .energy import EnergyMeter, EnergyReading
from .hparams import HParams, HParamsError, Task, config_key
from .objectives import OBJECTIVES, Objective, ObjectiveError, objective_values
from .records import TrialRequest, TrialResult, TrialStatus
from .run import run_request, train_trial

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "EnergyMeter", "EnergyReading", "HParams",
           "HParamsError", "Task", "config_key", "OBJECTIVES", "Objective", "ObjectiveError", "objective_values",
           "TrialRequest", "TrialResult", "TrialStatus", "run_request", "train_trial"]
