import json
import subprocess
import sys

import pytest

from autodsnn.cli import main


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
