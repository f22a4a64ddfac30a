"""Which hyperparameters matter, per objective: permutation importance of a random forest fitted
to a run's trials (`autodsnn importance RUN`, the report, `autodsnn pareto --importance`).

Method. Per objective, a random forest regressor (Breiman 2001, "Random Forests", Machine
Learning 45:5-32; scikit-learn's ``RandomForestRegressor``) learns the objective from the
trials' hyperparameters. A hyperparameter's importance is how much worse the forest predicts
trials it was not fitted to when that hyperparameter's values are shuffled among them: Breiman's
permutation importance, computed by ``sklearn.inspection.permutation_importance`` (scikit-learn
user guide, "Permutation feature importance"). It is measured held-out, not on the fitted trials
(on those a forest's memorised noise makes irrelevant hyperparameters look important, the caveat
the scikit-learn guide gives): K-fold cross-fitting (K = 5, fewer with fewer trials) predicts
every trial with the forest that did not see it, and the hyperparameter is shuffled across all
the trials (``CrossFitted``).

Units. Importance = increase of the held-out mean squared error when the hyperparameter is
shuffled, divided by the objective's variance over the trials: 0 means no effect (noise can make
it slightly negative); a hyperparameter that alone determines the objective scores about 2 (its
shuffled predictions are as spread as the objective and uncorrelated with it). ``std`` is the
standard deviation over the ``n_repeats`` shuffles. The forest's own held-out R^2 says how far
to trust the ranking: near 0 or below, the hyperparameters do not predict the objective at all.
An objective whose positive values span more than 30x (energy, latency) is modelled as log10 of
the value.

Encoding (a documented choice):

* numeric hyperparameters: scaled to [0, 1] over the trials (trees are unaffected by the scale);
* categorical ones (any string or bool value): one-hot inside the fitted pipeline, so shuffling
  the hyperparameter shuffles all of its columns together and its importance is one number;
* inactive conditional hyperparameters (absent from a trial's configuration, e.g. ``momentum``
  under Adam): numeric ones take the sentinel -1 below every active value, as SMAC's own random
  forest imputes them; categorical ones an extra category "inactive". One split tells active from
  inactive, and shuffling the hyperparameter shuffles its activity with it, so a conditional
  hyperparameter's importance includes the information "it is active", which it shares with its
  parent;
* hyperparameters with one value in every trial (fixed ones) carry nothing and are not ranked.

Budget (``budget``): "max" (default) uses the highest budget with at least ``min_trials`` usable
trials (trials at one budget are comparable; low-budget errors are not final errors); a number
uses that budget; "all" pools every budget and adds ``budget`` (epochs) as a feature, so the
ranking shows how much of the objective the budget alone explains.

Deterministic for a given ``seed`` (forest, folds and shuffles all seeded; trials in id order).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import AutoDSNNError
from ..store import Run, TrialRow
from ..trial.objectives import check_objectives, label
from .pareto import usable_trials

MIN_TRIALS = 10       # fewer trials than this: no ranking a reader should act on
MAX_FOLDS = 5
INACTIVE = "inactive"  # the category of a conditional hyperparameter absent from a trial
SENTINEL = -1.0        # a numeric inactive hyperparameter's value, below the [0, 1]-scaled active ones
BUDGET_FEATURE = "budget"


class ImportanceError(AutoDSNNError, ValueError):
    """Hyperparameter importance that cannot be computed; the message says why and what to change."""


@dataclass(frozen=True)
class HyperparameterImportance:
    """One hyperparameter's permutation importance for one objective (units: see the module doc)."""

    hyperparameter: str
    mean: float
    std: float


