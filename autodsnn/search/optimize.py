"""`optimize`: multi-fidelity, multi-objective SMAC over DSNN designs, trials on Dask workers.

SMAC (``MultiFidelityFacade`` + ``Hyperband(incumbent_selection="highest_budget")`` + ``ParEGO``)
proposes (configuration, epochs) pairs through its ask/tell interface; this module runs them on
Dask workers and owns everything around that:

* the default configuration runs first, at the top budget, so every run can say how much it
  beat the default; a default whose worker died (OOM killer, preemption) is run again, up to
  ``DEFAULT_RETRIES`` times (the lost attempt stays in the store as lost), and ``--resume`` runs a
  default that never finished;
* each finished trial is committed to the run's SQLite store before the next is asked for;
* the run ends on time: trials get the run's deadline and stop themselves there (recorded as
  cut short with their partial metrics); SMAC's own walltime limit is not used;
* failures (exceptions, divergence, a worker killed by the OOM killer) become failed trials
  with their reason, told to SMAC as crashes, and the run goes on;
* Hyperband promotions continue from the lower-budget checkpoint of the same configuration
  (the LR schedule spans ``max_budget``, so continuing equals training from scratch), on
  whichever worker they run: checkpoints reach remote workers through Dask or a storage URL
  (search.checkpoints), and every path a worker gets is absolute, resolved here;
* ``resume=True`` continues a run after Ctrl-C, a crash or kill -9: SMAC reloads its state
  (the scenario is kept identical, so SMAC never prompts) and catches up from the store on what
  it had not saved, trials that were running are run again, and the wall-clock budget continues
  from what was used. The store is the record; SMAC's files are saved every
  ``SMAC_SAVE_SECONDS``, so the driver's cost per trial does not grow with the history.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
import time
from collections import Counter, deque
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_atomically
from ..errors import AutoDSNNError
from ..store import Run
from ..trial import HParams, TrialRequest, TrialResult, TrialStatus
from ..trial.hparams import plain
from ..trial.objectives import crash_costs, objective_values, show
from ..zoo import convertible_layer_names, dataset_info, find_local, load_dataset, normalize_name
from .checkpoints import CheckpointStore, choose_transport
from .cluster import nanny_environ_kept, security, start_client, worker_slots
from .experiment import Experiment, ExperimentError
from .facade import build_facade, set_parallel_trials
from .smac_state import save_smac_state
from .space import load_space, space_path
from .worker import run_trial_task

log = logging.getLogger(__name__)
STOP_GRACE_SECONDS = 120.0  # after the deadline: time for trials to evaluate and report
# SMAC's saved state is a cache of the run store (every ask and result is committed there at
# once): saving it costs time proportional to the history, so it is saved at most this often,
# and at the end. --resume rebuilds what a kill lost from the store (_catch_up_with_store).
SMAC_SAVE_SECONDS = 10.0
# A worker dying under the default trial says nothing about the setup (another job's OOM kill,
# preemption): run the default again this many times before the run stops.
DEFAULT_RETRIES = 2
TrialFunction = Callable[[TrialRequest], TrialResult]


class OptimizeError(AutoDSNNError, RuntimeError):
    """The run cannot go on; the message says why and what to do."""


@dataclass
class RunOutcome:
    """How an optimization call ended; the run's trials and front are in its store."""

    run_dir: Path
    stopped: str


def _plain_config(config: Any) -> dict[str, Any]:
    return {k: plain(v) for k, v in dict(config).items()}


def _bracket_epochs(experiment: Experiment) -> float:
    """Epochs of Hyperband's most aggressive bracket (min_budget to max_budget): each of its
    s + 1 rungs runs eta^(s-i) configurations for max_budget / eta^(s-i) epochs, max_budget in all."""
    eta, lo, hi = experiment.eta, experiment.min_budget, experiment.max_budget
    s = int(math.floor(math.log(hi / lo, eta) + 1e-9))
    return (s + 1) * hi


def _worker_died(exc: BaseException) -> bool:
    """Whether a trial's future failed because its worker process died, not because the trial raised."""
    return type(exc).__name__ == "KilledWorker"


