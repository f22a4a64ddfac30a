"""Hyperparameter importance and marginal plots, on synthetic runs in the real store where one
hyperparameter alone drives each objective (the numbers made up, the store and analysis real)."""
import json

import matplotlib
import numpy as np
import pytest

from autodsnn.analysis import ImportanceError, hyperparameter_importance
from autodsnn.analysis.importance import BUDGET_FEATURE, importance_or_reason
from autodsnn.analysis.plots import plot_marginals
from autodsnn.analysis.report import write_report
from autodsnn.cli import main
from autodsnn.search.experiment import Experiment
from autodsnn.store import Run
from autodsnn.trial import TrialResult
from autodsnn.trial.objectives import ObjectiveError

OBJECTIVES = ("error", "inference_energy", "latency")
OPTIMIZERS = ("sgd", "adam", "rmsprop", "radam")


def make_run(path, n=40, seed=0, budgets=(3.0,)):
    """error depends on lr alone, inference energy on weight_bits alone, latency on shift_type
    alone (a categorical); the other hyperparameters are random, momentum exists only for SGD and
    RMSprop, batch_size is fixed. Plus a failed trial, which the analysis must skip."""
    rng = np.random.default_rng(seed)
    run = Run.create(path, Experiment(objectives=OBJECTIVES).to_dict())
    for i in range(n):
        optimizer = OPTIMIZERS[int(rng.integers(len(OPTIMIZERS)))]
        config = {"lr": float(10 ** rng.uniform(-3, -0.7)), "weight_bits": int(rng.integers(2, 6)),
                  "shift_type": ["q", "ps", "dense"][int(rng.integers(3))], "shift_depth": int(rng.integers(1, 6)),
                  "weight_decay": float(10 ** rng.uniform(-6, -2)), "optimizer": optimizer, "batch_size": 64}
        if optimizer in ("sgd", "rmsprop"):
            config["momentum"] = float(rng.uniform(0.0, 0.9))
        error = 0.1 + 0.3 * (np.log10(config["lr"]) + 3) + rng.normal(0, 0.02)  # a little noise
        energy = 2.0 ** (2 * config["weight_bits"])  # 16 to 1024 uJ: spans over 30x, so modelled as log10
        latency = {"q": 1.0, "ps": 2.0, "dense": 3.0}[config["shift_type"]]
        result = TrialResult(status="ok", val_error=float(error), inference_energy_uj=energy,
                             inference_latency_ms=latency, wall_time=1.0)
        run.add(config_id=i, config=config, budget=budgets[i % len(budgets)], seed=0, result=result)
    run.add(config_id=999, config={"lr": 0.5, "optimizer": "sgd"}, budget=budgets[-1], seed=0,
            result=TrialResult.failed("diverged: loss became nan", budget=budgets[-1]))
    run.close()
    return path


def test_the_hyperparameter_that_drives_an_objective_ranks_first(tmp_path):
    with Run.open(make_run(tmp_path / "run")) as run:
        result = hyperparameter_importance(run)
    assert result.budget == 3.0 and result.trials == 40 and result.objectives == OBJECTIVES
    assert result.constant == ("batch_size",)  # fixed: not ranked
    for objective, driver in (("error", "lr"), ("inference_energy", "weight_bits"), ("latency", "shift_type")):
        ranked = result.per_objective[objective]
        first, second = ranked.importances[0], ranked.importances[1]
        assert first.hyperparameter == driver, ranked.text()
        assert first.mean > 0.5 and first.mean > 10 * max(second.mean, 0.01), ranked.text()
        assert ranked.r2 > 0.8 and ranked.trials == 40 and ranked.budget == 3.0
        # one entry per hyperparameter: a one-hot encoded categorical is one number, not one per value
        assert sorted(ranked.ranking) == ["lr", "momentum", "optimizer", "shift_depth", "shift_type",
                                          "weight_bits", "weight_decay"]
        assert ranked.top(3)[0] == driver
    assert result.per_objective["inference_energy"].log_scale
    assert not result.per_objective["error"].log_scale