@dataclass
class ObjectiveImportance:
    """The ranking for one objective, most important first."""

    objective: str
    budget: float | None                 # None: every budget pooled, with budget as a feature
    trials: int
    importances: list[HyperparameterImportance]
    r2: float                            # the forest's held-out R^2 (NaN for a constant objective)
    log_scale: bool                      # the forest modelled log10 of the objective

    @property
    def ranking(self) -> list[str]:
        return [i.hyperparameter for i in self.importances]

    def top(self, k: int = 3) -> list[str]:
        """The ``k`` most important hyperparameters (fewer if fewer have a positive importance);
        ``budget`` is not one of them."""
        return [i.hyperparameter for i in self.importances
                if i.mean > 0 and i.hyperparameter != BUDGET_FEATURE][:k]

    def to_dict(self) -> dict[str, Any]:
        return {"objective": self.objective, "budget": self.budget, "trials": self.trials,
                "r2": None if np.isnan(self.r2) else self.r2, "log_scale": self.log_scale,
                "importances": [{"hyperparameter": i.hyperparameter, "mean": i.mean, "std": i.std}
                                for i in self.importances]}

    def text(self) -> str:
        """A heading line and a table: hyperparameter, importance, std."""
        where = "all budgets (budget as a feature)" if self.budget is None else f"budget {self.budget:g} epochs"
        fit = "constant objective: nothing to explain" if np.isnan(self.r2) else \
            f"forest R2 {self.r2:.2f} on held-out trials"
        if self.r2 <= 0:  # NaN compares False
            fit += " (no better than the mean: the hyperparameters do not predict it, so this ranking is noise)"
        scale = ", log10 of the value" if self.log_scale else ""
        width = max([len("hyperparameter")] + [len(i.hyperparameter) for i in self.importances])
        lines = [f"{self.objective} ({label(self.objective)}{scale}) at {where}, {self.trials} trials; {fit}",
                 f"  {'hyperparameter':<{width}}  importance     std"]
        lines += [f"  {i.hyperparameter:<{width}}  {_shown(i.mean):10.3f}  {i.std:6.3f}" for i in self.importances]
        return "\n".join(lines)


def _shown(value: float, digits: int = 3) -> float:
    return 0.0 if abs(value) < 0.5 * 10.0 ** -digits else value  # no "-0.000" in a table


@dataclass
class RunImportance:
    """Per-objective importances of one run (:func:`hyperparameter_importance`)."""

    run: str
    objectives: tuple[str, ...]
    budget: float | None
    trials: int
    per_objective: dict[str, ObjectiveImportance]
    constant: tuple[str, ...] = ()      # hyperparameters with one value in every trial: not ranked
    seed: int = 0
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "method": self.method, "seed": self.seed, "budget": self.budget,
                "trials": self.trials, "constant": list(self.constant),
                "objectives": {o: imp.to_dict() for o, imp in self.per_objective.items()}}

    def text(self) -> str:
        lines = [f"hyperparameter importance of run {self.run}: {self.method}",
                 "(importance 0: no effect; about 2: the hyperparameter alone determines the objective)"]
        for imp in self.per_objective.values():
            lines.append(imp.text())
        if self.constant:
            lines.append(f"the same in every trial (not ranked): {', '.join(self.constant)}")
        return "\n".join(lines)

    def short(self, k: int = 3) -> str:
        """One line per objective: its ``k`` most important hyperparameters with their importance."""
        lines = []
        for o, imp in self.per_objective.items():
            best = ", ".join(f"{i.hyperparameter} {_shown(i.mean, 2):.2f}" for i in imp.importances[:k])
            lines.append(f"  {o}: {best or 'nothing ranked'}")
        return "\n".join(lines)


def is_categorical(values: Sequence[Any]) -> bool:
    """A hyperparameter is categorical when any of its (active) values is not a number (a string,
    a bool)."""
    return any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values)


def category_order(values: Sequence[Any]) -> list[Any]:
    """The distinct values of a categorical hyperparameter (distinct as ``repr`` tells them apart)
    in a stable order, by their text."""
    return sorted({repr(v): v for v in values}.values(), key=str)


@dataclass
class _Column:
    name: str
    categorical: bool
    values: np.ndarray       # one per trial: [0, 1]-scaled or SENTINEL (numeric), a category code (categorical)
    categories: int = 0      # how many codes (categorical)


def _encode(rows: Sequence[TrialRow], names: Sequence[str]) -> tuple[list[_Column], list[str]]:
    """The feature columns of the varying hyperparameters, and the names of the constant ones."""
    columns, constant = [], []
    for name in names:
        present = [name in r.config for r in rows]
        active = [r.config[name] for r in rows if name in r.config]
        if len(set(map(repr, active))) <= 1 and all(present):
            constant.append(name)
            continue
        if is_categorical(active):
            cats = category_order(active) + ([INACTIVE] if not all(present) else [])
            codes = {repr(c): i for i, c in enumerate(cats)}
            values = np.array([codes[repr(r.config[name])] if name in r.config else len(cats) - 1 for r in rows],
                              dtype=float)
            columns.append(_Column(name, True, values, len(cats)))
        else:
            raw = np.array(active, dtype=float)
            lo, span = raw.min(), raw.max() - raw.min()
            values = np.array([SENTINEL if name not in r.config else (float(r.config[name]) - lo) / span
                               if span > 0 else 0.0 for r in rows])
            columns.append(_Column(name, False, values))
    return columns, constant


