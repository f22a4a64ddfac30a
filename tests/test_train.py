import time

import pytest
import torch

from autodsnn.trial.optim import OPTIMIZERS, Lookahead, build_optimizer, param_groups
from autodsnn.shift import ShiftConfig, convert
from autodsnn.trial import HParams, Task, load_checkpoint, train_trial
from autodsnn.trial.hparams import HParamsError

SMALL = Task(dataset="mnist", model="mnist-fc", train_subset=0.1, val_fraction=0.05)


def test_short_real_training_learns_and_measures_energy(tmp_path):
    result = train_trial({"shift_type": "ps", "optimizer": "adam", "lr": 0.003, "weight_bits": 5}, 1.0, task=SMALL,
                         checkpoint_path=tmp_path / "c.pt", export_path=tmp_path / "codes.pt")
    assert result.ok, result.reason
    assert result.val_error < 0.3  # chance is 0.9
    assert result.converted_layers == 3
    assert result.energy_kwh > 0 and result.emissions_kg > 0 and not result.missing
    assert result.inference_energy_uj > 0 and result.inference_latency_ms > 0 and result.inference_samples == 3000
    assert result.energy["measured"]["ram"] is False  # CodeCarbon models RAM power: estimated
    assert "cpu" in result.energy["measured"]
    assert result.analytic["shifts"] > 0 and result.analytic["macs"] == 0
    assert result.epochs_done == 1.0 and (tmp_path / "c.pt").exists() and (tmp_path / "codes.pt").exists()
    # the measured inference pass ran the packed native kernels and they classify like the emulation
    assert result.inference_path == "native-cpu float"
    assert abs(result.inference_error - result.val_error) <= 1 / 3000


@pytest.mark.parametrize("kernels,path", [("integer", "native-cpu integer"), ("emulation", "torch-emulation")])
def test_inference_pass_runs_the_requested_arithmetic(kernels, path):
    task = Task(dataset="mnist", model="mnist-fc", train_subset=0.05, val_fraction=0.05, inference_kernels=kernels)
    hp = {"shift_type": "q", "weight_bits": 4, "act_int_bits": 4, "act_frac_bits": 6}
    result = train_trial(hp, 0.3, task=task)
    assert result.ok and result.inference_path == path
    assert abs(result.inference_error - result.val_error) <= 2 / 3000
    float_model = train_trial({"shift_type": "none"}, 0.1, task=task)
    assert float_model.inference_path == "torch float (no shift layers)"
    with pytest.raises(ValueError, match="inference_kernels"):
        Task(inference_kernels="fast")


def test_divergence_is_a_failed_result_with_reason():
    result = train_trial({"shift_type": "none", "optimizer": "sgd", "lr": 1e12}, 0.2, task=SMALL)
    assert result.status == "failed" and result.reason.startswith("diverged")
    assert result.val_error is None


def test_bad_configuration_and_errors_do_not_raise():
    assert "unknown optimizer" in train_trial({"optimizer": "sgdx"}, 1, task=SMALL).reason
    assert "unknown hyperparameter 'lrr'" in train_trial({"lrr": 0.1}, 1, task=SMALL).reason
    r = train_trial({}, 0.1, task=Task(dataset="cifar10", data_dir="/nonexistent", model="resnet20"))
    assert r.status == "failed" and "DatasetNotFoundError" in r.reason


@pytest.mark.parametrize("momentum", [1.0, 1.5, -0.1, float("nan"), float("inf")])
def test_momentum_outside_zero_to_one_is_refused(momentum):
    # at 1 the velocity never decays, above it grows every step, below 0 it flips sign
    with pytest.raises(HParamsError, match=r"momentum must be in \[0, 1\)"):
        HParams(optimizer="sgd", momentum=momentum)


def test_momentum_only_for_sgd_like():
    with pytest.raises(ValueError, match="momentum"):
        HParams(optimizer="adam", momentum=0.9)
    HParams(optimizer="sgd", momentum=0.9)


def test_resume_from_checkpoint_equals_training_through(tmp_path):
    hp = {"shift_type": "q", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "cosine"}
    task = Task(dataset="mnist", model="mnist-fc", train_subset=0.05, val_fraction=0.05, schedule_epochs=2.0,
                measure_inference=False)
    through = train_trial(hp, 2.0, task=task, checkpoint_path=tmp_path / "through.pt")
    half = train_trial(hp, 1.5, task=task, checkpoint_path=tmp_path / "half.pt")
    assert half.epochs_done == 1.5
    resumed = train_trial(hp, 2.0, task=task, resume_from=tmp_path / "half.pt", checkpoint_path=tmp_path / "r.pt")
    assert resumed.resumed_from_epochs == 1.5 and resumed.epochs_done == 2.0
    a, b = load_checkpoint(tmp_path / "through.pt")["model"], load_checkpoint(tmp_path / "r.pt")["model"]
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert resumed.val_error == pytest.approx(through.val_error)
    other = train_trial({**hp, "lr": 0.01}, 2.0, task=task, resume_from=tmp_path / "half.pt")
    assert other.status == "failed" and "another configuration" in other.reason