def test_an_objective_the_hyperparameters_do_not_predict_says_its_ranking_is_noise(tmp_path):
    """Latency made pure noise, independent of every hyperparameter: the held-out fit cannot
    explain it, and the table says so instead of presenting a ranking."""
    rng = np.random.default_rng(7)
    run = Run.create(tmp_path / "run", Experiment(objectives=("error", "latency")).to_dict())
    for i in range(40):
        config = {"lr": float(10 ** rng.uniform(-3, -1)), "weight_bits": int(rng.integers(2, 6)),
                  "optimizer": ["sgd", "adam"][int(rng.integers(2))]}
        error = 0.1 + 0.3 * (np.log10(config["lr"]) + 3)
        result = TrialResult(status="ok", val_error=float(error), inference_latency_ms=float(rng.uniform(1, 2)),
                             wall_time=1.0)
        run.add(config_id=i, config=config, budget=3.0, seed=0, result=result)
    run.close()
    with Run.open(tmp_path / "run") as opened:
        result = hyperparameter_importance(opened)
    noise, driven = result.per_objective["latency"], result.per_objective["error"]
    assert noise.r2 <= 0 and "this ranking is noise" in noise.text(), noise.text()
    assert driven.r2 > 0.8 and "noise" not in driven.text()


def test_deterministic_given_a_seed_and_json_ready(tmp_path):
    with Run.open(make_run(tmp_path / "run", n=20)) as run:
        a = hyperparameter_importance(run, ("error",), seed=3, n_estimators=20, n_repeats=2)
        b = hyperparameter_importance(run, ("error",), seed=3, n_estimators=20, n_repeats=2)
    assert a.to_dict() == b.to_dict()
    payload = json.loads(json.dumps(a.to_dict()))
    assert payload["objectives"]["error"]["importances"][0]["hyperparameter"] == "lr"
    assert payload["budget"] == 3.0 and payload["trials"] == 20 and payload["seed"] == 3
    text = a.text()
    assert "hyperparameter  importance" in text and "budget 3 epochs, 20 trials" in text
    assert "the same in every trial (not ranked): batch_size" in text


def test_an_inactive_conditional_hyperparameter(tmp_path):
    """momentum exists only under SGD; the error depends on momentum where it exists and is a
    constant under Adam. The sentinel lets the forest see both: momentum ranks first."""
    rng = np.random.default_rng(1)
    run = Run.create(tmp_path / "run", Experiment(objectives=("error", "energy")).to_dict())
    for i in range(36):
        config = {"optimizer": "sgd" if i % 2 else "adam", "lr": float(rng.uniform(0.001, 0.1)),
                  "weight_bits": int(rng.integers(2, 6))}
        if config["optimizer"] == "sgd":
            config["momentum"] = float(rng.uniform(0.0, 0.9))
        error = 0.1 + 0.8 * config["momentum"] if "momentum" in config else 0.45
        result = TrialResult(status="ok", val_error=error, energy_kwh=1e-4, energy_kwh_total=float(rng.uniform(1, 2)),
                             wall_time=1.0)
        run.add(config_id=i, config=config, budget=1.0, seed=0, result=result)
    result = hyperparameter_importance(run, ("error", "energy"), n_estimators=50)
    run.close()
    error = result.per_objective["error"]
    assert error.ranking[0] == "momentum", error.text()
    assert error.importances[0].mean > 0.5
    assert {"optimizer", "lr", "weight_bits"} <= set(error.ranking[1:])
    energy = result.per_objective["energy"]  # pure noise: the forest predicts nothing, nothing ranks high
    assert energy.r2 < 0.2 and all(i.mean < 0.5 for i in energy.importances), energy.text()


