"""Suites and `advisor bench`: parsing, overrides, history, regression exit codes.

The assessments themselves are replaced by a stand-in that scores the real eval items of the
tiny fixture task (loaded and validated by the real code) from the task's instructions, so
these tests exercise suite -> specs -> history -> comparison -> exit code in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor import bench, history, regression, run_folder
from advisor.cli import app
from advisor.engine import Assessment
from advisor.errors import AdvisorError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny_cls"


def make_task(folder: Path, name: str, *, degraded: bool = False) -> Path:
    """A copy of the tiny task under another name; `degraded` marks it for the stand-in to score worse."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in ("eval.jsonl", "train.jsonl"):
        if not (folder / f).exists():
            shutil.copy(TINY / f, folder / f)
    text = (TINY / "task.yaml").read_text().replace("name: tiny_cls", f"name: {name}")
    if degraded:
        text = text.replace("instructions: Decide", "instructions: DEGRADED. Decide")
    path = folder / f"{name}{'-degraded' if degraded else ''}.yaml"
    path.write_text(text)
    return path


CALLS: list[dict] = []


def fake_run(self: Assessment) -> dict:
    """Scores the task's real eval ids: all right, or (degraded) all wrong."""
    ids = [e.id for e in self.data.eval.examples]
    degraded = self.spec.instructions.startswith("DEGRADED")
    CALLS.append({"task": self.spec.name, "limit": self.spec.data.eval_limit, "finetune": self.spec.finetune.mode,
                  "fresh": self.fresh, "out": self.out_dir})
    scores = [0.0 if degraded else 1.0 for _ in ids]
    s = sum(scores) / len(scores)
    return {
        "task": {"name": self.spec.name, "type": "classification", "metric": "accuracy", "target": 0.8,
                 "higher_is_better": True, "eval_ids": ids, "n_eval": len(ids), "hashes": dict(self.data.hashes)},
        "pipelines": {"prompting": {"status": "ok", "score": s, "ci": [0, 1], "n": len(ids), "per_example": scores},
                      "finetune": {"status": "skipped", "reason": "not needed"}},
        "recommendation": {"choice": "prompting" if s >= 0.8 else "none", "meets_target": s >= 0.8},
        "environment": {"device": "cpu"}, "wall_seconds": 0.1,
    }


@pytest.fixture
def fake_assess(monkeypatch):
    CALLS.clear()
    monkeypatch.setattr(Assessment, "run", fake_run)
    # the fake report is not a whole report: the run folder's files are not what these tests check
    monkeypatch.setattr(run_folder, "write_outputs", lambda out_dir, report, predictions: None)
    return CALLS


# ---------------------------------------------------------------------------------------------
# suite files


def test_suite_forms_overrides_and_relative_paths(tmp_path):
    make_task(tmp_path / "tasks", "a")
    make_task(tmp_path / "tasks", "b")
    (tmp_path / "list.yaml").write_text("- tasks/a.yaml\n- tasks/b.yaml\n")
    s = bench.load_suite(tmp_path / "list.yaml")
    assert [t.path for t in s.tasks] == [tmp_path / "tasks" / "a.yaml", tmp_path / "tasks" / "b.yaml"]
    assert s.k == regression.DEFAULT_K and s.name == "list"

    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "suite.yaml").write_text(
        "name: nightly\nk: 3\nalpha: 0.01\ndefaults: {finetune: never, limit: 50}\n"
        "tasks:\n  - ../tasks/a.yaml\n  - task: ../tasks/b.yaml\n    finetune: always\n    limit: 5\n    fresh: false\n"
    )
    s = bench.load_suite(tmp_path / "sub" / "suite.yaml")
    assert (s.name, s.k, s.alpha) == ("nightly", 3, 0.01)
    a, b = s.tasks
    assert (a.finetune, a.limit, a.fresh) == ("never", 50, None)
    assert (b.finetune, b.limit, b.fresh) == ("always", 5, False)
    assert b.path == (tmp_path / "sub" / ".." / "tasks" / "b.yaml")


@pytest.mark.parametrize("text, message", [
    ("- tasks/a.yaml\n- tasks/missing.yaml\n", r"suite.yaml: tasks\[1\] \(tasks/missing.yaml\): task file not found"),
    ("tasks:\n  - task: tasks/a.yaml\n    finetune: sometimes\n", r"tasks\[0\].finetune: 'sometimes' is not a mode"),
    ("tasks:\n  - task: tasks/a.yaml\n    limit: 0\n", r"tasks\[0\].limit: 0 is not a positive whole number"),
    ("tasks:\n  - task: tasks/a.yaml\n    epochs: 3\n", r"tasks\[0\]: unknown key 'epochs'"),
    ("tasks:\n  - 42\n", r"tasks\[0\]: each entry is a task file path"),
    ("tasks: []\n", r"tasks: needs a non-empty list"),
    ("k: -1\ntasks: [tasks/a.yaml]\n", r"k: -1 is not a positive whole number"),
    ("taks: [tasks/a.yaml]\n", r"unknown key 'taks'"),
    ("tasks: [tasks/a.yaml\n", r"YAML syntax error"),
    ("just text\n", r"a suite is a list of task files"),
])
def test_bad_suites_name_the_file_and_entry(tmp_path, text, message):
    make_task(tmp_path / "tasks", "a")
    (tmp_path / "suite.yaml").write_text(text)
    with pytest.raises(AdvisorError, match=message) as err:
        bench.load_suite(tmp_path / "suite.yaml")
    assert "\n" not in str(err.value)
    if "missing" in text:
        assert str(tmp_path / "suite.yaml") in str(err.value)


