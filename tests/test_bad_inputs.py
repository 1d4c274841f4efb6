"""The bad-input catalogue (issue 8): every case through the real `advisor` CLI.

Each row: the exact one-line message (file, field or line, what is wrong, how to fix), exit code 2,
no traceback, and nothing written: no run folder, not even an empty one. Rows run in-process with
typer's CliRunner (fast); `test_real_process` runs a few through the installed console script.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.cli import app
from advisor.data import MIN_TRAIN_FOR_FINETUNE
from helpers import ROWS, TINY_TASK, jsonl

ROOT = Path(__file__).resolve().parents[1]
TASK = TINY_TASK
WITH_TRAIN = TASK.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  train: train.jsonl\n")
WITH_CORPUS = TASK.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  corpus: docs\n")


def models(line: str) -> str:
    return TASK + f"models: {{candidates: [{line}]}}\n"


def sqlite_other(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()


# (case id, files {name: text | bytes | callable(path)}, CLI args, exact message; {tmp} = the test folder)
CASES = [
    ("yaml-syntax", {"task.yaml": "name: tiny\ntype: classification\n  labels: [a, b]\n"}, [],
     "task.yaml:3:9: YAML syntax error: mapping values are not allowed here; fix the indentation or quoting there."),
    ("not-a-mapping", {"task.yaml": "- eval.jsonl\n"}, [],
     "task.yaml: the task file is a list, not a mapping; write 'key: value' lines such as 'name:', 'type:', "
     "'data:', 'target:' (see examples/)."),
    ("unknown-key", {"task.yaml": TASK.replace("labels:", "lables:")}, [],
     "task.yaml: unknown key 'lables': did you mean 'labels'?"),
    ("unknown-nested-key", {"task.yaml": TASK.replace("min:", "minimum:")}, [],
     "task.yaml: unknown key 'minimum' in 'target': did you mean 'min'?"),
    ("wrong-type", {"task.yaml": TASK.replace("min: 0.8", "min: high")}, [],
     "task.yaml: field 'target.min': must be a number (got 'high'); write a number."),
    ("bad-choice", {"task.yaml": TASK.replace("type: classification", "type: clasification")}, [],
     "task.yaml: field 'type': 'clasification' is not allowed; did you mean 'classification'?"),
    ("missing-required", {"task.yaml": TASK.replace("target: {metric: accuracy, min: 0.8}\n", "")}, [],
     "task.yaml: field 'target': is required; add e.g. 'target: {metric: accuracy, min: 0.8}'."),
    ("task-file-missing", {}, [], "task.yaml: no such file; check the path (see examples/ for a task file)."),
    ("task-file-not-utf8", {"task.yaml": TASK.replace("tiny", "caf\xe9").encode("latin-1")}, [],
     "task.yaml: not UTF-8 text (invalid byte at offset 9); re-save it as UTF-8."),
    ("data-file-missing", {"task.yaml": TASK}, [], "{tmp}/eval.jsonl (eval): no such file; check data.eval in task.yaml."),
    ("data-file-unreadable", {"task.yaml": TASK.replace("eval.jsonl", "blocker/eval.jsonl"), "blocker": "a file"}, [],
     "{tmp}/blocker/eval.jsonl (eval): cannot read (Not a directory); check its permissions."),
    ("data-path-is-folder", {"task.yaml": TASK, "eval.jsonl/readme.txt": "x"}, [],
     "{tmp}/eval.jsonl (eval): is a folder, expected a .jsonl, .json or .csv file; name a file in data.eval in "
     "task.yaml."),
    ("empty-eval-set", {"task.yaml": TASK, "eval.jsonl": "\n"}, [],
     "{tmp}/eval.jsonl (eval): has no examples; add rows or point data.eval at another file."),
    ("jsonl-line-not-json", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS[:2]) + '{"text": "x", label: "a"}\n'}, [],
     "{tmp}/eval.jsonl:3 (eval): line is not valid JSON (Expecting property name enclosed in double quotes); "
     "one JSON object per line (JSON Lines)."),
    ("csv-missing-mapped-column", {"task.yaml": TASK.replace("eval.jsonl", "eval.csv"),
                                   "eval.csv": "review,label\ngreat,positive\n"}, [],
     "{tmp}/eval.csv:2 (eval): no field 'text' (the row has: review, label); set data.fields.input in task.yaml."),
    ("label-not-in-list", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS + [{"text": "meh", "label": "neutral"}])}, [],
     "{tmp}/eval.jsonl (eval): label 'neutral' of example eval-5 is not in the label list; add it to labels or "
     "fix the row (labels: negative, positive)."),
    ("duplicate-ids", {"task.yaml": TASK.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  fields: {id: id}\n"),
                       "eval.jsonl": jsonl([{"id": "a", **ROWS[0]}, {"id": "b", **ROWS[1]}, {"id": "a", **ROWS[2]}])},
     [], "{tmp}/eval.jsonl:3 (eval): duplicate id 'a' (first at line 1); make ids unique or drop data.fields.id."),
    ("data-not-utf8", {"task.yaml": TASK, "eval.jsonl": b'{"text": "caf\xe9", "label": "positive"}\n'}, [],
     "{tmp}/eval.jsonl (eval): not UTF-8 text (invalid byte at offset 13); re-save it as UTF-8."),
    ("train-too-small", {"task.yaml": WITH_TRAIN, "eval.jsonl": jsonl(ROWS), "train.jsonl": jsonl(ROWS * 2)},
     ["--finetune", "always"],
     f"{{tmp}}/train.jsonl (train): 8 training examples are too few to fine-tune (minimum {MIN_TRAIN_FOR_FINETUNE}); "
     "add examples or set finetune.mode: auto."),
    ("corpus-without-documents", {"task.yaml": WITH_CORPUS, "eval.jsonl": jsonl(ROWS), "docs/scan.pdf": b"%PDF",
                                  "docs/latin.txt": b"caf\xe9"}, [],
     "{tmp}/docs (data.corpus): has no readable .md or .txt documents; add UTF-8 .md/.txt files or point at a "
     ".jsonl corpus."),
    ("metric-does-not-fit-type", {"task.yaml": TASK.replace("metric: accuracy", "metric: exact_match")}, [],
     "task.yaml: field 'target.metric': 'exact_match' is not a metric of a classification task; "
     "use one of: accuracy, macro_f1, or a custom scorer module:function."),
    ("unknown-bundled-model", {"task.yaml": models("bundled:smollm2-1.7b"), "eval.jsonl": jsonl(ROWS)}, [],
     "model 'bundled:smollm2-1.7b': unknown bundled language model; use one of: bundled:smollm2-135m-instruct."),
    ("embedder-as-llm", {"task.yaml": models("bundled:all-minilm-l6-v2"), "eval.jsonl": jsonl(ROWS)}, [],
     "model 'bundled:all-minilm-l6-v2': is a bundled embedding model, not a language model; "
     "use one of: bundled:smollm2-135m-instruct."),
    ("model-path-missing", {"task.yaml": models("./models/my-llm"), "eval.jsonl": jsonl(ROWS)}, [],
     "model '{tmp}/models/my-llm': no such folder; check the path, or use a bundled: model."),
    ("hub-id-offline", {"task.yaml": models("advisor-test/not-a-real-model"), "eval.jsonl": jsonl(ROWS)}, [],
     "model 'advisor-test/not-a-real-model': is not a local folder and not in the Hugging Face cache, and advisor "
     "runs offline (HF_HUB_OFFLINE=1); download it where there is a network and point models.candidates at the "
     "local folder."),
    ("not-a-model-name", {"task.yaml": models("'my model'"), "eval.jsonl": jsonl(ROWS)}, [],
     "model 'my model': is not a bundled: model, an existing folder or a Hugging Face id; fix models.candidates "
     "(see `advisor models`)."),
    ("var-unset", {"task.yaml": TASK.replace("eval: eval.jsonl", "eval: ${ADVISOR_TEST_UNSET_DATA}/eval.jsonl")}, [],
     "task.yaml: field 'data.eval': ${ADVISOR_TEST_UNSET_DATA} is not set; export ADVISOR_TEST_UNSET_DATA=... "
     "or write ${ADVISOR_TEST_UNSET_DATA:-default}."),
    ("negative-price", {"task.yaml": TASK + "hardware: {gpu: A100-80GB, usd_per_hour: -1.5}\n"}, [],
     "task.yaml: field 'hardware.usd_per_hour': must be greater than 0 (got -1.5); write a number above 0."),
    ("zero-requests", {"task.yaml": TASK + "budget: {setup_usd: 50, requests_per_month: 0}\n"}, [],
     "task.yaml: field 'budget.requests_per_month': must be greater than 0 (got 0); write a number above 0."),
    ("negative-setup-budget", {"task.yaml": TASK + "budget: {setup_usd: -1}\n"}, [],
     "task.yaml: field 'budget.setup_usd': must be at least 0 (got -1); write 0 or more."),
    ("unknown-gpu", {"task.yaml": TASK + "hardware: {gpu: RTX-9090}\n"}, [],
     "task.yaml: field 'hardware.gpu': unknown hardware 'RTX-9090'; known: H100, H200, A100-80GB, L40S, L4, A10G, "
     "T4, CPU."),
    ("python-object-tag", {"task.yaml": TASK + "instructions: !!python/object/apply:os.system ['touch pwned']\n"}, [],
     "task.yaml:7:15: the YAML tag '!!python/object/apply:os.system' is not allowed (advisor reads plain YAML data "
     "only, never Python objects); remove the tag."),
    ("bad-finetune-option", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS)}, ["--finetune", "sometimes"],
     "--finetune: 'sometimes' is not a mode; use auto, always or never."),
    ("bad-methods-option", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS)}, ["--methods", "lora,adapters"],
     "--methods: 'lora,adapters': Input should be 'lora', 'full', 'prompt_tuning' or 'ia3'; list methods from lora, "
     "full, prompt_tuning, ia3, separated by commas."),
    ("methods-twice-option", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS)}, ["--methods", "ia3,ia3"],
     "--methods: 'ia3,ia3': ia3 is listed twice; list each method once; list methods from lora, full, "
     "prompt_tuning, ia3, separated by commas."),
    ("out-is-a-file", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS), "taken": "a file"}, ["--out", "taken"],
     "taken: is a file, not a run folder; choose another --out."),
    ("out-under-a-file", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS), "taken": "a file"}, ["--out", "taken/run1"],
     "taken/run1: cannot write the run folder (Not a directory); choose another --out."),
    ("markup-in-message", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS + [{"text": "x", "label": "[/INST]"}])}, [],
     "{tmp}/eval.jsonl (eval): label '[/INST]' of example eval-5 is not in the label list; add it to labels or "
     "fix the row (labels: negative, positive)."),
    # issue 17: run folders, bounded reads, alias bombs, broken models, binary corpus files
    ("out-not-empty", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS), "theirs/report.json": "{}",
                       "theirs/predictions/rag.jsonl": "{}\n"}, ["--out", "theirs"],
     "theirs: is not empty and not an advisor run folder (holds predictions, report.json); choose a new or empty "
     "folder for --out."),
    ("out-other-task", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS), "old/.advisor-run.json": '{"task": "sentiment"}',
                        "old/report.json": "{}"}, ["--out", "old"],
     "old: is a run folder of another task ('sentiment'); choose a new or empty folder for --out."),
    ("yaml-alias-bomb", {"task.yaml": TASK.replace("labels: [negative, positive]\n", "labels:\n  - &a [l, l, l, l, l, l]\n"
                         + "".join(f"  - &a{i} [{', '.join(['*a' if i == 1 else f'*a{i - 1}'] * 9)}]\n"
                                   for i in range(1, 7)))}, [],
     "task.yaml:9: YAML aliases expand to more than 100,000 values (an alias bomb?); write the values out without "
     "nested aliases."),
    ("eval-is-a-device", {"task.yaml": TASK.replace("eval: eval.jsonl", "eval: /dev/zero")}, [],
     "/dev/zero (eval): is not a regular file (a device, pipe or socket); name a file in data.eval in task.yaml."),
    ("input-too-long", {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS + [{"text": "a" * 200_001, "label": "positive"}])},
     [], "{tmp}/eval.jsonl:5 (eval): field 'text' is 200,001 characters; items over 200,000 (far beyond a small "
     "model's context) are refused; shorten the item or drop the row."),
    ("corpus-file-binary", {"task.yaml": TASK.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  corpus: kb.txt\n"),
                            "eval.jsonl": jsonl(ROWS), "kb.txt": b"\x00\x01\x02"}, [],
     "{tmp}/kb.txt (data.corpus): is binary (NUL bytes), not text; name UTF-8 .md/.txt documents in data.corpus."),
    ("model-config-broken", {"task.yaml": models("./my-llm"), "eval.jsonl": jsonl(ROWS),
                             "my-llm/config.json": '{"model_type": "llama",'}, [],
     "model '{tmp}/my-llm': config.json is not valid JSON (Expecting property name enclosed in double quotes: line 1 "
     "column 24 (char 23)); repair it or copy the model folder again."),
    # bench / history (advisor/bench.py, advisor/history.py)
    ("suite-names-missing-task", {"suite.yaml": "tasks: [tasks/gone.yaml]\n"}, ["bench", "suite.yaml", "--history",
                                                                              "h.sqlite"],
     "suite.yaml: tasks[0] (tasks/gone.yaml): task file not found: {tmp}/tasks/gone.yaml; paths are relative to the "
     "suite file; fix or remove the entry."),
    ("history-not-sqlite", {"notes.sqlite": "just text\n"}, ["history", "notes.sqlite"],
     "notes.sqlite: not an advisor history database (not a SQLite file); pass the .sqlite file that "
     "`advisor bench --history` writes, or a new path to start one."),
    ("history-empty-file", {"h.sqlite": b""}, ["history", "h.sqlite"],
     "h.sqlite: not an advisor history database (an empty file); pass the .sqlite file that `advisor bench "
     "--history` writes, or a new path to start one."),
    ("suite-alias-bomb", {"suite.yaml": "tasks: [a.yaml]\ndefaults:\n  limit:\n    - &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n"
                          + "".join(f"    - &a{i} [{', '.join(['*a' if i == 1 else f'*a{i - 1}'] * 9)}]\n"
                                    for i in range(1, 7))}, ["bench", "suite.yaml", "--history", "h.sqlite"],
     "suite.yaml:9: YAML aliases expand to more than 100,000 values (an alias bomb?); write the values out without "
     "nested aliases."),
    ("history-other-sqlite", {"crm.db": sqlite_other}, ["history", "crm.db"],
     "crm.db: not an advisor history database (a different SQLite database: customers); pass the .sqlite file "
     "that `advisor bench --history` writes, or a new path to start one."),
]


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")}


def setup_case(folder: Path, files: dict) -> None:
    for name, content in files.items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(p)
        elif isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADVISOR_TEST_UNSET_DATA", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


@pytest.mark.parametrize("files, args, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(case_dir, files, args, message):
    setup_case(case_dir, files)
    before = snapshot(case_dir)
    argv = args if args and args[0] in ("bench", "history") else ["assess", "task.yaml", *args]
    result = CliRunner().invoke(app, argv)
    expected = "error: " + message.replace("{tmp}", str(case_dir.resolve())) + "\n"
    assert result.stderr == expected
    assert "; " in message or message.endswith("?"), "every message says how to fix it"
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert snapshot(case_dir) == before, "a bad input must leave nothing behind (no run folder, no database)"


def test_catalogue_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_out(case_dir):
    setup_case(case_dir, {"task.yaml": TASK, "eval.jsonl": jsonl(ROWS)})
    (case_dir / "locked").mkdir(mode=0o500)
    result = CliRunner().invoke(app, ["assess", "task.yaml", "--out", "locked/run1"])
    assert result.stderr == "error: locked/run1: cannot write the run folder (Permission denied); choose another --out.\n"
    assert result.exit_code == 2 and not (case_dir / "locked" / "run1").exists()


def test_nothing_created_on_the_default_out_path(case_dir):
    """Without --out the run folder would be runs/<name>-<time>: a bad input must not create runs/."""
    setup_case(case_dir, {"task.yaml": TASK, "eval.jsonl": "\n"})
    result = CliRunner().invoke(app, ["assess", "task.yaml"])
    assert result.exit_code == 2 and not (case_dir / "runs").exists()


@pytest.mark.parametrize("case", ["data-file-missing", "hub-id-offline"])
def test_real_process(case_dir, case):
    """The installed console script: exit status 2, one line on stderr, nothing on stdout, no traceback."""
    _, files, args, message = next(c for c in CASES if c[0] == case)
    setup_case(case_dir, files)
    exe = Path(sys.executable).with_name("advisor")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([str(exe), "assess", "task.yaml", *args], cwd=case_dir, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == "error: " + message.replace("{tmp}", str(case_dir.resolve())) + "\n"
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert not (case_dir / "runs").exists()
