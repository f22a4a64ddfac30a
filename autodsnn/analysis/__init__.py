"""The analysis: fronts, hypervolume, plots, report, summary and retrain. May import: store, trial, zoo, shift."""
from .pareto import (FrontInfo, ParetoError, compare, front_info, hypervolume, hypervolume_over_time, knee,
                     multi_run_info, non_dominated, reference_point)
from .report import write_report
from .retrain import RetrainError, pick_trial, retrain
from .summary import RunSummary, summarize

__all__ = ["FrontInfo", "ParetoError", "compare", "front_info", "hypervolume", "hypervolume_over_time", "knee",
           "multi_run_info", "non_dominated", "reference_point", "write_report", "RetrainError", "pick_trial",
           "retrain", "RunSummary", "summarize"]
