"""End-to-end tests of `autodsnn optimize` with real SMAC, real Dask and real MNIST."""
import importlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autodsnn.search.experiment import Experiment, ExperimentError, parse_duration
from autodsnn.analysis import summarize
from autodsnn.search.optimize import OptimizeError, optimize
from autodsnn.trial import TrialResult, TrialStatus, objective_values
from autodsnn.search.space import SpaceError, load_space
from autodsnn.store import Run

# mnist-fc on 2% of MNIST: a trial takes a few seconds, so a minute visits several budgets.
TINY = dict(dataset="mnist", model="mnist-fc", space="small", train_subset=0.02, val_fraction=0.05,
            min_budget=1, max_budget=3, eta=3, workers=2, fixed={"batch_size": 64}, inference_window=0.05)


def rows(run_dir):
    with Run.open(run_dir) as run:
        return run.trials()


def summary_of(run_dir):
    with Run.open(run_dir) as run:
        return summarize(run)


def test_end_to_end_local_cluster(tmp_path):
    began = time.time()
    optimize(Experiment(**TINY, budget=50), tmp_path / "run")
    wall = time.time() - began
    trials, summary = rows(tmp_path / "run"), summary_of(tmp_path / "run")
    assert len(trials) >= 4
    ok = [t for t in trials if t.status == "ok"]
    assert {t.budget for t in ok} >= {1.0, 3.0}  # at least two budget levels
    assert any(t.is_default and t.budget == 3.0 for t in ok)  # the default ran at the top budget
    assert all(0 <= t.objectives["error"] <= 1 and t.objectives["energy"] > 0 for t in ok)
    assert len({t.result.worker for t in ok}) == 2  # both workers trained
    # Dask workers measure inference through the compiled kernels (shift designs) or plain torch
    assert {t.result.inference_path for t in ok} <= {"native-cpu float", "torch float (no shift layers)"}
    assert any(t.result.inference_path == "native-cpu float" for t in ok)
    assert summary.highest_budget == 3.0 and summary.front
    text = summary.describe()  # what `autodsnn status` prints
    assert text.startswith(f"run {tmp_path / 'run'} (smac over small): {len(trials)} trials (")
    assert "the search's own footprint" in text and "uJ/image" in text and "kWh" not in text
    assert summary.elapsed < 50 + 30  # ends on time (plus the last evaluations)
    # the run's clock counts the cluster's start too (it left out ~5 s of a 7 s run); closing the
    # cluster after the last save is not the run's time
    assert wall - 4 <= summary.elapsed <= wall
    assert (tmp_path / "run" / "smac" / "smac").exists()


