"""The history file's schema, as an append-only list of migrations.

Why a list and not one CREATE script: a history file outlives the advisor that made it (nightly
jobs keep it for months), so every schema change is a new step that upgrades old files in place.
Each applied step is recorded in `schema_migrations` and mirrored in `PRAGMA user_version`.
A step never changes once released: it keeps its own SQL rather than calling code that may move on.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .errors import AdvisorError


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run DDL statements one by one: executescript() would COMMIT the open migration transaction."""
    for stmt in sql.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _m1(conn: sqlite3.Connection) -> None:
    _script(conn, 
        """
        CREATE TABLE bench_runs (
            id              INTEGER PRIMARY KEY AUTOINCREMENT,
            created         TEXT NOT NULL,             -- ISO 8601, UTC
            suite           TEXT,
            git_commit      TEXT,
            device          TEXT,
            advisor_version TEXT,
            python          TEXT,
            platform        TEXT,
            environment     TEXT NOT NULL              -- JSON: everything environment() reports
        );
        CREATE TABLE task_runs (
            id               INTEGER PRIMARY KEY AUTOINCREMENT,
            bench_run_id     INTEGER NOT NULL REFERENCES bench_runs(id) ON DELETE CASCADE,
            task             TEXT NOT NULL,
            task_type        TEXT,
            metric           TEXT,
            target           REAL,
            higher_is_better INTEGER NOT NULL DEFAULT 1,
            base_model       TEXT,
            recommendation   TEXT,
            meets_target     INTEGER,
            eval_hash        TEXT,
            n_eval           INTEGER,
            wall_seconds     REAL,
            created          TEXT,
            run_dir          TEXT,
            summary          TEXT NOT NULL             -- JSON: recommendation, costs, stages
        );
        CREATE TABLE pipeline_results (
            task_run_id INTEGER NOT NULL REFERENCES task_runs(id) ON DELETE CASCADE,
            pipeline    TEXT NOT NULL,
            status      TEXT NOT NULL,
            score       REAL,
            ci_lo       REAL,
            ci_hi       REAL,
            n           INTEGER,
            setup_usd   REAL,
            usd_per_1k  REAL,
            reason      TEXT,
            reused      INTEGER,
            PRIMARY KEY (task_run_id, pipeline)
        );
        CREATE TABLE example_scores (
            task_run_id INTEGER NOT NULL,
            pipeline    TEXT NOT NULL,
            item_id     TEXT NOT NULL,
            score       REAL NOT NULL,
            PRIMARY KEY (task_run_id, pipeline, item_id),
            FOREIGN KEY (task_run_id, pipeline)
                REFERENCES pipeline_results(task_run_id, pipeline) ON DELETE CASCADE
        ) WITHOUT ROWID;
        """
    )


def _m2(conn: sqlite3.Connection) -> None:
    """Package versions as rows (queryable: "when did torch change?"), backfilled from v1 JSON."""
    _script(conn, 
        """
        CREATE INDEX task_runs_by_task ON task_runs(task, bench_run_id);
        CREATE TABLE packages (
            bench_run_id INTEGER NOT NULL REFERENCES bench_runs(id) ON DELETE CASCADE,
            name         TEXT NOT NULL,
            version      TEXT,
            PRIMARY KEY (bench_run_id, name)
        ) WITHOUT ROWID;
        """
    )
    for run_id, env in conn.execute("SELECT id, environment FROM bench_runs").fetchall():
        packages = _loads(env).get("packages") or {}
        conn.executemany(
            "INSERT OR REPLACE INTO packages(bench_run_id, name, version) VALUES (?, ?, ?)",
            [(run_id, str(k), None if v is None else str(v)) for k, v in packages.items()],
        )


def _m3(conn: sqlite3.Connection) -> None:
    """Per item, the label predicted and the gold one: a corpus-level metric (macro-F1) is not a
    mean of per-item scores, so gating it needs what it is computed from (runs before: NULL)."""
    _script(conn,
        """
        ALTER TABLE example_scores ADD COLUMN prediction TEXT;
        ALTER TABLE example_scores ADD COLUMN expected TEXT;
        """
    )


def _loads(text: str | None) -> dict:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


MIGRATIONS: list[tuple[int, str, Callable[[sqlite3.Connection], None]]] = [
    (1, "bench runs, task runs, pipeline results, per-example scores", _m1),
    (2, "index task runs by task; package versions table (backfilled)", _m2),
    (3, "per-item predicted and gold labels (corpus-level metrics)", _m3),
]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def applied_migrations(conn: sqlite3.Connection) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def migrate(conn: sqlite3.Connection, path: Path, upto: int, *, new: bool) -> None:
    """Apply the missing steps up to `upto`; `new`: the file has no schema yet.

    Runs inside the caller's transaction (the one that checked the file is an advisor history),
    so two processes opening a fresh file cannot both migrate it.
    """
    if new:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
            " applied TEXT NOT NULL)"
        )
    done = set(applied_migrations(conn))
    newest = max(done, default=0)
    if newest > SCHEMA_VERSION:
        raise AdvisorError(
            f"written by a newer advisor (schema v{newest}, this one knows v{SCHEMA_VERSION})",
            where=str(path), fix="upgrade advisor",
        )
    for version, description, step in MIGRATIONS:
        if version in done or version > upto:
            continue
        step(conn)
        conn.execute(
            "INSERT INTO schema_migrations(version, description, applied) VALUES (?, ?, ?)",
            (version, description, datetime.now(timezone.utc).isoformat(timespec="seconds")),
        )
        conn.execute(f"PRAGMA user_version = {version}")
