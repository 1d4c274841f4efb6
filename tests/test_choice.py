"""Variant choice on the train dev slice: racing (pipelines/choice.py) and the choice cache.

The racing bound is checked against scipy's paired t-test, the winner of an unraced run against
the plain "best mean, ties to the preferred variant" written out here, and the cache end to end
with the real bundled SmolLM2 through PromptingPipeline (a second prepare generates nothing).
"""

from __future__ import annotations

import random

import pytest
from scipy import stats

from pipelines.choice import choose, race, rounds, upper_bound


def _fake(scores: dict[str, list[float]], calls: list):
    """run(name, idx) over fixed per-item scores; records what was generated."""

    def run(name, idx):
        calls.append((name, list(idx)))
        return {name: [scores[name][i] for i in idx]}

    return run


def test_rounds():
    assert rounds(32) == [16, 16]
    assert rounds(20) == [16, 4]
    assert rounds(16) == [16]
    assert rounds(5) == [5]
    assert rounds(32, racing=False) == [32]


def test_upper_bound_matches_scipy_paired_t():
    rng = random.Random(3)
    a = [rng.random() for _ in range(16)]
    b = [x - 0.2 + rng.gauss(0, 0.15) for x in a]
    diffs = [y - x for x, y in zip(a, b)]
    ub = upper_bound(diffs, alpha=0.025)
    # the one-sided 97.5% bound is the upper end of scipy's two-sided 95% interval
    lo, hi = stats.t.interval(0.95, len(diffs) - 1, loc=sum(diffs) / 16, scale=stats.sem(diffs))
    assert ub == pytest.approx(hi, rel=1e-9)
    # below zero exactly when the one-sided paired t-test rejects "b is at least as good as a"
    assert (ub < 0) == (stats.ttest_rel(b, a, alternative="less").pvalue < 0.025)


def test_clear_loser_dropped_after_first_round_and_rest_not_generated():
    good = [1.0, 0.8, 0.9, 1.0, 0.7, 0.9, 1.0, 0.8] * 4
    bad = [0.0, 0.1, 0.0, 0.2, 0.0, 0.1, 0.0, 0.0] * 4
    calls: list = []
    res = race(_fake({"a": bad, "b": good}, calls), ["a", "b"], 32)
    assert res.winner == "b"
    assert res.dropped == {"a": 16}
    assert calls == [("a", list(range(16))), ("b", list(range(16)))]  # nothing after the first round
    assert res.generated == 32 and res.full == 64
    # the drop agrees with scipy on the 16 items seen
    assert stats.ttest_rel(bad[:16], good[:16], alternative="less").pvalue < 0.025


def test_close_variants_are_not_dropped_at_the_look():
    """0.05 apart with noisy per-item F1 (as prompting's 0.051 vs 0.062 on the example): no drop."""
    rng = random.Random(1)
    a = [rng.choice([0.0, 0.0, 0.5, 1.0]) for _ in range(32)]
    b = [min(1.0, x + rng.choice([-0.5, 0.0, 0.0, 0.5])) for x in a]
    res = race(_fake({"a": a, "b": b}, []), ["a", "b"], 32)
    p_ab = stats.ttest_rel(a[:16], b[:16], alternative="less").pvalue
    p_ba = stats.ttest_rel(b[:16], a[:16], alternative="less").pvalue
    assert min(p_ab, p_ba) >= 0.025  # the premise: scipy cannot separate them at the look either
    assert not res.dropped and res.generated == res.full == 64


def test_no_separation_runs_everything_and_picks_what_a_full_run_picks():
    rng = random.Random(0)
    scores = {"zero-shot": [rng.choice([0.0, 1.0]) for _ in range(32)],
              "4-shot": [rng.choice([0.0, 1.0]) for _ in range(32)]}
    calls: list = []
    res = race(_fake(scores, calls), list(scores), 32, prefer=lambda v: v == "zero-shot")
    assert not res.dropped and res.generated == res.full == 64
    means = {k: round(sum(v) / 32, 4) for k, v in scores.items()}
    expected = max(scores, key=lambda v: (means[v], v == "zero-shot"))  # what the unraced choice did
    assert res.winner == expected and res.scores == means
    # the same when racing is off (macro F1): one round of all 32
    calls.clear()
    off = race(_fake(scores, calls), list(scores), 32, prefer=lambda v: v == "zero-shot", racing=False)
    assert off.winner == expected and [len(i) for _, i in calls] == [32, 32]


