"""Regression gating: a real drop exits 1, noise does not; baselines over K runs; Holm adjustment."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from advisor import history, regression
from advisor.errors import AdvisorError
from test_history import N, base_scores, drop, report  # report.json builders, shared with the history tests


def flip(scores: list[float], k: int, seed: int) -> list[float]:
    """Noise: k random items change their outcome (either way)."""
    out = list(scores)
    for i in random.Random(seed).sample(range(len(out)), k):
        out[i] = 1.0 - out[i]
    return out


def _history(db: Path, runs: list[dict]) -> None:
    for r in runs:
        history.record_run(db, r)


def test_first_run_has_no_baseline_and_passes(tmp_path):
    db = tmp_path / "h.sqlite"
    history.record_run(db, report(scores={"prompting": base_scores()}))
    c = regression.compare(db)
    assert c["exit_code"] == 0 and c["tasks"][0]["baseline_runs"] == []
    assert c["tasks"][0]["pipelines"][1]["verdict"] == "no baseline"


def test_real_drop_exits_1_and_noise_exits_0(tmp_path):
    db = tmp_path / "h.sqlite"
    base = base_scores()
    _history(db, [report(scores={"prompting": flip(base, 3, seed=s), "baseline": base_scores(9)}) for s in range(4)])
    noise = regression.compare(db)  # the 4th run against the three before it
    assert noise["exit_code"] == 0 and not noise["regression"], noise["reasons"]
    entry = next(e for e in noise["tasks"][0]["pipelines"] if e["pipeline"] == "prompting")
    assert entry["verdict"] == "no significant change" and entry["n"] == N
    assert entry["test"] == "sign-flip"  # the baseline is a mean over runs, not 0/1

    history.record_run(db, report(scores={"prompting": drop(base, 15), "baseline": base_scores(9)}))
    c = regression.compare(db, k=3)
    assert c["exit_code"] == 1 and c["regression"]
    entry = next(e for e in c["tasks"][0]["pipelines"] if e["pipeline"] == "prompting")
    assert entry["verdict"] == "drop" and entry["regressed"] and entry["diff"] < -0.2
    assert entry["p_adjusted"] < 0.05 and entry["baseline_runs"] == [4, 3, 2]
    assert len(c["reasons"]) == 1 and "t1/prompting: accuracy fell from" in c["reasons"][0]
    base_entry = next(e for e in c["tasks"][0]["pipelines"] if e["pipeline"] == "baseline")
    assert base_entry["verdict"] == "no significant change" and base_entry["diff"] == 0


def test_k_chooses_how_many_previous_runs_make_the_baseline(tmp_path):
    db = tmp_path / "h.sqlite"
    base = base_scores()
    _history(db, [report(scores={"prompting": base}) for _ in range(6)])
    for k, expected in ((1, [5]), (3, [5, 4, 3]), (10, [5, 4, 3, 2, 1])):
        e = regression.compare(db, k=k)["tasks"][0]["pipelines"][1]
        assert e["baseline_runs"] == expected
    # with one previous run, both sides are 0/1: the exact McNemar test applies
    history.record_run(db, report(scores={"prompting": drop(base, 10)}))
    e = regression.compare(db, k=1)["tasks"][0]["pipelines"][1]
    assert e["test"] == "mcnemar-exact" and e["p_value"] == pytest.approx(2 * 0.5 ** 10)
    with pytest.raises(AdvisorError, match="k must be at least 1"):
        regression.compare(db, k=0)


def test_changed_recommendation_or_new_failure_exits_1(tmp_path):
    db = tmp_path / "h.sqlite"
    s = base_scores()
    history.record_run(db, report(scores={"prompting": s, "rag": s}, choice="prompting"))
    history.record_run(db, report(scores={"prompting": s, "rag": s}, choice="rag"))
    c = regression.compare(db)
    assert c["exit_code"] == 1
    assert c["tasks"][0]["recommendation"] == {"current": "rag", "previous": "prompting", "previous_run": 1,
                                               "changed": True}
    assert c["reasons"] == ["t1: the recommendation changed from prompting (run 1) to rag"]

    history.record_run(db, report(scores={"prompting": s}, choice="rag", statuses={"rag": "failed"}))
    c = regression.compare(db)
    assert c["exit_code"] == 1 and len(c["reasons"]) == 1
    assert "t1/rag was ok in run 2 and is now failed: rag failed on purpose" == c["reasons"][0]


def test_items_are_aligned_by_id_and_tasks_do_not_mix(tmp_path):
    db = tmp_path / "h.sqlite"
    s = base_scores()
    ids = [f"eval-{i}" for i in range(1, N + 1)]
    history.record_run(db, [report(scores={"prompting": s}), report("other", scores={"prompting": [0.0] * N})])
    # same outcomes, items listed in reverse order, and only the first 40 of them (as with --limit)
    sub = list(range(40))[::-1]
    history.record_run(db, report(scores={"prompting": [s[i] for i in sub]}, ids=[ids[i] for i in sub]))
    c = regression.compare(db)
    assert [t["task"] for t in c["tasks"]] == ["t1"]
    e = c["tasks"][0]["pipelines"][1]
    assert e["n"] == 40 and e["diff"] == 0 and e["p_value"] == 1.0 and c["exit_code"] == 0


def test_holm_adjustment():
    assert regression.holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert regression.holm([]) == []


# --- a corpus-level metric is gated on itself -------------------------------------------------------


def _macro_report(pred: list[str], gold: list[str], labels: list[str]) -> dict:
    """A macro-F1 task: per_example holds per-item accuracy (as the engine stores it), the
    predicted and gold labels ride along for the metric itself."""
    from sklearn.metrics import f1_score

    r = report(scores={"prompting": [float(p == g) for p, g in zip(pred, gold)]})
    r["task"].update(metric="macro_f1", labels=labels, eval_gold=list(gold))
    p = r["pipelines"]["prompting"]
    p["score"] = f1_score(gold, pred, labels=labels, average="macro", zero_division=0)
    p["per_example_prediction"] = list(pred)
    return r


def test_a_macro_f1_drop_with_unchanged_accuracy_is_a_regression(tmp_path):
    # 60 items: 48 "a", 6 "b", 6 "c". Before: every b and c right, 10 a's called b/c (5 each):
    #   accuracy 50/60; F1 a = 76/86 = 0.8837, b = c = 12/17 = 0.7059 -> macro-F1 0.7652.
    # After: every a right, 5 b's and 5 c's called a: accuracy 50/60 again (McNemar: 10 vs 10, p = 1);
    #   F1 a = 96/106 = 0.9057, b = c = 2/7 = 0.2857 -> macro-F1 0.4924.
    from sklearn.metrics import f1_score

    labels = ["a", "b", "c"]
    gold = ["a"] * 48 + ["b"] * 6 + ["c"] * 6
    before = ["a"] * 38 + ["b"] * 5 + ["c"] * 5 + ["b"] * 6 + ["c"] * 6
    after = ["a"] * 48 + ["b"] + ["a"] * 5 + ["c"] + ["a"] * 5
    assert sum(p == g for p, g in zip(before, gold)) == sum(p == g for p, g in zip(after, gold)) == 50
    assert f1_score(gold, before, average="macro") == pytest.approx(0.7652, abs=1e-4)
    assert f1_score(gold, after, average="macro") == pytest.approx(0.4924, abs=1e-4)
    db = tmp_path / "h.sqlite"
    _history(db, [_macro_report(before, gold, labels) for _ in range(3)])
    history.record_run(db, _macro_report(after, gold, labels))
    c = regression.compare(db, k=3)
    e = next(e for e in c["tasks"][0]["pipelines"] if e["pipeline"] == "prompting")
    assert e["baseline"] == pytest.approx(0.7652, abs=1e-4) and e["current_on_shared"] == pytest.approx(0.4924, abs=1e-4)
    assert e["test"] == "paired-bootstrap of macro_f1" and e["n"] == 60
    assert e["verdict"] == "drop" and e["regressed"] and c["exit_code"] == 1
    assert "t1/prompting: macro_f1 fell from 0.765" in c["reasons"][0]


def test_accuracy_falling_while_macro_f1_rises_is_not_a_regression(tmp_path):
    # 60 items: 50 "a", 10 "b". Before: everything called "a": accuracy 50/60, F1 a = 100/110 = 0.9091,
    # F1 b = 0 -> macro-F1 0.4545. After: every b right, 25 a's called b: accuracy 35/60 -- 25 items
    # right -> wrong, 10 wrong -> right, exact McNemar p = 2 P(X <= 10 | 35, 1/2) = 0.0167 (a "drop" on
    # accuracy) -- but F1 a = 50/75 = 0.6667, F1 b = 20/45 = 0.4444 -> macro-F1 0.5556, up.
    labels = ["a", "b"]
    gold = ["a"] * 50 + ["b"] * 10
    before = ["a"] * 60
    after = ["a"] * 25 + ["b"] * 25 + ["b"] * 10
    db = tmp_path / "h.sqlite"
    history.record_run(db, _macro_report(before, gold, labels))
    history.record_run(db, _macro_report(after, gold, labels))
    c = regression.compare(db)
    e = next(e for e in c["tasks"][0]["pipelines"] if e["pipeline"] == "prompting")
    assert e["baseline"] == pytest.approx(0.4545, abs=1e-4) and e["current_on_shared"] == pytest.approx(0.5556, abs=1e-4)
    assert not e["regressed"] and e["verdict"] != "drop" and c["exit_code"] == 0
    # an identical confusion matrix on other items: the same macro-F1, a difference of exactly 0
    same = ["b"] * 25 + ["a"] * 25 + ["b"] * 10
    history.record_run(db, _macro_report(same, gold, labels))
    e = next(e for e in regression.compare(db, k=1)["tasks"][0]["pipelines"] if e["pipeline"] == "prompting")
    assert e["diff"] == pytest.approx(0.0, abs=1e-12) and e["verdict"] == "no significant change"


def test_old_runs_without_labels_are_not_gated_on_accuracy(tmp_path):
    labels = ["a", "b"]
    gold = ["a"] * 30 + ["b"] * 30
    old = _macro_report(["a"] * 60, gold, labels)
    old["task"].pop("eval_gold")
    old["pipelines"]["prompting"].pop("per_example_prediction")
    db = tmp_path / "h.sqlite"
    history.record_run(db, old)
    history.record_run(db, _macro_report(gold, gold, labels))
    e = next(e for e in regression.compare(db)["tasks"][0]["pipelines"] if e["pipeline"] == "prompting")
    assert e["verdict"] == "no baseline" and "cannot be recomputed" in e["note"] and "p_value" not in e