def test_the_shipped_suite_lists_the_benchmark_tasks():
    s = bench.load_suite(ROOT / "benchmarks" / "suite.yaml")
    assert sorted(t.path.name for t in s.tasks) == ["banking77.yaml", "intent_json.yaml", "sentiment_mr.yaml", "squad_rag.yaml"]
    assert all(t.path.is_file() for t in s.tasks)


# ---------------------------------------------------------------------------------------------
# advisor bench


def test_two_runs_then_a_degraded_variant(tmp_path, fake_assess):
    make_task(tmp_path / "tasks", "alpha")
    make_task(tmp_path / "tasks", "beta")
    degraded = make_task(tmp_path / "tasks", "beta", degraded=True)
    suite = tmp_path / "suite.yaml"
    suite.write_text("defaults: {finetune: never}\ntasks:\n  - tasks/alpha.yaml\n  - task: tasks/beta.yaml\n    limit: 8\n")
    db = tmp_path / "hist" / "h.sqlite"
    runner = CliRunner()

    first = runner.invoke(app, ["bench", str(suite), "--history", str(db)], env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    assert "first run of this task" in first.output and "no regression" in first.output
    assert [(c["task"], c["limit"], c["finetune"], c["fresh"]) for c in fake_assess] == [
        ("alpha", None, "never", True), ("beta", 8, "never", True)]
    assert all(c["out"].parent == db.parent / "runs" for c in fake_assess)

    second = runner.invoke(app, ["bench", str(suite), "--history", str(db), "--reuse"], env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "against the previous 5 runs" in second.output and "no significant change" in second.output
    assert "prompting → prompting (unchanged)" in second.output
    assert fake_assess[-1]["fresh"] is False  # --reuse
    assert len(history.runs(db)) == 2

    suite.write_text(f"tasks:\n  - tasks/alpha.yaml\n  - task: tasks/{degraded.name}\n"
                     "    limit: 8\n")
    third = runner.invoke(app, ["bench", str(suite), "--history", str(db), "--json", "--k", "2"])
    assert third.exit_code == 1, third.output
    result = json.loads(third.stdout)
    assert result["exit_code"] == 1 and result["k"] == 2 and result["run_id"] == 3
    cmp = {t["task"]: t for t in result["comparison"]["tasks"]}
    assert not cmp["alpha"]["regression"]
    beta = next(e for e in cmp["beta"]["pipelines"] if e["pipeline"] == "prompting")
    assert beta["verdict"] == "drop" and beta["baseline_runs"] == [2, 1] and beta["n"] == 8
    assert cmp["beta"]["recommendation"]["changed"]  # prompting -> none
    assert any("beta/prompting: accuracy fell from 1.000" in r for r in result["comparison"]["reasons"])
    assert len(history.runs(db)) == 3


def test_bad_input_exits_2_before_any_work(tmp_path, fake_assess):
    make_task(tmp_path / "tasks", "alpha")
    suite = tmp_path / "suite.yaml"
    suite.write_text("- tasks/alpha.yaml\n- tasks/gone.yaml\n")
    runner = CliRunner()
    res = runner.invoke(app, ["bench", str(suite), "--history", str(tmp_path / "h.sqlite")])
    assert res.exit_code == 2 and "tasks[1] (tasks/gone.yaml): task file not found" in res.output
    suite.write_text("- tasks/alpha.yaml\n")
    notdb = tmp_path / "notes.txt"
    notdb.write_text("not a database at all\n" * 5)
    res = runner.invoke(app, ["bench", str(suite), "--history", str(notdb)])
    assert res.exit_code == 2 and "not an advisor history database" in res.output
    make_task(tmp_path / "other", "alpha")  # a second task with the same name
    suite.write_text("- tasks/alpha.yaml\n- other/alpha.yaml\n")
    res = runner.invoke(app, ["bench", str(suite), "--history", str(tmp_path / "h.sqlite")])
    assert res.exit_code == 2 and "task name 'alpha' is already used by tasks[0]" in res.output
    (tmp_path / "tasks" / "broken.yaml").write_text("name: broken\ntype: classification\n")
    suite.write_text("- tasks/alpha.yaml\n- tasks/broken.yaml\n")
    res = runner.invoke(app, ["bench", str(suite), "--history", str(tmp_path / "h.sqlite")])
    assert res.exit_code == 2 and "tasks[1] (tasks/broken.yaml)" in res.output and "'data'" in res.output
    res = runner.invoke(app, ["bench", str(suite), "--history", str(tmp_path / "h.sqlite"), "--k", "0"])
    assert res.exit_code == 2 and "k must be at least 1" in res.output
    assert fake_assess == []  # nothing ran
