"""The search strategies, all SMAC facades driven through ask/tell by the same Dask loop:

* ``smac``: the multi-fidelity facade with the parts known to work with two or more objectives,
  Hyperband with ``incumbent_selection="highest_budget"`` (SMAC's other selections crash with two
  objectives, design.md) and ParEGO;
* ``hyperband``: SMAC's HyperbandFacade, random configurations under the same Hyperband schedule
  (Li et al. 2018), the default configuration first;
* ``random``: SMAC's RandomFacade, random search at ``max_budget`` (its intensifier has no
  budgets: the loop runs its trials at the top budget), the default configuration first.
"""
from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

from ..atomic import write_atomically
from ..trial.objectives import crash_costs
from .experiment import Experiment, ExperimentError
from .smac_state import prepare_to_resume


def build_facade(experiment: Experiment, space: Any, run_dir: Path, *, overwrite: bool) -> Any:
    """The facade for ``experiment`` over ``space``, saving its state under ``run_dir/smac``.
    The scenario depends only on settings a resume may not change, so SMAC never prompts."""
    from smac import HyperbandFacade, MultiFidelityFacade, RandomFacade, Scenario
    from smac.intensifier.hyperband import Hyperband
    from smac.multi_objective.parego import ParEGO

    hash_configurations_by_value()
    objectives = list(experiment.objectives)
    costs = crash_costs(objectives)
    # Absolute: the saved scenario names its folder, and SMAC prompts on resume when the new one differs.
    scenario = Scenario(space, name="smac", output_directory=Path(run_dir).resolve() / "smac", deterministic=True,
                        objectives=objectives if len(objectives) > 1 else objectives[0],
                        crash_cost=costs if len(costs) > 1 else costs[0],
                        n_trials=10 ** 9,  # we cap trials and time ourselves: the scenario never changes
                        min_budget=float(experiment.min_budget), max_budget=float(experiment.max_budget),
                        seed=int(experiment.seed))
    if not overwrite:
        prepare_to_resume(Path(scenario.output_directory), run_dir)
        _refuse_another_space(Path(scenario.output_directory), space, run_dir)
        _adopt_folder(scenario)
    default = space.get_default_configuration()
    kwargs: dict[str, Any] = {"overwrite": overwrite, "logging_level": logging.ERROR}
    facade: Any = {"smac": MultiFidelityFacade, "hyperband": HyperbandFacade, "random": RandomFacade}[
        experiment.optimizer]
    if experiment.optimizer == "smac":
        kwargs["model"] = _surrogate(scenario)
        kwargs["config_selector"] = selector = _config_selector(scenario)
        kwargs["initial_design"] = MultiFidelityFacade.get_initial_design(
            scenario, n_configs=experiment.initial_configs, additional_configs=[default])
        if len(objectives) > 1:
            kwargs["multi_objective_algorithm"] = ParEGO(scenario)
    else:
        kwargs["initial_design"] = facade.get_initial_design(scenario, additional_configs=[default])
    if experiment.optimizer in ("smac", "hyperband"):
        kwargs["intensifier"] = Hyperband(scenario, eta=int(experiment.eta), incumbent_selection="highest_budget")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = facade(scenario, target_function=_smac_target, **kwargs)
    keep_bounds_incrementally(built.runhistory)
    if experiment.optimizer == "smac":
        built.autodsnn_config_selector = selector  # for set_parallel_trials
    return built


def hash_configurations_by_value() -> None:
    """Make ConfigSpace's ``Configuration`` hash what its ``==`` compares, the values.

    ConfigSpace 1.2 hashes a configuration by its repr, which tells a sampled categorical value
    (``np.str_('sgd')``) from the same value built from a dict (``'sgd'``: SMAC's run history and
    intensifier loaded on resume, our catch-up from the store, the default configuration), though
    ``==`` calls them equal. SMAC looks configurations up by hash, so after a resume it proposed
    its initial design again and gave configurations it had already run new ids: the same design
    trained twice. numpy scalars hash as the Python scalars they equal, so a hash of the value
    items agrees with ``==``. Idempotent."""
    from ConfigSpace import Configuration

    if getattr(Configuration.__hash__, "by_value", False):
        return

    def hash_by_value(self: Any) -> int:
        return hash(frozenset(dict(self).items()))

    hash_by_value.by_value = True  # type: ignore[attr-defined]
    Configuration.__hash__ = hash_by_value  # type: ignore[method-assign]


def set_parallel_trials(facade: Any, slots: int) -> None:
    """Let SMAC's surrogate refit after at least ``slots`` new configurations: with many workers
    free at once, one model proposes a batch for all of them, instead of a refit (and an
    acquisition search) every RETRAIN_AFTER trials starving the workers."""
    selector = getattr(facade, "autodsnn_config_selector", None)
    if selector is not None:
        selector.parallel_trials = max(1, int(slots))


