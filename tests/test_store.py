"""The run store: typed rows, columns derived from TrialResult and the objective registry, and
runs written by the first schema still open."""
import json
import sqlite3

import pytest

from autodsnn.store import SCHEMA_VERSION, Run, StoreError
from autodsnn.trial import OBJECTIVES, TrialResult, TrialStatus


def test_rows_come_back_typed_with_every_objective(tmp_path):
    with Run.create(tmp_path / "run", {"objectives": ["error", "energy"]}) as run:
        ok = TrialResult(status="ok", val_error=0.25, energy_kwh=2e-6, energy_kwh_total=3e-6, emissions_kg=1e-6,
                         analytic={"energy_pj_per_sample": 7.0, "model_bits": 640}, worker="host:1")
        failed = TrialResult.failed("ValueError: boom", budget=1.0, traceback="Traceback ...\nValueError: boom")
        run.add(config_id=1, config={"lr": 0.1}, budget=3.0, seed=0, result=ok, told={"error": 0.25, "energy": 3e-6})
        run.add(config_id=2, config={"lr": 0.2}, budget=1.0, seed=0, result=failed)
        first, second = run.trials()
        assert run.counts() == {TrialStatus.OK: 1, TrialStatus.FAILED: 1}
        assert [t.trial_id for t in run.trials(status="failed")] == [2]
    assert first.result == ok and first.status is TrialStatus.OK and first.told == {"error": 0.25, "energy": 3e-6}
    # objectives the run did not optimize are there too, read through the registry
    assert first.objectives == {"error": 0.25, "energy": 3e-6, "emissions": pytest.approx(1.5e-6),
                                "analytic_energy": 7.0, "model_bits": 640.0}
    assert second.objectives == {} and second.result.traceback.endswith("ValueError: boom")
    with sqlite3.connect(tmp_path / "run" / "trials.sqlite") as db:
        db.row_factory = sqlite3.Row
        rows = db.execute("SELECT * FROM trials ORDER BY trial_id").fetchall()
    assert rows[0]["status"] == "ok" and rows[0]["worker"] == "host:1" and rows[0]["objective_model_bits"] == 640
    assert rows[1]["status"] == "failed" and rows[1]["traceback"].startswith("Traceback")
    assert set(rows[0].keys()) >= {f"objective_{o}" for o in OBJECTIVES}


def test_a_schema_1_run_opens_and_takes_new_trials(tmp_path):
    path = tmp_path / "old"
    path.mkdir()
    with sqlite3.connect(path / "trials.sqlite") as db:  # the first schema's table, as 0.1 wrote it
        db.execute("CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, config_id INTEGER, config TEXT, budget REAL, "
                   "seed INTEGER, status TEXT, reason TEXT, is_default INTEGER, val_error REAL, energy_kwh REAL, "
                   "analytic_energy_pj REAL, model_bits INTEGER, worker TEXT, started_at REAL, ended_at REAL, "
                   "objectives TEXT, result TEXT)")
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('experiment', ?)", (json.dumps({"seed": 0}),))
        old = {"status": "ok", "val_error": 0.5, "energy_kwh": 1e-6, "energy_kwh_total": 1e-6,
               "energy": {"traceback": None}, "retired_field": 1}
        db.execute("INSERT INTO trials (config_id, config, budget, seed, status, is_default, started_at, ended_at, "
                   "objectives, result) VALUES (1, '{}', 1.0, 0, 'ok', 1, 10.0, 11.0, '{}', ?)", (json.dumps(old),))
    with Run.open(path) as run:
        (row,) = run.trials()
        assert row.result.val_error == 0.5 and row.is_default and row.objectives["energy"] == 1e-6
        run.add(config_id=2, config={}, budget=1.0, seed=0, result=TrialResult.failed("x", budget=1.0))
        assert len(run) == 2 and run.meta("schema_version") == SCHEMA_VERSION == 3
        assert run.asked() == []  # the table a schema-3 run adds: nothing was asked through it yet


def test_a_newer_schema_is_refused(tmp_path):
    Run.create(tmp_path / "run", {}).close()
    with sqlite3.connect(tmp_path / "run" / "trials.sqlite") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer autodsnn"):
        Run.open(tmp_path / "run")


# --- a run's record appears whole or not at all -------------------------------------------------

