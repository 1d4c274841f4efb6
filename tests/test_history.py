"""The SQLite history: refusing foreign files, all-or-nothing writes, concurrent writers, trends."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor import history, migrations
from advisor.cli import app
from advisor.errors import AdvisorError
from advisor.report.terminal import sparkline

N = 60


def report(task: str = "t1", scores: dict[str, list[float]] | None = None, choice: str = "prompting",
           ids: list[str] | None = None, statuses: dict[str, str] | None = None) -> dict:
    """A report.json-shaped dict with only what the history reads."""
    scores = scores or {}
    n = len(next(iter(scores.values()))) if scores else N
    ids = ids or [f"eval-{i}" for i in range(1, n + 1)]
    pipes = {}
    for name in ("baseline", "prompting", "rag", "finetune"):
        status = (statuses or {}).get(name, "ok" if name in scores else "skipped")
        if status == "ok":
            s = scores[name]
            pipes[name] = {"status": "ok", "score": sum(s) / len(s), "ci": [0.0, 1.0], "n": len(s),
                           "per_example": list(s), "cost": {"setup_usd": 0.0, "usd_per_1k_requests": 0.01}}
        else:
            pipes[name] = {"status": status, "reason": f"{name} {status} on purpose"}
    return {
        "schema_version": 1, "advisor_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
        "task": {"name": task, "type": "classification", "metric": "accuracy", "target": 0.8,
                 "higher_is_better": True, "eval_ids": ids, "n_eval": len(ids), "hashes": {"eval": "h"}},
        "base_model": "bundled:smollm2-135m-instruct",
        "pipelines": pipes,
        "recommendation": {"choice": choice, "meets_target": choice != "none", "reasons": ["because"]},
        "environment": {"git_commit": "abc123", "device": "cpu", "python": "3.11",
                        "packages": {"torch": "2.4.0", "numpy": "2.0"}},
        "wall_seconds": 1.0,
    }


def base_scores(seed: int = 0, acc: float = 0.8) -> list[float]:
    rng = random.Random(seed)
    return [1.0 if rng.random() < acc else 0.0 for _ in range(N)]


def drop(scores: list[float], k: int) -> list[float]:
    """A real regression: the first k correct items become wrong."""
    out, done = list(scores), 0
    for i, s in enumerate(out):
        if s == 1.0 and done < k:
            out[i], done = 0.0, done + 1
    return out


# ---------------------------------------------------------------------------------------------
# opening and writing


def test_a_file_that_is_not_an_advisor_db_is_refused(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, I am not a database\n" * 10)
    with pytest.raises(AdvisorError, match=r"not an advisor history database \(not a SQLite file\)"):
        history.connect(text)
    other = tmp_path / "other.sqlite"
    c = sqlite3.connect(other)
    c.execute("CREATE TABLE customers (id INTEGER)")
    c.commit()
    c.close()
    with pytest.raises(AdvisorError, match="a different SQLite database: customers"):
        history.connect(other)
    assert sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall() == [("customers",)]
    newer = tmp_path / "newer.sqlite"
    conn = history.connect(newer)
    conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 'x')")
    conn.close()
    with pytest.raises(AdvisorError, match="newer advisor"):
        history.connect(newer)
    with pytest.raises(AdvisorError, match="is a folder"):
        history.connect(tmp_path)
    # through the CLI: one line, exit 2
    res = CliRunner().invoke(app, ["history", str(text)])
    assert res.exit_code == 2 and "not an advisor history database" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) <= 2


def test_record_run_is_all_or_nothing(tmp_path):
    db = tmp_path / "h.sqlite"
    good = report(scores={"prompting": base_scores()})
    bad = report(task="t2", scores={"prompting": base_scores()[:10]}, ids=[f"x{i}" for i in range(12)])
    with pytest.raises(AdvisorError, match="10 scores but task.eval_ids has 12"):
        history.record_run(db, [good, bad])
    assert history.runs(db) == [] and history.tasks(db) == []  # the good one was rolled back too
    run_id = history.record_run(db, [good], suite="s.yaml")
    conn = history.connect(db)
    try:
        assert conn.execute("SELECT count(*) FROM example_scores").fetchone()[0] == N
        env = conn.execute("SELECT git_commit, device, suite FROM bench_runs WHERE id=?", (run_id,)).fetchone()
        assert env == ("abc123", "cpu", "s.yaml")
        assert dict(conn.execute("SELECT name, version FROM packages")) == {"torch": "2.4.0", "numpy": "2.0"}
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# two writers at once


WRITER = textwrap.dedent(
    """
    import os, random, sys, time
    from advisor import history
    db, who, n, gate = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    open(gate + "." + who, "w").close()  # imported and ready
    while not os.path.exists(gate):  # start together: both race to create, migrate and write
        time.sleep(0.005)
    rng = random.Random(who)
    for i in range(n):
        scores = [float(rng.random() < 0.7) for _ in range(50)]
        r = {"task": {"name": who, "metric": "accuracy", "eval_ids": [f"e{j}" for j in range(50)]},
             "pipelines": {"prompting": {"status": "ok", "score": sum(scores) / 50, "per_example": scores}},
             "recommendation": {"choice": "prompting"}, "environment": {"device": "cpu"}}
        history.record_run(db, r, suite=who)
    """
)


def test_two_concurrent_writers_both_land(tmp_path):
    db = tmp_path / "shared.sqlite"  # fresh: the two also race to create and migrate it
    n = 40
    gate = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), who, str(n), str(gate)],
                              stderr=subprocess.PIPE, text=True) for who in ("writer-a", "writer-b")]
    deadline = time.monotonic() + 60
    while not all(Path(f"{gate}.{who}").exists() for who in ("writer-a", "writer-b")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
        time.sleep(0.01)
    gate.touch()
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
    conn = history.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        counts = dict(conn.execute("SELECT suite, count(*) FROM bench_runs GROUP BY suite"))
        assert counts == {"writer-a": n, "writer-b": n}
        assert conn.execute("SELECT count(*) FROM example_scores").fetchone()[0] == 2 * n * 50
        assert migrations.applied_migrations(conn) == [v for v, _, _ in migrations.MIGRATIONS]
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# trend and the history command


def test_sparkline():
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([0.8, None, 0.8]) == "▅·▅"  # flat series sit mid-height
    assert sparkline([0.800, 0.801]) in ("▄▅", "▅▅", "▄▄")  # noise does not look like a cliff
    assert sparkline([None, None]) == "··"


def test_history_command_shows_trends(tmp_path):
    db = tmp_path / "h.sqlite"
    base = base_scores()
    for i, k in enumerate((0, 5, 10, 20)):
        history.record_run(db, [report(scores={"prompting": drop(base, k), "baseline": base}, choice="prompting"),
                                report("t2", scores={"prompting": base}, choice="none" if i < 2 else "prompting")])
    trends = history.trend(db, task="t1")
    assert len(trends) == 1 and [r["bench_run_id"] for r in trends[0]["runs"]] == [1, 2, 3, 4]
    scores = [p["score"] for p in trends[0]["pipelines"]["prompting"]]
    assert scores == sorted(scores, reverse=True)
    res = CliRunner().invoke(app, ["history", str(db)], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "t1 (accuracy): 4 runs" in res.output and "t2 (accuracy)" in res.output
    assert sparkline(scores) in res.output and "none → prompting" in res.output
    res = CliRunner().invoke(app, ["history", str(db), "--task", "nope"])
    assert res.exit_code == 2 and "no runs of task 'nope'" in res.output and "t1, t2" in res.output
    res = CliRunner().invoke(app, ["history", str(tmp_path / "missing.sqlite")])
    assert res.exit_code == 2 and "no such history file" in res.output