def test_tie_goes_to_the_preferred_variant():
    same = [0.5] * 32
    res = race(_fake({"4-shot": same, "zero-shot": same}, []), ["4-shot", "zero-shot"], 32,
               prefer=lambda v: v == "zero-shot")
    assert res.winner == "zero-shot" and res.generated == 64


def test_arms_of_one_run_race_together():
    """A run yields several arms (reader prompt x extraction); a run goes when its last arm does."""
    def run(name, idx):
        base = {"p1": 0.9, "p2": 0.1}[name]
        return {f"{name}/raw": [base - 0.05 * (i % 2) for i in idx], f"{name}/trim": [base for _ in idx]}

    res = race(run, ["p1", "p2"], 32, prefer=lambda a: a == "p1/raw")
    assert res.winner == "p1/trim" and res.generated == 32
    # p1/raw trails p1/trim by 0.05 on every other item: mean -0.025, bound -0.011 (t, 15 df)
    assert res.dropped == {"p2/raw": 16, "p2/trim": 16, "p1/raw": 16}
    assert res.items["p1/trim"] == 16


def test_choice_cache_reuses_only_identical_inputs(tmp_path):
    scores = {"a": [1.0] * 32, "b": [0.0] * 32}
    calls: list = []
    first = choose("prompting", "m", {"prompts": [1]}, _fake(scores, calls), ["a", "b"], 32, home=tmp_path)
    n = len(calls)
    again = choose("prompting", "m", {"prompts": [1]}, _fake(scores, calls), ["a", "b"], 32, home=tmp_path)
    assert len(calls) == n and again.reused and not first.reused
    assert (again.winner, again.scores, again.generated) == (first.winner, first.scores, first.generated)
    other = choose("prompting", "m", {"prompts": [2]}, _fake(scores, calls), ["a", "b"], 32, home=tmp_path)
    assert len(calls) > n and not other.reused
    choose("prompting", "other-model", {"prompts": [1]}, _fake(scores, calls), ["a", "b"], 32, home=tmp_path)
    assert len(calls) > n + 2
    # an unreadable cache file is a miss, not a crash
    for f in (tmp_path / "choices").glob("*.json"):
        f.write_text("{not json")
    calls.clear()
    choose("prompting", "m", {"prompts": [1]}, _fake(scores, calls), ["a", "b"], 32, home=tmp_path)
    assert calls


@pytest.mark.e2e
def test_prompting_choice_raced_then_reused_with_the_real_model(write, smollm, generator, tmp_path, monkeypatch):
    """The real pipeline: the choice is made on train items only, then reused by a second prepare."""
    from helpers import jsonl

    from advisor.data import load_task_data
    from advisor.spec import load
    from pipelines.base import RunContext
    from pipelines.prompting import PromptingPipeline

    pos = ["great movie", "loved it", "wonderful film", "a joy to watch", "superb acting", "brilliant story"]
    neg = ["awful movie", "hated it", "boring film", "a waste of time", "terrible acting", "dull story"]
    train = [{"text": f"{t} {i}", "label": lab} for i in range(3) for lab, ts in (("positive", pos), ("negative", neg))
             for t in ts]
    write("train.jsonl", jsonl(train))
    write("eval.jsonl", jsonl([{"text": "what a great film", "label": "positive"}]))
    path = write("task.yaml", """name: tiny-choice
type: classification
labels: [negative, positive]
decoding: choices
data: {eval: eval.jsonl, train: train.jsonl}
target: {metric: accuracy, min: 0.8}
prompting: {shots: 2}
""")
    spec = load(path)
    data = load_task_data(spec)
    seen: list = []
    real = generator.score_choices
    monkeypatch.setattr(generator, "score_choices", lambda prompts, *a, **k: seen.append(len(prompts)) or
                        real(prompts, *a, **k))
    ctx = RunContext(spec, data, smollm, generator, cache_dir=tmp_path)
    first = PromptingPipeline()
    first.prepare(ctx)
    assert first.race is not None and not first.race.reused
    assert sum(seen) == first.race.generated and first.race.full == 64  # 32 dev items x 2 variants
    eval_ids = {e.id for e in data.eval.examples}
    assert not eval_ids & {e.id for e in first.demos}
    seen.clear()
    second = PromptingPipeline()
    second.prepare(ctx)
    assert second.race.reused and not seen  # nothing generated
    assert (second.variant, second.dev_scores) == (first.variant, first.dev_scores)
    assert "reused" in second.why
    out = second.predict(data.eval.examples)
    assert out.details["variant_race"]["reused"] is True


