"""The benchmark history: one SQLite file of bench runs, safe to share between writers.

Why SQLite: one file a nightly job can keep, copy and query, safe for two writers at once.
The file is opened in WAL mode with a busy timeout and every write is one `BEGIN IMMEDIATE`
transaction. It is marked with `PRAGMA application_id` so that a path pointing at some other
database is refused with one line instead of being "migrated" (the schema itself is in
`migrations`; comparing runs is `regression`).

What is stored per bench run: the environment (package versions, git commit, device, time);
per task: the summary (recommendation, scores, costs); per task and pipeline: the status,
score and CI; and every eval item's score, keyed by the item id, so that later runs can be
compared item by item.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from . import migrations
from .errors import AdvisorError

APPLICATION_ID = 0x41445649  # "ADVI": marks an advisor history database
BUSY_TIMEOUT_MS = 30_000
SQLITE_HEADER = b"SQLite format 3\x00"


# ---------------------------------------------------------------------------------------------
# opening


def _not_advisor(path: Path, why: str) -> AdvisorError:
    return AdvisorError(
        f"not an advisor history database ({why})",
        where=str(path),
        fix="pass the .sqlite file that `advisor bench --history` writes, or a new path to start one",
    )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on any error): one writer at a time, all or nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _retry_locked(fn: Callable[[], Any], seconds: float = BUSY_TIMEOUT_MS / 1000) -> Any:
    """Run fn, retrying while another connection holds a lock the busy handler does not cover."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _header(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(100)  # the SQLite file header: magic, ..., user_version @60, application_id @68
    except OSError as e:
        raise AdvisorError(f"cannot read ({e.strerror})", where=str(path)) from None