def _surrogate(scenario: Any) -> Any:
    """The multi-fidelity facade's random forest, predicting in the driver's thread: with joblib's
    threads (n_jobs=-1, SMAC's default) each of the thousands of small predictions per ask paid
    a thread-pool round trip, over half the driver's time at 800 trials (benchmarks/driver_overhead.py)."""
    from smac.model.random_forest import RandomForest

    return RandomForest(scenario.configspace, instance_features=scenario.instance_features, seed=scenario.seed,
                        n_jobs=1, **_FOREST_OPTIONS)


# Without a new result the surrogate is refit after this many new configurations, or after this
# fraction of the history when that is more: each refit and acquisition search costs time that
# grows with the history, so refitting every 8 made the driver's time per trial grow with the run.
RETRAIN_AFTER = 8
RETRAIN_FRACTION = 1 / 32
# ... and refits take at most this share of the driver's wall clock: after a refit of t seconds the
# next waits (1 - share) / share x t. With trials of minutes this never binds; with trials of a
# second on many workers a refit every batch left the workers idle (benchmarks/platform_overhead.py).
REFIT_TIME_SHARE = 0.1


def _config_selector(scenario: Any) -> Any:
    """SMAC's ConfigSelector, refitting for the next configuration once a result has been told since
    the last refit, else after max(RETRAIN_AFTER, parallel trials, RETRAIN_FRACTION x trials so far)
    new configurations (SMAC: after a fixed 8, news or not), and either way no sooner than
    REFIT_TIME_SHARE allows after the last refit. SMAC's selector refits when the count of
    configurations it handed out since the last refit equals ``_retrain_after``, read after each
    one; here that property answers with the count itself when a refit is due and one more when it
    is not."""
    from smac.main.config_selector import ConfigSelector

    class ScaledRetrainSelector(ConfigSelector):
        # SMAC checks every challenger with `config not in self._processed_configs`, a list of every
        # configuration so far: O(history) per challenger, over half the driver's time at 2,500 trials.
        @property
        def _processed_configs(self) -> list:
            return self._processed

        @_processed_configs.setter
        def _processed_configs(self, configs: list) -> None:
            self._processed = _IndexedList(configs)

        parallel_trials = 1
        _handed_out = 0                    # configurations handed out since the last refit began
        _told_at_refit = 0                 # results in the run history when the last refit began
        _refit_began: float | None = None  # perf_counter() when the current refit began
        _refit_ended: float | None = None
        _refit_seconds = 0.0               # the last refit, with its acquisition search

        def _collect_data(self) -> Any:
            # called once per refit, first thing: the refit (model, incumbent, acquisition search)
            # lasts until the first configuration it yields
            self._refit_began, self._handed_out = time.perf_counter(), 0
            self._told_at_refit = self._told()
            return super()._collect_data()

        def _told(self) -> int:
            # finished trials only: the run history also holds every running trial from its ask
            return self._runhistory.finished if self._runhistory is not None else 0

        def _call_callbacks_on_end(self, config: Any) -> None:
            if self._refit_began is not None:
                self._refit_ended = time.perf_counter()
                self._refit_seconds = self._refit_ended - self._refit_began
                self._refit_began = None
            self._handed_out += 1
            super()._call_callbacks_on_end(config)

        @property
        def _retrain_after(self) -> int:
            told = self._told()
            # the fraction counts every trial asked for, running ones included, as before news counted
            due = max(self._retrain_floor, self.parallel_trials,
                      int(len(self._runhistory or ()) * RETRAIN_FRACTION))
            # a result told since the last refit makes one due at once (trials of seconds or more:
            # the model and ParEGO's weights are new for every proposal, as in sequential BO), else
            # after `due` configurations (one model proposes a batch for many free workers)
            if self._handed_out < due and told <= self._told_at_refit:
                return due
            # either way no sooner than the time share allows, also when SMAC's candidates ran out
            # and it samples at random: refitting at once there left 16 workers 66% busy instead
            # of 93% (benchmarks/platform_overhead.py)
            if self._refit_ended is not None:
                wait = self._refit_seconds * (1 - REFIT_TIME_SHARE) / REFIT_TIME_SHARE
                if time.perf_counter() - self._refit_ended < wait:
                    return self._handed_out + 1  # not yet: the next configuration comes from this model
            return self._handed_out

        @_retrain_after.setter
        def _retrain_after(self, value: int) -> None:
            self._retrain_floor = int(value)

    return ScaledRetrainSelector(scenario, retrain_after=RETRAIN_AFTER, max_new_config_tries=16)


