"""The run store: one directory per optimization run, one SQLite row per finished trial.

    runs/NAME/
      experiment.yaml     the experiment as resolved (what --resume compares against)
      trials.sqlite       one row per trial, committed the moment the trial finishes
      smac/               SMAC's own output (runhistory, intensifier state)
      checkpoints/        per-configuration checkpoints (Hyperband promotions continue from them)
      logs/               optimizer log

SQLite in WAL mode: readers (``autodsnn status``, the Pareto analysis) work while a run writes.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "cut_short", "lost")

_COLUMNS = {
    "trial_id": "INTEGER PRIMARY KEY",
    "config_id": "INTEGER",
    "config": "TEXT",
    "budget": "REAL",
    "seed": "INTEGER",
    "status": "TEXT",
    "reason": "TEXT",
    "is_default": "INTEGER",
    "val_error": "REAL",
    "val_loss": "REAL",
    "train_loss": "REAL",
    "epochs_done": "REAL",
    "resumed_from_epochs": "REAL",
    "energy_kwh": "REAL",
    "energy_kwh_total": "REAL",
    "emissions_kg": "REAL",
    "inference_energy_kwh": "REAL",
    "inference_emissions_kg": "REAL",
    "analytic_energy_pj": "REAL",
    "model_bits": "INTEGER",
    "params": "INTEGER",
    "wall_time": "REAL",
    "worker": "TEXT",
    "started_at": "REAL",
    "ended_at": "REAL",
    "objectives": "TEXT",
    "result": "TEXT",
}


class StoreError(ValueError):
    """A run directory that cannot be used as asked."""


@dataclass
class TrialRow:
    """One stored trial; ``result`` is the full TrialResult dict."""

    trial_id: int
    config_id: int
    config: dict[str, Any]
    budget: float
    seed: int
    status: str
    reason: str | None
    is_default: bool
    values: dict[str, Any]
    objectives: dict[str, float]
    result: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.values[key]


class Run:
    """A run directory and its SQLite trial table."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn

    # --- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, experiment: dict[str, Any], *, exist_ok: bool = False) -> "Run":
        path = Path(path)
        if (path / "trials.sqlite").exists() and not exist_ok:
            raise StoreError(f"run directory {path} already holds a run: continue it with --resume {path}, "
                             "or choose another --run-dir")
        for sub in ("smac", "checkpoints", "logs"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        run = cls(path, cls._connect(path))
        run._set_meta("schema_version", SCHEMA_VERSION)
        run._set_meta("experiment", experiment)
        run._set_meta("created_at", time.time())
        run._set_meta("elapsed_seconds", 0.0)
        return run

    @classmethod
    def open(cls, path: str | Path) -> "Run":
        path = Path(path)
        if not (path / "trials.sqlite").exists():
            raise StoreError(f"{path} is not an autodsnn run directory (no trials.sqlite): check the path")
        run = cls(path, cls._connect(path))
        version = run.meta("schema_version")
        if version is None or int(version) > SCHEMA_VERSION:
            raise StoreError(f"{path} was written by a newer autodsnn (schema {version}): upgrade autodsnn")
        return run

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path / "trials.sqlite", timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a committed trial survives a power cut
        cols = ", ".join(f"{k} {v}" for k, v in _COLUMNS.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS trials ({cols})")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
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

    @property
    def experiment(self) -> dict[str, Any]:
        return self.meta("experiment") or {}

    # --- trials -------------------------------------------------------------------------------
    def add(self, *, config_id: int, config: dict[str, Any], budget: float, seed: int, result: dict[str, Any],
            objectives: dict[str, float], is_default: bool = False, worker: str | None = None,
            started_at: float | None = None, ended_at: float | None = None) -> int:
        """Insert one finished trial and commit at once. Returns its trial id."""
        analytic = result.get("analytic") or {}
        row = {
            "config_id": int(config_id), "config": json.dumps(config, sort_keys=True), "budget": float(budget),
            "seed": int(seed), "status": result.get("status"), "reason": result.get("reason"),
            "is_default": int(bool(is_default)), "val_error": result.get("val_error"),
            "val_loss": result.get("val_loss"), "train_loss": result.get("train_loss"),
            "epochs_done": result.get("epochs_done"), "resumed_from_epochs": result.get("resumed_from_epochs"),
            "energy_kwh": result.get("energy_kwh"), "energy_kwh_total": result.get("energy_kwh_total"),
            "emissions_kg": result.get("emissions_kg"),
            "inference_energy_kwh": result.get("inference_energy_kwh"),
            "inference_emissions_kg": result.get("inference_emissions_kg"),
            "analytic_energy_pj": analytic.get("energy_pj_per_sample"), "model_bits": analytic.get("model_bits"),
            "params": analytic.get("params"), "wall_time": result.get("wall_time"), "worker": worker,
            "started_at": started_at, "ended_at": ended_at if ended_at is not None else time.time(),
            "objectives": json.dumps(objectives), "result": json.dumps(result, default=str),
        }
        keys = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with self._conn:  # one transaction per trial
            cur = self._conn.execute(f"INSERT INTO trials ({keys}) VALUES ({marks})", tuple(row.values()))
        return int(cur.lastrowid)

    def trials(self, status: str | None = None) -> list[TrialRow]:
        query, args = "SELECT * FROM trials", ()
        if status is not None:
            query, args = query + " WHERE status = ?", (status,)
        cur = self._conn.execute(query + " ORDER BY trial_id", args)
        names = [d[0] for d in cur.description]
        return [self._row(dict(zip(names, r))) for r in cur.fetchall()]

    @staticmethod
    def _row(d: dict[str, Any]) -> TrialRow:
        return TrialRow(trial_id=d["trial_id"], config_id=d["config_id"], config=json.loads(d["config"]),
                        budget=d["budget"], seed=d["seed"], status=d["status"], reason=d["reason"],
                        is_default=bool(d["is_default"]), values=d, objectives=json.loads(d["objectives"] or "{}"),
                        result=json.loads(d["result"] or "{}"))

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM trials").fetchone()[0])

    def __iter__(self) -> Iterator[TrialRow]:
        return iter(self.trials())

    def counts(self) -> dict[str, int]:
        rows = self._conn.execute("SELECT status, COUNT(*) FROM trials GROUP BY status").fetchall()
        return {s: n for s, n in rows}

    def checkpoint_path(self, config_id: int, budget: float) -> Path:
        return self.path / "checkpoints" / f"config{config_id}-budget{budget:g}.pt"

    def best_checkpoint_below(self, config_id: int, budget: float) -> Path | None:
        """The highest-budget checkpoint of this configuration at or below ``budget``."""
        best, best_budget = None, -1.0
        for p in (self.path / "checkpoints").glob(f"config{config_id}-budget*.pt"):
            try:
                b = float(p.stem.split("budget", 1)[1])
            except ValueError:
                continue
            if best_budget < b <= budget:
                best, best_budget = p, b
        return best