def _tables(path: Path) -> list[str]:
    """Table names of a SQLite file, read through a read-only connection (nothing is changed)."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            return sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        finally:
            conn.close()
    except sqlite3.Error:
        return []


def _check_owner(path: Path) -> None:
    """Refuse anything but an advisor history from its header bytes alone, before any connection
    or pragma could change it (a journal-mode switch rewrites the header of someone's database)."""
    head = _header(path)
    if not head:
        raise _not_advisor(path, "an empty file")
    if head[: len(SQLITE_HEADER)] != SQLITE_HEADER:
        raise _not_advisor(path, "not a SQLite file")
    app_id = int.from_bytes(head[68:72], "big") if len(head) >= 72 else 0
    if app_id != APPLICATION_ID:
        tables = [t for t in _tables(path) if t != "sqlite_sequence"]
        shown = ", ".join(tables[:5]) or "no tables"
        raise _not_advisor(path, f"a different SQLite database: {shown}")


def _create(path: Path, upto: int) -> None:
    """Make a new history beside `path`, migrated and marked, then link it into place: a file at
    `path` is therefore always complete, and two processes creating it at once end with one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            with transaction(conn):
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                migrations.migrate(conn, path, upto, new=True)
        finally:
            conn.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
    except (OSError, sqlite3.Error) as e:
        raise AdvisorError(f"cannot create ({e})", where=str(path), fix="check the path and its permissions") from None
    finally:
        tmp.unlink(missing_ok=True)


def _migrate(conn: sqlite3.Connection, path: Path, upto: int) -> None:
    with transaction(conn):
        if "schema_migrations" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}:
            raise _not_advisor(path, "its migrations table is missing")
        migrations.migrate(conn, path, upto, new=False)


def connect(path: str | Path, *, upto: int = migrations.SCHEMA_VERSION, readonly: bool = False) -> sqlite3.Connection:
    """Open (creating if needed) a history database, migrated to the current schema.

    `readonly` (the `history` command): the file is opened read-only and never created,
    migrated or switched to WAL. `upto` stops migrating at an older version (tests use it to
    build old databases). Anything that is not an advisor history database — someone else's
    SQLite file, a 0-byte file — raises AdvisorError with one line and is left untouched.
    """
    path = Path(path)
    if path.is_dir():
        raise AdvisorError("is a folder", where=str(path), fix="name a .sqlite file")
    if not path.exists():
        if readonly:
            raise AdvisorError("no such history file", where=str(path), fix="run `advisor bench --history` first")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AdvisorError(f"cannot create ({e.strerror})", where=str(path)) from None
        _create(path, upto)
    _check_owner(path)
    try:
        if readonly:
            conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000,
                                   isolation_level=None)
        else:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except (OSError, sqlite3.Error) as e:
        raise AdvisorError(f"cannot open ({e})", where=str(path), fix="check the path and its permissions") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")  # this connection only
        if readonly:
            version = migrations.applied_migrations(conn)
            newest = max(version, default=0)
            if newest != migrations.SCHEMA_VERSION:
                newer = newest > migrations.SCHEMA_VERSION
                raise AdvisorError(
                    f"written by {'a newer' if newer else 'an older'} advisor (schema v{newest}, this one knows "
                    f"v{migrations.SCHEMA_VERSION})", where=str(path),
                    fix="upgrade advisor" if newer else "run `advisor bench --history` with it once to upgrade it",
                )
            return conn
        conn.execute("PRAGMA foreign_keys = ON")
        mode = _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":  # pragma: no cover - e.g. a read-only medium
            raise AdvisorError(f"cannot switch to WAL mode (got {mode})", where=str(path))
        conn.execute("PRAGMA synchronous = NORMAL")
        _retry_locked(lambda: _migrate(conn, path, upto))
    except sqlite3.DatabaseError as e:
        conn.close()
        if "not a database" in str(e) or "malformed" in str(e):
            raise _not_advisor(path, str(e)) from None
        raise AdvisorError(f"database error: {e}", where=str(path)) from None
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def opened(db: str | Path | sqlite3.Connection, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    if isinstance(db, sqlite3.Connection):
        yield db
        return
    conn = connect(db, readonly=readonly)
    try:
        yield conn
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# writing


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _ci(p: dict) -> tuple[float | None, float | None]:
    ci = p.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return ci[0], ci[1]
    return None, None


def _check_report(report: Any, i: int) -> None:
    if not isinstance(report, dict) or not isinstance(report.get("task"), dict) or "name" not in report["task"]:
        raise AdvisorError(f"report {i} has no task.name", where="history.record_run", fix="pass report.json dicts")


def record_run(
    db: str | Path | sqlite3.Connection,
    reports: dict | Sequence[dict],
    *,
    suite: str | None = None,
    environment: dict | None = None,
    created: str | None = None,
    run_dirs: Sequence[str | Path | None] | None = None,
) -> int:
    """Store one bench run (one or more task reports) in one transaction; returns its id.

    `environment` defaults to the first report's (package versions, git commit, device);
    `created` defaults to now (UTC).
    """
    if isinstance(reports, dict):
        reports = [reports]
    reports = list(reports)
    for i, r in enumerate(reports):
        _check_report(r, i)
    env = dict(environment or (reports[0].get("environment") if reports else None) or {})
    if not env.get("device"):
        env["device"] = next((r.get("environment", {}).get("device") for r in reports
                              if r.get("environment", {}).get("device")), None)
    dirs = list(run_dirs) if run_dirs is not None else [None] * len(reports)
    created = created or _now()
    with opened(db) as conn, transaction(conn):
        cur = conn.execute(
            "INSERT INTO bench_runs(created, suite, git_commit, device, advisor_version, python, platform,"
            " environment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (created, suite, env.get("git_commit"), env.get("device"), env.get("advisor"), env.get("python"),
             env.get("platform"), json.dumps(env, default=str, sort_keys=True)),
        )
        run_id = int(cur.lastrowid)
        _insert_packages(conn, run_id, env.get("packages") or {})
        for report, run_dir in zip(reports, dirs):
            _insert_task(conn, run_id, report, run_dir, created)
    return run_id


def _insert_packages(conn: sqlite3.Connection, run_id: int, packages: dict) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO packages(bench_run_id, name, version) VALUES (?, ?, ?)",
        [(run_id, str(k), None if v is None else str(v)) for k, v in packages.items()],
    )


def _insert_task(conn: sqlite3.Connection, run_id: int, report: dict, run_dir, created: str) -> int:
    t = report["task"]
    rec = report.get("recommendation") or {}
    pipes = report.get("pipelines") or {}
    summary = {
        "recommendation": {k: rec.get(k) for k in ("choice", "meets_target", "best", "reasons") if k in rec},
        "scores": {n: p.get("score") for n, p in pipes.items()},
        "stages": report.get("stages"),
        "labels": t.get("labels"),  # a corpus-level metric is computed over this label set
        "advisor_version": report.get("advisor_version"),
        "report_created": report.get("created"),
    }
    cur = conn.execute(
        "INSERT INTO task_runs(bench_run_id, task, task_type, metric, target, higher_is_better, base_model,"
        " recommendation, meets_target, eval_hash, n_eval, wall_seconds, created, run_dir, summary)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, t["name"], t.get("type"), t.get("metric"), t.get("target"),
         int(t.get("higher_is_better", True)), report.get("base_model"), rec.get("choice"),
         None if rec.get("meets_target") is None else int(bool(rec.get("meets_target"))),
         (t.get("hashes") or {}).get("eval"), t.get("n_eval"), report.get("wall_seconds"),
         report.get("created") or created, None if run_dir is None else str(run_dir),
         json.dumps(summary, default=str, sort_keys=True)),
    )
    task_run_id = int(cur.lastrowid)
    ids = [str(i) for i in (t.get("eval_ids") or [])]
    for name, p in pipes.items():
        lo, hi = _ci(p)
        c = p.get("cost") or {}
        conn.execute(
            "INSERT INTO pipeline_results(task_run_id, pipeline, status, score, ci_lo, ci_hi, n, setup_usd,"
            " usd_per_1k, reason, reused) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task_run_id, name, p.get("status", "unknown"), p.get("score"), lo, hi, p.get("n"),
             c.get("setup_usd"), c.get("usd_per_1k_requests"), p.get("reason"), int(bool(p.get("reused")))),
        )
        scores = p.get("per_example")
        if p.get("status") == "ok" and scores:
            # a corpus-level target (macro-F1) also stores each item's predicted and gold label
            preds = p.get("per_example_prediction") or [None] * len(ids)
            gold = t.get("eval_gold") or [None] * len(ids)
            for what, values, unit in (("per_example", scores, "scores"), ("per_example_prediction", preds, "labels")):
                if len(values) != len(ids):
                    raise AdvisorError(
                        f"pipelines.{name}.{what} has {len(values)} {unit} but task.eval_ids has {len(ids)}",
                        where=f"report of task {t['name']}", fix="record a complete report.json",
                    )
            if len(gold) != len(ids):
                raise AdvisorError(f"task.eval_gold has {len(gold)} labels but task.eval_ids has {len(ids)}",
                                   where=f"report of task {t['name']}", fix="record a complete report.json")
            conn.executemany(
                "INSERT INTO example_scores(task_run_id, pipeline, item_id, score, prediction, expected)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(task_run_id, name, i, float(s), pr, g) for i, s, pr, g in zip(ids, scores, preds, gold)
                 if s is not None],
            )
    return task_run_id


# ---------------------------------------------------------------------------------------------
# reading


def runs(db: str | Path | sqlite3.Connection, limit: int | None = None) -> list[dict]:
    """Bench runs, oldest first (the last `limit` of them)."""
    with opened(db, readonly=True) as conn:
        rows = conn.execute(
            "SELECT id, created, suite, git_commit, device, advisor_version FROM bench_runs ORDER BY id DESC"
            + (" LIMIT ?" if limit else ""), (limit,) if limit else (),
        ).fetchall()
    keys = ("id", "created", "suite", "git_commit", "device", "advisor_version")
    return [dict(zip(keys, r)) for r in reversed(rows)]


def _order(name: str) -> tuple[int, str]:
    from . import catalogue

    return (catalogue.rank(name), name)


@dataclass
class TaskRun:
    id: int
    bench_run_id: int
    task: str
    metric: str | None
    higher_is_better: bool
    recommendation: str | None
    eval_hash: str | None
    created: str | None
    git_commit: str | None
    pipelines: dict[str, dict]  # name -> {status, score, ci, reason}
    labels: list[str] | None = None  # the task's label set (classification)

    def scores(self, conn: sqlite3.Connection, pipeline: str) -> dict[str, float]:
        return dict(conn.execute(
            "SELECT item_id, score FROM example_scores WHERE task_run_id = ? AND pipeline = ?", (self.id, pipeline)
        ).fetchall())

    def predictions(self, conn: sqlite3.Connection, pipeline: str) -> dict[str, tuple[str | None, str]]:
        """item id -> (predicted label, gold label), for the items whose gold label was stored."""
        rows = conn.execute(
            "SELECT item_id, prediction, expected FROM example_scores WHERE task_run_id = ? AND pipeline = ?"
            " AND expected IS NOT NULL", (self.id, pipeline)).fetchall()
        return {i: (p, g) for i, p, g in rows}


def task_runs(conn: sqlite3.Connection, where: str, args: tuple, limit: int | None = None) -> list[TaskRun]:
    """Task runs matching `where` (over `t` = task_runs, `b` = bench_runs), newest first."""
    sql = (
        "SELECT t.id, t.bench_run_id, t.task, t.metric, t.higher_is_better, t.recommendation, t.eval_hash,"
        " b.created, b.git_commit, t.summary FROM task_runs t JOIN bench_runs b ON b.id = t.bench_run_id"
        f" WHERE {where} ORDER BY t.bench_run_id DESC, t.id DESC" + (f" LIMIT {int(limit)}" if limit else "")
    )
    out = []
    for row in conn.execute(sql, args).fetchall():
        rows = conn.execute(
            "SELECT pipeline, status, score, ci_lo, ci_hi, reason FROM pipeline_results WHERE task_run_id = ?",
            (row[0],),
        ).fetchall()
        pipes = {
            r[0]: {"status": r[1], "score": r[2], "ci": [r[3], r[4]] if r[3] is not None else None, "reason": r[5]}
            for r in sorted(rows, key=lambda r: _order(r[0]))
        }
        out.append(TaskRun(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7], row[8], pipes,
                           _labels(row[9])))
    return out


def _labels(summary: str | None) -> list[str] | None:
    try:
        labels = (json.loads(summary) if summary else {}).get("labels")
    except (ValueError, AttributeError):
        return None
    return labels if isinstance(labels, list) else None


def tasks(db: str | Path | sqlite3.Connection) -> list[str]:
    with opened(db, readonly=True) as conn:
        return [r[0] for r in conn.execute("SELECT DISTINCT task FROM task_runs ORDER BY task")]


def trend(db: str | Path | sqlite3.Connection, task: str | None = None, last: int = 20) -> list[dict]:
    """Per task: the last `last` runs (oldest first) with each pipeline's status and score."""
    with opened(db, readonly=True) as conn:
        names = [task] if task else [r[0] for r in conn.execute("SELECT DISTINCT task FROM task_runs ORDER BY task")]
        if task and not conn.execute("SELECT 1 FROM task_runs WHERE task = ? LIMIT 1", (task,)).fetchone():
            known = ", ".join(r[0] for r in conn.execute("SELECT DISTINCT task FROM task_runs ORDER BY task"))
            raise AdvisorError(f"no runs of task '{task}'", where="--task", fix=f"known tasks: {known or 'none'}")
        out = []
        for name in names:
            trs = list(reversed(task_runs(conn, "t.task = ?", (name,), limit=last)))
            pipelines = sorted({p for tr in trs for p in tr.pipelines}, key=_order)
            out.append({
                "task": name,
                "metric": trs[-1].metric if trs else None,
                "runs": [{"bench_run_id": tr.bench_run_id, "created": tr.created, "git_commit": tr.git_commit,
                          "recommendation": tr.recommendation} for tr in trs],
                "pipelines": {p: [tr.pipelines.get(p, {"status": "absent", "score": None}) for tr in trs]
                              for p in pipelines},
            })
    return out
