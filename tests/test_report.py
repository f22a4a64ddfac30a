"""Pareto CLI, plots, the HTML report (opened in headless Chromium) and retraining."""
import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from autodsnn.cli import main
from autodsnn.zoo.data import TensorLoader, load_dataset
from autodsnn.search.experiment import Experiment
from autodsnn.trial.loop import evaluate
from autodsnn.zoo.models import create_model
from autodsnn.search.optimize import optimize
from autodsnn.analysis.pareto import ParetoError, front_info, hypervolume_curve
from autodsnn.analysis.plots import plot_front
from autodsnn.analysis.report import write_report
from autodsnn.shift import load_codes
from autodsnn.store import Run
from autodsnn.trial import TrialResult


def make_run(path, n=12, seed=0):
    """A run store with trials at two budgets (numbers made up, the store and analysis real)."""
    rng = np.random.default_rng(seed)
    run = Run.create(path, Experiment(objectives=("error", "energy")).to_dict())
    t0 = 1000.0
    for i in range(n):
        budget = 1.0 if i < n // 2 else 3.0
        err, energy = float(rng.uniform(0.1, 0.9)), float(rng.uniform(1e-5, 1e-3))
        config = {"shift_type": ["q", "ps", "dense", "none"][i % 4], "shift_depth": 2, "weight_bits": 4,
                  "optimizer": "adam", "lr": 0.01}
        result = TrialResult(status="ok", val_error=err, energy_kwh=energy, energy_kwh_total=energy,
                             analytic={"energy_pj_per_sample": 1e6, "model_bits": 1000}, wall_time=1.0)
        run.add(config_id=i, config=config, budget=budget, seed=0, result=result,
                told={"error": err, "energy": energy}, is_default=(i == n - 1), started_at=t0 + i, ended_at=t0 + i + 1)
    run.add(config_id=99, config={"shift_type": "q"}, budget=1.0, seed=0,
            result=TrialResult.failed("diverged: loss became nan", budget=1.0))
    run.close()
    return path


def test_front_info_and_hypervolume_curve(tmp_path):
    with Run.open(make_run(tmp_path / "run")) as run:
        info = front_info(run)
        assert info.budget == 3.0 and len(info.trials) == 6
        assert info.default_index is not None and info.knee_index is not None
        curve = hypervolume_curve(run, info.objectives)
        hvs = [hv for _, hv in curve]
        assert hvs == sorted(hvs) and hvs[-1] == pytest.approx(info.hypervolume)  # never decreases
        with pytest.raises(ParetoError, match="unknown objective 'accuracy'"):
            front_info(run, ("error", "accuracy"))
        with pytest.raises(ParetoError, match="no successful trial at budget 7"):
            front_info(run, budget=7)


def test_empty_run_is_a_clear_error(tmp_path):
    Run.create(tmp_path / "empty", Experiment().to_dict()).close()
    with Run.open(tmp_path / "empty") as run, pytest.raises(ParetoError, match="no successful trial"):
        front_info(run)
    assert main(["pareto", str(tmp_path / "empty")]) == 2


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_plot_formats(tmp_path, suffix, magic):
    with Run.open(make_run(tmp_path / "run")) as run:
        path = plot_front(front_info(run), tmp_path / f"front{suffix}")
    data = path.read_bytes()
    assert data.startswith(magic) and len(data) > 5000


