"""Stage store: keys change exactly when their inputs change; writes are atomic; reuse works
from the run folder and from earlier runs of the same task (artifacts copied); --fresh ignores."""

import json
import os
import stat

from advisor import stages
from advisor.atomic import atomic_write_json
from advisor.stages import StageStore, previous_runs, stage_key

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


def test_key_follows_the_stage_own_scoring_code(tmp_path, monkeypatch):
    root = tmp_path / "src"
    (root / "advisor" / "report").mkdir(parents=True)
    (root / "pipelines").mkdir()
    files = {
        "advisor/data.py": "x = 1\n", "advisor/metrics.py": "x = 1\n", "advisor/models.py": "x = 1\n",
        "advisor/stats.py": "x = 1\n", "advisor/report/html.py": "x = 1\n", "advisor/stages.py": "x = 1\n",
        "pipelines/__init__.py": "", "pipelines/generation.py": "x = 1\n",
        "pipelines/prompting.py": "from .generation import x\n",
        "pipelines/rag_index.py": "x = 1\n",
        # imports inside functions count too
        "pipelines/rag.py": "from .prompting import x\ndef f():\n    from pipelines.rag_index import x\n",
    }
    for rel, text in files.items():
        (root / rel).write_text(text)
    monkeypatch.setattr(stages, "__file__", str(root / "advisor" / "stages.py"))

    def keys():
        stages.code_fingerprint.cache_clear()
        return {n: stage_key(n, **BASE) for n in ("prompting", "rag", "select")}

    first = keys()
    (root / "advisor" / "report" / "html.py").write_text("x = 2\n")
    assert keys() == first  # a report change keeps every cached score
    (root / "pipelines" / "rag_index.py").write_text("x = 2\n")
    now = keys()
    assert now["prompting"] == first["prompting"]  # prompting does not use the index
    assert now["rag"] != first["rag"] and now["select"] != first["select"]  # rag imports it (in a function)
    (root / "pipelines" / "generation.py").write_text("x = 3\n")
    later = keys()
    assert all(later[n] != now[n] for n in later)  # everyone generates
    (root / "advisor" / "metrics.py").write_text("x = 2\n")
    assert all(v != later[n] for n, v in keys().items())  # shared scoring code
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
