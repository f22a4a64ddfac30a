"""SMAC's saved state survives a kill at any moment: saved atomically, and set aside on resume
when it cannot be read (the store then catches SMAC up; tests/test_optimize.py runs that end to end)."""
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from autodsnn import atomic
from autodsnn.search import facade
from autodsnn.search.experiment import Experiment
from autodsnn.search.smac_state import STATE_FILES, save_smac_state, unreadable_state_files
from autodsnn.search.space import load_space

OPTIMIZERS = ("smac", "hyperband", "random")


def _experiment(optimizer="smac"):
    return Experiment(dataset="mnist", model="mnist-fc", space="small", min_budget=1, max_budget=3,
                      objectives=("error", "inference_energy"), optimizer=optimizer)


def _tell(smac, n, offset=0):
    from smac.runhistory.dataclasses import TrialValue

    for i in range(n):
        info = smac.ask()
        smac.tell(info, TrialValue(cost=[((i + offset) * 7919 % 97) / 97, float((i + offset) % 13)], time=1.0),
                  save=False)


def _saved_run(tmp_path, optimizer="smac", n=12):
    """A facade asked and told ``n`` trials and saved: (experiment, space, run folder, state folder, facade)."""
    exp, space = _experiment(optimizer), load_space("small", max_layers=3)
    run_dir = tmp_path / "run"
    smac = facade.build_facade(exp, space, run_dir, overwrite=True)
    _tell(smac, n)
    save_smac_state(smac)
    return exp, space, run_dir, smac.scenario.output_directory, smac


@pytest.fixture(scope="module")
def saved_template(tmp_path_factory):
    """One saved run, copied by each damage case (building and telling costs more than copying)."""
    exp, space, run_dir, folder, _ = _saved_run(tmp_path_factory.mktemp("template"))
    return exp, space, run_dir, folder.relative_to(run_dir)


def _resume(exp, space, run_dir):
    return facade.build_facade(exp, space, run_dir, overwrite=False)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_a_whole_saved_state_is_what_a_resume_continues_from(tmp_path, optimizer):
    exp, space, run_dir, folder, smac = _saved_run(tmp_path, optimizer)
    assert unreadable_state_files(folder) == []
    resumed = _resume(exp, space, run_dir)
    assert len(resumed.runhistory) == len(smac.runhistory) == 12
    assert resumed.runhistory.ids_config == smac.runhistory.ids_config
    assert not list(run_dir.glob("smac-unreadable-*"))
    # the copy a later resume restores, should a kill cut off a file while SMAC rewrites them
    assert unreadable_state_files(run_dir / "smac-whole") == []
    assert json.loads((run_dir / "smac-whole" / "runhistory.json").read_text())["configs"] == \
        json.loads((folder / "runhistory.json").read_text())["configs"]


