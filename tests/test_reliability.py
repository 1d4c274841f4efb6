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
    from advisor.run_folder import claim_run_dir

    empty = tmp_path / "empty"
    empty.mkdir()
    assert claim_run_dir(empty, "tiny", tmp_path) == empty
    assert json.loads((empty / ".advisor-run.json").read_text())["task"] == "tiny"
    (empty / "report.json").write_text("{}")
    assert claim_run_dir(empty, "tiny", tmp_path) == empty  # same task: resume / rerun there
    with pytest.raises(AdvisorError, match="another task"):
        claim_run_dir(empty, "tiny-cls", tmp_path)


def test_a_reused_run_folder_keeps_no_output_of_the_earlier_run(tmp_path):
    from advisor import run_folder, spec
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
    run_folder.remove_stale_outputs(run, {n: r["status"] for n, r in a.results.items()}, set(a.predictions()))
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == ["predictions/baseline.jsonl", "predictions/rag.jsonl", "stages/prompting.json"]


def test_run_folder_names_are_unique_within_one_second(tmp_path):
    """Before: runs/<task>-<YYYYmmdd-HHMMSS> only, so two runs started in the same second shared it."""
    from concurrent.futures import ThreadPoolExecutor

    from advisor.run_folder import default_out_dir

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


# ---------------------------------------------------------------------------------------------
# 4. YAML alias bombs


