import json
import subprocess
import sys

import pytest

from autodsnn.cli import build_parser, dataclass_values, main
from autodsnn.search import Experiment
from autodsnn.trial import HParams, Task


@pytest.mark.parametrize("argv,message", [
    (["train", "--dataset", "mnistt"], "Unknown data set 'mnistt'"),
    (["train", "--model", "resnet2O"], "unknown model 'resnet2O'"),
    (["train", "--optimizer", "adamx"], "unknown optimizer 'adamx'"),
    (["train", "-wb", "9"], "weight_bits=9 is impossible"),
    (["cost", "--model", "nope"], "unknown model 'nope'"),
])
def test_clear_one_line_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_train_writes_run_folder(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "autodsnn", "train", "--dataset", "mnist", "--model", "mnist-fc",
                           "--shift-type", "q", "--epochs", "0.2", "--train-subset", "0.1", "--opt", "sgd",
                           "--lr", "0.05", "-ab", "4", "8", "--out", str(out)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok" and metrics["hparams"]["act_int_bits"] == 4
    assert (out / "checkpoint.pt").exists() and (out / "shift_codes.pt").exists() and (out / "metrics.csv").exists()
    assert "val acc" in proc.stdout


def test_cost_command(capsys):
    assert main(["cost", "--model", "shiftresnet20", "--shift-type", "none"]) == 0
    assert "params 95,642" in capsys.readouterr().out


def test_train_flags_default_to_the_library_defaults():
    args = build_parser().parse_args(["train"])
    assert HParams(**dataclass_values(HParams, args)) == HParams()
    assert Task(**dataclass_values(Task, args)) == Task()
    assert args.shift_max == HParams().shift_max == "auto"  # the CLI once trained with 0


def test_every_hyperparameter_is_reachable_from_the_command_line():
    argv = ["train", "-st", "dense", "-sd", "3", "-wb", "3", "--shift-max", "-2", "-ab", "4", "8",
            "--unsigned-activations", "-r", "stochastic", "--opt", "SGD", "--lr", "0.2", "--momentum", "0.9",
            "--wd", "1e-4", "-b", "32", "--schedule", "step", "--lr-step", "2", "--lr-gamma", "0.5"]
    hp = HParams(**dataclass_values(HParams, build_parser().parse_args(argv)))
    assert hp == HParams(shift_type="dense", shift_depth=3, weight_bits=3, shift_max=-2, act_int_bits=4,
                         act_frac_bits=8, act_signed=False, rounding="stochastic", optimizer="sgd", lr=0.2,
                         momentum=0.9, weight_decay=1e-4, batch_size=32, schedule="step", lr_step=2, lr_gamma=0.5)
    assert (HParams(**dataclass_values(HParams, build_parser().parse_args(["train", "-sd", "1000"]))).shift_depth
            == "all")


def test_optimize_flags_override_only_what_is_given():
    args = build_parser().parse_args(["optimize", "--max-budget", "27", "--objectives", "error,model_bits"])
    given = {k: v for k, v in dataclass_values(Experiment, args).items() if v is not None}
    assert given == {"max_budget": 27.0, "objectives": "error,model_bits"}
    assert Experiment.from_dict(given).objectives == ("error", "model_bits")


def test_debug_shows_the_cause(capsys):
    assert main(["train", "--model", "resnet2O", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "unknown model 'resnet2O'" in err.splitlines()[-1]