@pytest.mark.parametrize("strategy", ["smac", "hyperband", "random"])
def test_resume_after_sigkill_loses_and_repeats_nothing(tmp_path, strategy):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "autodsnn", "optimize", "--dataset", "mnist", "--model", "mnist-fc", "--space",
           "small", "--train-subset", "0.02", "--min-budget", "1", "--max-budget", "3", "--workers", "2",
           "--optimizer", strategy, "--run-dir", str(run_dir)]
    proc = subprocess.Popen(cmd + ["--budget", "120s"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db = run_dir / "trials.sqlite"
    try:
        deadline = time.time() + 150
        while time.time() < deadline:
            if db.exists():
                with sqlite3.connect(db) as c:
                    n = c.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
                if n >= 3:
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the run never stored 3 trials")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
        proc.wait()
    before = rows(run_dir)
    resume = [sys.executable, "-m", "autodsnn", "optimize", "--resume", str(run_dir), "--budget", "150s", "--trials"]
    stderr = ""
    if strategy == "smac":  # --trials caps the run's total, the trials lost at the kill included
        capped = subprocess.run(resume + [str(len(before) + 1)], capture_output=True, text=True, timeout=400)
        assert capped.returncode == 0, capped.stderr[-2000:]
        assert len(rows(run_dir)) == len(before) + 1
        assert capped.stderr.count("re-running trial") <= 1, capped.stderr
        stderr = capped.stderr
    out = subprocess.run(resume + [str(len(before) + 4)], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    stderr += out.stderr
    after = rows(run_dir)
    ids_before = {(t.trial_id, t.config_id, t.budget, t.status) for t in before}
    assert ids_before <= {(t.trial_id, t.config_id, t.budget, t.status) for t in after}  # nothing lost
    # nothing trained twice, judged by the configuration's values (a configuration SMAC re-proposed
    # under a new config id after the resume is the same design trained again)
    design = {t.trial_id: json.dumps(t.config, sort_keys=True) for t in after}
    finished = [(design[t.trial_id], t.budget) for t in after if t.status in ("ok", "failed")]
    assert len(finished) == len(set(finished)), sorted(finished)
    ids_of = {}
    for t in after:
        ids_of.setdefault(design[t.trial_id], set()).add(t.config_id)
    assert all(len(ids) == 1 for ids in ids_of.values()), ids_of  # one config id per configuration
    assert len(after) > len(before)
    assert "re-running trial" in stderr  # the trials in flight at the kill ran again (progress: stderr)
    with Run.open(run_dir) as run:
        assert run.meta("elapsed_seconds") > 0
    # SMAC saves its state only every few seconds: what the kill lost was caught up from the store,
    # under the same config ids (checkpoints and the analysis key on them)
    smac_configs = json.loads(next((run_dir / "smac").rglob("runhistory.json")).read_text())["configs"]
    for t in after:
        saved = smac_configs[str(t.config_id)]
        assert saved.keys() == t.config.keys()
        assert all(saved[k] == pytest.approx(v) if isinstance(v, float) else saved[k] == v
                   for k, v in t.config.items()), (t.config_id, saved, t.config)


def test_typo_in_space_rejected_before_any_trial(tmp_path):
    space = tmp_path / "typo.yaml"
    space.write_text("hyperparameters:\n  learning_rat: {low: 0.001, high: 0.1}\n")
    with pytest.raises(SpaceError, match="unknown hyperparameter 'learning_rat'"):
        optimize(Experiment(**{**TINY, "space": str(space)}, budget=10), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(SpaceError, match="did you mean 'lr'"):
        load_space(_write(tmp_path / "t2.yaml", "hyperparameters:\n  lrr: {low: 0.001, high: 0.1}\n"), max_layers=3)
    with pytest.raises(SpaceError, match="shift_type choice 'qq'"):
        load_space(_write(tmp_path / "t3.yaml", "hyperparameters:\n  shift_type: {choices: [q, qq]}\n"), max_layers=3)


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_failing_trials_recorded_and_run_goes_on(tmp_path):
    # Plain SGD on the float net diverges (NaN loss) from lr 1e10 (measured); lr up to 1e30 makes most
    # samples diverge: those trials fail with their reason, the others succeed. A trial cap (not a
    # short wall clock) ends the run: the same trials on a loaded machine as on an idle one.
    space = _write(tmp_path / "bad.yaml", "hyperparameters:\n"
                   "  shift_type: {choices: [none], default: none}\n"
                   "  optimizer: {choices: [sgd], default: sgd}\n"
                   "  lr: {low: 0.001, high: 1.0e+30, log: true, default: 0.01}\n")
    optimize(Experiment(**{**TINY, "space": space, "max_budget": 1, "min_budget": 1}, budget=300, trials=8),
             tmp_path / "run")
    trials = rows(tmp_path / "run")
    failed = [t for t in trials if t.status == "failed"]
    assert failed and all(t.reason.startswith("diverged") for t in failed), [t.reason for t in failed]
    assert any(t.status == "ok" for t in trials)


def test_experiment_validation_and_durations():
    assert parse_duration("90s") == 90 and parse_duration("30m") == 1800 and parse_duration("48h") == 172800
    with pytest.raises(ExperimentError, match="cannot read duration"):
        parse_duration("ten minutes")
    with pytest.raises(ExperimentError, match="unknown objective 'accuracy'"):
        Experiment(objectives="error,accuracy")
    with pytest.raises(ExperimentError, match="unknown experiment setting 'modle'"):
        Experiment.from_dict({"modle": "x"})
    assert Experiment(objectives="error,energy,model_bits").objectives == ("error", "energy", "model_bits")
    with pytest.raises(ExperimentError, match="inference_kernels: 'fast' is not one of float, integer"):
        Experiment.from_dict({"inference_kernels": "fast"})
    assert Experiment.from_dict({"inference_kernels": "integer"}).inference_kernels == "integer"


def test_objective_values():
    ok = TrialResult(status="ok", val_error=0.1, energy_kwh=2e-5, energy_kwh_total=3e-5, emissions_kg=1e-5,
                     analytic={"energy_pj_per_sample": 5.0, "model_bits": 100})
    assert objective_values(ok, ("error", "energy", "model_bits")) == {"error": 0.1, "energy": 3e-5,
                                                                        "model_bits": 100.0}
    # emissions of a promoted trial cover the whole chain: scaled by total / own energy
    assert objective_values(ok, ("emissions",))["emissions"] == pytest.approx(1.5e-5)
    failed = TrialResult(status=TrialStatus.FAILED, val_error=0.1)
    assert objective_values(failed, ("error", "energy")) is None
    assert objective_values(TrialResult(status="ok", val_error=0.1), ("inference_energy",)) is None  # not measured


def _killing_trial(request):
    """Kills its own worker process (as the OOM killer would) for Q designs, else sleeps briefly."""
    if request.hparams.get("shift_type") == "q":
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.3)
    return TrialResult(status="ok", val_error=0.5, energy_kwh=1e-6, energy_kwh_total=1e-6, wall_time=0.3,
                       analytic={"energy_pj_per_sample": 1.0, "model_bits": 1})


def test_a_trial_that_kills_its_worker_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    optimize_module = importlib.import_module("autodsnn.search.optimize")  # the package exports the function
    monkeypatch.setattr(optimize_module, "STOP_GRACE_SECONDS", 20.0)  # a pending trial is given up sooner
    space = _write(tmp_path / "s.yaml", "hyperparameters:\n"
                   "  shift_type: {choices: [ps, q, dense], default: ps}\n"
                   "  lr: {low: 0.001, high: 0.1, log: true, default: 0.01}\n")
    optimize(Experiment(**{**TINY, "space": space}, budget=40, trials=12), tmp_path / "run", trial_fn=_killing_trial)
    trials, summary = rows(tmp_path / "run"), summary_of(tmp_path / "run")
    killed = [t for t in trials if t.config.get("shift_type") == "q"]
    # A killed trial is failed with the worker as the reason; one still pending when the run gives
    # up (Dask may not have restarted a worker for it in time) is recorded lost, with that reason.
    unexplained = [(t.trial_id, t.status, t.reason) for t in killed
                   if not (t.status == "failed" and "worker" in t.reason)
                   and not (t.status == "lost" and "grace period" in t.reason)]
    assert killed and not unexplained, unexplained
    assert any(t.status == "failed" for t in killed)
    assert all(t.result.wall_time > 0 for t in killed)  # the lost attempt's time is kept
    ok_after = [t for t in trials if t.status == "ok" and t.trial_id > killed[0].trial_id]
    assert ok_after and summary.counts.get("ok", 0) >= 3


def test_missing_data_set_is_reported_before_any_worker_starts(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    # A closed local port: the real download path fails at once, with or without a network.
    monkeypatch.setattr(tvd.CIFAR10, "url", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.setenv("AUTODSNN_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ExperimentError, match="cifar10"):
        optimize(Experiment(**{**TINY, "dataset": "cifar10", "model": "resnet20", "data_dir": str(tmp_path / "none")},
                            budget=10), tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("strategy", ["random", "hyperband"])
def test_baseline_strategies_run_through_the_same_loop(tmp_path, strategy):
    """SMAC's RandomFacade (random search at the top budget) and HyperbandFacade (random
    configurations under the same Hyperband schedule) run through the same Dask loop and store:
    the default first and exactly once at the top budget, the strategy recorded in the run."""
    optimize(Experiment(**TINY, optimizer=strategy, budget=120, trials=6), tmp_path / "run")
    trials = rows(tmp_path / "run")
    assert len(trials) == 6 and all(t.status == "ok" for t in trials)
    assert sum(t.is_default and t.budget == 3.0 for t in trials) == 1
    assert len({(t.config_id, t.budget) for t in trials}) == 6  # nothing trained twice
    budgets = {t.budget for t in trials}
    assert budgets == {3.0} if strategy == "random" else 1.0 in budgets
    with Run.open(tmp_path / "run") as run:
        assert run.experiment["optimizer"] == strategy
    with pytest.raises(ExperimentError, match="unknown optimizer 'adam'.*training optimizer"):
        Experiment(**TINY, optimizer="adam")


# A space whose default is easy to recognize on a worker: shift_type ps, lr exactly 0.01.
DEFAULT_SPACE = ("hyperparameters:\n"
                 "  shift_type: {choices: [ps, q, dense], default: ps}\n"
                 "  lr: {low: 0.001, high: 0.1, log: true, default: 0.01}\n")


def _is_default_at_top(request):
    return request.hparams.get("shift_type") == "ps" and request.hparams.get("lr") == 0.01 and request.budget == 3


def _quick_trial(request):
    """Succeeds after a short sleep, with values that differ between configurations (a front)."""
    time.sleep(0.3)
    lr = float(request.hparams["lr"])
    return TrialResult(status="ok", val_error=min(1.0, abs(lr - 0.02) * 10), energy_kwh=1e-6, energy_kwh_total=1e-6,
                       inference_energy_uj=1.0 + 100 * lr, wall_time=0.3, budget=request.budget,
                       analytic={"energy_pj_per_sample": 1.0, "model_bits": 1})


def _kill_default_once(request):
    """Kills its worker (as another job's OOM kill would) the first time it runs the default at
    the top budget; a marker in the run directory says it happened."""
    marker = Path(request.checkpoint).parent.parent / "default-killed"
    if _is_default_at_top(request) and not marker.exists():
        marker.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return _quick_trial(request)


def _kill_default_always(request):
    """Kills its worker every time it runs the default at the top budget."""
    if _is_default_at_top(request):
        os.kill(os.getpid(), signal.SIGKILL)
    return _quick_trial(request)


def _defaults_at_top(run_dir):
    return [t for t in rows(run_dir) if t.is_default and t.budget == 3.0]


def _smac_default_entries(run_dir):
    """SMAC's runhistory entries of the default configuration at the top budget: (status, cost)."""
    path = next((Path(run_dir) / "smac").rglob("runhistory.json"))
    saved = json.loads(path.read_text())
    default_ids = [int(i) for i, c in saved["configs"].items()
                   if c.get("shift_type") == "ps" and c.get("lr") == 0.01]
    return [(d["status"], d["cost"]) for d in saved["data"] if d["config_id"] in default_ids and d["budget"] == 3.0]


def test_the_default_is_re_run_after_its_worker_is_killed(tmp_path, monkeypatch):
    """Issue 14: a worker dying under the default says nothing about the setup. The attempt is
    recorded as lost, the default runs again, the run goes on and compares against it; SMAC is
    told the default once, with the re-run's result. The driver's environment is as it was,
    though Dask's nanny writes OMP_NUM_THREADS=1 into it at each (re)spawn."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # an existing value would be what the nanny writes
        monkeypatch.delenv(name, raising=False)
    space = _write(tmp_path / "s.yaml", DEFAULT_SPACE)
    optimize(Experiment(**{**TINY, "space": space}, budget=90, trials=8), tmp_path / "run",
             trial_fn=_kill_default_once)
    assert "OMP_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ
    assert (tmp_path / "run" / "default-killed").exists()  # the default's worker did die
    defaults = _defaults_at_top(tmp_path / "run")
    assert [t.status for t in defaults] == ["lost", "ok"], [(t.status, t.reason) for t in defaults]
    lost, ok = defaults
    assert "worker" in lost.reason and "runs again" in lost.reason and lost.result.wall_time > 0
    assert not lost.told and ok.told  # SMAC was told the re-run only
    trials = rows(tmp_path / "run")
    finished = [(t.config_id, t.budget) for t in trials if t.status in ("ok", "failed")]
    assert len(finished) == len(set(finished)) and len(finished) >= 4  # nothing trained twice; the run went on
    summary = summary_of(tmp_path / "run")
    assert summary.highest_budget == 3.0 and summary.default is not None
    assert summary.default.trial_id == ok.trial_id
    assert "default configuration:" in summary.describe()
    entries = _smac_default_entries(tmp_path / "run")
    assert len(entries) == 1 and entries[0][0] == 1, entries  # one entry, SUCCESS


def test_resume_runs_a_default_that_never_finished(tmp_path):
    """A default whose worker dies on every attempt stops the run after its retries, with the
    reason; --resume runs the default again (it never finished) and a second resume keeps it."""
    space = _write(tmp_path / "s.yaml", DEFAULT_SPACE)
    exp = dict(**{**TINY, "space": space}, budget=90)
    with pytest.raises(OptimizeError, match=r"the default configuration failed, so every trial would: worker "
                                            r"failure: KilledWorker: its worker died.*3 times in a row"):
        optimize(Experiment(**exp), tmp_path / "run", trial_fn=_kill_default_always)
    assert [t.status for t in _defaults_at_top(tmp_path / "run")] == ["lost", "lost", "failed"]
    n = len(rows(tmp_path / "run"))
    optimize(Experiment(**exp, trials=n + 4), tmp_path / "run", resume=True, trial_fn=_quick_trial)
    defaults = _defaults_at_top(tmp_path / "run")
    assert [t.status for t in defaults] == ["lost", "lost", "failed", "ok"]
    assert summary_of(tmp_path / "run").default.trial_id == defaults[-1].trial_id
    assert [status for status, _ in _smac_default_entries(tmp_path / "run")] == [1]  # re-told: one entry, SUCCESS
    n = len(rows(tmp_path / "run"))
    optimize(Experiment(**exp, trials=n + 2), tmp_path / "run", resume=True, trial_fn=_quick_trial)
    assert len(_defaults_at_top(tmp_path / "run")) == 4  # a finished default is not run again
    assert len(rows(tmp_path / "run")) > n


def test_resume_with_smac_state_cut_off_by_a_kill_rebuilds_it_from_the_store(tmp_path):
    """CI once saw a kill land while SMAC saved (JSONDecodeError on resume). SMAC's state now is
    saved atomically; a state that is cut off anyway is set aside, and SMAC is caught up from the
    store: every trial kept, none trained twice, the store's config ids still SMAC's."""
    space = _write(tmp_path / "s.yaml", DEFAULT_SPACE)
    exp = dict(**{**TINY, "space": space}, budget=90)
    optimize(Experiment(**exp, trials=6), tmp_path / "run", trial_fn=_quick_trial)
    before = rows(tmp_path / "run")
    history = next((tmp_path / "run" / "smac").rglob("runhistory.json"))
    history.write_text(history.read_text()[:200])  # as a kill mid-write leaves it
    (history.parent / "optimization.json").write_text("")  # CI's JSONDecodeError
    optimize(Experiment(**exp, trials=len(before) + 3), tmp_path / "run", resume=True, trial_fn=_quick_trial)
    after = rows(tmp_path / "run")
    assert [(t.trial_id, t.config_id, t.budget) for t in before] == \
        [(t.trial_id, t.config_id, t.budget) for t in after[:len(before)]]
    assert len(after) == len(before) + 3
    finished = [(json.dumps(t.config, sort_keys=True), t.budget) for t in after if t.status in ("ok", "failed")]
    assert len(finished) == len(set(finished))  # nothing trained twice
    assert len(list((tmp_path / "run").glob("smac-unreadable-*"))) == 1
    saved = json.loads(history.read_text())  # the state SMAC saved since, whole, under the store's ids
    for t in after:
        assert saved["configs"][str(t.config_id)] == pytest.approx(t.config)
    assert summary_of(tmp_path / "run").default is not None  # the comparison survives


def _default_raises(request):
    """The default fails inside the trial (as a bad hyperparameter would); its worker lives."""
    if _is_default_at_top(request):
        raise ValueError("shift_max -80 is below the smallest exponent")
    return _quick_trial(request)


def test_a_default_that_fails_inside_the_trial_still_stops_the_run(tmp_path):
    space = _write(tmp_path / "s.yaml", DEFAULT_SPACE)
    with pytest.raises(OptimizeError, match="the default configuration failed, so every trial would: .*shift_max"):
        optimize(Experiment(**{**TINY, "space": space}, budget=60), tmp_path / "run", trial_fn=_default_raises)
    assert [t.status for t in _defaults_at_top(tmp_path / "run")] == ["failed"]  # not run again


def test_resume_under_another_path_keeps_the_smac_state(tmp_path):
    """A run folder moved (or named relatively when it was made absolutely) resumes without SMAC
    prompting about a changed scenario (its saved scenario names the folder)."""
    optimize(Experiment(**TINY, budget=120, trials=3), tmp_path / "made")
    (tmp_path / "made").rename(tmp_path / "moved")
    out = subprocess.run([sys.executable, "-m", "autodsnn", "optimize", "--resume", "moved", "--budget", "240s",
                          "--trials", "5"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(rows(tmp_path / "moved")) == 5


def test_resume_searches_the_space_the_run_started_in(tmp_path, monkeypatch):
    """The run keeps its own copy of the space file: a resume from another folder finds it, and a
    space file edited since the run started is refused (it would be another search), keeping the run."""
    project = tmp_path / "project"
    (project / "spaces").mkdir(parents=True)
    space = project / "spaces" / "mine.yaml"
    space.write_text("name: mine\nhyperparameters:\n  optimizer: {choices: [sgd, adam], default: adam}\n"
                     "  lr: {low: 0.001, high: 0.05, log: true, default: 0.01}\n")
    monkeypatch.chdir(project)
    optimize(Experiment(**{**TINY, "space": "spaces/mine.yaml"}, budget=120, trials=2), tmp_path / "run")
    assert (tmp_path / "run" / "space.yaml").read_text() == space.read_text()
    monkeypatch.chdir(tmp_path)  # "spaces/mine.yaml" means nothing here: the run's copy is searched
    with Run.open(tmp_path / "run") as run:
        saved = Experiment.from_dict(run.experiment)
    optimize(saved.replace(trials=3, budget=240), tmp_path / "run", resume=True)
    assert len(rows(tmp_path / "run")) == 3
    monkeypatch.chdir(project)
    space.write_text(space.read_text().replace("high: 0.05", "high: 0.5"))
    with pytest.raises(ExperimentError, match=r"search space spaces/mine.yaml .* changed since the run started"):
        optimize(saved.replace(trials=4, budget=240), tmp_path / "run", resume=True)
    assert len(rows(tmp_path / "run")) == 3  # nothing lost, nothing run
    with Run.open(tmp_path / "run") as run:
        assert run.experiment["trials"] == 3  # the refused resume left the saved settings alone
    # A run without its copy (made before copies were kept) is checked against the space SMAC
    # saved: refused in one line, where SMAC would have stopped to ask on the terminal
    (tmp_path / "run" / "space.yaml").unlink()
    with pytest.raises(ExperimentError, match=r"the search space differs from the one the run started with "
                                              r"\(saved in .*configspace.json\): restore the space file"):
        optimize(saved.replace(trials=4, budget=240), tmp_path / "run", resume=True)
    assert len(rows(tmp_path / "run")) == 3
    with Run.open(tmp_path / "run") as run:
        assert run.experiment["trials"] == 3
    space.write_text(space.read_text().replace("high: 0.5", "high: 0.05"))  # restored: the resume runs
    optimize(saved.replace(trials=4, budget=240), tmp_path / "run", resume=True)
    assert len(rows(tmp_path / "run")) == 4 and (tmp_path / "run" / "space.yaml").read_text() == space.read_text()


@pytest.mark.parametrize("min_budget, optimizer, warns", [(1, "smac", True), (1, "hyperband", True),
                                                          (9, "smac", False), (1, "random", False)])
def test_the_bracket_warning_only_where_there_are_brackets(caplog, min_budget, optimizer, warns):
    """A first trial too slow for one Hyperband bracket in the time left warns, unless the strategy
    has no brackets (random search, or one fidelity: min_budget == max_budget)."""
    from types import SimpleNamespace

    from autodsnn.search.optimize import _Optimizer

    loop = object.__new__(_Optimizer)  # only the fields the warning reads
    loop.exp = Experiment(**{**TINY, "min_budget": min_budget, "max_budget": 9, "optimizer": optimizer})
    loop.warned_budget, loop.slots, loop.deadline = False, 2, time.time() + 60
    slow = TrialResult(status="ok", val_error=0.2, wall_time=270.0)  # 30 s per epoch: 9 epochs outlast 60 s
    with caplog.at_level("WARNING", logger="autodsnn.search.optimize"):
        loop._maybe_warn_budget(SimpleNamespace(budget=9.0), slow)
    assert ("one Hyperband bracket" in caplog.text) == warns, caplog.text


@pytest.mark.parametrize("slots, walls, asks, left, expected", [
    (2, [30.0], [2.0], 600, 1),          # trials of 30 s cover a 2 s refit: one waiting trial
    (16, [1.0], [0.05], 600, 4),         # quick asks: a quarter of the slots
    (16, [1.0, 1.0, 5.0], [1.5], 600, 24),  # a 1.5 s refit with 1 s trials: 24 finish meanwhile
    (16, [1.0], [3.0], 600, 32),         # a 3 s refit: at most twice the slots wait
    (16, [1.0], [0.3], 600, 5),          # 16 x 0.3 s / 1 s = 4.8 trials finish during the ask
    (16, [1.0], [0.3], 1.5, 0),          # less than two typical trials left: nothing more waits
    (16, [1.0], [3.0], 2.78, 12),        # 16 x (2.78 - 2) trials can still start and end in time
    (8, [], [], 600, 2),                 # nothing finished yet: a quarter of the slots
])
def test_trials_waiting_at_the_scheduler_cover_the_drivers_longest_ask(slots, walls, asks, left, expected):
    from collections import deque

    from autodsnn.search.optimize import _Optimizer

    loop = object.__new__(_Optimizer)  # only the fields queued() reads
    loop.slots, loop.deadline = slots, time.time() + left
    loop.recent_walls, loop.recent_asks = deque(walls), deque(asks)
    assert loop.queued() == expected


def test_log_objectives_reach_smac_as_logarithms_while_the_store_keeps_the_values(tmp_path):
    import math

    exp = Experiment(**TINY, objectives="error,inference_energy", log_objectives="inference_energy", budget=120,
                     trials=6)
    optimize(exp, tmp_path / "run", trial_fn=_quick_trial)
    stored = {(t.config["lr"], t.budget): t for t in rows(tmp_path / "run") if t.status == "ok"}
    saved = json.loads(next((tmp_path / "run" / "smac").rglob("runhistory.json")).read_text())
    told = {(saved["configs"][str(d["config_id"])]["lr"], d["budget"]): d["cost"] for d in saved["data"]
            if d["status"] == 1}  # StatusType.SUCCESS
    assert len(told) >= 4 and told.keys() <= stored.keys()
    for key, cost in told.items():
        t = stored[key]
        assert t.told["inference_energy"] == t.result.inference_energy_uj  # the store: the value itself
        assert cost == pytest.approx([t.result.val_error, math.log(t.result.inference_energy_uj)], rel=1e-12)


def test_log_objectives_must_be_positive_objectives_of_the_run():
    assert Experiment(objectives="error,analytic_energy", log_objectives=["analytic_energy"]).log_objectives == (
        "analytic_energy",)
    with pytest.raises(ExperimentError, match=r"log_objectives: 'latency' is not an objective of this run"):
        Experiment(objectives="error,inference_energy", log_objectives="latency")
    with pytest.raises(ExperimentError, match=r"log_objectives: 'error' can be 0.*log only inference_energy"):
        Experiment(objectives="error,inference_energy", log_objectives="error")
    with pytest.raises(ExperimentError, match=r"log_objectives: 'analytic_enrgy' .* did you mean 'analytic_energy'"):
        Experiment(objectives="error,analytic_energy", log_objectives="analytic_enrgy")
    with pytest.raises(ExperimentError, match=r"log_objectives: 'analytic_energy' is named twice"):
        Experiment(objectives="error,analytic_energy", log_objectives="analytic_energy, analytic_energy")
    with pytest.raises(ExperimentError, match=r"unknown objective 'inference_enrgy': did you mean 'inference_energy'"):
        Experiment(objectives="error,inference_enrgy")
