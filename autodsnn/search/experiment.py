"""`Experiment`: everything one optimization run is about, saved in its run directory.

Experiment files (experiments/*.yaml) set only what differs from the defaults here, and
command-line flags override them. ``--resume`` compares the saved experiment with the flags.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import AutoDSNNError
from ..resources import project_folder
from ..trial.hparams import Task, inference_kernels
from ..trial.objectives import OBJECTIVES
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ExperimentError(AutoDSNNError, ValueError):
    """An experiment that cannot run; the message names the setting and the fix."""


def parse_duration(text: str | float | int | None) -> float | None:
    """'90s', '30m', '48h', '2d' or plain seconds -> seconds."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise ExperimentError(f"cannot read duration {text!r}: write e.g. 90s, 30m, 48h or 2d")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _setting(default: Any, help: str, **meta: Any) -> Any:  # noqa: A002 - argparse's own word
    return field(default=default, metadata={"help": help, **meta})


def _names(value: str | Any) -> tuple[str, ...]:
    """'a, b' or ['a', 'b,c'] -> ('a', 'b', 'c')."""
    parts = (value,) if isinstance(value, str) else tuple(value)
    return tuple(n.strip() for part in parts for n in str(part).split(",") if n.strip())


# The search strategies: SMAC's multi-fidelity BO, and two baselines built from SMAC's own facades.
SEARCH_OPTIMIZERS = ("smac", "hyperband", "random")