def _pipeline(columns: Sequence[_Column], seed: int, n_estimators: int) -> Any:
    """One-hot for the categorical columns, then the forest: permuting a raw column permutes the
    whole hyperparameter."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    cat = [i for i, c in enumerate(columns) if c.categorical]
    onehot = OneHotEncoder(categories=[list(range(columns[i].categories)) for i in cat], sparse_output=False,
                           handle_unknown="ignore", dtype=float)
    encode = ColumnTransformer([("onehot", onehot, cat)], remainder="passthrough")
    forest = RandomForestRegressor(n_estimators=n_estimators, random_state=seed, n_jobs=1)
    return make_pipeline(encode, forest)


def _target(values: np.ndarray) -> tuple[np.ndarray, bool]:
    """log10 for positive values spanning more than 30x (the forest's squared error would
    otherwise only see the largest values)."""
    if np.all(values > 0) and values.max() / values.min() > 30:
        return np.log10(values), True
    return values, False


@functools.cache
def _cross_fitted() -> type:
    """The class :class:`CrossFitted` is made on first use: scikit-learn loads only when needed."""
    from sklearn.base import BaseEstimator, RegressorMixin

    class CrossFitted(RegressorMixin, BaseEstimator):
        """K forests fitted on K-1 folds each, as one predictor over the run's n trials: row i of
        the n x features matrix is predicted by the forest that did not see trial i. Permuting a
        column of that matrix (what ``permutation_importance`` does, rows kept in place) shuffles
        a hyperparameter across all n trials and scores every trial held-out: unlike shuffling
        inside folds of 2-3 trials, most trials get another value."""

        def __init__(self, models: Sequence[Any] = (), fold_of: np.ndarray | None = None) -> None:
            self.models, self.fold_of = models, fold_of

        def fit(self, x: np.ndarray, y: np.ndarray) -> "CrossFitted":  # fitted already
            return self

        def predict(self, x: np.ndarray) -> np.ndarray:
            """x: (n trials, features), rows in the order the folds were made for."""
            if self.fold_of is None or len(x) != len(self.fold_of):
                raise ValueError(f"a cross-fitted predictor predicts only its own trials, got {len(x)} rows")
            out = np.empty(len(x))
            for k, model in enumerate(self.models):
                rows = self.fold_of == k
                out[rows] = model.predict(x[rows])
            return out

    return CrossFitted


def _rank(columns: Sequence[_Column], y: np.ndarray, *, seed: int, n_repeats: int,
          n_estimators: int) -> tuple[list[HyperparameterImportance], float]:
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import KFold

    variance = float(np.var(y))
    if variance == 0:
        return [HyperparameterImportance(c.name, 0.0, 0.0) for c in columns], float("nan")
    x = np.column_stack([c.values for c in columns])
    models, fold_of = [], np.empty(len(y), dtype=int)
    folds = KFold(n_splits=min(MAX_FOLDS, len(y)), shuffle=True, random_state=seed)
    for k, (fit, held) in enumerate(folds.split(x)):
        models.append(_pipeline(columns, seed + k, n_estimators).fit(x[fit], y[fit]))
        fold_of[held] = k
    crossfit = _cross_fitted()(models, fold_of)
    r2 = 1.0 - float(np.mean((y - crossfit.predict(x)) ** 2)) / variance
    found = permutation_importance(crossfit, x, y, scoring="neg_mean_squared_error", n_repeats=n_repeats,
                                   random_state=seed, n_jobs=1)
    scores = found.importances / variance  # (features, repeats)
    ranked = [HyperparameterImportance(c.name, float(m), float(s))
              for c, m, s in zip(columns, scores.mean(axis=1), scores.std(axis=1))]
    return sorted(ranked, key=lambda i: (-i.mean, i.hyperparameter)), r2


def _choose(rows: Sequence[TrialRow], budget: str | float, run: Run, objectives: Sequence[str],
            min_trials: int) -> tuple[list[TrialRow], float | None]:
    """The trials to fit and their budget (None: all budgets)."""
    counts = {b: sum(r.budget == b for r in rows) for b in sorted({r.budget for r in rows}, reverse=True)}
    have = ", ".join(f"{n} at budget {b:g}" for b, n in counts.items()) or "none"
    need = (f"run {run.path}: too few trials for hyperparameter importance with objectives "
            f"{', '.join(objectives)} ({have}); it needs at least {min_trials}")
    if budget == "all":
        if len(rows) < min_trials:
            raise ImportanceError(f"{need} in all budgets together: wait for more trials")
        return list(rows), None
    if budget == "max":
        level = next((b for b, n in counts.items() if n >= min_trials), None)
        if level is None:
            hint = "pass --budget all to pool every budget" if len(rows) >= min_trials else "wait for more trials"
            raise ImportanceError(f"{need} at one budget: {hint}")
        return [r for r in rows if r.budget == level], level
    try:
        level = float(budget)
    except (TypeError, ValueError):
        raise ImportanceError(f"budget {budget!r}: use max, all or a number of epochs") from None
    if counts.get(level, 0) < min_trials:
        raise ImportanceError(f"{need} at budget {level:g}: choose another budget, max or all")
    return [r for r in rows if r.budget == level], level


def hyperparameter_importance(run: Run, objectives: Sequence[str] | None = None, budget: str | float = "max", *,
                              seed: int = 0, min_trials: int = MIN_TRIALS, n_repeats: int = 5,
                              n_estimators: int = 100) -> RunImportance:
    """Permutation importance of every varying hyperparameter for each objective of ``run``.

    ``objectives``: default the run's own (any registered objective the trials have works).
    ``budget``: "max", a number of epochs or "all" (see the module doc). The trials used are the
    successful ones with a value for every objective (as in the Pareto analysis), so every
    objective is ranked on the same trials. Raises :class:`ImportanceError` with the run and the
    number of trials needed when there are fewer than ``min_trials``, and when no hyperparameter
    varies; ``ObjectiveError`` for an unknown objective. ``n_estimators`` trees per forest,
    ``n_repeats`` shuffles per hyperparameter: the cost is about 5 forest fits plus
    5 x hyperparameters x ``n_repeats`` forest predictions per objective (seconds)."""
    if min_trials < 3:
        raise ImportanceError(f"min_trials={min_trials}: cross-fitting needs at least 3 trials")
    objectives = check_objectives(objectives or run.objectives)
    rows = usable_trials(run.trials(), objectives)
    chosen, level = _choose(rows, budget, run, objectives, min_trials)
    names = sorted({k for r in chosen for k in r.config})
    columns, constant = _encode(chosen, names)
    if level is None and len({r.budget for r in chosen}) > 1:
        budgets = np.log2([r.budget for r in chosen])  # budgets grow geometrically (Hyperband's eta)
        columns.append(_Column(BUDGET_FEATURE, False, (budgets - budgets.min()) / np.ptp(budgets)))
    if not columns:
        raise ImportanceError(f"run {run.path}: no hyperparameter varies across its {len(chosen)} trials: "
                              "nothing to rank")
    per_objective = {}
    for o in objectives:
        y, log_scale = _target(np.array([r.objectives[o] for r in chosen], dtype=float))
        ranked, r2 = _rank(columns, y, seed=seed, n_repeats=n_repeats, n_estimators=n_estimators)
        per_objective[o] = ObjectiveImportance(o, level, len(chosen), ranked, r2, log_scale)
    method = (f"permutation importance of a random forest (Breiman 2001; scikit-learn permutation_importance), "
              f"held out by {min(MAX_FOLDS, len(chosen))}-fold cross-fitting")
    return RunImportance(str(run.path), tuple(objectives), level, len(chosen), per_objective, tuple(constant), seed,
                         method)


def importance_or_reason(run: Run, objectives: Sequence[str] | None = None,
                         budget: str | float = "max") -> tuple[RunImportance | None, str]:
    """For a report or summary that goes on without it: the importance, or None and the one-line
    reason. With "max" and no single budget holding enough trials, every budget is pooled."""
    try:
        return hyperparameter_importance(run, objectives, budget), ""
    except ImportanceError as exc:
        if budget != "max":
            return None, str(exc)
    try:
        return hyperparameter_importance(run, objectives, "all"), ""
    except ImportanceError as exc:
        return None, str(exc)