def alias_bomb(levels: int, key: str = "labels") -> str:
    """A billion-laughs value under `key`: 9**levels strings from a few hundred bytes."""
    rows = ["  - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    rows += [f"  - &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return f"{key}:\n" + "\n".join(rows) + "\n"


def test_an_alias_bomb_in_labels_is_one_short_line(tmp_path, monkeypatch):
    """Before: the validator echoed the expanded value: 6 levels -> a 3.7 MB "line"; 9 -> abort."""
    monkeypatch.chdir(tmp_path)
    for levels in (6, 9):
        text = TINY_TASK.replace("labels: [negative, positive]\n", alias_bomb(levels))
        assert len(text) < 1000
        (tmp_path / "task.yaml").write_text(text)
        res = CliRunner().invoke(app, ["assess", "task.yaml"])
        assert res.exit_code == 2
        assert res.stderr == ("error: task.yaml:9: YAML aliases expand to more than 100,000 values (an alias "
                              "bomb?); write the values out without nested aliases.\n")
    assert not (tmp_path / "runs").exists()


def test_a_recursive_alias_is_refused(tmp_path):
    from advisor import spec

    (tmp_path / "task.yaml").write_text(TINY_TASK.replace("labels: [negative, positive]", "labels: &a [x, *a]"))
    with pytest.raises(AdvisorError, match="recursive alias"):
        spec.load(tmp_path / "task.yaml")


def test_an_alias_bomb_in_a_suite_limit_is_refused(tmp_path):
    from advisor import bench

    (tmp_path / "suite.yaml").write_text("tasks: [a.yaml]\n" + alias_bomb(9, "defaults").replace(
        "defaults:\n", "defaults:\n limit:\n"))
    with pytest.raises(AdvisorError) as err:
        bench.load_suite(tmp_path / "suite.yaml")
    assert "alias bomb" in str(err.value) and len(str(err.value)) < 300


def test_ordinary_aliases_still_work(tmp_path):
    from advisor import spec

    (tmp_path / "task.yaml").write_text(TINY_TASK.replace("labels: [negative, positive]",
                                                          "labels: &labels [negative, positive]\ninstructions: x"))
    assert spec.load(tmp_path / "task.yaml").labels == ["negative", "positive"]


def test_an_echoed_value_is_capped_in_every_message():
    err = AdvisorError("value " + "x" * 5_000_000 + " is wrong", where="task.yaml: field 'name'", fix="shorten it")
    assert len(str(err)) < 1500 and str(err).endswith("; shorten it.") and "more characters]" in str(err)


# ---------------------------------------------------------------------------------------------
# 5. bounded reads


@pytest.mark.parametrize("arg", ["task", "eval"])
def test_dev_zero_as_the_task_or_eval_file_is_refused(tmp_path, monkeypatch, arg):
    """Before: read whole -> MemoryError traceback."""
    monkeypatch.chdir(tmp_path)
    _tiny(tmp_path)
    if arg == "task":
        argv, expected = ["assess", "/dev/zero"], ("error: /dev/zero: is not a regular file (a device, pipe or "
                                                   "socket); name a task.yaml file.\n")
    else:
        (tmp_path / "task.yaml").write_text(TINY_TASK.replace("eval: eval.jsonl", "eval: /dev/zero"))
        argv, expected = ["assess", "task.yaml"], ("error: /dev/zero (eval): is not a regular file (a device, pipe "
                                                   "or socket); name a file in data.eval in task.yaml.\n")
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 2 and res.stderr == expected


# ---------------------------------------------------------------------------------------------
# 3. leakage between eval and train (and the corpus); kNN k sized to the data


def _ex(i: int, text: str, tag: str = "e"):
    from advisor.data import Example

    return Example(f"{tag}{i}", text, ("x",))


def _brute_force(eval_texts: list[str], train_texts: list[str], t: float) -> tuple[set[int], set[int]]:
    """Independent reference: every pair compared, normalisation written out here."""
    import re

    def norm(s):
        return re.findall(r"\w+", s.lower())

    exact, near = set(), set()
    for i, e in enumerate(eval_texts):
        if any(norm(e) == norm(x) for x in train_texts):
            exact.add(i)
            continue
        a = set(norm(e))
        if a and any(len(a & set(norm(x))) / len(a | set(norm(x))) >= t for x in train_texts):
            near.add(i)
    return exact, near


def test_leakage_finds_exact_and_near_duplicates_like_a_brute_force_search():
    import random

    from advisor.leakage import find_leakage

    rng = random.Random(17)
    vocab = [f"w{i}" for i in range(40)] + ["the", "a", "my", "card"]
    train = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12))) for _ in range(300)]
    evals = []
    for i in range(200):
        r = rng.random()
        if r < 0.2:
            evals.append(rng.choice(train).upper() + " !")  # exact after normalisation
        elif r < 0.5:
            words = rng.choice(train).split()
            words[rng.randrange(len(words))] = rng.choice(vocab)  # one word changed
            evals.append(" ".join(words))
        else:
            evals.append(" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12))))
    leak = find_leakage([_ex(i, t) for i, t in enumerate(evals)], [_ex(i, t, "t") for i, t in enumerate(train)], None)
    exact, near = _brute_force(evals, train, 0.8)
    assert {int(e[1:]) for e, _ in leak.exact} == exact
    assert {int(e[1:]) for e, _ in leak.near} == near
    assert len(exact) > 20 and len(near) > 5  # the test exercises both kinds


@pytest.mark.parametrize("direct", [True, False], ids=["find", "window-pass"])
def test_leakage_in_the_corpus_needs_a_verbatim_passage(monkeypatch, direct):
    from advisor import leakage
    from advisor.data import Document
    from advisor.leakage import find_leakage

    if not direct:  # the path for many eval items over a large corpus
        monkeypatch.setattr(leakage, "DIRECT_SCAN_CHARS", 0)

    docs = [Document("faq.md", "faq", "Intro. How do I reset the card PIN if I forgot it at the ATM? Call us.")]
    evals = [_ex(0, "how do I reset the card PIN if I forgot it at the ATM"), _ex(1, "reset PIN"),
             _ex(2, "how do I reset the card PIN if I lost it on a train")]
    docs.append(Document("more.md", "more", "Also: why is the card PIN blocked after three wrong tries at the ATM."))
    evals.append(_ex(3, "Why is the card PIN blocked after three wrong tries"))
    leak = find_leakage(evals, [], docs)
    assert leak.in_corpus == [("e0", "faq.md"), ("e3", "more.md")]


def _task_with(tmp_path: Path, eval_rows: list[dict], train_rows: list[dict], extra: str = "") -> Path:
    (tmp_path / "task.yaml").write_text(
        TINY_TASK.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  train: train.jsonl\n" + extra))
    (tmp_path / "eval.jsonl").write_text(jsonl(eval_rows))
    (tmp_path / "train.jsonl").write_text(jsonl(train_rows))
    return tmp_path / "task.yaml"


def test_eval_items_copied_into_train_are_counted_and_can_be_dropped(tmp_path):
    from advisor import spec
    from advisor.data import load_task_data

    fixture_eval = [json.loads(x) for x in (FIXTURE / "eval.jsonl").read_text().splitlines()]
    fixture_train = [json.loads(x) for x in (FIXTURE / "train.jsonl").read_text().splitlines()]
    copied = fixture_train + fixture_eval[:3] + [{**fixture_eval[3], "text": fixture_eval[3]["text"].upper()}]
    data = load_task_data(spec.load(_task_with(tmp_path, fixture_eval, copied)))
    assert data.leakage.to_dict()["exact"] == 4 and len(data.train) == 28
    assert data.notes == ["leakage: 4 eval items also in the train set (4 exact, 0 near-duplicate (word overlap "
                          "≥ 0.8)); scores of pipelines that learn from train (baseline, few-shot, RAG examples, "
                          "LoRA) may be inflated; set data.leakage: drop to remove them from train"]
    dropped = load_task_data(spec.load(_task_with(tmp_path, fixture_eval, copied, "  leakage: drop\n")))
    assert len(dropped.train) == 24 and dropped.leakage.dropped_train == 4
    assert dropped.train.hash == load_task_data(spec.load(_task_with(tmp_path, fixture_eval, fixture_train))).train.hash
    clean = load_task_data(spec.load(_task_with(tmp_path, fixture_eval, fixture_train)))
    assert clean.notes == [] and clean.leakage.to_dict()["exact"] == 0


def test_knn_k_fits_an_eight_row_train_set(tmp_path, capfd):
    """Before: k=8 on 8 rows, 4 CV folds -> sklearn `Expected n_neighbors <= n_samples_fit` tracebacks."""
    import warnings

    from advisor import spec
    from advisor.data import load_task_data
    from pipelines.base import RunContext
    from pipelines.baseline import BaselinePipeline, knn_k

    assert knn_k(8, 8, 4) == 6 and knn_k(8, 100, 5) == 8 and knn_k(8, 3, 1) == 3 and knn_k(5, 2, 2) == 1
    rows = [json.loads(x) for x in (FIXTURE / "train.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["label"] == "positive"][:4] + [r for r in rows if r["label"] == "negative"][:4]
    evals = [json.loads(x) for x in (FIXTURE / "eval.jsonl").read_text().splitlines()]
    s = spec.load(_task_with(tmp_path, evals, train))
    data = load_task_data(s)
    pipe = BaselinePipeline()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.prepare(RunContext(s, data))
        out = pipe.predict(data.eval.examples)
    text = capfd.readouterr().err + "".join(str(w.message) for w in caught)
    assert "n_neighbors" not in text and "Traceback" not in text
    assert all(v == v for v in pipe.cv.values()), "every CV fold fitted (no NaN scores)"
    assert len(out.predictions) == len(evals)


def test_data_warnings_reach_every_report_format():
    import io

    from rich.console import Console

    from advisor.report import files, html, terminal
    from test_report_html import full_report

    report, preds = full_report()
    warning = "leakage: 4 eval items also in the train set (4 exact, 0 near-duplicate)"
    report["warnings"] = [warning]
    buf = io.StringIO()
    terminal.render(report, Console(file=buf, width=300))
    assert warning in files.to_json(report)
    assert f"- **warning**: {warning}" in files.to_markdown(report)
    assert f"<li>{warning}</li>" in html.render(report, predictions=preds)
    assert f"warning: {warning}" in buf.getvalue()


# ---------------------------------------------------------------------------------------------
# 9. corpus documents that cannot be read are skipped with the reason, and reported


def test_unreadable_corpus_documents_are_reported_with_the_reason(tmp_path):
    from advisor import spec
    from advisor.data import load_task_data

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(13):
        (docs / f"doc{i:02}.md").write_text(f"Document {i} about refunds and billing.")
    (docs / "café.md").write_bytes("Caf\xe9 opening hours".encode("latin-1"))
    (docs / "zeros.txt").write_bytes(b"\x00" * 4096)
    (docs / "blank.md").write_text("  \n")
    (tmp_path / "task.yaml").write_text(TINY_TASK.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  corpus: docs\n"))
    (tmp_path / "eval.jsonl").write_text(jsonl(ROWS))
    data = load_task_data(spec.load(tmp_path / "task.yaml"))
    assert len(data.corpus) == 13  # before: 14 (the NUL file was a "document"), nothing said
    assert data.corpus_skipped == [("docs/blank.md", "empty"), ("docs/café.md", "not UTF-8 text (invalid byte at offset 3)"),
                                   ("docs/zeros.txt", "binary (NUL bytes), not text")]
    assert data.notes == ["3 of 16 corpus documents skipped (docs/blank.md: empty; docs/café.md: not UTF-8 text "
                          "(invalid byte at offset 3); docs/zeros.txt: binary (NUL bytes), not text)"]


def test_a_nul_file_named_as_the_corpus_is_refused(tmp_path):
    from advisor import spec
    from advisor.data import load_task_data

    (tmp_path / "kb.txt").write_bytes(b"\x00\x00\x00")
    (tmp_path / "task.yaml").write_text(TINY_TASK.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  corpus: kb.txt\n"))
    (tmp_path / "eval.jsonl").write_text(jsonl(ROWS))
    with pytest.raises(AdvisorError, match=r"kb.txt \(data.corpus\): is binary \(NUL bytes\), not text"):
        load_task_data(spec.load(tmp_path / "task.yaml"))


# ---------------------------------------------------------------------------------------------
# 10. terminal escapes, redaction before escaping, raw HTML in report.md

EVIL = "\x1b]0;pwned\x07\x1b[2J\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\ [/INST] \u202eevil\r"


def _terminal(report: dict) -> str:
    import io

    from rich.console import Console

    from advisor.report import terminal

    buf = io.StringIO()
    terminal.render(report, Console(file=buf, width=300, force_terminal=True, color_system="truecolor"))
    return buf.getvalue()


def test_terminal_report_strips_escape_sequences_from_data():
    from test_report_html import full_report

    report, _ = full_report()
    report["recommendation"]["reasons"].append(f"label {EVIL} is hard")
    report["pipelines"]["prompting"].update(status="failed", reason=f"ValueError: {EVIL}")
    out = _terminal(report)
    assert "\x1b]" not in out and "\x1b[2J" not in out and "\r" not in out and "\u202e" not in out
    assert "pwned" not in out  # the whole OSC sequence is gone, payload included
    assert "[/INST]" in out and "click" in out  # the text around it stays readable


def test_error_line_strips_escape_sequences(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "task.yaml").write_text(TINY_TASK)
    (tmp_path / "eval.jsonl").write_text(jsonl(ROWS + [{"text": "x", "label": f"neu{EVIL}tral"}]))
    res = CliRunner().invoke(app, ["assess", "task.yaml"])
    assert res.exit_code == 2 and "\x1b" not in res.stderr and "\r" not in res.stderr
    assert "label 'neu" in res.stderr and len(res.stderr.splitlines()) == 1


def test_a_secret_with_html_characters_is_redacted_in_html_and_on_the_terminal(monkeypatch):
    import html as std_html

    from advisor.report import files, html
    from test_report_html import full_report

    secret = "p&ss<w>\"rd'42"
    monkeypatch.setenv("ACME_API_KEY", secret)
    report, preds = full_report()
    report["recommendation"]["reasons"].append(f"the endpoint said: token {secret} rejected")
    preds["rag"][0]["output"] = f"my key is {secret}"
    page = html.render(report, predictions=preds)
    for form in (secret, std_html.escape(secret), std_html.escape(secret, quote=False)):
        assert form not in page  # before: the escaped form slipped past redaction
        assert form not in _terminal(report)  # before: printed raw
        assert form not in files.to_markdown(report)
    assert "token *** rejected" in page


def test_report_md_escapes_raw_html_from_data():
    from advisor.report import files
    from test_report_html import full_report

    report, _ = full_report()
    report["task"]["source"] = "<img src=x onerror=alert(1)>/task.yaml"
    report["recommendation"]["reasons"].append("path <img src=x onerror=alert(1)> | pipe")
    md = files.to_markdown(report)
    assert "<img" not in md and "&lt;img src=x onerror=alert(1)&gt; \\| pipe" in md


def test_plot_labels_with_escapes_print_no_raw_escape(capfd):
    import warnings

    from advisor.report import html
    from test_report_html import full_report

    report, preds = full_report()
    bad = "bill\x1bing"
    report["task"]["labels"] = [bad if x == "billing" else x for x in report["task"]["labels"]]
    for rows in preds.values():
        for r in rows:
            r["expected"] = [bad if g == "billing" else g for g in r["expected"]]
            r["output"] = bad if r["output"] == "billing" else r["output"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        html.render(report, predictions=preds)
    printed = capfd.readouterr()
    assert not any("\x1b" in str(w.message) for w in caught)  # before: "Glyph 27 (\x1b) missing from font(s)"
    assert "\x1b" not in printed.err + printed.out


# ---------------------------------------------------------------------------------------------
# 6. a broken environment is found before the first stage


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_a_read_only_advisor_home_is_refused_before_any_stage(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _tiny(tmp_path)
    home = tmp_path / "home"
    home.mkdir(mode=0o500)
    monkeypatch.setenv("ADVISOR_HOME", str(home))
    res = CliRunner().invoke(app, ["assess", "task.yaml"])
    assert res.exit_code == 2
    assert res.stderr == (f"error: ADVISOR_HOME ({home}): cannot write (Permission denied); set ADVISOR_HOME to a "
                          "writable folder.\n")
    assert not (tmp_path / "runs").exists()


def test_a_file_as_advisor_home_is_refused_before_any_stage(tmp_path, monkeypatch):
    """Before: exit 0, prompting and RAG `failed`, a recommendation from the baseline alone."""
    monkeypatch.chdir(tmp_path)
    _tiny(tmp_path)
    (tmp_path / "home").write_text("not a folder")
    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / "home"))
    res = CliRunner().invoke(app, ["assess", "task.yaml"])
    assert res.exit_code == 2
    assert res.stderr == (f"error: ADVISOR_HOME ({tmp_path}/home): is a file, not a folder; set ADVISOR_HOME to a "
                          "writable folder.\n")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["assess", "estimate"])
def test_a_broken_candidate_config_is_one_line(tmp_path, monkeypatch, command):
    """Before: `assess` exit 0 with the LLM pipelines failed; `estimate` a 72-line traceback."""
    monkeypatch.chdir(tmp_path)
    _tiny(tmp_path)
    (tmp_path / "task.yaml").write_text(TINY_TASK + "models: {candidates: [./my-llm]}\n")
    (tmp_path / "my-llm").mkdir()
    (tmp_path / "my-llm" / "config.json").write_text('{"model_type": "llama", "hidden_size": 64,')
    res = CliRunner().invoke(app, [command, "task.yaml"])
    assert res.exit_code == 2
    assert res.stderr == (f"error: model '{tmp_path}/my-llm': config.json is not valid JSON (Expecting property "
                          "name enclosed in double quotes: line 1 column 43 (char 42)); repair it or copy the model "
                          "folder again.\n")
    assert "Traceback" not in res.output and not (tmp_path / "runs").exists()


def test_a_data_file_over_the_size_limit_is_refused_unread(tmp_path, monkeypatch):
    from advisor import data, spec

    _tiny(tmp_path)
    monkeypatch.setattr(data, "MAX_DATA_BYTES", 50)
    with pytest.raises(AdvisorError) as err:
        data.load_task_data(spec.load(tmp_path / "task.yaml"))
    assert str(err.value) == (f"{tmp_path}/eval.jsonl (eval): is larger than 50 bytes (advisor reads data files "
                              "whole); use a sample of it (advisor's statistics need hundreds of items, not millions).")


def test_prompts_cut_at_the_context_are_counted_in_a_note():
    """The generator keeps a too-long prompt's end; the stage says how many were cut."""
    from types import SimpleNamespace

    from advisor import spec
    from advisor.engine import Assessment

    a = Assessment(spec.load(FIXTURE / "task.yaml"), None)
    a._llms["m"] = (None, SimpleNamespace(max_context=8192))
    out = SimpleNamespace(predictions=[SimpleNamespace(prompt_tokens=t) for t in (8184, 120, 8184, 300)])
    assert a._context_notes("m", out) == ["2 of 4 prompts were longer than the model's 8192-token context and were "
                                          "cut to their last 8184 tokens (scored and priced as cut)"]
    out.predictions = out.predictions[1:2]
    assert a._context_notes("m", out) == [] and a._context_notes(None, out) == []


def test_report_json_carries_leakage_and_skipped_documents(tmp_path):
    """The engine puts data warnings into report.json (added keys: task.leakage, task.corpus_skipped, warnings)."""
    from advisor import spec
    from advisor.data import load_task_data
    from advisor.engine import Assessment

    evals = [json.loads(x) for x in (FIXTURE / "eval.jsonl").read_text().splitlines()]
    train = [json.loads(x) for x in (FIXTURE / "train.jsonl").read_text().splitlines()] + evals[:2]
    path = _task_with(tmp_path, evals, train, "  corpus: docs\n")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("A review corpus.")
    (tmp_path / "docs" / "b.md").write_bytes(b"\xff\xfe")
    a = Assessment(spec.load(path), tmp_path / "run")
    a.data = load_task_data(a.spec)
    report = a.report({"chosen": "m", "table": []}, {"pipelines": {}}, {"choice": "none", "reasons": []},
                      StageStore(tmp_path / "run"), 1.0)
    assert report["task"]["leakage"]["exact"] == 2
    assert report["task"]["corpus_skipped"] == [{"document": "docs/b.md",
                                                 "reason": "not UTF-8 text (invalid byte at offset 0)"}]
    assert len(report["warnings"]) == 2 and report["warnings"][0].startswith("leakage: 2 eval items")


def test_history_table_shows_markup_and_escapes_in_task_names_as_text(tmp_path):
    from advisor import history

    db = tmp_path / "h.sqlite"
    name = "intents[bold]\x1b]0;pwned\x07[/]"
    report = {"task": {"name": name, "metric": "accuracy", "eval_ids": ["a", "b"]},
              "pipelines": {"prompting": {"status": "ok", "score": 0.5, "per_example": [1.0, 0.0]}},
              "recommendation": {"choice": "prompting"}, "environment": {"device": "cpu"}}
    history.record_run(db, report)
    history.record_run(db, report)
    res = CliRunner().invoke(app, ["history", str(db)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output  # before: rich MarkupError on the closing tag '[/]'
    assert "intents[bold][/] (accuracy): 2 runs" in res.output and "\x1b" not in res.output
