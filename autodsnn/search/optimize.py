"""`optimize`: multi-fidelity, multi-objective SMAC over DSNN designs, trials on Dask workers.

SMAC (``MultiFidelityFacade`` + ``Hyperband(incumbent_selection="highest_budget")`` + ``ParEGO``)
proposes (configuration, epochs) pairs through its ask/tell interface; this module runs them on
Dask workers and owns everything around that:

* the default configuration runs first, at the top budget, so every run can say how much it
  beat the default;
* each finished trial is committed to the run's SQLite store before the next is asked for;
* the run ends on time: trials get the run's deadline and stop themselves there (recorded as
  cut short with their partial metrics); SMAC's own walltime limit is not used;
* failures (exceptions, divergence, a worker killed by the OOM killer) become failed trials
  with their reason, told to SMAC as crashes, and the run goes on;
* Hyperband promotions continue from the lower-budget checkpoint of the same configuration
  (the LR schedule spans ``max_budget``, so continuing equals training from scratch);
* ``resume=True`` continues a run after Ctrl-C, a crash or kill -9: SMAC reloads its state
  (the scenario is kept identical, so SMAC never prompts), trials that were running are run
  again, and the wall-clock budget continues from what was used.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from ..zoo import models
from ..zoo.data import dataset_info, find_local, load_dataset, normalize_name
from .experiment import Experiment, ExperimentError
from ..analysis.pareto import ParetoError, front_info
from .space import load_space
from ..store import Run, StoreError
from ..trial.run import HParams, Task
from .worker import run_trial_task

CRASH_ERROR = 1.0
# Crashed trials never enter SMAC's objective normalization (it uses successful trials only),
# so a large crash cost cannot squash the scale of real results.
CRASH_OTHER = 1e9
STOP_GRACE_SECONDS = 120.0  # after the deadline: time for trials to evaluate and report


class OptimizeError(RuntimeError):
    """The run cannot go on; the message says why and what to do."""


@dataclass
class RunSummary:
    run_dir: Path
    counts: dict[str, int]
    elapsed: float
    highest_budget: float | None
    front: list[dict[str, Any]] = field(default_factory=list)
    default: dict[str, Any] | None = None
    stopped: str = ""

    def describe(self, objectives: tuple[str, ...]) -> str:
        lines = [f"run {self.run_dir}: {sum(self.counts.values())} trials "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(self.counts.items()))}) in {self.elapsed:.0f}s; {self.stopped}"]
        if self.highest_budget is None:
            lines.append("no trial finished: no Pareto front")
            return "\n".join(lines)
        lines.append(f"Pareto front at the highest budget reached ({self.highest_budget:g} epochs):")
        for row in self.front:
            vals = "  ".join(f"{o} {row['objectives'][o]:.4g}" for o in objectives)
            tag = " (default)" if row["is_default"] else ""
            lines.append(f"  trial {row['trial_id']:>4}  {vals}  {_short_config(row['config'])}{tag}")
        if self.default is not None:
            d = self.default["objectives"]
            lines.append("default configuration: " + "  ".join(f"{o} {d[o]:.4g}" for o in objectives))
            dominating = [r for r in self.front if all(r["objectives"][o] <= d[o] for o in objectives)
                          and any(r["objectives"][o] < d[o] for o in objectives)]
            lines.append(f"{len(dominating)} front configuration(s) dominate the default")
        return "\n".join(lines)


def _short_config(config: dict[str, Any]) -> str:
    keys = ("shift_type", "shift_depth", "weight_bits", "act_int_bits", "act_frac_bits", "optimizer", "lr")
    parts = []
    for k in keys:
        if k in config:
            v = config[k]
            parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return " ".join(parts)


def objective_values(result: dict[str, Any], objectives: tuple[str, ...]) -> dict[str, float] | None:
    """The objective vector of a finished trial (None when it failed)."""
    if result.get("status") != "ok" or result.get("val_error") is None:
        return None
    energy, total = result.get("energy_kwh") or 0.0, result.get("energy_kwh_total") or 0.0
    analytic = result.get("analytic") or {}
    values = {
        "error": result["val_error"],
        "energy": total,
        "emissions": (result.get("emissions_kg") or 0.0) * (total / energy if energy else 1.0),
        "inference_energy": result.get("inference_energy_kwh"),
        "analytic_energy": analytic.get("energy_pj_per_sample"),
        "model_bits": analytic.get("model_bits"),
    }
    out = {o: values[o] for o in objectives}
    if any(v is None or not math.isfinite(float(v)) for v in out.values()):
        return None
    return {k: float(v) for k, v in out.items()}


# --- Dask ----------------------------------------------------------------------------------------

def configure_dask() -> None:
    """Worker settings measured to matter for torch on CPU (design.md)."""
    import dask

    dask.config.set({
        # Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536, which halves torch CPU training speed.
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        # A worker killed mid-trial (OOM killer) must surface as a failure, not a silent re-run.
        "distributed.scheduler.allowed-failures": 0,
        "distributed.worker.daemon": False,
    })


def start_client(workers: int, scheduler: str | None) -> tuple[Any, Any, int, int]:
    """(client, cluster or None, trial slots, torch threads per trial). A LocalCluster of
    single-task worker processes splits the cores; an existing scheduler is used as it is."""
    from distributed import Client, LocalCluster

    configure_dask()
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise OptimizeError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; start it with "
                                "`dask scheduler` and workers with `dask worker ADDRESS --nthreads 1`") from None
        info = client.scheduler_info()
        slots = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values())
        if slots == 0:
            client.wait_for_workers(1, timeout=60)
            slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
        return client, None, max(slots, 1), 0
    cores = os.cpu_count() or 1
    threads = max(1, cores // workers)  # CPU threads split evenly: oversubscribing was 5x slower
    import dask

    dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": threads,
                     "distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": threads})
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address=None, silence_logs=logging.CRITICAL)  # we report failures ourselves
    return Client(cluster), cluster, workers, threads


# --- SMAC ----------------------------------------------------------------------------------------

def build_facade(experiment: Experiment, space: Any, run_dir: Path, *, overwrite: bool) -> Any:
    """SMAC's multi-fidelity facade with the parts known to work with two or more objectives."""
    from smac import MultiFidelityFacade, Scenario
    from smac.intensifier.hyperband import Hyperband
    from smac.multi_objective.parego import ParEGO

    objectives = list(experiment.objectives)
    scenario = Scenario(space, name="smac", output_directory=run_dir / "smac", deterministic=True,
                        objectives=objectives if len(objectives) > 1 else objectives[0],
                        crash_cost=[CRASH_ERROR if o == "error" else CRASH_OTHER for o in objectives]
                        if len(objectives) > 1 else CRASH_ERROR if objectives[0] == "error" else CRASH_OTHER,
                        n_trials=10 ** 9,  # we cap trials and time ourselves: the scenario never changes
                        min_budget=float(experiment.min_budget), max_budget=float(experiment.max_budget),
                        seed=int(experiment.seed))
    initial = MultiFidelityFacade.get_initial_design(scenario, n_configs=experiment.initial_configs,
                                                     additional_configs=[space.get_default_configuration()])
    # "highest_budget": SMAC's other incumbent selections crash with two objectives (design.md).
    intensifier = Hyperband(scenario, eta=int(experiment.eta), incumbent_selection="highest_budget")
    kwargs: dict[str, Any] = {"initial_design": initial, "intensifier": intensifier, "overwrite": overwrite,
                              "logging_level": logging.ERROR}
    if len(objectives) > 1:
        kwargs["multi_objective_algorithm"] = ParEGO(scenario)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MultiFidelityFacade(scenario, target_function=_smac_target, **kwargs)