class _IndexedList(list):
    """A list whose ``in`` is a set lookup (its items are hashable Configurations); append keeps
    the index, the only other change SMAC's ConfigSelector makes to it."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self._index = set(self)

    def append(self, item: Any) -> None:
        super().append(item)
        self._index.add(item)

    def __contains__(self, item: object) -> bool:
        return item in self._index


def keep_bounds_incrementally(runhistory: Any) -> None:
    """Make ``runhistory`` keep its objective bounds incrementally. SMAC's RunHistory recomputes
    them over every stored trial on each add (two adds per trial: running, then its result):
    O(history) per trial, 16 ms per add at 1,250 trials here. A new successful result only widens
    the bounds, so min/max with it is exact; an overwritten successful result (a re-told trial)
    could narrow them, and gets SMAC's full recomputation, as does every other call.

    Its running trials of one configuration are also found through each configuration's values,
    kept with it once computed: Hyperband asks for them about 16 times per ask, and SMAC builds
    and compares the value dicts of every running trial each time, 15% of the driver's time with
    16 workers (benchmarks/platform_overhead.py)."""
    from smac.runhistory.enumerations import StatusType

    base = type(runhistory)

    class IncrementalBoundsRunHistory(base):  # type: ignore[misc, valid-type]
        def _add(self, k: Any, v: Any, status: Any) -> None:
            self._bounds_change = (self._data.get(k), v)
            try:
                super()._add(k, v, status)
            finally:
                self._bounds_change = None

        def _update_objective_bounds(self) -> None:
            change = getattr(self, "_bounds_change", None)
            bounds = self._objective_bounds
            if (change is None or len(bounds) != self._n_objectives
                    or (change[0] is not None and change[0].status == StatusType.SUCCESS)):
                super()._update_objective_bounds()
                return
            new = change[1]
            if new.status != StatusType.SUCCESS:
                return
            costs = new.cost if isinstance(new.cost, (list, tuple)) else [new.cost]
            self._objective_bounds = [(min(lo, float(c)), max(hi, float(c))) for (lo, hi), c in zip(bounds, costs)]

        def get_running_trials(self, config: Any = None) -> list:
            if config is None:
                return super().get_running_trials()
            # the kept values rule out the others; SMAC's own equality (space included) decides the rest
            values = _values_of(config)
            return [trial for trial in self._running_trials
                    if trial.config is config or (_values_of(trial.config) == values and trial.config == config)]

    runhistory.__class__ = IncrementalBoundsRunHistory


def _values_of(config: Any) -> frozenset:
    """A configuration's active (name, value) pairs, what ConfigSpace's equality compares; kept on
    the configuration (SMAC never changes one after it is made)."""
    values = getattr(config, "_autodsnn_values", None)
    if values is None:
        values = frozenset(dict(config).items())
        try:
            config._autodsnn_values = values
        except AttributeError:  # a Configuration without a __dict__: compute each time
            pass
    return values


# MultiFidelityFacade.get_model's settings (SMAC 2.4), n_jobs aside.
_FOREST_OPTIONS = dict(log_y=True, n_trees=10, ratio_features=1.0, min_samples_split=2, min_samples_leaf=1,
                       max_depth=2 ** 20, bootstrapping=True)


def _adopt_folder(scenario: Any) -> None:
    """A run folder resumed under another path (moved, copied, named relatively when it was made
    absolutely) keeps its SMAC state: the saved scenario's folder is set to where it is now, the
    one setting a move changes, so SMAC sees the same scenario instead of prompting."""
    saved = Path(scenario.output_directory) / "scenario.json"
    if not saved.exists():
        return
    data = json.loads(saved.read_text())
    if data.get("output_directory") != str(scenario.output_directory):
        data["output_directory"] = str(scenario.output_directory)
        write_atomically(saved, json.dumps(data, indent=2))


def _refuse_another_space(folder: Path, space: Any, run_dir: Path) -> None:
    """A resume must search the space SMAC saved: SMAC would otherwise stop to ask on the terminal
    whether to overwrite the run (and crash without one)."""
    from ConfigSpace import ConfigurationSpace

    saved = folder / "configspace.json"
    if saved.exists() and ConfigurationSpace.from_json(saved) != space:
        raise ExperimentError(f"--resume {run_dir}: the search space differs from the one the run started with "
                              f"(saved in {saved}): restore the space file as it was, or start a new run for the "
                              "new space")


def _smac_target(config: Any, seed: int = 0, budget: float = 0.0) -> float:
    """SMAC's facade wants a target with this signature; trials run through our own Dask loop
    (ask/tell), never through SMAC's runner."""
    raise RuntimeError("trials run through autodsnn.search's Dask loop, not SMAC's runner")
