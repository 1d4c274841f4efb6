"""`advisor assess` end to end with the real bundled models on a tiny task: the report.json
contract, scores in range and consistent with the per-example predictions, and stage reuse."""

import json
import subprocess
import sys

import pytest

POS = ["a warm , funny and moving film .", "superb acting and a clever script .", "i loved every minute of it .",
       "a delightful surprise from start to finish .", "beautifully shot and deeply felt .",
       "the best comedy of the year .", "smart , touching and wonderfully acted .", "a joy to watch .",
       "gripping from the first scene .", "an honest , generous and lovely film .", "pure fun for the whole family .",
       "a triumph of storytelling ."]
NEG = ["a dull , lifeless mess .", "the plot makes no sense at all .", "boring and far too long .",
       "wooden acting and a lazy script .", "i wanted my money back .", "an ugly , joyless slog .",
       "the jokes fall flat every time .", "tedious and badly edited .", "a waste of a good cast .",
       "painfully slow and predictable .", "nothing works in this film .", "a loud , empty sequel ."]


def _rows(items):
    return "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in items)


@pytest.fixture
def tiny_task(tmp_path):
    train = [(t, "positive") for t in POS[:8]] + [(t, "negative") for t in NEG[:8]]
    train = train + [(POS[i] + " really", "positive") for i in range(4)] + [(NEG[i] + " really", "negative") for i in range(4)]
    evals = [(t, "positive") for t in POS[8:]] + [(t, "negative") for t in NEG[8:]]
    (tmp_path / "train.jsonl").write_text(_rows(train))
    (tmp_path / "eval.jsonl").write_text(_rows(evals))
    (tmp_path / "task.yaml").write_text(
        "name: tiny-sentiment\n"
        "type: classification\n"
        "instructions: Decide whether the movie review is negative or positive.\n"
        "labels: [negative, positive]\n"
        "data: {eval: eval.jsonl, train: train.jsonl}\n"
        "target: {metric: accuracy, min: 0.8}\n"
        "prompting: {shots: 2}\n"
        "rag: {k: 2}\n"
        "finetune: {mode: never}\n"
    )
    return tmp_path / "task.yaml"


def _assess(task, out, *extra):
    return subprocess.run(
        [sys.executable, "-m", "advisor.cli", "assess", str(task), "--out", str(out), "--json", *extra],
        capture_output=True, text=True, timeout=900,
    )


@pytest.mark.e2e
def test_assess_report_contract(tiny_task, tmp_path):
    out = tmp_path / "run"
    proc = _assess(tiny_task, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert json.loads((out / "report.json").read_text()) == report
    assert (out / "report.md").read_text().startswith("# advisor report: tiny-sentiment")

    for key in ("schema_version", "task", "base_model", "base_model_selection", "pipelines", "recommendation",
                "environment"):
        assert key in report
    assert report["task"]["name"] == "tiny-sentiment" and report["task"]["metric"] == "accuracy"
    assert report["base_model"] == "bundled:smollm2-135m-instruct"
    assert report["recommendation"]["choice"] in {"baseline", "prompting", "rag", "finetune", "none"}
    assert report["recommendation"]["reasons"]

    pipes = report["pipelines"]
    # the contract's four pipelines; later pipelines are added beside them, never instead of them
    assert set(pipes) == {"baseline", "prompting", "constrained", "rag", "finetune", "rag_finetune"}
    assert pipes["finetune"]["status"] == "skipped" and pipes["rag_finetune"]["status"] == "skipped"
    # a classification task's label likelihood already constrains its output: no separate stage
    assert pipes["constrained"]["status"] == "skipped" and "label likelihood" in pipes["constrained"]["reason"]
    for name in ("baseline", "prompting", "rag"):
        p = pipes[name]
        assert p["status"] == "ok", (name, p)
        assert p["n"] == 8
        assert 0.0 <= p["score"] <= 1.0
        lo, hi = p["ci"]
        assert lo <= p["score"] <= hi
        for k in ("metrics", "cost", "timings"):
            assert k in p
        rows = [json.loads(x) for x in (out / "predictions" / f"{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 8
        assert [r["id"] for r in rows] == report["task"]["eval_ids"]
        # the score is exactly what the per-example predictions say
        assert sum(r["score"] for r in rows) / 8 == pytest.approx(p["score"])
        assert all(r["score"] == float(r["output"] == r["expected"][0]) for r in rows)
        assert all(r["output"] in ("negative", "positive") for r in rows)  # choices decoding
        assert p["cost"]["usd_per_1k_requests"] >= 0


@pytest.mark.e2e
def test_rerun_reuses_every_stage(tiny_task, tmp_path):
    out = tmp_path / "run"
    first = _assess(tiny_task, out)
    assert first.returncode == 0, first.stderr[-3000:]
    again = _assess(tiny_task, out)
    assert again.returncode == 0, again.stderr[-3000:]
    r1, r2 = json.loads(first.stdout), json.loads(again.stdout)
    assert set(r2["stages"].values()) == {"reused"}
    assert all(r2["pipelines"][n]["reused"] for n in ("baseline", "prompting", "rag"))
    for n in ("baseline", "prompting", "rag"):
        assert r2["pipelines"][n]["score"] == r1["pipelines"][n]["score"]
    fresh = _assess(tiny_task, out, "--fresh")
    assert fresh.returncode == 0
    assert set(json.loads(fresh.stdout)["stages"].values()) == {"computed"}