def test_pareto_cli_exports(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    assert main(["pareto", str(run), "--budget", "all", "--export", str(tmp_path / "f.svg"),
                 "--csv", str(tmp_path / "f.csv"), "--json", str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "budget 1 epochs" in out and "budget 3 epochs" in out and "[knee]" in out
    payload = json.loads((tmp_path / "f.json").read_text())
    fronts = payload["fronts"]
    assert [p["budget"] for p in fronts] == [1.0, 3.0] and all(p["hypervolume"] > 0 for p in fronts)
    # the search's own footprint: every trial's energy, the failed one's (missing) left out and counted
    assert payload["footprint"]["trials"] == 13 and payload["footprint"]["missing"] == 1
    assert "the search's own footprint" in out and "1 trial(s) without a valid energy reading" in out
    curve = payload["hypervolume_against_energy_kwh"]
    spent = [p["energy_kwh"] for p in curve]
    assert spent == sorted(spent) and spent[-1] == pytest.approx(payload["footprint"]["energy_kwh"])
    assert (tmp_path / "f.csv").read_text().startswith("budget,trial_id")
    assert main(["pareto", str(run), "--export", str(tmp_path / "f.gif")]) == 2


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_opens_in_headless_chromium(tmp_path):
    report = write_report(make_run(tmp_path / "run"))
    text = report.read_text()
    assert "<img" in text and "Pareto configurations" in text and "diverged" in text
    shot = tmp_path / "shot.png"
    proc = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                           "--no-first-run", "--disable-background-networking", "--disable-component-update",
                           "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,1600",
                           report.as_uri()], capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    from PIL import Image
    img = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert img.shape == (1600, 1200)
    assert img.std() > 20  # a rendered page with text and a plot, not a blank screen


def test_retrain_on_a_real_small_run(tmp_path):
    exp = Experiment(dataset="mnist", model="mnist-fc", space="small", train_subset=0.02, val_fraction=0.05,
                     min_budget=1, max_budget=1, workers=2, budget=300, trials=3, fixed={"batch_size": 64})
    optimize(exp, tmp_path / "run")
    out = tmp_path / "retrained"
    assert main(["retrain", str(tmp_path / "run"), "--pick", "min-error", "--epochs", "0.3", "--out", str(out)]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["test_samples"] == 10000 and card["train_samples"] == 60000 and card["training_energy_kwh"] > 0
    assert "min-error of the Pareto front" in card["chosen_by"] and (out / "model_card.md").exists()
    # The saved model (with its exported shift codes, if any) reproduces the reported test accuracy.
    model = create_model("mnist-fc", num_classes=10)
    if card["converted_layers"]:
        load_codes(model, out / "shift_codes.pt")
    state = torch.load(out / "model.pt", weights_only=True)["model"]
    model.load_state_dict(state)
    test = load_dataset("mnist", val_fraction=0.0).test
    acc = evaluate(model, TensorLoader.from_dataset(test, 1000)).accuracy
    assert acc == pytest.approx(card["test_accuracy"], abs=1e-9)
    if card["converted_layers"]:  # the shipped arithmetic: the packed kernels classify like the emulation
        deployed = card["deployed_inference"]
        assert deployed["path"] == "native-cpu float" and deployed["images_per_second"] > 0
        assert abs(deployed["test_accuracy"] - card["test_accuracy"]) <= 2 / 10000
        assert "| deployed (native-cpu float) |" in (out / "model_card.md").read_text()
    assert main(["retrain", str(tmp_path / "run"), "--pick", "12345"]) == 2


def test_several_runs_median_front_and_shared_reference(tmp_path, capsys):
    from autodsnn.analysis.pareto import multi_run_info
    paths = [make_run(tmp_path / f"run{s}", seed=s) for s in range(3)]
    runs = [Run.open(p) for p in paths]
    try:
        info = multi_run_info(runs)
        assert all(np.array_equal(i.ref, info.ref) for i in info.infos)  # one reference point for all
        assert len(info.hypervolumes) == 3 and info.median_hypervolume == pytest.approx(np.median(info.hypervolumes))
        lo, mid, hi = info.attainment["25%"], info.attainment["50%"], info.attainment["75%"]
        assert np.all(lo <= mid) and np.all(mid <= hi)  # the band contains the median front
        # the 100%-attained curve would be the worst run's: every run reaches the median wherever it is finite
        for i in info.infos:
            f = i.points[i.front_mask]
            assert np.all(np.isfinite(mid[info.grid >= info.grid.max()]))
            assert f[:, 1].min() >= lo[np.isfinite(lo)].min() - 1e-12
    finally:
        for r in runs:
            r.close()
    assert main(["pareto", *map(str, paths), "--export", str(tmp_path / "median.png")]) == 0
    out = capsys.readouterr().out
    assert "hypervolume median" in out and (tmp_path / "median.png").stat().st_size > 5000


def test_retrain_from_config_without_a_run(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("shift_type: q\nweight_bits: 4\noptimizer: sgd\nlr: 0.05\nmomentum: 0.9\nbatch_size: 128\n")
    out = tmp_path / "out"
    assert main(["retrain", "--from-config", str(cfg), "--dataset", "mnist", "--model", "mnist-fc",
                 "--epochs", "0.1", "--out", str(out)]) == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["configuration"]["weight_bits"] == 4 and card["converted_layers"] == 3
    assert card["test_accuracy"] > 0.5 and "configuration file" in card["chosen_by"]
    deployed = card["deployed_inference"]  # the retrained DSNN run through the packed kernels
    assert deployed["path"] == "native-cpu float" and abs(deployed["test_accuracy"] - card["test_accuracy"]) <= 2e-4
    assert main(["retrain", "--from-config", str(cfg)]) == 2  # needs data set, model and epochs
    bad = tmp_path / "bad.yaml"
    bad.write_text("shift_type: q\nwieght_bits: 4\n")
    assert main(["retrain", "--from-config", str(bad), "--dataset", "mnist", "--model", "mnist-fc",
                 "--epochs", "0.1", "--out", str(out)]) == 2
    assert "unknown hyperparameter 'wieght_bits'" in capsys.readouterr().err


def test_pareto_all_budgets_skips_budgets_without_the_objectives(tmp_path, capsys):
    """A budget whose successful trials lack an objective (here model_bits) has no front: `--budget
    all` shows the budgets that have one instead of failing on the first that has not."""
    with Run.create(tmp_path / "run", Experiment(objectives=("error", "model_bits")).to_dict()) as run:
        run.add(config_id=1, config={"shift_type": "q"}, budget=1.0, seed=0,
                result=TrialResult(status="ok", val_error=0.3))
        run.add(config_id=2, config={"shift_type": "ps"}, budget=3.0, seed=0,
                result=TrialResult(status="ok", val_error=0.2, analytic={"model_bits": 800}))
    assert main(["pareto", str(tmp_path / "run"), "--budget", "all"]) == 0
    out = capsys.readouterr().out
    assert "budget 3 epochs" in out and "budget 1 epochs" not in out