EXPERIMENT = {"dataset": "mnist", "model": "mnist-fc", "objectives": ["error", "energy"]}


def test_a_create_that_dies_before_its_database_is_in_place_leaves_no_run(tmp_path, monkeypatch):
    from autodsnn import atomic

    def dies(src, dst):
        raise SystemExit("killed")
    monkeypatch.setattr(atomic.os, "replace", dies)
    with pytest.raises(SystemExit):
        Run.create(tmp_path / "run", EXPERIMENT)
    monkeypatch.undo()
    assert not (tmp_path / "run" / "trials.sqlite").exists()
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.is_file()]  # no temporary database left
    with pytest.raises(StoreError, match="no trials.sqlite"):
        Run.open(tmp_path / "run")
    (tmp_path / "run" / ".trials.123-456.tmp.sqlite").write_bytes(b"half")  # as a kill leaves it
    (tmp_path / "run" / ".trials.123-456.tmp.sqlite-journal").write_bytes(b"half")
    with Run.create(tmp_path / "run", EXPERIMENT) as run:  # starting again just works
        assert run.experiment == EXPERIMENT
    assert not list((tmp_path / "run").glob(".trials.*"))  # and clears what the killed create left


def _half_made(path, how):
    """What a kill left while older versions created a run step by step (seen by a helper's kill tests)."""
    path.mkdir()
    db = path / "trials.sqlite"
    if how == "empty file":
        db.write_bytes(b"")
        return
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, config TEXT)")
        if how == "schema version only":
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (json.dumps(SCHEMA_VERSION),))


@pytest.mark.parametrize("how", ["empty file", "tables only", "schema version only"])
def test_a_record_a_kill_left_half_made_is_refused_by_open_and_taken_over_by_create(tmp_path, how):
    run_dir = tmp_path / "run"
    _half_made(run_dir, how)
    # before: "written by a newer autodsnn (schema None)", or a resume of the built-in default experiment
    with pytest.raises(StoreError, match=r"holds no run: it was killed as it started.*start it again with "
                                         r"`autodsnn optimize --run-dir"):
        Run.open(run_dir)
    with Run.create(run_dir, EXPERIMENT) as run:
        assert run.experiment == EXPERIMENT and len(run) == 0 and run.meta("schema_version") == SCHEMA_VERSION
    with Run.open(run_dir) as run:
        assert run.experiment == EXPERIMENT


def test_a_record_with_trials_is_never_taken_over(tmp_path):
    with Run.create(tmp_path / "run", EXPERIMENT) as run:
        run.add(config_id=1, config={"lr": 0.1}, budget=1.0, seed=0, result=TrialResult(status="ok", val_error=0.5))
    with pytest.raises(StoreError, match="already holds a run"):
        Run.create(tmp_path / "run", EXPERIMENT)
    with sqlite3.connect(tmp_path / "run" / "trials.sqlite") as conn:
        conn.execute("DELETE FROM meta WHERE key = 'experiment'")  # a trial but no experiment: still a run
    with pytest.raises(StoreError, match="already holds a run"):
        Run.create(tmp_path / "run", EXPERIMENT)


_CREATOR = """
import sys
from pathlib import Path
from autodsnn.store import Run
root = Path(sys.argv[1])
print("ready", flush=True)
i = 0
while True:
    Run.create(root / f"run{i}", {"dataset": "mnist", "model": "mnist-fc"}, files={"space.yaml": "x: 1"}).close()
    i += 1
"""


def test_a_sigkill_while_runs_are_created_leaves_each_whole_or_absent(tmp_path):
    """A process that does nothing but create runs is SIGKILLed at random moments: every run
    folder then either holds no database or a whole run that opens with its experiment."""
    import random
    import signal
    import subprocess
    import sys
    import time

    rng = random.Random(0)
    for attempt in range(4):
        root = tmp_path / f"kill{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", _CREATOR, str(root)], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.05, 0.3))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        folders = sorted(root.iterdir())
        assert folders, "no run was being created"
        for folder in folders:
            if (folder / "trials.sqlite").exists():
                with Run.open(folder) as run:
                    assert run.experiment == {"dataset": "mnist", "model": "mnist-fc"}
                assert (folder / "space.yaml").read_text() == "x: 1"  # a run that exists has its files