def _default_finished(result: TrialResult) -> bool:
    """A stored default that --resume keeps: it trained to the end, or diverged (seeded: it would again)."""
    return result.status is TrialStatus.OK or (result.status is TrialStatus.FAILED
                                               and (result.reason or "").startswith("diverged"))


@dataclass
class _Pending:
    info: Any
    config_id: int
    config: dict[str, Any]
    budget: float
    started: float
    is_default: bool
    checkpoint: str | None = None   # where its checkpoint goes (run folder or URL)
    resume: str | None = None       # the checkpoint it continues from


class _Optimizer:
    """The ask -> submit -> wait -> tell -> store loop (one instance per run)."""

    def __init__(self, experiment: Experiment, run: Run, facade: Any, client: Any, slots: int, threads: int,
                 deadline: float, elapsed_before: float, trial_fn: TrialFunction = run_trial_task,
                 checkpoints: CheckpointStore | None = None, transport: str = "shared",
                 started: float | None = None) -> None:
        self.exp, self.run, self.smac, self.client = experiment, run, facade, client
        self.checkpoints = checkpoints or CheckpointStore(run.path / "checkpoints")
        self.transport = transport
        self.trial_fn = trial_fn
        self.slots, self.threads, self.deadline = slots, threads, deadline
        self.elapsed_before = elapsed_before
        self.started = time.time() if started is None else started  # the run's wall clock counts from here
        self.pending: dict[Any, _Pending] = {}
        self.finished: dict[tuple[int, float], TrialResult] = {}
        self.finished_waiters: dict[tuple[int, float], list[Any]] = {}
        self.default_retries: dict[tuple[int, float], int] = {}  # (config id, budget) -> re-runs so far
        self.exhausted = False
        self.warned_budget = False
        self.last_smac_save = time.time()
        # Kept here, not queried from the store per trial: the driver's cost per trial must not
        # grow with the history (benchmarks/driver_overhead.py).
        self.status_counts: Counter[TrialStatus] = Counter(run.counts())
        self.recent_walls: deque[float] = deque(  # wall times of the last finished trials
            (r.result.wall_time for r in run.trials()[-200:] if r.status is not TrialStatus.LOST
             and r.result.wall_time), maxlen=50)
        self.recent_asks: deque[float] = deque(maxlen=20)   # seconds of the last asks (a refit: the longest)
        self.task = experiment.task().with_absolute_paths()
        self.default = facade.scenario.configspace.get_default_configuration()

    # -- bookkeeping --
    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.started

    def trial_cap_reached(self) -> bool:
        return self.exp.trials is not None and sum(self.status_counts.values()) + len(self.pending) >= self.exp.trials

    def queued(self) -> int:
        """Trials kept waiting at the scheduler beyond the free slots, so a worker that finishes
        starts its next trial at once while the driver stores, tells and asks: a quarter of the
        slots, or as many as the workers finish during the driver's longest recent ask (a surrogate
        refit) when that is more, up to twice the slots; none when the time left would not fit a
        typical trial, which would only be cut short."""
        least = max(1, self.slots // 4)
        if not self.recent_walls:
            return least
        typical = max(statistics.median(self.recent_walls), 1e-3)
        if self.deadline - time.time() < 2 * typical:
            return 0
        during_ask = math.ceil(self.slots * max(self.recent_asks, default=0.0) / typical)
        # a trial waiting behind q others starts after about q / slots typical trials
        fits_before_deadline = math.floor(self.slots * ((self.deadline - time.time()) / typical - 2))
        return max(0, min(2 * self.slots, max(least, during_ask), fits_before_deadline))

    def budget_of(self, info: Any) -> float:
        """The epochs of a trial SMAC hands out: its budget, or max_budget where the strategy has
        no fidelities (random search)."""
        return float(self.exp.max_budget) if info.budget is None else float(info.budget)

    def submit(self, info: Any) -> None:
        config = _plain_config(info.config)
        config_id = self.smac.runhistory.get_config_id(info.config)
        budget = self.budget_of(info)
        checkpoint = self.checkpoints.location(config_id, budget)
        resume = self.checkpoints.best_below(config_id, budget)
        blob = None
        if resume is not None and self.transport == "dask":
            try:
                blob = self.checkpoints.read_bytes(resume)
            except OSError as exc:
                log.warning(f"checkpoint {resume} cannot be read ({exc}): the promotion trains from scratch")
                resume = None
        trial_deadline = self.deadline
        if self.exp.trial_timeout:
            trial_deadline = min(trial_deadline, time.time() + self.exp.trial_timeout)
        self.run.record_ask(config_id=config_id, budget=budget, smac_budget=info.budget, seed=int(info.seed or 0),
                            config=config)
        request = TrialRequest(hparams={**self.exp.fixed, **config}, budget=budget, task=self.task,
                               seed=int(self.exp.seed), threads=self.threads, checkpoint=checkpoint,
                               resume_from=resume, deadline=trial_deadline,
                               checkpoint_via="dask" if self.transport == "dask" else "path", resume_blob=blob)
        future = self.client.submit(self.trial_fn, request, pure=False,
                                    key=f"trial-c{config_id}-b{budget:g}-{time.time_ns()}")
        self.pending[future] = _Pending(info, config_id, config, budget, time.time(), info.config == self.default,
                                        checkpoint, resume)

    def fill(self) -> None:
        """Ask SMAC for trials until every slot is busy. A (config, budget) that already finished
        is told again from its stored result instead of being trained twice."""
        from smac.main.exceptions import ConfigurationSpaceExhaustedException

        asked = 0
        while (len(self.pending) < self.slots + self.queued() and time.time() < self.deadline
               and not self.trial_cap_reached()
               and not self.exhausted):
            began = time.perf_counter()
            try:
                info = self.smac.ask()
            except ConfigurationSpaceExhaustedException:
                self.exhausted = True  # a small discrete space is fully explored: finish what runs
                log.info("the search space is exhausted: every configuration has been proposed")
                break
            self.recent_asks.append(time.perf_counter() - began)
            asked += 1
            key = (self.smac.runhistory.get_config_id(info.config), self.budget_of(info))
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
        if asked and time.time() - self.last_smac_save > SMAC_SAVE_SECONDS:
            self.save_smac()

    def save_smac(self) -> None:
        """Save SMAC's state (runhistory, intensifier, optimizer): what a kill loses after it is in
        the store and is caught up on --resume."""
        save_smac_state(self.smac)
        self.last_smac_save = time.time()

    def _tell(self, info: Any, result: TrialResult) -> None:
        from smac.runhistory.dataclasses import TrialValue
        from smac.runhistory.enumerations import StatusType

        values = objective_values(result, self.exp.objectives)
        no_log = values and next((o for o in self.exp.log_objectives if values[o] <= 0), None)
        if no_log:
            log.warning("trial %s: %s <= 0 has no logarithm; SMAC is told it failed", info.config.config_id, no_log)
            values = None
        if values is not None:
            cost = [math.log(values[o]) if o in self.exp.log_objectives else values[o] for o in self.exp.objectives]
            status = StatusType.SUCCESS
        else:
            cost = crash_costs(self.exp.objectives)
            status = StatusType.TIMEOUT if result.status is TrialStatus.CUT_SHORT else StatusType.CRASHED
        self.smac.tell(info, TrialValue(cost=cost if len(cost) > 1 else cost[0], time=float(result.wall_time),
                                        status=status, additional_info={"reason": result.reason or ""}),
                       save=False)  # save_smac: at most every SMAC_SAVE_SECONDS

    def collect(self, future: Any) -> TrialResult | None:
        """Store and tell a finished trial; None when it was a default lost with its worker, which
        runs again (SMAC is told once, the final attempt's result)."""
        pending = self.pending.pop(future)
        died = False
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - the worker died or the task could not run
            name, died = type(exc).__name__, _worker_died(exc)
            why = "its worker died (killed, e.g. by the out-of-memory killer)" if died else str(exc)
            result = TrialResult.failed(f"worker failure: {name}: {why}".splitlines()[0], budget=pending.budget,
                                        wall_time=time.time() - pending.started, hparams=pending.config)
        self._keep_checkpoint(pending, result)
        key = (pending.config_id, pending.budget)
        if died and pending.is_default:
            retries = self.default_retries.get(key, 0)
            if retries < DEFAULT_RETRIES:
                self._run_default_again(pending, result, retries + 1)
                return None
            if retries:
                result.reason = f"{result.reason}, {retries + 1} times in a row"
        objectives = objective_values(result, self.exp.objectives) or {}
        trial_id = self._store(pending, result, told=objectives, ended_at=time.time())
        self._prune_checkpoints(pending.config_id, pending.budget)
        self._tell(pending.info, result)
        self.finished[key] = result
        for info in self.finished_waiters.pop(key, []):
            self._tell(info, result)
        self._report(trial_id, pending, result, objectives)
        return result

    def _run_default_again(self, pending: _Pending, result: TrialResult, retry: int) -> None:
        """Record the attempt as lost (its time and energy were spent; the analysis compares against
        ok defaults only) and submit the same SMAC trial again, still untold."""
        lost = dataclasses.replace(result, status=TrialStatus.LOST,
                                   reason=f"{result.reason}; the default runs again (retry {retry} of "
                                          f"{DEFAULT_RETRIES})")
        trial_id = self._store(pending, lost, ended_at=time.time())
        log.warning(f"[{trial_id:>4}] budget {pending.budget:>4g}  the default's worker died after "
                    f"{lost.wall_time:.1f}s: running the default again (retry {retry} of {DEFAULT_RETRIES})")
        self.default_retries[(pending.config_id, pending.budget)] = retry
        self.submit(pending.info)

    def _store(self, pending: _Pending, result: TrialResult, **row: Any) -> int:
        """Commit a trial to the run's store and its log file (returns its id); keep the driver's tallies."""
        trial_id = self.run.add(config_id=pending.config_id, config=pending.config, budget=pending.budget,
                                seed=int(self.exp.seed), result=result, is_default=pending.is_default,
                                started_at=pending.started, **row)
        self.status_counts[result.status] += 1
        for note in result.notes:
            log.warning(f"trial {trial_id} (config {pending.config_id}, budget {pending.budget:g}): {note}")
        if result.wall_time and result.status is not TrialStatus.LOST:
            self.recent_walls.append(float(result.wall_time))
        try:  # a copy for reading by eye: the store is the record
            write_atomically(self.run.path / "logs" / f"trial-{trial_id:05d}.json",
                             json.dumps({"trial_id": trial_id, "config_id": pending.config_id,
                                         "budget": pending.budget, "config": pending.config, **result.to_dict()},
                                        indent=1, default=str), durable=False)
        except OSError as exc:
            log.warning(f"trial {trial_id}'s log file could not be written ({exc}); it is in the run's store")
        return trial_id

    def _keep_checkpoint(self, pending: _Pending, result: TrialResult) -> None:
        """Store a checkpoint that came back through Dask, and record which one the trial continued."""
        blob, result.checkpoint_blob = result.checkpoint_blob, None
        if blob is not None and pending.checkpoint is not None:
            try:
                self.checkpoints.write_bytes(pending.checkpoint, blob)
                result.checkpoint = pending.checkpoint
            except OSError as exc:
                result.checkpoint = None
                log.warning(f"the checkpoint of config {pending.config_id} at budget {pending.budget:g} could not be "
                            f"kept ({exc}): its promotion will train from scratch")
        if result.resumed_from_epochs > 0:
            result.resumed_from = pending.resume

    def _prune_checkpoints(self, config_id: int, budget: float) -> None:
        """Keep only the highest-budget checkpoint of a configuration (promotions continue from it)."""
        try:
            self.checkpoints.prune(config_id, budget)
        except OSError as exc:  # a storage hiccup must not stop the run
            log.warning(f"could not prune the checkpoints of config {config_id}: {exc}")

    def _report(self, trial_id: int, pending: _Pending, result: TrialResult, objectives: dict[str, float]) -> None:
        counts = self.status_counts
        left = max(0.0, self.deadline - time.time())
        vals = "  ".join(f"{o} {show(o, v)}" for o, v in objectives.items()) or (result.reason or "")[:80]
        tag = " default" if pending.is_default else ""
        log.info(f"[{trial_id:>4}] budget {pending.budget:>4g}  {result.status:<9} {vals}  "
                 f"{result.wall_time:.1f}s{tag} | "
                 f"ok {counts.get(TrialStatus.OK, 0)}, failed {counts.get(TrialStatus.FAILED, 0)}"
                 + (f", {left / 60:.1f} min left" if math.isfinite(left) else ""))
        self._maybe_warn_budget(pending, result)

    def _maybe_warn_budget(self, pending: _Pending, result: TrialResult) -> None:
        if (self.warned_budget or not result.ok or not math.isfinite(self.deadline)
                or self.exp.optimizer == "random"  # random search has no brackets,
                or self.exp.min_budget == self.exp.max_budget):  # nor has one fidelity
            return
        self.warned_budget = True
        per_epoch = result.wall_time / max(pending.budget, 1e-9)
        need = _bracket_epochs(self.exp) * per_epoch / self.slots
        left = self.deadline - time.time()
        if need > left:
            log.warning(f"one Hyperband bracket up to {self.exp.max_budget:g} epochs needs about {need:.0f}s "
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
                if result is not None:  # None: a default lost with its worker, running again
                    self._stop_if_hopeless(result, is_default)
            if time.time() - last_save > 5:
                self.run.set_meta("elapsed_seconds", self.elapsed())
                last_save = time.time()
                self._follow_cluster_size()
            if time.time() >= self.deadline + STOP_GRACE_SECONDS:
                self._abandon("did not stop within the grace period after the deadline")
                break
        self.run.set_meta("elapsed_seconds", self.elapsed())
        self.save_smac()  # the last tells
        if time.time() >= self.deadline:
            return "stopped at the wall-clock budget"
        if self.trial_cap_reached():
            return f"stopped: the run holds {len(self.run)} trials (--trials {self.exp.trials} caps the run's total)"
        if self.exhausted:
            return "stopped: the search space is exhausted"
        return "finished"

    def _follow_cluster_size(self) -> None:
        """Workers that join later (an adaptive SLURM cluster, `dask worker` started by hand) get
        trials too: the trial slots follow the scheduler's count."""
        try:
            slots = worker_slots(self.client)
        except Exception:  # noqa: BLE001 - a scheduler hiccup: keep the last count
            return
        if slots != self.slots:
            log.info(f"the cluster now has {slots} trial slot(s) (was {self.slots})")
            self.slots = slots
            set_parallel_trials(self.smac, slots)

    def _stop_if_hopeless(self, result: TrialResult, is_default: bool) -> None:
        """The default configuration failing for a reason other than divergence (or the first
        five trials all failing) means the setup is broken: say why instead of burning the budget."""
        reason = result.reason or ""
        if result.status is not TrialStatus.FAILED or reason.startswith("diverged"):
            return
        counts = self.status_counts
        if is_default or (counts.get(TrialStatus.FAILED, 0) >= 5 and not counts.get(TrialStatus.OK)):
            self._abandon("the run stopped: its setup is broken")
            raise OptimizeError(f"the {'default configuration' if is_default else 'first trials'} failed, so every "
                                f"trial would: {reason}")

    def submit_default(self) -> None:
        """The default configuration at the top budget, first, unless a resumed run has it finished.
        A resumed run whose default never finished (lost with its worker, cut short, failed) runs
        it again, as the same SMAC trial."""
        from smac.runhistory.dataclasses import TrialInfo

        top = float(self.exp.max_budget)
        if any(p.is_default and p.budget == top for p in self.pending.values()):
            return  # being re-run after an interruption
        if any(r.is_default and r.budget == top and _default_finished(r.result) for r in self.run.trials()):
            return  # a resumed run that has it
        earlier = self._told_default(top)
        if earlier is not None:
            log.info("running the default configuration again: no earlier attempt finished")
            self.submit(earlier)
            return
        # A deterministic scenario runs every configuration with one seed, which the intensifier
        # only knows once asked: take it from the first trial, so that Hyperband's own default
        # trial at the top budget is recognized as this one.
        first = self.smac.ask()
        if first.config == self.default and self.budget_of(first) == top:
            self.submit(first)  # the strategy starts with the default at the top budget itself (random search)
            return
        info = TrialInfo(config=self.default, budget=float(self.exp.max_budget), seed=first.seed)
        self.smac.runhistory.add_running_trial(info)  # registers the config id; re-run on resume if lost
        self.save_smac()
        self.submit(info)
        self.submit(first)

    def _told_default(self, top: float) -> Any:
        """SMAC's trial of the default at ``top`` from an earlier process (told, or listed as running),
        so that re-running it overwrites that one entry; None if SMAC has none."""
        from smac.runhistory.dataclasses import TrialInfo

        rh = self.smac.runhistory
        if not rh.has_config(self.default):
            return None
        config_id = rh.get_config_id(self.default)
        for key in list(rh):
            info = TrialInfo(config=self.default, instance=key.instance, seed=key.seed, budget=key.budget)
            if key.config_id == config_id and self.budget_of(info) == top:
                return info
        return None

    def _abandon(self, why: str) -> None:
        for future, pending in list(self.pending.items()):
            future.cancel()
            result = TrialResult(status=TrialStatus.LOST, reason=why, budget=pending.budget,
                                 wall_time=time.time() - pending.started, hparams=pending.config)
            self._store(pending, result)
            self.pending.pop(future)

    def interrupt(self) -> None:
        """Ctrl-C: cancel what runs; those trials are re-run on --resume (SMAC lists them as running)."""
        for future in list(self.pending):
            future.cancel()
        self.run.set_meta("elapsed_seconds", self.elapsed())
        self.save_smac()


# The run's own copy of its search space file: a resume searches the space the run started in,
# from any working directory, and refuses a space file changed since.
SPACE_COPY = "space.yaml"


def _space_text(experiment: Experiment) -> str:
    return space_path(experiment.space).read_text()


def _space_to_resume(run_dir: Path, experiment: Experiment) -> str:
    """The space file a resumed run loads: its own copy (runs from before the copy: the named space)."""
    copy = run_dir / SPACE_COPY
    if not copy.exists():
        return experiment.space
    try:
        current = space_path(experiment.space)
    except AutoDSNNError:  # a relative path from another folder, a file since removed: the copy decides
        return str(copy)
    if current.read_text() != copy.read_text():
        raise ExperimentError(f"--resume {run_dir}: search space {experiment.space} ({current.resolve()}) changed "
                              f"since the run started; the run searches its own copy {copy}: restore the file, "
                              "or start a new run for the new space")
    return str(copy)


def _check_experiment(experiment: Experiment, space_file: str | None = None) -> tuple[int, Any]:
    """Fail before any trial runs: data set, model and space (``space_file``, else the
    experiment's) must all resolve."""
    try:
        name = normalize_name(experiment.dataset)
        info = dataset_info(name)
        if name not in ("digits", "synthetic", "imagenet") and find_local(name, experiment.data_dir) is None:
            load_dataset(name, data_dir=experiment.data_dir)  # the download path, or its one-line error
        layers = convertible_layer_names(experiment.model, num_classes=info.num_classes,
                                         input_size=info.input_shape)
    except ValueError as exc:  # DatasetNotFoundError is one
        raise ExperimentError(str(exc)) from None
    max_layers = len(layers)
    space = load_space(space_file or experiment.space, max_layers=max_layers, seed=experiment.seed, layers=layers)
    # Every default/fixed value must be something train accepts.
    HParams.from_dict({**experiment.fixed, **_plain_config(space.get_default_configuration())})
    return max_layers, space


def optimize(experiment: Experiment, run_dir: str | Path, *, resume: bool = False, client: Any = None,
             trial_fn: TrialFunction = run_trial_task) -> RunOutcome:
    """Run (or continue) an optimization into ``run_dir``; progress goes to the ``autodsnn.search``
    logger, every trial to the run's store (`autodsnn.analysis.summarize` reads the front back).
    ``trial_fn`` runs one trial on a worker (importable; the platform benchmark swaps in a sleeper)."""
    run_dir = Path(run_dir).expanduser().resolve()  # the same folder for every process that reads it
    # Settings that can be wrong fail here, before a run folder exists.
    sec = (security(experiment.scheduler, experiment.tls_ca_file, experiment.tls_cert, experiment.tls_key)
           if experiment.scheduler and client is None else None)
    try:
        checkpoints = CheckpointStore(experiment.checkpoint_store or run_dir / "checkpoints")
    except ValueError as exc:
        raise ExperimentError(str(exc)) from None
    # The wall clock counts from here: starting the cluster and SMAC is the run's time too (else
    # every resume after a kill hands those seconds back to the budget).
    started = time.time()
    if resume:
        run = Run.open(run_dir)
        saved = Experiment.from_dict(run.experiment)
        diff = saved.differences(experiment)
        if diff:
            raise ExperimentError(f"--resume {run_dir}: setting {diff[0]!r} differs from the saved run "
                                  f"({getattr(saved, diff[0])!r} vs {getattr(experiment, diff[0])!r}); only "
                                  f"{', '.join(Experiment.RESUMABLE)} may change on resume")
        max_layers, space = _check_experiment(experiment, _space_to_resume(run_dir, experiment))
    else:
        max_layers, space = _check_experiment(experiment)  # before the run directory exists
        # the space copy first, then the run's database: a run that exists has its copy
        run = Run.create(run_dir, experiment.to_dict(), files={SPACE_COPY: _space_text(experiment)})
    checkpoints.prepare()
    try:
        facade = build_facade(experiment, space, run_dir, overwrite=not resume)
    except AutoDSNNError:
        run.close()
        raise
    if resume:  # the settings a resume may change, saved once SMAC accepted the run
        run.set_meta("experiment", experiment.to_dict())
        if not (run_dir / SPACE_COPY).exists():  # a run from before the copy: the space SMAC checked is the run's
            write_atomically(run_dir / SPACE_COPY, _space_text(experiment))
    elapsed_before = float(run.meta("elapsed_seconds") or 0.0)
    remaining = (experiment.budget - elapsed_before) if experiment.budget else math.inf
    if remaining <= 0:
        run.close()
        raise OptimizeError(f"the run's budget of {experiment.budget:.0f}s is used up: "
                            "pass a larger --budget to continue")
    deadline = started + remaining
    own_client = client is None
    cluster = None
    # Dask's nanny writes its pre-spawn environ (OMP_NUM_THREADS=1, ...) into this process at
    # every worker (re)start: restored when the run ends, whoever made the cluster.
    with nanny_environ_kept():
        loop = None
        try:
            if own_client:
                client, cluster, slots, threads = start_client(experiment.workers, experiment.scheduler, sec)
            else:
                slots, threads = worker_slots(client), 0
            set_parallel_trials(facade, slots)
            transport = choose_transport(experiment.checkpoint_store, own_local_cluster=cluster is not None)
            loop = _Optimizer(experiment, run, facade, client, slots, threads, deadline, elapsed_before, trial_fn,
                              checkpoints, transport, started=started)
            log.info(f"optimizing {experiment.model} on {experiment.dataset}: space {experiment.space} "
                     f"({len(list(space.values()))} hyperparameters, shift depth up to {max_layers}), objectives "
                     f"{', '.join(f'log {o}' if o in experiment.log_objectives else o for o in experiment.objectives)}"
                     f", budgets {experiment.min_budget:g}..{experiment.max_budget:g}"
                     f" epochs (eta {experiment.eta}), {slots} worker slot(s), checkpoints "
                     f"{_describe_transport(transport, checkpoints)}, "
                     + (f"{remaining:.0f}s of wall clock" if math.isfinite(remaining) else "no time limit"))
            with warnings.catch_warnings():
                # SMAC's random forest averages empty leaves early in a run: numpy's notices say
                # nothing to our users.
                warnings.filterwarnings("ignore", message="Mean of empty slice")
                warnings.filterwarnings("ignore", message="invalid value encountered")
                if resume:
                    _catch_up_with_store(loop)
                    _rerun_interrupted(loop)
                stopped = loop.loop()
        except KeyboardInterrupt:
            if loop is None:
                raise
            loop.interrupt()
            stopped = f"interrupted: continue with `autodsnn optimize --resume {run_dir}`"
            log.info(stopped)
        finally:
            if own_client and client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
            run.close()
    return RunOutcome(run_dir, stopped)


def _describe_transport(transport: str, checkpoints: CheckpointStore) -> str:
    where = {"shared": "in", "dask": "sent through Dask, kept in", "url": "at"}[transport]
    return f"{where} {checkpoints.root}"


def _catch_up_with_store(loop: _Optimizer) -> None:
    """After a kill, SMAC's saved state can lag the store by up to SMAC_SAVE_SECONDS. Hand SMAC
    every trial the store saw asked that SMAC does not know, in the order SMAC first numbered
    their configurations (so the store's config ids stay SMAC's): finished ones told from the
    store, unfinished ones as running (run again by _rerun_interrupted). Every stored result is
    also what a re-proposed (configuration, budget) is told instead of training it twice."""
    from ConfigSpace import Configuration
    from smac.runhistory.dataclasses import TrialInfo

    rh = loop.smac.runhistory
    stored = {(r.config_id, r.budget): r.result for r in loop.run.trials() if r.status is not TrialStatus.LOST}
    loop.finished.update(stored)
    known = {(key.config_id, key.budget) for key in rh}
    space = loop.smac.scenario.configspace
    caught_up = renumbered = 0
    for config_id, budget, smac_budget, seed, values in loop.run.asked():
        if (config_id, smac_budget) in known:
            continue
        config = rh.ids_config.get(config_id)
        if config is None or _plain_config(config) != values:
            config = Configuration(space, values=values)
        info = TrialInfo(config=config, budget=smac_budget, seed=seed)
        if (config_id, budget) in stored:
            loop._tell(info, stored[(config_id, budget)])
        else:
            rh.add_running_trial(info)
        caught_up += 1
        renumbered += rh.get_config_id(config) != config_id
    if caught_up:
        log.info(f"caught SMAC up from the store on {caught_up} trial(s) its saved state lacked")
    if renumbered:
        log.warning(f"{renumbered} configuration(s) got new SMAC ids on resume: their stored trials keep the old "
                    "ones, and their promotions train from scratch")
    loop.save_smac()


def _rerun_interrupted(loop: _Optimizer) -> None:
    """Trials SMAC still lists as running were lost with the previous process: run them again."""
    from smac.runhistory.dataclasses import TrialInfo
    from smac.runhistory.enumerations import StatusType

    rh = loop.smac.runhistory
    # A lost row is an attempt without a result (a default whose worker died, a trial abandoned
    # past the deadline): run it again rather than tell SMAC a crash.
    stored = {(r.config_id, r.budget): r for r in loop.run.trials() if r.status is not TrialStatus.LOST}
    waiting = 0
    for key, value in list(rh.items()):
        if value.status == StatusType.RUNNING:
            config = rh.get_config(key.config_id)
            info = TrialInfo(config=config, instance=key.instance, seed=key.seed, budget=key.budget)
            budget = loop.budget_of(info)
            row = stored.get((key.config_id, budget))
            if row is not None:
                loop._tell(info, row.result)  # finished but not yet told: tell from the store
            elif loop.trial_cap_reached():
                waiting += 1  # stays running in SMAC's state: a later resume with a larger cap runs it
            else:
                log.info(f"re-running trial (config {key.config_id}, budget {budget:g}) lost by the previous run")
                loop.submit(info)
    if waiting:
        log.info(f"{waiting} trial(s) lost by the previous run not re-run: --trials {loop.exp.trials} caps the run's "
                 "total (a resume with a larger --trials runs them)")
