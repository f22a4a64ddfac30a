"""The run store: one directory per run, one SQLite row per finished trial. May import: trial.

    runs/NAME/
      experiment.yaml     the experiment as resolved, for people (--resume reads the database's copy)
      trials.sqlite       one row per trial, committed the moment the trial finishes
      smac/               SMAC's own output (runhistory, intensifier state)
      smac-whole/         a copy of SMAC's state kept as a resume starts (SMAC rewrites it in place)
      smac-unreadable-*/  SMAC's state as a resume found it, when a kill had cut a file off
      checkpoints/        per-configuration checkpoints (Hyperband promotions continue from them;
                          search.checkpoints: unused when the run names a --checkpoint-store URL)
      logs/               one JSON file per trial

SQLite in WAL mode: readers (``autodsnn status``, the Pareto analysis) work while a run writes.
A row holds the trial's bookkeeping, one column per scalar field of :class:`TrialResult`
(derived from the dataclass, so a new field gets its column), one column per objective of the
registry, and the whole result as JSON, from which rows are read back as typed records.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from .atomic import leftover_temporary_files, replaced_atomically, write_atomically
from .errors import AutoDSNNError
from .trial.objectives import OBJECTIVES, all_objective_values
from .trial.records import TRANSIENT_FIELDS, TrialResult, TrialStatus

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3  # 2: a column per scalar result field and per objective, traceback kept; 3: the asked table

_BOOKKEEPING = {"trial_id": "INTEGER PRIMARY KEY", "config_id": "INTEGER", "config": "TEXT", "budget": "REAL",
                "seed": "INTEGER", "is_default": "INTEGER", "started_at": "REAL", "ended_at": "REAL",
                "told": "TEXT", "result": "TEXT"}
# Scalar fields of the result (dicts and lists live in the JSON only); budget is bookkeeping.
_RESULT_COLUMNS = tuple(f.name for f in dataclasses.fields(TrialResult)
                        if f.default_factory is dataclasses.MISSING and f.name != "budget"
                        and f.name not in TRANSIENT_FIELDS)
_OBJECTIVE_COLUMNS = {name: f"objective_{name}" for name in OBJECTIVES}
_COLUMNS = {**_BOOKKEEPING, **{c: "" for c in _RESULT_COLUMNS}, **{c: "REAL" for c in _OBJECTIVE_COLUMNS.values()}}


DATABASE = "trials.sqlite"


def _holds_a_run(db: Path) -> bool:
    """Whether the database at ``db`` records a run: its experiment, or any trial. A file a kill
    left empty, or with tables but no experiment (older versions created a run in steps), does not."""
    conn = sqlite3.connect(db, timeout=30)
    try:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        has_experiment = "meta" in tables and conn.execute(
            "SELECT 1 FROM meta WHERE key = 'experiment'").fetchone() is not None
        has_trials = "trials" in tables and conn.execute("SELECT 1 FROM trials LIMIT 1").fetchone() is not None
        return has_experiment or has_trials
    except sqlite3.DatabaseError:  # not a database at all: a run nonetheless, never taken over
        return True
    finally:
        conn.close()


class StoreError(AutoDSNNError, ValueError):
    """A run directory that cannot be used as asked."""


@dataclass
class TrialRow:
    """One stored trial: where it sits in the run, and its typed result."""

    trial_id: int
    config_id: int
    config: dict[str, Any]
    budget: float
    seed: int
    is_default: bool
    started_at: float | None
    ended_at: float | None
    result: TrialResult
    told: dict[str, float] = field(default_factory=dict)   # the objective values (SMAC: logs of log_objectives)

    @property
    def status(self) -> TrialStatus:
        return self.result.status

    @property
    def reason(self) -> str | None:
        return self.result.reason

    @functools.cached_property
    def objectives(self) -> dict[str, float]:
        """Every registered objective this trial has a value for (empty unless it succeeded)."""
        return all_objective_values(self.result)


class Run:
    """A run directory and its SQLite trial table."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, experiment: dict[str, Any], *, exist_ok: bool = False,
               files: dict[str, str] | None = None) -> "Run":
        """A new run in ``path``: ``files`` (name -> text, e.g. the space copy) first, then its
        database, which appears whole (schema, experiment, times) or not at all, whenever the
        process is killed; so a run that exists has its files. A record a kill left half made (no
        experiment, no trials: older versions built it in steps) is taken over."""
        path = Path(path)
        db = path / DATABASE
        if db.exists() and not exist_ok:
            if not _holds_a_run(db):
                log.warning(f"{db} was left half made by a run killed as it started (no experiment, no trials): "
                            "starting the run there afresh")
                for leftover in (db, db.with_name(DATABASE + "-wal"), db.with_name(DATABASE + "-shm")):
                    leftover.unlink(missing_ok=True)
            else:
                raise StoreError(f"run directory {path} already holds a run: continue it with --resume {path}, "
                                 "or choose another --run-dir")
        for sub in ("smac", "checkpoints", "logs"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        for name, text in (files or {}).items():
            write_atomically(path / name, text)
        for leftover in leftover_temporary_files(db):  # of a create killed before its rename
            leftover.unlink(missing_ok=True)
            leftover.with_name(leftover.name + "-journal").unlink(missing_ok=True)
        if not db.exists():
            with replaced_atomically(db) as tmp:  # built under another name, renamed whole
                conn = cls._connect(tmp, wal=False)  # no -wal file to leave beside the temporary name
                try:
                    conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", [
                        (key, json.dumps(value)) for key, value in (
                            ("schema_version", SCHEMA_VERSION), ("experiment", experiment),
                            ("created_at", time.time()), ("elapsed_seconds", 0.0))])
                finally:
                    conn.close()
        run = cls(path, cls._connect(db))
        run.set_meta("experiment", experiment)  # and its readable copy
        return run

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not (path / DATABASE).exists():
            raise StoreError(f"{path} is not an autodsnn run directory (no {DATABASE}): check the path")
        if not _holds_a_run(path / DATABASE):
            raise StoreError(f"{path} holds no run: it was killed as it started, before its experiment was stored "
                             f"(no trials ran); start it again with `autodsnn optimize --run-dir {path} ...`")
        run = cls(path, cls._connect(path / DATABASE))
        version = run.meta("schema_version")
        if version is None or int(version) > SCHEMA_VERSION:
            raise StoreError(f"{path} was written by a newer autodsnn (schema {version}): upgrade autodsnn")
        if int(version) < SCHEMA_VERSION:
            run._set_meta("schema_version", SCHEMA_VERSION)  # _connect added the columns
        return run

    @staticmethod
    def _connect(db: Path, *, wal: bool = True) -> sqlite3.Connection:
        conn = sqlite3.connect(db, timeout=30, isolation_level=None)
        if wal:
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed trial survives a power cut
        cols = ", ".join(f"{k} {v}".strip() for k, v in _COLUMNS.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS trials ({cols})")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        # Every (configuration, budget) handed to a worker, the moment it is: --resume rebuilds the
        # optimizer's state from it and the trials table (the optimizer's own files are a cache,
        # saved every few seconds).
        conn.execute("CREATE TABLE IF NOT EXISTS asked (config_id INTEGER, budget REAL, smac_budget REAL, "
                     "seed INTEGER, config TEXT, asked_at REAL, PRIMARY KEY (config_id, budget))")
        # A run written by an older schema gains the new columns (its old rows read from their JSON).
        have = {row[1] for row in conn.execute("PRAGMA table_info(trials)")}
        for name, kind in _COLUMNS.items():
            if name not in have:
                conn.execute(f"ALTER TABLE trials ADD COLUMN {name} {kind}".strip())
        return conn

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- metadata -----------------------------------------------------------------------------
    def _set_meta(self, key: str, value: Any) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self._set_meta(key, value)
        if key == "experiment":  # a readable copy beside the database
            write_atomically(self.path / "experiment.yaml", yaml.safe_dump(value, sort_keys=False))

    @property
    def experiment(self) -> dict[str, Any]:
        return self.meta("experiment") or {}

    @property
    def objectives(self) -> tuple[str, ...]:
        """The objectives the run optimized."""
        names = self.experiment.get("objectives")
        if not names:
            raise StoreError(f"run {self.path} records no objectives: pass --objectives")
        return tuple(names)

    # --- trials -------------------------------------------------------------------------------
    def add(self, *, config_id: int, config: dict[str, Any], budget: float, seed: int, result: TrialResult,
            told: dict[str, float] | None = None, is_default: bool = False, started_at: float | None = None,
            ended_at: float | None = None) -> int:
        """Insert one finished trial and commit at once. Returns its trial id."""
        row: dict[str, Any] = {
            "config_id": int(config_id), "config": json.dumps(config, sort_keys=True), "budget": float(budget),
            "seed": int(seed), "is_default": int(bool(is_default)), "started_at": started_at,
            "ended_at": ended_at if ended_at is not None else time.time(), "told": json.dumps(told or {}),
            "result": json.dumps(result.to_dict(), default=str)}
        row.update({c: getattr(result, c) for c in _RESULT_COLUMNS})
        objectives = all_objective_values(result)
        row.update({column: objectives.get(name) for name, column in _OBJECTIVE_COLUMNS.items()})
        keys = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn:  # one transaction per trial
            cur = self._conn.execute(f"INSERT INTO trials ({keys}) VALUES ({marks})", tuple(row.values()))
        return int(cur.lastrowid)

    def trials(self, status: TrialStatus | str | None = None) -> list[TrialRow]:
        query, args = "SELECT trial_id, config_id, config, budget, seed, is_default, started_at, ended_at, told, " \
                      "result FROM trials", ()
        if status is not None:
            query, args = query + " WHERE status = ?", (TrialStatus(status).value,)
        return [TrialRow(trial_id=t, config_id=c, config=json.loads(cfg), budget=b, seed=s, is_default=bool(d),
                         started_at=st, ended_at=en, told=json.loads(told or "{}"),
                         result=TrialResult.from_dict(json.loads(res)))
                for t, c, cfg, b, s, d, st, en, told, res in self._conn.execute(query + " ORDER BY trial_id", args)]

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def record_ask(self, *, config_id: int, budget: float, smac_budget: float | None, seed: int,
                   config: dict[str, Any]) -> None:
        """Note that (config_id, budget) went to a worker (committed at once; a repeat is ignored).
        ``smac_budget`` is the budget as the optimizer named it (None for strategies without budgets)."""
        self._conn.execute("INSERT OR IGNORE INTO asked (config_id, budget, smac_budget, seed, config, asked_at) "
                           "VALUES (?, ?, ?, ?, ?, ?)", (int(config_id), float(budget), smac_budget, int(seed),
                                                         json.dumps(config, sort_keys=True), time.time()))

    def asked(self) -> list[tuple[int, float, float | None, int, dict[str, Any]]]:
        """(config_id, budget, smac_budget, seed, config) of every trial handed out, by config id then time."""
        rows = self._conn.execute("SELECT config_id, budget, smac_budget, seed, config FROM asked "
                                  "ORDER BY config_id, asked_at").fetchall()
        return [(c, b, sb, s, json.loads(cfg)) for c, b, sb, s, cfg in rows]

    def __iter__(self) -> Iterator[TrialRow]:
        return iter(self.trials())

    def counts(self) -> dict[TrialStatus, int]:
        rows = self._conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall()
        return {TrialStatus(s): n for s, n in rows}
