"""`autodsnn status`: where the default DSNN stands when it cannot be compared with the front."""
from autodsnn.analysis import summarize
from autodsnn.store import Run
from autodsnn.trial import TrialResult

EXPERIMENT = {"objectives": ["error", "energy"], "max_budget": 3.0, "optimizer": "smac", "space": "small"}


def _ok(error, energy=1e-6):
    return TrialResult(status="ok", val_error=error, energy_kwh=energy, energy_kwh_total=energy)


def _status(tmp_path, trials):
    with Run.create(tmp_path / "run", EXPERIMENT) as run:
        for i, (is_default, budget, result) in enumerate(trials, start=1):
            run.add(config_id=i, config={"lr": 0.01 * i}, budget=budget, seed=0, result=result, is_default=is_default)
        return summarize(run).describe()


def test_a_default_not_finished_yet_is_said_so(tmp_path):
    text = _status(tmp_path, [(False, 1.0, _ok(0.3)), (False, 3.0, _ok(0.2))])
    assert "default configuration: no result at the top budget (3 epochs) yet" in text
    assert "no comparison with it" in text and "dominate the default" not in text


def test_a_default_whose_last_attempt_failed_says_how(tmp_path):
    failed = TrialResult.failed("RuntimeError: CUDA out of memory", budget=3.0)
    text = _status(tmp_path, [(True, 3.0, failed), (False, 3.0, _ok(0.2))])
    assert "default configuration: its last attempt at 3 epochs (trial 1) was failed (RuntimeError: CUDA out of " \
           "memory): no comparison with it" in text


def test_a_default_without_an_objective_value_says_which(tmp_path):
    text = _status(tmp_path, [(True, 3.0, TrialResult(status="ok", val_error=0.25)), (False, 3.0, _ok(0.2))])
    assert "default configuration: trial 1 has no energy value" in text


def test_no_trial_yet_still_says_where_the_default_stands(tmp_path):
    text = _status(tmp_path, [])
    assert "no trial finished: no Pareto front" in text and "default configuration: no result" in text


def test_a_default_on_the_front_budget_is_compared_as_before(tmp_path):
    text = _status(tmp_path, [(True, 3.0, _ok(0.3)), (False, 3.0, _ok(0.2, 2e-6))])
    assert "default configuration: error" in text and "dominate the default" in text
    assert "no comparison" not in text