def _damage(path, how):
    if how == "missing":
        path.unlink()
    elif how == "empty":
        path.write_text("")
    else:  # cut off part way, as a kill during an in-place write leaves it
        text = path.read_text()
        path.write_text(text[: len(text) // 2])


def _resume_logging(exp, space, run_dir, caplog):
    """Resume, returning the facade and the warnings of autodsnn.search.smac_state. On the module's
    logger itself: SMAC's logging setup sets the root logger to ERROR and replaces its handlers
    (the command line gives the package's logger its own)."""
    logger = logging.getLogger("autodsnn.search.smac_state")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            resumed = _resume(exp, space, run_dir)
    finally:
        logger.removeHandler(caplog.handler)
    return resumed, " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


@pytest.mark.parametrize("how", ["empty", "cut off", "missing"])
@pytest.mark.parametrize("name", STATE_FILES)
def test_a_resume_sets_aside_a_state_it_cannot_read_and_starts_smac_afresh(tmp_path, caplog, saved_template,
                                                                           name, how):
    """No copy to restore (the run's first resume). Before the fix: optimization.json,
    scenario.json, configspace.json raised (JSONDecodeError, FileNotFoundError); runhistory.json
    and intensifier.json were dropped with SMAC's own log line only, the run history silently empty."""
    exp, space, template, inside = saved_template
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    folder = run_dir / inside
    _damage(folder / name, how)
    damaged = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    resumed, message = _resume_logging(exp, space, run_dir, caplog)
    assert len(resumed.runhistory) == 0  # SMAC starts afresh; the store catches it up
    (aside,) = run_dir.glob("smac-unreadable-*")
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.is_file()} == damaged  # kept, as found
    assert f"{name} ({how}" in message and str(aside) in message and "SMAC starts afresh" in message
    assert unreadable_state_files(folder) == []  # SMAC wrote a whole new state
    _tell(resumed, 3)
    save_smac_state(resumed)
    assert len(_resume(exp, space, run_dir).runhistory) == 3  # and the next resume continues from it
    assert len(list(run_dir.glob("smac-unreadable-*"))) == 1


@pytest.mark.parametrize("name", STATE_FILES)
def test_a_state_cut_off_while_smac_rewrote_it_is_restored_from_the_copy_kept_before(tmp_path, caplog,
                                                                                   saved_template, name):
    """SMAC rewrites every file in place while a facade is built: a kill then (emulated: the file
    cut off after the resume) is mended from the copy kept just before, run history and all."""
    exp, space, template, inside = saved_template
    run_dir = tmp_path / "run"
    shutil.copytree(template, run_dir)
    folder = run_dir / inside
    first = _resume(exp, space, run_dir)  # keeps the copy, then SMAC rewrites its files
    _damage(folder / name, "cut off")
    resumed, message = _resume_logging(exp, space, run_dir, caplog)
    assert "restored from the copy" in message and f"{name} (cut off" in message
    assert len(resumed.runhistory) == len(first.runhistory) == 12
    assert resumed.runhistory.ids_config == first.runhistory.ids_config
    assert resumed.intensifier.get_state() == first.intensifier.get_state()  # Hyperband's brackets too
    assert len(list(run_dir.glob("smac-unreadable-*"))) == 1


def test_no_state_at_all_is_not_a_damaged_state(tmp_path):
    assert unreadable_state_files(tmp_path) == []
    assert unreadable_state_files(tmp_path / "absent") == []


def _dies_on_replace(monkeypatch, when):
    """os.replace in autodsnn.atomic raises (the process 'dies') on its call number ``when``."""
    calls = [0]
    real = os.replace

    def replace(src, dst):
        if calls[0] == when:
            raise SystemExit("killed")
        calls[0] += 1
        real(src, dst)
    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("when", [0, 1, 2])
def test_a_save_cut_short_at_each_file_leaves_every_file_whole(tmp_path, monkeypatch, when):
    """Files are replaced in the order run history, intensifier, optimizer counters: a save that
    dies before replacing file ``when`` leaves the files before it new and the rest as they were."""
    exp, space, run_dir, folder, smac = _saved_run(tmp_path)
    order = ["runhistory.json", "intensifier.json", "optimization.json"]
    old = {name: (folder / name).read_text() for name in order}
    _tell(smac, 5, offset=100)
    _dies_on_replace(monkeypatch, when)
    with pytest.raises(SystemExit):
        save_smac_state(smac)
    monkeypatch.undo()
    assert unreadable_state_files(folder) == []
    for name in order[when:]:
        assert (folder / name).read_text() == old[name]
    for name in order[:when]:
        assert (folder / name).read_text() != old[name]
    assert not [p for p in folder.iterdir() if ".tmp" in p.name]  # no temporary file left behind
    assert len(_resume(exp, space, run_dir).runhistory) == (12 if when == 0 else 17)


def test_replaced_atomically_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "state.json"
    atomic.write_atomically(path, "old")
    with pytest.raises(RuntimeError):
        with atomic.replaced_atomically(path) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("the writer died")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["state.json"]
    atomic.write_atomically(path, b"\x00new", durable=False)
    assert path.read_bytes() == b"\x00new"


_SAVER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from smac.runhistory.dataclasses import TrialInfo, TrialValue
    from autodsnn.search import facade
    from autodsnn.search.experiment import Experiment
    from autodsnn.search.smac_state import save_smac_state
    from autodsnn.search.space import load_space

    exp = Experiment(dataset="mnist", model="mnist-fc", space="small", min_budget=1, max_budget=3,
                     objectives=("error", "inference_energy"))
    space = load_space("small", max_layers=3)
    smac = facade.build_facade(exp, space, Path(sys.argv[1]), overwrite=True)
    space.seed(0)
    for i, config in enumerate(space.sample_configuration(400)):  # a run history of some size
        smac.runhistory.add_trial(TrialInfo(config=config, seed=0, budget=1.0), TrialValue(cost=[i / 400, i % 7]))
    save_smac_state(smac)
    print(smac.scenario.output_directory, flush=True)
    while True:
        save_smac_state(smac)
""")


def test_a_sigkill_at_a_random_moment_of_saving_leaves_a_readable_state(tmp_path):
    """A process that does nothing but save is SIGKILLed at random moments (with SMAC's own
    in-place save, the same loop left cut-off files)."""
    rng = random.Random(0)
    exp, space = _experiment(), load_space("small", max_layers=3)
    for attempt in range(3):
        run_dir = tmp_path / f"run{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(run_dir)], stdout=subprocess.PIPE, text=True)
        try:
            folder = proc.stdout.readline().strip()
            assert folder, "the saving process did not start"
            time.sleep(rng.uniform(0.05, 0.4))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert unreadable_state_files(run_dir / "smac" / "smac" / "0") == []
        assert len(json.loads((run_dir / "smac" / "smac" / "0" / "runhistory.json").read_text())["data"]) == 400
        assert len(_resume(exp, space, run_dir).runhistory) == 400
        shutil.rmtree(run_dir)
