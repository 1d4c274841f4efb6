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
    assert entry["test"] == "paired-bootstrap"  # the baseline is a mean over runs, not 0/1

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
