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