def _smac_target(config: Any, seed: int = 0, budget: float = 0.0) -> float:
    """SMAC's facade wants a target with this signature; trials run through our own Dask loop
    (ask/tell), never through SMAC's runner."""
    raise RuntimeError("trials run through autodsnn.optimize's Dask loop, not SMAC's runner")


def _plain_config(config: Any) -> dict[str, Any]:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in dict(config).items()}


def _bracket_epochs(experiment: Experiment) -> float:
    """Epochs of Hyperband's most aggressive bracket (min_budget to max_budget): each of its
    s + 1 rungs runs eta^(s-i) configurations for max_budget / eta^(s-i) epochs, max_budget in all."""
    eta, lo, hi = experiment.eta, experiment.min_budget, experiment.max_budget
    s = int(math.floor(math.log(hi / lo, eta) + 1e-9))
    return (s + 1) * hi


@dataclass
class _Pending:
    info: Any
    config_id: int
    config: dict[str, Any]
    budget: float
    started: float
    is_default: bool


class _Optimizer:
    """The ask -> submit -> wait -> tell -> store loop (one instance per run)."""

    def __init__(self, experiment: Experiment, run: Run, facade: Any, client: Any, slots: int, threads: int,
                 deadline: float, elapsed_before: float, log: Callable[[str], None],
                 trial_fn: Callable[[dict[str, Any]], dict[str, Any]] = run_trial_task) -> None:
        self.exp, self.run, self.smac, self.client = experiment, run, facade, client
        self.trial_fn = trial_fn
        self.slots, self.threads, self.deadline, self.log = slots, threads, deadline, log
        self.elapsed_before = elapsed_before
        self.started = time.time()
        self.pending: dict[Any, _Pending] = {}
        self.finished: dict[tuple[int, float], dict[str, Any]] = {}
        self.finished_waiters: dict[tuple[int, float], list[Any]] = {}
        self.exhausted = False
        self.warned_budget = False
        self.task = Task(dataset=experiment.dataset, model=experiment.model, data_dir=experiment.data_dir,
                         val_fraction=experiment.val_fraction, train_subset=experiment.train_subset,
                         device=experiment.device, schedule_epochs=float(experiment.max_budget),
                         inference_kernels=experiment.inference_kernels)
        self.default = facade.scenario.configspace.get_default_configuration()

    # -- bookkeeping --
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def trial_cap_reached(self) -> bool:
        return self.exp.trials is not None and len(self.run) + len(self.pending) >= self.exp.trials

    def submit(self, info: Any) -> None:
        config = _plain_config(info.config)
        config_id = self.smac.runhistory.get_config_id(info.config)
        budget = float(info.budget)
        checkpoint = self.run.checkpoint_path(config_id, budget)
        resume = self.run.best_checkpoint_below(config_id, budget)
        trial_deadline = self.deadline
        if self.exp.trial_timeout:
            trial_deadline = min(trial_deadline, time.time() + self.exp.trial_timeout)
        payload = {"hparams": {**self.exp.fixed, **config}, "budget": budget, "task": self.task.to_dict(),
                   "seed": int(self.exp.seed), "threads": self.threads, "checkpoint": str(checkpoint),
                   "resume_from": str(resume) if resume else None, "deadline": trial_deadline}
        future = self.client.submit(self.trial_fn, payload, pure=False, key=f"trial-c{config_id}-b{budget:g}-{time.time_ns()}")
        self.pending[future] = _Pending(info, config_id, config, budget, time.time(), info.config == self.default)

    def fill(self) -> None:
        """Ask SMAC for trials until every slot is busy. A (config, budget) that already finished
        is told again from its stored result instead of being trained twice."""
        from smac.main.exceptions import ConfigurationSpaceExhaustedException

        asked = 0
        while (len(self.pending) < self.slots and time.time() < self.deadline and not self.trial_cap_reached()
               and not self.exhausted):
            try:
                info = self.smac.ask()
            except ConfigurationSpaceExhaustedException:
                self.exhausted = True  # a small discrete space is fully explored: finish what runs
                self.log("the search space is exhausted: every configuration has been proposed")
                break
            asked += 1
            key = (self.smac.runhistory.get_config_id(info.config), float(info.budget))
            if key in self.finished:
                self._tell(info, self.finished[key])
            elif any((p.config_id, p.budget) == key for p in self.pending.values()):
                # Hyperband asked for a trial we are already running (the default at the top
                # budget): tell it when that one ends.
                self.finished_waiters.setdefault(key, []).append(info)
            else:
                self.submit(info)
            if asked > 10 * self.slots + 50:  # SMAC keeps re-asking what is running: wait instead
                break
        if asked:
            # Persist what SMAC handed out before it runs: a kill after a trial is stored but before
            # the next tell then leaves it RUNNING in SMAC's saved state, and --resume tells it from
            # the store; unsaved, SMAC re-proposed the same configuration and it trained twice.
            self.smac.optimizer.save()

    def _tell(self, info: Any, result: dict[str, Any]) -> None:
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType

        values = objective_values(result, self.exp.objectives)
        if values is not None:
            cost = [values[o] for o in self.exp.objectives]
            status = StatusType.SUCCESS
        else:
            cost = [CRASH_ERROR if o == "error" else CRASH_OTHER for o in self.exp.objectives]
            status = StatusType.TIMEOUT if result.get("status") == "cut_short" else StatusType.CRASHED
        self.smac.tell(info, TrialValue(cost=cost if len(cost) > 1 else cost[0], time=float(result.get("wall_time") or 0.0),
                                        status=status, additional_info={"reason": result.get("reason") or ""}),
                       save=True)

    def collect(self, future: Any) -> dict[str, Any]:
        pending = self.pending.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - the worker died or the task could not run
            name = type(exc).__name__
            why = "its worker died (killed, e.g. by the out-of-memory killer)" if name == "KilledWorker" else str(exc)
            result = {"status": "failed", "reason": f"worker failure: {name}: {why}".splitlines()[0],
                      "budget": pending.budget,
                      "wall_time": time.time() - pending.started, "hparams": pending.config}
        objectives = objective_values(result, self.exp.objectives) or {}
        trial_id = self.run.add(config_id=pending.config_id, config=pending.config, budget=pending.budget,
                                seed=int(self.exp.seed), result=result, objectives=objectives,
                                is_default=pending.is_default, worker=result.get("worker"),
                                started_at=pending.started, ended_at=time.time())
        (self.run.path / "logs" / f"trial-{trial_id:05d}.json").write_text(
            json.dumps({"trial_id": trial_id, "config_id": pending.config_id, "budget": pending.budget,
                        "config": pending.config, **result}, indent=1, default=str))
        self._prune_checkpoints(pending.config_id, pending.budget)
        self._tell(pending.info, result)
        key = (pending.config_id, pending.budget)
        self.finished[key] = result
        for info in self.finished_waiters.pop(key, []):
            self._tell(info, result)
        self._report(trial_id, pending, result, objectives)
        return result

    def _prune_checkpoints(self, config_id: int, budget: float) -> None:
        """Keep only the highest-budget checkpoint of a configuration (promotions continue from it)."""
        keep = self.run.best_checkpoint_below(config_id, budget)
        for p in (self.run.path / "checkpoints").glob(f"config{config_id}-budget*.pt"):
            if keep is not None and p != keep:
                p.unlink(missing_ok=True)

    def _report(self, trial_id: int, pending: _Pending, result: dict[str, Any], objectives: dict[str, float]) -> None:
        counts = self.run.counts()
        left = max(0.0, self.deadline - time.time())
        vals = "  ".join(f"{o} {v:.4g}" for o, v in objectives.items()) or (result.get("reason") or "")[:80]
        tag = " default" if pending.is_default else ""
        self.log(f"[{trial_id:>4}] budget {pending.budget:>4g}  {result.get('status'):<9} {vals}  "
                 f"{result.get('wall_time') or 0:.1f}s{tag} | ok {counts.get('ok', 0)}, failed {counts.get('failed', 0)}"
                 + (f", {left / 60:.1f} min left" if math.isfinite(left) else ""))
        self._maybe_warn_budget(pending, result)

    def _maybe_warn_budget(self, pending: _Pending, result: dict[str, Any]) -> None:
        if self.warned_budget or result.get("status") != "ok" or not math.isfinite(self.deadline):
            return
        self.warned_budget = True
        per_epoch = float(result.get("wall_time") or 0.0) / max(pending.budget, 1e-9)
        need = _bracket_epochs(self.exp) * per_epoch / self.slots
        left = self.deadline - time.time()
        if need > left:
            self.log(f"warning: one Hyperband bracket up to {self.exp.max_budget:g} epochs needs about {need:.0f}s "
                     f"with {self.slots} worker(s) (measured {per_epoch:.1f}s per epoch), {left:.0f}s are left: the "
                     "front will come from the highest budget reached; raise --budget or lower --max-budget")

    def loop(self) -> str:
        from distributed import wait

        self.submit_default()
        last_save = 0.0
        while True:
            if time.time() < self.deadline and not self.trial_cap_reached():
                self.fill()
            if not self.pending:
                break
            timeout = max(0.1, min(5.0, self.deadline - time.time())) if math.isfinite(self.deadline) else 5.0
            try:
                wait(list(self.pending), timeout=timeout, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass  # nothing finished yet: time to save progress and check the deadline
            done = [f for f in self.pending if f.done()]
            for future in done:
                is_default = self.pending[future].is_default
                result = self.collect(future)
                self._stop_if_hopeless(result, is_default)
            if time.time() - last_save > 5:
                self.run.set_meta("elapsed_seconds", self.elapsed())
                last_save = time.time()
            if time.time() >= self.deadline + STOP_GRACE_SECONDS:
                self._abandon("did not stop within the grace period after the deadline")
                break
        self.run.set_meta("elapsed_seconds", self.elapsed())
        if time.time() >= self.deadline:
            return "stopped at the wall-clock budget"
        if self.trial_cap_reached():
            return f"stopped after {self.exp.trials} trials"
        if self.exhausted:
            return "stopped: the search space is exhausted"
        return "finished"

    def _stop_if_hopeless(self, result: dict[str, Any], is_default: bool) -> None:
        """The default configuration failing for a reason other than divergence (or the first
        five trials all failing) means the setup is broken: say why instead of burning the budget."""
        reason = str(result.get("reason") or "")
        if result.get("status") != "failed" or reason.startswith("diverged"):
            return
        counts = self.run.counts()
        if is_default or (counts.get("failed", 0) >= 5 and not counts.get("ok")):
            self._abandon("the run stopped: its setup is broken")
            raise OptimizeError(f"the {'default configuration' if is_default else 'first trials'} failed, so every "
                                f"trial would: {reason}")

    def submit_default(self) -> None:
        """The default configuration at the top budget, first, unless a resumed run has it."""
        from smac.runhistory.dataclasses import TrialInfo

        top = float(self.exp.max_budget)
        if (any(r.is_default and r.budget == top for r in self.run.trials())
                or any(p.is_default and p.budget == top for p in self.pending.values())):
            return  # stored, or being re-run after an interruption
        # A deterministic scenario runs every configuration with one seed, which the intensifier
        # only knows once asked: take it from the first trial, so that Hyperband's own default
        # trial at the top budget is recognized as this one.
        first = self.smac.ask()
        info = TrialInfo(config=self.default, budget=float(self.exp.max_budget), seed=first.seed)
        self.smac.runhistory.add_running_trial(info)  # registers the config id; re-run on resume if lost
        self.smac.optimizer.save()
        self.submit(info)
        self.submit(first)

    def _abandon(self, why: str) -> None:
        for future, pending in list(self.pending.items()):
            future.cancel()
            result = {"status": "lost", "reason": why, "budget": pending.budget,
                      "wall_time": time.time() - pending.started, "hparams": pending.config}
            self.run.add(config_id=pending.config_id, config=pending.config, budget=pending.budget,
                         seed=int(self.exp.seed), result=result, objectives={}, is_default=pending.is_default,
                         started_at=pending.started)
            self.pending.pop(future)

    def interrupt(self) -> None:
        """Ctrl-C: cancel what runs; those trials are re-run on --resume (SMAC lists them as running)."""
        for future in list(self.pending):
            future.cancel()
        self.run.set_meta("elapsed_seconds", self.elapsed())


def summarize(run: Run, objectives: tuple[str, ...], stopped: str = "") -> RunSummary:
    """The front at the highest budget that has successful trials, and the default's row there."""
    counts, elapsed = run.counts(), float(run.meta("elapsed_seconds") or 0.0)
    try:
        info = front_info(run, objectives)
    except ParetoError:  # no successful trial yet
        return RunSummary(run.path, counts, elapsed, None, stopped=stopped)
    as_dict = lambda r: {"trial_id": r.trial_id, "config": r.config, "objectives": r.objectives,  # noqa: E731
                         "is_default": r.is_default, "budget": r.budget}
    default = None if info.default_index is None else as_dict(info.trials[info.default_index])
    return RunSummary(run.path, counts, elapsed, info.budget, [as_dict(r) for r in info.front], default, stopped)


def _check_experiment(experiment: Experiment) -> tuple[int, Any]:
    """Fail before any trial runs: data set, model and space must all resolve."""
    try:
        name = normalize_name(experiment.dataset)
        info = dataset_info(name)
        if name not in ("digits", "synthetic", "imagenet") and find_local(name, experiment.data_dir) is None:
            load_dataset(name, data_dir=experiment.data_dir)  # the download path, or its one-line error
        max_layers = models.num_convertible_layers(experiment.model, num_classes=info.num_classes,
                                                   input_size=info.input_shape)
    except ValueError as exc:  # DatasetNotFoundError is one
        raise ExperimentError(str(exc)) from None
    space = load_space(experiment.space, max_layers=max_layers, seed=experiment.seed)
    # Every default/fixed value must be something train accepts.
    HParams.from_dict({**experiment.fixed, **_plain_config(space.get_default_configuration())})
    return max_layers, space


def optimize(experiment: Experiment, run_dir: str | Path, *, resume: bool = False, client: Any = None,
             log: Callable[[str], None] | None = None,
             trial_fn: Callable[[dict[str, Any]], dict[str, Any]] = run_trial_task) -> RunSummary:
    """Run (or continue) an optimization; returns the summary of the run directory.
    ``trial_fn`` runs one trial on a worker (importable; the platform benchmark swaps in a sleeper)."""
    log = log or (lambda s: print(s, flush=True))
    run_dir = Path(run_dir)
    if resume:
        run = Run.open(run_dir)
        saved = Experiment.from_dict(run.experiment)
        diff = saved.differences(experiment)
        if diff:
            raise ExperimentError(f"--resume {run_dir}: setting {diff[0]!r} differs from the saved run "
                                  f"({getattr(saved, diff[0])!r} vs {getattr(experiment, diff[0])!r}); only "
                                  f"{', '.join(Experiment.RESUMABLE)} may change on resume")
        run.set_meta("experiment", experiment.to_dict())
        max_layers, space = _check_experiment(experiment)
    else:
        max_layers, space = _check_experiment(experiment)  # before the run directory exists
        run = Run.create(run_dir, experiment.to_dict())
    facade = build_facade(experiment, space, run_dir, overwrite=not resume)
    elapsed_before = float(run.meta("elapsed_seconds") or 0.0)
    remaining = (experiment.budget - elapsed_before) if experiment.budget else math.inf
    if remaining <= 0:
        run.close()
        raise OptimizeError(f"the run's budget of {experiment.budget:.0f}s is used up: pass a larger --budget to continue")
    deadline = time.time() + remaining
    own_client = client is None
    cluster = None
    if own_client:
        client, cluster, slots, threads = start_client(experiment.workers, experiment.scheduler)
    else:
        slots = max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()))
        threads = 0
    loop = _Optimizer(experiment, run, facade, client, slots, threads, deadline, elapsed_before, log, trial_fn)
    log(f"optimizing {experiment.model} on {experiment.dataset}: space {experiment.space} ({len(list(space.values()))} "
        f"hyperparameters, shift depth up to {max_layers}), objectives {', '.join(experiment.objectives)}, "
        f"budgets {experiment.min_budget:g}..{experiment.max_budget:g} epochs (eta {experiment.eta}), "
        f"{slots} worker slot(s), " + (f"{remaining:.0f}s of wall clock" if math.isfinite(remaining) else "no time limit"))
    try:
        with warnings.catch_warnings():
            # SMAC's random forest averages empty leaves early in a run: numpy's notices say
            # nothing to our users.
            warnings.filterwarnings("ignore", message="Mean of empty slice")
            warnings.filterwarnings("ignore", message="invalid value encountered")
            if resume:
                _rerun_interrupted(loop)
            stopped = loop.loop()
    except KeyboardInterrupt:
        loop.interrupt()
        stopped = f"interrupted: continue with `autodsnn optimize --resume {run_dir}`"
        log(stopped)
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()
    summary = summarize(run, experiment.objectives, stopped)
    run.close()
    return summary


def _rerun_interrupted(loop: _Optimizer) -> None:
    """Trials SMAC still lists as running were lost with the previous process: run them again."""
    from smac.runhistory.dataclasses import TrialInfo
    from smac.runhistory.enumerations import StatusType

    rh = loop.smac.runhistory
    stored = {(r.config_id, r.budget): r for r in loop.run.trials()}
    for key, value in list(rh.items()):
        if value.status == StatusType.RUNNING:
            config = rh.get_config(key.config_id)
            info = TrialInfo(config=config, instance=key.instance, seed=key.seed, budget=key.budget)
            row = stored.get((key.config_id, float(key.budget)))
            if row is not None:
                loop._tell(info, row.result)  # finished but not yet told: tell from the store
            else:
                loop.log(f"re-running trial (config {key.config_id}, budget {key.budget:g}) lost by the previous run")
                loop.submit(info)
