"""Issue 16 with the real bundled model: constrained decoding vs free generation on the same
prompts, the judge through the local model with its cache proven, and `advisor assess` on a
tiny task scored by a custom scorer module, with format compliance and the judge reported."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from advisor.metrics import exact_match

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_qa_scorer"
SCHEMA = {"type": "object", "properties": {"intent": {"type": "string", "enum": ["card_arrival", "pin_blocked",
                                                                                  "lost_or_stolen_card"]}},
          "required": ["intent"], "additionalProperties": False}
MESSAGES = ["I lost my card yesterday!", "When will my new card arrive?", "My PIN is blocked, help",
            "Someone stole my card"]


def _prompts():
    system = 'Classify the bank customer message. Reply with JSON {"intent": ...}.'
    return [[{"role": "system", "content": system}, {"role": "user", "content": m}] for m in MESSAGES]


def _valid(text: str) -> bool:
    try:
        return jsonschema.Draft202012Validator(SCHEMA).is_valid(json.loads(text))
    except ValueError:
        return False


@pytest.mark.e2e
def test_constrained_decoding_is_schema_valid_where_free_generation_is_not(generator):
    from lmformatenforcer import JsonSchemaParser

    from pipelines.constrained import generate_constrained

    free = generator.generate(_prompts(), max_new_tokens=24)
    forced = generate_constrained(generator, _prompts(), lambda: JsonSchemaParser(SCHEMA), max_new_tokens=24)
    assert sum(_valid(g.text) for g in free) < len(MESSAGES), [g.text for g in free]
    assert all(_valid(g.text) for g in forced), [g.text for g in forced]
    assert all(g.output_tokens <= 24 for g in forced)


@pytest.mark.e2e
def test_local_judge_is_cached_so_a_rerun_makes_no_calls(generator, tmp_path):
    from advisor.judge import Judge, JudgeCache, JudgeItem, local_chat

    chat, batch = local_chat(generator, max_new_tokens=24)
    calls = []

    def counting(conversations):
        calls.append(len(conversations))
        return batch(conversations)

    items = [JudgeItem("1", "What is the capital of France?", "Paris", ("Paris",)),
             JudgeItem("2", "What is the capital of Italy?", "Berlin", ("Rome",))]
    first = Judge("bundled", "Correct if it names the reference city.", chat, JudgeCache(tmp_path), batch=counting)
    v1 = first.correctness(items)
    assert calls == [2] and first.usage.unparsed == 0  # the verdict is enforced while decoding
    assert all(v.passed is not None and v.reasoning for v in v1)
    second = Judge("bundled", "Correct if it names the reference city.", chat, JudgeCache(tmp_path), batch=counting)
    v2 = second.correctness(items)
    assert calls == [2] and second.usage.calls == 0 and second.usage.cached == 2
    assert [(v.passed, v.reasoning) for v in v2] == [(v.passed, v.reasoning) for v in v1]


def _assess(task: Path, out: Path):
    return subprocess.run([sys.executable, "-m", "advisor.cli", "assess", str(task), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=1800)  # two pipelines + judge


@pytest.mark.e2e
def test_assess_with_a_custom_scorer_format_checks_and_a_cached_judge(tmp_path):
    task_dir = tmp_path / "task"
    shutil.copytree(FIXTURE, task_dir)
    proc = _assess(task_dir / "task.yaml", tmp_path / "run1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["task"]["metric"] == "my_scorers:city_named"
    assert report["task"]["format_checks"] == ["regex_match", "format_ok"]
    for name in ("prompting", "constrained"):
        p = report["pipelines"][name]
        assert p["status"] == "ok", p
        rows = [json.loads(x) for x in (tmp_path / "run1" / "predictions" / f"{name}.jsonl").read_text().splitlines()]
        # the scorer's rule, recomputed here from the predictions
        mine = [float(any(c.lower() in r["output"].lower() for c in r["expected"])) for r in rows]
        assert p["score"] == pytest.approx(sum(mine) / len(mine))
        assert [r["score"] for r in rows] == mine
        fmt = [float(re.fullmatch(r"[A-Za-z][A-Za-z ]{0,30}", r["output"].strip()) is not None) for r in rows]
        assert p["metrics"]["regex_match"] == pytest.approx(sum(fmt) / len(fmt))
        assert all(r["judge_verdict"] in (0.0, 1.0) and "judge_reasoning" in r for r in rows)
        j = p["judge"]
        exact = [exact_match(r["output"], r["expected"]) for r in rows]
        agree = sum((r["judge_verdict"] >= 0.5) == (e >= 0.5) for r, e in zip(rows, exact))
        assert j["reference"] == "exact_match" and j["n"] == 3
        assert j["agreement"] == pytest.approx(agree / 3) and j["flips_up"] + j["flips_down"] == 3 - agree
    assert report["pipelines"]["constrained"]["metrics"]["regex_match"] == 1.0
    judge_cost = report["evaluation_cost"]["judge"]
    # identical answers from the two pipelines are one question: asked once, then cached
    assert judge_cost["calls"] >= 3 and judge_cost["calls"] + judge_cost["cached"] == 6
    assert "judge" not in json.dumps(report["pipelines"]["prompting"].get("cost", {}))

    again = _assess(task_dir / "task.yaml", tmp_path / "run2")
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = json.loads(again.stdout)
    assert rerun["evaluation_cost"]["judge"]["calls"] == 0 and rerun["evaluation_cost"]["judge"]["cached"] == 6
    assert rerun["pipelines"]["prompting"]["judge"] == report["pipelines"]["prompting"]["judge"]


@pytest.mark.e2e
def test_a_scorer_that_raises_is_one_line_naming_the_item(tmp_path):
    task_dir = tmp_path / "task"
    shutil.copytree(FIXTURE, task_dir)
    text = (task_dir / "task.yaml").read_text().replace("my_scorers:city_named", "my_scorers:broken")
    (task_dir / "task.yaml").write_text(text.split("\njudge:")[0] + "\n")  # no judge: fail fast
    proc = _assess(task_dir / "task.yaml", tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    err = proc.stderr.strip().splitlines()
    assert "eval item 'it'" in err[-1] and "ValueError: no policy for Italy" in err[-1]
    assert "Traceback" not in proc.stderr
