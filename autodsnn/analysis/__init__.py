"""The analysis: fronts, hypervolume, plots, report, summary and retrain. May import: store, trial, zoo, shift."""
from .importance import (HyperparameterImportance, ImportanceError, ObjectiveImportance, RunImportance,
                         hyperparameter_importance)
from .pareto import (Footprint, FrontInfo, ParetoError, compare, comparison_text, footprint, front_info, hypervolume,
                     hypervolume_curve, knee, multi_run_info, non_dominated, reference_point)
from .report import write_report
from .retrain import RetrainError, pick_trial, retrain
from .summary import RunSummary, summarize

__all__ = ["HyperparameterImportance", "ImportanceError", "ObjectiveImportance", "RunImportance",
           "hyperparameter_importance", "Footprint", "FrontInfo", "ParetoError", "compare", "comparison_text",
           "footprint", "front_info", "hypervolume", "hypervolume_curve", "knee", "multi_run_info", "non_dominated",
           "reference_point", "write_report", "RetrainError", "pick_trial", "retrain", "RunSummary", "summarize"]
