"""The history's schema migrations: a new file gets every step once, an old one is upgraded in place."""

from __future__ import annotations

import json

import pytest

from advisor import history, migrations
from advisor.errors import AdvisorError


def test_migrations_from_an_empty_database(tmp_path):
    db = tmp_path / "h.sqlite"
    conn = history.connect(db)
    try:
        assert migrations.applied_migrations(conn) == [v for v, _, _ in migrations.MIGRATIONS]
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == history.APPLICATION_ID
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"schema_migrations", "bench_runs", "task_runs", "pipeline_results", "example_scores",
                "packages"} <= tables
    finally:
        conn.close()
    # reopening applies nothing twice
    conn = history.connect(db)
    assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(migrations.MIGRATIONS)
    conn.close()
    assert history.runs(db) == []
    # an empty (0-byte) file is not made into one (issue 17: it may be someone's placeholder)
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with pytest.raises(AdvisorError, match="an empty file"):
        history.connect(empty)
    assert empty.stat().st_size == 0


def test_upgrade_from_v1_keeps_and_backfills_data(tmp_path):
    db = tmp_path / "old.sqlite"
    conn = history.connect(db, upto=1)
    assert migrations.applied_migrations(conn) == [1]
    conn.execute("INSERT INTO bench_runs(created, environment) VALUES (?, ?)",
                 ("2025-12-31T00:00:00+00:00", json.dumps({"packages": {"torch": "2.3.1", "peft": None}})))
    conn.close()
    conn = history.connect(db)  # migrates 1 -> 2 -> 3
    try:
        assert migrations.applied_migrations(conn) == [1, 2, 3]
        rows = conn.execute("SELECT name, version FROM packages ORDER BY name").fetchall()
        assert rows == [("peft", None), ("torch", "2.3.1")]
        assert conn.execute("SELECT count(*) FROM bench_runs").fetchone()[0] == 1
    finally:
        conn.close()