@dataclass(frozen=True)
class Experiment:
    """Everything one optimization run is about. Each field's help text (metadata) is also its
    `autodsnn optimize` flag's help: the flags are derived from these fields."""

    name: str = _setting("default", "run name: the run directory is runs/<name>-<time>")
    optimizer: str = _setting("smac", "search strategy: smac (its model + Hyperband + ParEGO), hyperband (random "
                                      "sampling, the same Hyperband schedule) or random (random search at max_budget)",
                              choices=lambda: SEARCH_OPTIMIZERS)
    dataset: str = _setting("fashion-mnist", "data set by name (`autodsnn datasets`)")
    model: str = _setting("mnist-conv", "model by name (`autodsnn models`)")
    space: str = _setting("small", "search space: a built-in name (dsnn, small, per_layer) or a YAML path")
    # error against measured inference energy: the trade-off DSNNs exist for (training energy on a
    # CPU without counters is wall time in disguise and favours float nets)
    objectives: tuple[str, ...] = _setting(("error", "inference_energy"), "one to three objectives, comma-separated: "
                                           + ", ".join(OBJECTIVES))
    log_objectives: tuple[str, ...] = _setting((), "objectives SMAC models on a log scale, comma-separated (e.g. "
                                               "analytic_energy: float and shift nets differ tenfold); the store, "
                                               "fronts and hypervolume keep the values themselves")
    min_budget: float = _setting(1.0, "lowest fidelity in epochs", parse=float)
    max_budget: float = _setting(9.0, "highest fidelity in epochs", parse=float)
    eta: int = _setting(3, "Hyperband's reduction factor between rungs", parse=int)
    budget: float | None = _setting(300.0, "wall clock for the whole run: 90s, 30m, 48h")
    trials: int | None = _setting(None, "stop after this many trials", parse=int)
    trial_timeout: float | None = _setting(None, "cap one trial: e.g. 10m")
    workers: int = _setting(2, "local Dask worker processes", parse=int)
    scheduler: str | None = _setting(None, "an existing Dask scheduler: its address (tcp://host:port, tls://host:port) "
                                           "or its scheduler file (JSON)")
    tls_ca_file: str | None = _setting(None, "TLS: the certificate authority a tls:// scheduler's certificate is "
                                             "checked against (default: Dask's distributed.comm.tls config)")
    tls_cert: str | None = _setting(None, "TLS: this client's certificate (PEM)")
    tls_key: str | None = _setting(None, "TLS: this client's private key (PEM; default: inside --tls-cert)")
    checkpoint_store: str | None = _setting(None, "where trial checkpoints go: default the run folder (sent "
                                                  "through Dask to remote workers); a folder every worker mounts, "
                                                  "or an fsspec URL (s3://, gs://, file://)")
    seed: int = _setting(0, "seed of SMAC and of every trial", parse=int)
    data_dir: str | None = _setting(None, "where the data set's files are")
    val_fraction: float = _setting(0.1, "fraction of the training split held out for validation", parse=float)
    train_subset: float | None = _setting(None, "fraction of the training part every trial trains on", parse=float)
    device: str = _setting("auto", "auto, cpu, cuda or cuda:N")
    inference_kernels: str = _setting("float", "how each trial's measured inference pass runs",
                                      choices=inference_kernels)
    inference_window: float = _setting(0.25, "seconds per metered inference repetition", parse=float)
    inference_repeats: int = _setting(3, "metered inference repetitions per batch size", parse=int)
    inference_batch: int = _setting(64, "throughput batch of the inference measurement", parse=int)
    initial_configs: int = _setting(8, "random configurations before SMAC's model takes over", parse=int)
    fixed: dict[str, Any] = field(default_factory=dict)  # hyperparameters fixed for every trial (file only)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen)
        objectives = _names(self.objectives)
        set_("objectives", objectives)
        set_("log_objectives", _names(self.log_objectives or ()))
        set_("budget", parse_duration(self.budget))
        set_("trial_timeout", parse_duration(self.trial_timeout))
        bad = [o for o in objectives if o not in OBJECTIVES]
        if bad:
            close = difflib.get_close_matches(bad[0], list(OBJECTIVES), n=1)
            raise ExperimentError(f"unknown objective {bad[0]!r}: "
                                  + (f"did you mean {close[0]!r}? " if close else "") + f"use {', '.join(OBJECTIVES)}")
        if not 1 <= len(objectives) <= 3 or len(set(objectives)) != len(objectives):
            raise ExperimentError(f"give one to three different objectives, got {', '.join(objectives)}")
        if not 0 < self.min_budget <= self.max_budget:
            raise ExperimentError(f"need 0 < min_budget <= max_budget, got {self.min_budget} and {self.max_budget}")
        for i, name in enumerate(self.log_objectives):
            if name not in objectives:
                close = difflib.get_close_matches(name, objectives, n=1)
                raise ExperimentError(f"log_objectives: {name!r} is not an objective of this run: "
                                      + (f"did you mean {close[0]!r}?" if close else
                                         f"use some of {', '.join(objectives)}"))
            if name in self.log_objectives[:i]:
                raise ExperimentError(f"log_objectives: {name!r} is named twice: name each objective once")
            if not OBJECTIVES[name].positive:
                raise ExperimentError(f"log_objectives: {name!r} can be 0, which has no logarithm: log only "
                                      f"{', '.join(o for o in objectives if OBJECTIVES[o].positive) or 'energies'}")
        if self.optimizer not in SEARCH_OPTIMIZERS:
            raise ExperimentError(f"unknown optimizer {self.optimizer!r}: use one of {', '.join(SEARCH_OPTIMIZERS)} "
                                  "(the training optimizer of every trial is the hyperparameter 'optimizer' in fixed)")
        if self.eta < 2:
            raise ExperimentError(f"eta must be >= 2, got {self.eta}")
        if self.workers < 1:
            raise ExperimentError(f"workers must be >= 1, got {self.workers}")
        if self.budget is not None and self.budget <= 0:
            raise ExperimentError("budget must be positive")
        if self.trials is not None and self.trials < 1:
            raise ExperimentError(f"trials must be >= 1, got {self.trials}")
        if self.inference_kernels not in inference_kernels():
            raise ExperimentError(f"inference_kernels: {self.inference_kernels!r} is not one of "
                                  f"{', '.join(inference_kernels())}")
        try:
            self.task()  # the trials' settings (inference window, repeats, batch) are valid
        except ValueError as exc:
            raise ExperimentError(str(exc)) from None

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "Experiment":
        p = Path(path)
        if not p.exists() and not p.suffix:
            p = project_folder("experiments") / f"{path}.yaml"
        if not p.exists():
            names = ", ".join(sorted(q.stem for q in project_folder("experiments").glob("*.yaml")))
            raise ExperimentError(f"experiment file {path} not found: use a path or one of {names}")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ExperimentError(f"{p} must be a YAML mapping of experiment settings")
        return cls.from_dict({**data, **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Experiment":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ExperimentError(f"unknown experiment setting {unknown[0]!r}: "
                                  f"valid ones are {', '.join(sorted(known))}")
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["objectives"] = list(self.objectives)
        d["log_objectives"] = list(self.log_objectives)
        return d

    def replace(self, **changes: Any) -> "Experiment":
        return dataclasses.replace(self, **changes)

    def task(self) -> Task:
        """What every trial of the run trains on. The learning-rate schedule spans ``max_budget``,
        so a Hyperband promotion continuing a lower-budget checkpoint equals training from scratch.
        Trials validate once, after their last epoch: the search uses only that figure."""
        return Task(dataset=self.dataset, model=self.model, data_dir=self.data_dir, val_fraction=self.val_fraction,
                    train_subset=self.train_subset, device=self.device, schedule_epochs=float(self.max_budget),
                    validate_each_epoch=False,
                    inference_kernels=self.inference_kernels, inference_window=self.inference_window,
                    inference_repeats=self.inference_repeats, inference_batch=self.inference_batch)

    # Settings that may change on --resume without changing what the run is.
    RESUMABLE = ("budget", "trials", "trial_timeout", "workers", "scheduler", "device", "data_dir", "tls_ca_file",
                 "tls_cert", "tls_key", "checkpoint_store")

    def differences(self, other: "Experiment") -> list[str]:
        """Settings that differ and would make ``other`` a different run."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if k not in self.RESUMABLE and a[k] != b[k]]