def test_full_price_mode_is_the_old_choice(tmp_path, monkeypatch):
    """ADVISOR_CHOICE=full: every variant on every item, nothing cached (the benchmark reference)."""
    good, bad = [1.0] * 32, [0.0] * 32
    calls: list = []
    monkeypatch.setenv("ADVISOR_CHOICE", "full")
    res = choose("prompting", "m", {"p": 1}, _fake({"a": bad, "b": good}, calls), ["a", "b"], 32, home=tmp_path)
    assert res.winner == "b" and res.generated == 64 and not res.dropped
    assert not (tmp_path / "choices").exists()
    monkeypatch.setenv("ADVISOR_CHOICE", "race")
    raced = choose("prompting", "m", {"p": 1}, _fake({"a": bad, "b": good}, calls), ["a", "b"], 32, home=tmp_path)
    assert raced.winner == "b" and raced.generated == 32 and not raced.reused
    assert not (tmp_path / "choices").exists()


@pytest.mark.e2e
def test_rag_reader_choice_races_prompts_with_their_extractors(write, tmp_path, monkeypatch):
    """RagPipeline's reader choice through choice.race: real retrieval (MiniLM + Chroma), the reader's
    generations faked (one wording answers, the other does not), so the loser goes after 16 items."""
    from helpers import jsonl

    from advisor.data import load_task_data
    from advisor.spec import load
    from pipelines import rag as rag_mod
    from pipelines.base import Prediction, RunContext
    from pipelines.rag import RagPipeline

    docs = [{"id": f"d{i}", "title": f"Room {i}", "text": f"Room {i}'s door code is {1000 + i}."} for i in range(6)]
    train = [{"id": f"t{i}", "question": f"What is the door code of room {i % 6}? ({i})",
              "answer": [str(1000 + i % 6)]} for i in range(40)]
    write("corpus.jsonl", jsonl(docs))
    write("train.jsonl", jsonl(train))
    write("eval.jsonl", jsonl([{"id": "e1", "question": "What is the door code of room 2?", "answer": ["1002"]}]))
    path = write("task.yaml", """name: rooms
type: qa
data: {eval: eval.jsonl, train: train.jsonl, corpus: corpus.jsonl,
       fields: {id: id, input: question, expected: answer}}
target: {metric: token_f1, min: 0.5}
rag: {mode: documents, k: 2}
""")
    spec = load(path)
    data = load_task_data(spec)
    gold = {r["question"]: r["answer"][0] for r in train}
    calls: list[int] = []

    def fake_answer(gen, prompts, ids, **kw):
        calls.append(len(prompts))
        out = []
        for m, i in zip(prompts, ids):
            user = m[-1]["content"]
            q = next(line[len("Question: "):] for line in user.splitlines() if line.startswith("Question: "))
            top1 = "exact words from the passage:" in user  # sandwich-top1's wording (one passage)
            out.append(Prediction(i, f"The code is {gold.get(q, '?')}." if top1 else "I do not know.", 10, 5))
        return out

    monkeypatch.setattr(rag_mod, "answer", fake_answer)
    ctx = RunContext(spec, data, None, object(), cache_dir=tmp_path)
    first = RagPipeline()
    first.prepare(ctx)
    assert first.reader == "sandwich-top1" and first.extractor != "raw"
    r = first.race
    assert r.generated == 32 and r.full == 64 and calls == [16, 16]
    assert {a for a in r.dropped if a.startswith("sandwich-top2/")} == {f"sandwich-top2/{x}" for x in
                                                                         rag_mod.EXTRACTORS}
    assert "raced: 32 of 64" in first.reader_why
    calls.clear()
    second = RagPipeline()
    second.prepare(ctx)
    assert calls == [] and second.race.reused and (second.reader, second.extractor) == (first.reader, first.extractor)