def test_deadline_cuts_trial_short_with_partial_metrics():
    task = Task(dataset="mnist", model="mnist-conv", val_fraction=0.05, measure_inference=False)
    result = train_trial({"shift_type": "q"}, 5.0, task=task, deadline=time.time() + 3)
    assert result.status == "cut_short" and "deadline" in result.reason
    assert 0 < result.epochs_done < 5 and result.val_error is not None and result.energy_kwh > 0


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_steps(name):
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    convert(model, ShiftConfig(mode="ps", shift_depth=1))
    opt = build_optimizer(name, model, lr=0.1, momentum=0.9 if name in ("sgd", "rmsprop") else 0.0, weight_decay=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(7):
        opt.zero_grad()
        model(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))
    if name == "ranger":
        assert isinstance(opt, Lookahead)


def test_shift_latents_get_no_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    convert(model, ShiftConfig(mode="ps", shift_depth=1))
    groups = {g["name"]: g for g in param_groups(model, weight_decay=0.1)}
    no_decay = {id(p) for p in groups["shift_latents_norms_biases"]["params"]}
    assert id(model[0].weight_quant.shift) in no_decay and id(model[0].weight_quant.sign) in no_decay
    assert groups["weights"]["weight_decay"] == 0.1 and id(model[1].weight) not in no_decay


def test_retrain_and_a_trial_run_the_same_loop(tmp_path):
    """Same configuration, seed and data: retraining trains exactly as a trial does, fractional
    last epoch included (one epoch loop, one schedule, one partial-epoch rule)."""
    from autodsnn.analysis.retrain import retrain

    config = {"shift_type": "ps", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "cosine",
              "batch_size": 32}
    task = Task(dataset="digits", model="mnist-fc", val_fraction=0.0, measure_inference=False)
    trial = train_trial(config, 1.5, task=task, seed=3)
    card = retrain(config, task, 1.5, tmp_path / "retrain", seed=3)
    assert trial.ok, trial.reason
    assert [h["epoch"] for h in card["history"]] == [h["epoch"] for h in trial.history] == [1.0, 1.5]
    assert [h["train_loss"] for h in card["history"]] == [h["train_loss"] for h in trial.history]


def test_validating_only_after_the_last_epoch_trains_the_same_model():
    """Search trials validate once, after the last epoch (``validate_each_epoch=False``): the
    trained model, its final validation figures and its training curve are those of a trial that
    validated after every epoch; only the intermediate validation figures are left out."""
    each = Task(dataset="digits", model="mnist-fc", val_fraction=0.2, measure_inference=False)
    once = Task(**{**each.to_dict(), "validate_each_epoch": False})
    hp = {"shift_type": "ps", "optimizer": "adam", "lr": 0.01, "batch_size": 64}
    a, b = train_trial(hp, 2.5, task=each, seed=3), train_trial(hp, 2.5, task=once, seed=3)
    assert a.ok and b.ok
    assert (a.val_error, a.val_loss, a.train_loss) == (b.val_error, b.val_loss, b.train_loss)
    assert [r["epoch"] for r in a.history] == [r["epoch"] for r in b.history] == [1.0, 2.0, 2.5]
    assert [r["train_loss"] for r in a.history] == [r["train_loss"] for r in b.history]
    assert all("val_error" in r for r in a.history)
    assert ["val_error" in r for r in b.history] == [False, False, True]
    assert b.history[-1]["val_error"] == a.history[-1]["val_error"] == a.val_error


def test_search_trials_validate_once_and_it_does_not_split_checkpoints():
    from autodsnn.search.experiment import Experiment
    from autodsnn.trial.hparams import HParams, config_key
    task = Experiment.from_file("default").task()
    assert task.validate_each_epoch is False
    hp = HParams.from_dict({"shift_type": "q"})
    assert config_key(hp, task) == config_key(hp, Task(**{**task.to_dict(), "validate_each_epoch": True}))


@pytest.mark.parametrize("damage", ["cut off", "empty", "missing"])
def test_a_checkpoint_that_cannot_be_read_is_trained_from_scratch_with_a_note(tmp_path, damage):
    """A damaged lower-budget checkpoint (a disk fault, a file written in place by an older version)
    fails neither the promotion nor the run: the trial trains its whole budget and says why."""
    hp = {"shift_type": "ps", "optimizer": "sgd", "lr": 0.05}
    task = Task(dataset="mnist", model="mnist-fc", train_subset=0.02, val_fraction=0.05, measure_inference=False)
    train_trial(hp, 1.0, task=task, checkpoint_path=tmp_path / "low.pt")
    low = tmp_path / "low.pt"
    if damage == "missing":
        low.unlink()
    else:
        low.write_bytes(low.read_bytes()[: low.stat().st_size // 2] if damage == "cut off" else b"")
    result = train_trial(hp, 2.0, task=task, resume_from=low)
    assert result.status == "ok" and result.resumed_from_epochs == 0 and result.epochs_done == 2.0
    assert len(result.notes) == 1 and result.notes[0].startswith(f"checkpoint {low} cannot be read")
    assert result.notes[0].endswith("trained from scratch")
    assert result.energy_kwh_total == result.energy_kwh  # no prior energy claimed
    # a readable checkpoint of another configuration is still an error, not silently ignored
    train_trial(hp, 1.0, task=task, checkpoint_path=low)
    other = train_trial({**hp, "lr": 0.01}, 2.0, task=task, resume_from=low)
    assert other.status == "failed" and "another configuration" in other.reason and not other.notes
