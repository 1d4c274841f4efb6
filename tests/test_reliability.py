"""Issue 17 (reliability, second pass): each broken behaviour as a test that failed before the fix.

Items: 1 failed stages reused, 2 `--out` overwriting, 3 leakage, 4 YAML alias bombs, 5 huge or
endless inputs, 6 a broken environment found late, 7 run-folder names colliding, 8 `history`
changing files, 9 corpus documents dropped silently, 10 terminal escapes and redaction gaps.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.cli import app
from advisor.errors import AdvisorError
from advisor.stages import StageStore, previous_runs
from helpers import ROWS, TINY_TASK, jsonl

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny_cls"


# ---------------------------------------------------------------------------------------------
# 1. a failed stage is never reused


def test_a_failed_stage_is_never_reused_from_the_same_or_an_earlier_run(tmp_path):
    old = tmp_path / "runs" / "task-1"
    failed = {"status": "failed", "reason": "OSError: [Errno 30] Read-only file system (traceback: x.log)"}
    StageStore(old).put("prompting", "k1", failed)
    # a failure stored by an older advisor is skipped too
    (old / "stages").mkdir(parents=True, exist_ok=True)
    (old / "stages" / "rag.json").write_text(json.dumps({"key": "k2", "result": failed, "artifacts": []}))
    assert StageStore(old).get("prompting", "k1") is None
    assert StageStore(old).get("rag", "k2") is None
    new = StageStore(tmp_path / "runs" / "task-2", search=previous_runs(tmp_path / "runs", "task"))
    assert new.get("prompting", "k1") is None and new.get("rag", "k2") is None
    assert new.status == {}
    # a skipped stage is a result (the task decides it), not a fault: still reused
    StageStore(old).put("finetune", "k3", {"status": "skipped", "reason": "no train set"})
    assert StageStore(old).get("finetune", "k3") == {"status": "skipped", "reason": "no train set"}


def test_a_corrupted_chroma_store_is_rebuilt_not_a_failure(tmp_path):
    """The persistent store is a cache: a damaged chroma.sqlite3 is moved aside and rebuilt."""
    from pipelines.rag_index import chroma_client

    client = chroma_client(None, tmp_path)
    client.create_collection("kept-nowhere", embedding_function=None).add(
        ids=["a"], embeddings=[[0.1, 0.2]], documents=["d"])
    del client
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()
    db = tmp_path / "chroma" / "chroma.sqlite3"
    db.write_bytes(b"not a database at all " * 200)
    client = chroma_client(None, tmp_path)  # before: InternalError "file is not a database"
    assert client.list_collections() == []
    col = client.create_collection("rebuilt", embedding_function=None)
    col.add(ids=["b"], embeddings=[[0.3, 0.4]], documents=["e"])
    assert col.count() == 1
    assert [p.name for p in tmp_path.iterdir()] == ["chroma"]  # nothing left beside it


# ---------------------------------------------------------------------------------------------
# 2. --out writes only into an empty folder or a run folder of the same task; 7. unique names


def _tiny(tmp_path: Path) -> None:
    (tmp_path / "task.yaml").write_text(TINY_TASK)
    (tmp_path / "eval.jsonl").write_text(jsonl(ROWS))


def test_out_refuses_someone_elses_folder_and_another_tasks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny(tmp_path)
    theirs = tmp_path / "theirs"
    (theirs / "predictions").mkdir(parents=True)
    (theirs / "report.json").write_text('{"mine": true}')
    result = CliRunner().invoke(app, ["assess", "task.yaml", "--out", "theirs"])
    assert result.exit_code == 2
    assert result.stderr == ("error: theirs: is not empty and not an advisor run folder (holds predictions, "
                             "report.json); choose a new or empty folder for --out.\n")
    assert sorted(p.name for p in theirs.iterdir()) == ["predictions", "report.json"]
    assert (theirs / "report.json").read_text() == '{"mine": true}'
    other = tmp_path / "other"
    other.mkdir()
    (other / ".advisor-run.json").write_text('{"task": "sentiment"}')
    result = CliRunner().invoke(app, ["assess", "task.yaml", "--out", "other"])
    assert result.exit_code == 2
    assert result.stderr == ("error: other: is a run folder of another task ('sentiment'); choose a new or empty "
                             "folder for --out.\n")


def test_out_accepts_an_empty_folder_and_its_own_runs_and_marks_them(tmp_path):
    from advisor.engine import claim_run_dir

    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_run_dir(empty, "tiny", tmp_path) == empty
    assert json.loads((empty / ".advisor-run.json").read_text())["task"] == "tiny"
    (empty / "report.json").write_text("{}")
    assert claim_run_dir(empty, "tiny", tmp_path) == empty  # same task: resume / rerun there
    with pytest.raises(AdvisorError, match="another task"):
        claim_run_dir(empty, "tiny-cls", tmp_path)


def test_a_reused_run_folder_keeps_no_output_of_the_earlier_run(tmp_path):
    from advisor import spec
    from advisor.engine import Assessment

    run = tmp_path / "run"
    for rel in ("predictions/finetune.jsonl", "predictions/rag.jsonl", "logs/rag.log", "adapter/adapter.bin",
                "stages/finetune.json", "stages/prompting.json"):
        (run / rel).parent.mkdir(parents=True, exist_ok=True)
        (run / rel).write_text("old")
    a = Assessment(spec.load(FIXTURE / "task.yaml"), run)
    a.results = {"baseline": {"status": "ok", "predictions": [{"id": 1}]}, "prompting": {"status": "ok"},
                 "rag": {"status": "ok", "predictions": [{"id": 1}]}, "finetune": {"status": "skipped"}}
    (run / "predictions" / "baseline.jsonl").write_text("new")
    a._remove_stale_outputs()
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == ["predictions/baseline.jsonl", "predictions/rag.jsonl", "stages/prompting.json"]


def test_run_folder_names_are_unique_within_one_second(tmp_path):
    """Before: runs/<task>-<YYYYmmdd-HHMMSS> only, so two runs started in the same second shared it."""
    from concurrent.futures import ThreadPoolExecutor

    from advisor.engine import default_out_dir

    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda _: default_out_dir("tiny", tmp_path / "runs"), range(8)))
    assert len(set(made)) == 8 and all(p.is_dir() for p in made)
    assert len({p.name[: len("tiny-") + 15] for p in made}) <= 2  # the same stamp, suffixed -2, -3, ...


def test_previous_runs_skip_another_tasks_folder_with_a_like_name(tmp_path):
    runs = tmp_path / "runs"
    for name, task in (("tiny-20260101-000000", "tiny"), ("tiny-cls-20260101-000000", "tiny-cls")):
        (runs / name / "stages").mkdir(parents=True)
        (runs / name / ".advisor-run.json").write_text(json.dumps({"task": task}))
    assert [p.name for p in previous_runs(runs, "tiny")] == ["tiny-20260101-000000"]


# ---------------------------------------------------------------------------------------------
# 8. read-only commands open read-only; nothing foreign or empty becomes an advisor database


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_history_leaves_another_applications_database_byte_for_byte(tmp_path):
    db = tmp_path / "crm.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    before = _files(tmp_path)
    res = CliRunner().invoke(app, ["history", str(db)])
    assert res.exit_code == 2 and "a different SQLite database: customers" in res.stderr
    assert _files(tmp_path) == before  # before: the header's journal mode was switched to WAL
    from advisor import history

    with pytest.raises(AdvisorError, match="a different SQLite database"):
        history.connect(db)  # the writing path (bench) refuses it before any pragma too
    assert _files(tmp_path) == before


def test_an_empty_file_never_becomes_an_advisor_database(tmp_path):
    from advisor import history

    db = tmp_path / "empty.sqlite"
    db.touch()
    res = CliRunner().invoke(app, ["history", str(db)])
    assert res.exit_code == 2
    assert res.stderr == (f"error: {db}: not an advisor history database (an empty file); pass the .sqlite file "
                          "that `advisor bench --history` writes, or a new path to start one.\n")
    with pytest.raises(AdvisorError, match="an empty file"):
        history.connect(db)
    assert db.stat().st_size == 0 and _files(tmp_path) == {"empty.sqlite": b""}  # before: a 40 KB database


def test_history_reads_an_advisor_database_without_writing_it(tmp_path):
    from advisor import history

    db = tmp_path / "h.sqlite"
    report = {"task": {"name": "t1", "metric": "accuracy", "eval_ids": ["a", "b"]},
              "pipelines": {"prompting": {"status": "ok", "score": 0.5, "per_example": [1.0, 0.0]}},
              "recommendation": {"choice": "prompting"}, "environment": {"device": "cpu"}}
    history.record_run(db, report)
    history.record_run(db, report)
    before = _files(tmp_path)
    os.chmod(db, 0o444)  # a read-only command works on a file it may not write
    try:
        res = CliRunner().invoke(app, ["history", str(db)], env={"COLUMNS": "160"})
    finally:
        os.chmod(db, 0o644)
    assert res.exit_code == 0, res.output
    assert "t1 (accuracy): 2 runs" in res.output
    after = _files(tmp_path)
    assert after["h.sqlite"] == before["h.sqlite"]  # the database itself is untouched
    # a reader of a WAL database keeps SQLite's own companion files (what any reader does)
    assert set(after) - set(before) <= {"h.sqlite-wal", "h.sqlite-shm"}