def test_too_few_trials_is_a_one_line_error(tmp_path, capsys):
    path = make_run(tmp_path / "run", n=12, budgets=(1.0, 3.0))  # 6 trials at each budget
    with Run.open(path) as run:
        with pytest.raises(ImportanceError, match=r"run .*run: too few trials .*6 at budget 3, 6 at budget 1\); "
                                                  r"it needs at least 10 at one budget: pass --budget all"):
            hyperparameter_importance(run)
        with pytest.raises(ImportanceError, match="needs at least 10 at budget 1: choose another budget"):
            hyperparameter_importance(run, budget=1.0)
        with pytest.raises(ImportanceError, match="needs at least 20 in all budgets together: wait for more"):
            hyperparameter_importance(run, budget="all", min_trials=20)
        with pytest.raises(ObjectiveError, match="unknown objective 'accuracy'"):
            hyperparameter_importance(run, ("accuracy",))
        # every budget pooled: enough, and the budget is a feature
        pooled = hyperparameter_importance(run, ("error",), "all", n_estimators=20, n_repeats=2)
        assert pooled.budget is None and pooled.trials == 12
        assert BUDGET_FEATURE in pooled.per_objective["error"].ranking
        assert "all budgets (budget as a feature)" in pooled.text()
        assert BUDGET_FEATURE not in pooled.per_objective["error"].top(10)
        fallback, why = importance_or_reason(run, ("error",))
        assert fallback is not None and fallback.budget is None and why == ""
        none, why = importance_or_reason(run, ("error",), 1.0)
        assert none is None and "too few trials" in why
    assert main(["importance", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "autodsnn importance: error:" in err and "needs at least 10" in err


def test_importance_command_end_to_end(tmp_path, capsys):
    path = make_run(tmp_path / "run")
    out_json, plots = tmp_path / "imp.json", tmp_path / "plots"
    assert main(["importance", str(path), "--objectives", "error,inference_energy", "--json", str(out_json),
                 "--plots", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "hyperparameter  importance" in out and "error (validation error) at budget 3 epochs, 40 trials" in out
    table = out.split("error (validation error)")[1].splitlines()
    assert table[2].split()[0] == "lr"  # the first row under the header
    payload = json.loads(out_json.read_text())
    assert set(payload["objectives"]) == {"error", "inference_energy"}
    assert payload["objectives"]["inference_energy"]["importances"][0]["hyperparameter"] == "weight_bits"
    for objective in ("error", "inference_energy"):
        png = plots / f"marginal-{objective}.png"
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 5000
    assert main(["importance", str(path), "--budget", "all", "--top", "0"]) == 2


def test_report_has_the_importance_section_and_marginal_plots(tmp_path):
    # 8 trials at each budget: too few at one, so the report pools every budget
    html = write_report(make_run(tmp_path / "run", n=16, budgets=(1.0, 3.0)),
                        objectives=("error", "inference_energy")).read_text()
    section = html.split("<h2>Which hyperparameters matter</h2>")[1].split("<h2>")[0]
    assert "permutation importance of a random forest" in section and "all budgets pooled" in section
    assert section.count("<th class='l'>hyperparameter</th>") == 2
    assert 'alt="marginal-error"' in section and 'alt="marginal-inference_energy"' in section
    assert "<td class='l'>lr</td>" in section


def test_report_says_when_there_are_too_few_trials(tmp_path):
    html = write_report(make_run(tmp_path / "run", n=6), objectives=("error", "latency")).read_text()
    section = html.split("<h2>Which hyperparameters matter</h2>")[1].split("<h2>")[0]
    assert "too few trials" in section and "marginal" not in section


def test_pareto_importance_section(tmp_path, capsys):
    path = make_run(tmp_path / "run", n=24)
    out_json = tmp_path / "front.json"
    assert main(["pareto", str(path), "--objectives", "error,latency", "--importance", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    section = out.split("hyperparameter importance")[1]
    assert "  error: lr " in section and "  latency: shift_type " in section
    assert json.loads(out_json.read_text())["importance"]["objectives"]["error"]["importances"][0][
        "hyperparameter"] == "lr"
    assert main(["pareto", str(path), str(path), "--importance"]) == 2


def test_marginal_plot_axes(tmp_path):
    with Run.open(make_run(tmp_path / "run", n=16, budgets=(1.0, 3.0))) as run:
        rows = run.trials()
    # numeric with inactive trials, categorical, integer, and the budget itself
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text as text, to read it back
        path = plot_marginals(rows, "error", ["momentum", "optimizer", "weight_bits", "budget"], tmp_path / "m.svg")
    svg = path.read_text()
    assert "inactive not shown" in svg and "radam" in svg and "budget (epochs)" in svg
    with pytest.raises(ValueError, match="no successful trial with objective energy"):
        plot_marginals(rows, "energy", ["lr"], tmp_path / "e.png")
    with pytest.raises(ValueError, match="cannot export"):
        plot_marginals(rows, "error", ["lr"], tmp_path / "e.txt")
