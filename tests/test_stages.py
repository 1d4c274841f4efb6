"""Stage store: keys change exactly when their inputs change; writes are atomic; reuse works
from the run folder and from earlier runs of the same task (artifacts copied); --fresh ignores."""

import json
import os
import stat

from advisor import stages
from advisor.stages import StageStore, atomic_write_json, previous_runs, stage_key

BASE = {"spec": {"type": "classification", "prompting": {"shots": 4}}, "data": {"eval": "abc"}, "model": "m"}


def test_key_is_stable_and_changes_exactly_with_inputs(monkeypatch):
    k = stage_key("prompting", **BASE)
    assert k == stage_key("prompting", **json.loads(json.dumps(BASE)))  # same content, new objects
    assert k != stage_key("rag", **BASE)
    assert k != stage_key("prompting", **{**BASE, "model": "other"})
    assert k != stage_key("prompting", **{**BASE, "data": {"eval": "abd"}})
    assert k != stage_key("prompting", **{**BASE, "spec": {"type": "classification", "prompting": {"shots": 2}}})
    monkeypatch.setattr(stages, "versions", lambda: {"transformers": "9.9"})
    assert k != stage_key("prompting", **BASE)  # a new ML package version invalidates results
    monkeypatch.setattr(stages, "__version__", "99.0")
    assert stage_key("prompting", **BASE) != k


def test_key_changes_when_scoring_code_changes_but_not_report_code(tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "advisor" / "report").mkdir(parents=True)
    (root / "pipelines").mkdir()
    for rel in ("advisor/data.py", "advisor/metrics.py", "advisor/models.py", "advisor/stats.py",
                "pipelines/rag.py", "advisor/report/html.py", "advisor/stages.py"):
        (root / rel).write_text("x = 1\n")
    monkeypatch.setattr(stages, "__file__", str(root / "advisor" / "stages.py"))

    def key():
        stages.code_fingerprint.cache_clear()
        return stage_key("rag", **BASE)

    first = key()
    (root / "advisor" / "report" / "html.py").write_text("x = 2\n")
    assert key() == first  # a report change keeps cached scores
    (root / "pipelines" / "rag.py").write_text("x = 2\n")
    assert key() != first  # a pipeline change does not
    stages.code_fingerprint.cache_clear()


def test_atomic_write_leaves_no_temp_files_and_is_shareable(tmp_path):
    target = tmp_path / "a" / "report.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in target.parent.iterdir()] == ["report.json"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_reuse_from_own_folder_then_from_an_earlier_run(tmp_path):
    old = tmp_path / "runs" / "task-1"
    store = StageStore(old)
    (old / "adapter").mkdir(parents=True)
    (old / "adapter" / "weights.bin").write_text("w")
    store.put("finetune", "k1", {"score": 0.9}, artifacts=["adapter"])
    assert store.status == {"finetune": "computed"}
    assert StageStore(old).get("finetune", "k1") == {"score": 0.9}
    assert StageStore(old).get("finetune", "other-key") is None

    new = tmp_path / "runs" / "task-2"
    found = previous_runs(tmp_path / "runs", "task")
    assert found == [old]
    s2 = StageStore(new, search=found)
    assert s2.get("finetune", "k1") == {"score": 0.9}
    assert s2.status == {"finetune": "reused"}
    assert (new / "adapter" / "weights.bin").read_text() == "w"  # artifacts travel with the stage
    assert (new / "stages" / "finetune.json").exists()
    assert StageStore(new, search=found, fresh=True).get("finetune", "k1") is None


def test_a_torn_stage_file_is_not_reused(tmp_path):
    run = tmp_path / "r"
    (run / "stages").mkdir(parents=True)
    (run / "stages" / "rag.json").write_text('{"key": "k", "result": {"sc')
    assert StageStore(run).get("rag", "k") is None
