"""The trial: one configuration x budget -> result with energy. May import: zoo, shift."""
from .run import (HParams, Task, TrialResult, config_key, load_checkpoint, result_summary, save_checkpoint,
                  train_trial)

__all__ = ["HParams", "Task", "TrialResult", "config_key", "load_checkpoint", "result_summary", "save_checkpoint",
           "train_trial"]
