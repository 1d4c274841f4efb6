"""decide.py on synthetic outcomes: every branch of the workflow and its edges.

Per-example vectors are built as [1]*k + [0]*(n-k), so any two pipelines with k1 < k2
disagree on exactly k2 - k1 items, all in the better one's favour, and the exact
McNemar p is 2 * 0.5**(k2 - k1): 5 items -> 0.0625 (not significant), 6 -> 0.03125.
"""

import json
import subprocess
import sys

import pytest

from advisor.decide import (
    Decision,
    DecisionInput,
    PipelineOutcome,
    decide,
    meets,
    should_run_finetune,
)
from advisor.stats import wilson_ci


def ok(name, k, n=100, **kw):
    pe = [1.0] * k + [0.0] * (n - k)
    return PipelineOutcome(name, "ok", k / n, wilson_ci(k, n), pe, **kw)


def skipped(name, reason):
    return PipelineOutcome(name, "skipped", None, None, None, reason=reason)


def failed(name, reason):
    return PipelineOutcome(name, "failed", None, None, None, reason=reason)


def inp(*outcomes, target=0.8, **kw):
    return DecisionInput(metric="accuracy", target=target, outcomes={o.name: o for o in outcomes}, **kw)


# Wilson lower bounds used below (n=100): 90 -> 0.8256, 80 -> 0.7112, 76 -> 0.6677, 95 -> 0.8882.


# --- meets ----------------------------------------------------------------------------------


def test_meets_uses_the_pessimistic_ci_bound():
    assert meets(ok("p", 90), 0.8)  # lower bound 0.8256
    assert not meets(ok("p", 85), 0.8)  # point 0.85 but lower bound 0.7672
    assert meets(ok("p", 5), 0.2, higher_is_better=False)  # upper bound 0.1118 <= 0.2
    assert not meets(ok("p", 15), 0.2, higher_is_better=False)  # upper bound 0.2328


def test_meets_edge_cases():
    assert not meets(None, 0.5)
    assert not meets(failed("p", "boom"), 0.0)
    assert not meets(skipped("p", "no data"), 0.0)
    # no CI given: computed from per-example scores (Wilson 9/10 -> lower 0.596)
    o = PipelineOutcome("p", "ok", 0.9, None, [1.0] * 9 + [0.0])
    assert meets(o, 0.59) and not meets(o, 0.6)
    # neither CI nor per-example scores: the point estimate is all there is
    assert meets(PipelineOutcome("p", "ok", 0.9, None, None), 0.9)


# --- steps 1-3 ------------------------------------------------------------------------------


def test_baseline_meets_target_no_llm_needed():
    d = decide(inp(ok("baseline", 95, usd_per_1k=0.01), ok("prompting", 60), ok("rag", 70),
                   ok("finetune", 97, setup_usd=5, usd_per_1k=0.2), requests_per_month=100_000))
    assert (d.choice, d.best, d.meets_target) == ("baseline", "baseline", True)
    assert any("baseline meets the target" in r and "0.950" in r and "0.888" in r for r in d.reasons)
    assert any("no LLM needed" in r and "$1.00 per month at 100,000 requests" in r for r in d.reasons)
    assert set(d.why_not) == {"prompting", "rag", "finetune"}
    assert d.why_not["finetune"].startswith("not needed: baseline already meets the target")
    assert d.next_steps and "no GPU" in d.next_steps[0]


def test_prompting_when_baseline_misses():
    d = decide(inp(ok("baseline", 70), ok("prompting", 90), ok("rag", 92)))
    assert d.choice == "prompting"
    assert d.why_not["baseline"].startswith("missed the target")
    assert "lower bound" in d.why_not["baseline"] and "< target 0.800" in d.why_not["baseline"]
    assert d.why_not["rag"].startswith("not needed")
    assert d.reasons[0].startswith("baseline is short of the target")


def test_rag_when_prompting_misses():
    d = decide(inp(ok("baseline", 50), ok("prompting", 60), ok("rag", 90), ok("finetune", 91, setup_usd=3)))
    assert d.choice == "rag" and d.meets_target
    assert d.why_not["prompting"].startswith("missed the target")


def test_cheaper_choice_kept_even_when_a_later_one_is_far_better():
    d = decide(inp(ok("prompting", 90), ok("finetune", 100, setup_usd=1)))
    assert d.choice == "prompting"
    # 10 discordant items -> p = 2 / 1024
    assert any("finetune scores better (1.000 vs 0.900, p=0.00195) but prompting already meets" in r for r in d.reasons)


def test_several_meet_the_earliest_wins():
    d = decide(inp(ok("baseline", 91), ok("prompting", 95), ok("rag", 96)))
    assert d.choice == "baseline"


# --- step 4: fine-tune ------------------------------------------------------------------------


def test_finetune_meets_beats_and_fits_budget():
    d = decide(inp(ok("baseline", 60), ok("prompting", 50), ok("rag", 65, usd_per_1k=0.5),
                   ok("finetune", 90, setup_usd=10, usd_per_1k=0.2),
                   budget_setup_usd=50, requests_per_month=10_000))
    assert (d.choice, d.best, d.meets_target) == ("finetune", "finetune", True)
    # $10 setup repaid at $0.0003 per request saved vs rag -> 33,333 requests, 3.3 months
    assert d.break_even_requests == pytest.approx(10 / 0.0003)
    assert any("33,333 requests" in r and "3.3 months" in r for r in d.reasons)
    assert any("significantly better" in r and "finetune vs rag" in r and "+0.250" in r for r in d.reasons)
    assert any("$10.00" in r and "budget $50.00" in r for r in d.reasons)
    c = next(c for c in d.comparisons if (c["a_name"], c["b_name"]) == ("rag", "finetune"))
    assert c["test"] == "mcnemar-exact" and c["significant"] and c["diff"] == pytest.approx(0.25)
    assert c["p_value"] == pytest.approx(2 * 0.5**25)


def test_finetune_over_budget():
    d = decide(inp(ok("prompting", 50), ok("rag", 65), ok("finetune", 90, setup_usd=10), budget_setup_usd=5))
    assert d.choice == "none" and not d.meets_target
    assert d.best == "finetune"
    assert "over the budget of $5.00" in d.why_not["finetune"] and "$10.00" in d.why_not["finetune"]
    assert any("raise budget.setup_usd to at least $10.00" in s for s in d.next_steps)
    assert not any("bigger base model" in s for s in d.next_steps)  # quality is not the problem


def test_finetune_budget_boundary_is_inclusive():
    d = decide(inp(ok("rag", 65), ok("finetune", 90, setup_usd=5), budget_setup_usd=5))
    assert d.choice == "finetune"


def test_finetune_meets_target_but_not_significantly_better():
    # rag 76 (lower 0.668 < 0.70), finetune 80 (lower 0.711 >= 0.70); 4 discordant -> p = 0.125
    d = decide(inp(ok("prompting", 50), ok("rag", 76), ok("finetune", 80, setup_usd=1), target=0.7))
    assert d.choice == "none"
    assert "not significantly better than the cheaper rag" in d.why_not["finetune"]
    assert "p=0.125" in d.why_not["finetune"]
    assert d.best == "rag"  # tie inside the noise goes to the cheaper pipeline
    assert any("rag and finetune are tied within the noise" in r for r in d.reasons)
    # MDD at n=100, p=0.76: 2.8016 * sqrt(2 * .76 * .24 / 100) = 0.169
    assert d.mdd == pytest.approx(0.1692, abs=1e-3)
    assert any("cannot tell rag and finetune apart" in r and "about 191 items would be needed" in r for r in d.reasons)
    assert any(s.startswith("enlarge the eval set") for s in d.next_steps)


def test_finetune_short_of_target():
    d = decide(inp(ok("baseline", 40), ok("prompting", 50), ok("rag", 60), ok("finetune", 75, setup_usd=2),
                   has_corpus=True, base_model="smollm2-135m"))
    assert d.choice == "none" and d.best == "finetune"
    assert d.why_not["finetune"].startswith("short of the target")
    assert any("no pipeline meets the target; the best is finetune" in r and "short of the target 0.800" in r
               for r in d.reasons)
    steps = " | ".join(d.next_steps)
    assert "bigger base model than smollm2-135m" in steps
    assert "more training data" in steps
    assert "combine RAG with the fine-tune" in steps  # RAG 0.60 helped over prompting 0.50
    hurt = decide(inp(ok("prompting", 60), ok("rag", 50), ok("finetune", 75), has_corpus=True))
    assert not any("combine RAG" in s for s in hurt.next_steps)  # retrieval made prompting worse


def test_finetune_with_nothing_cheaper_scored():
    d = decide(inp(skipped("baseline", "generation task"), failed("prompting", "OOM"),
                   skipped("rag", "no corpus"), ok("finetune", 90)))
    assert d.choice == "finetune"
    assert any("no cheaper pipeline produced a score" in r for r in d.reasons)
    assert d.break_even_requests is None


def test_finetune_without_per_example_falls_back_to_ci_overlap():
    rag = PipelineOutcome("rag", "ok", 0.6, (0.5, 0.7), None)
    ft_far = PipelineOutcome("finetune", "ok", 0.9, (0.85, 0.95), None)
    ft_near = PipelineOutcome("finetune", "ok", 0.85, (0.69, 0.95), None)
    assert decide(inp(rag, ft_far)).choice == "finetune"
    d = decide(inp(rag, ft_near, target=0.65))
    assert d.choice == "none" and "CIs overlap" in d.why_not["finetune"]


def test_misaligned_per_example_is_not_paired():
    rag = ok("rag", 60)
    ft = PipelineOutcome("finetune", "ok", 0.9, (0.85, 0.95), [1.0] * 9 + [0.0])  # 10 items, not 100
    d = decide(inp(rag, ft))
    assert d.choice == "finetune"  # CIs (0.502-0.691) and (0.85-0.95) are disjoint
    assert any("no aligned per-example scores" in r for r in d.reasons)


def test_break_even_never_when_finetune_requests_are_not_cheaper():
    d = decide(inp(ok("rag", 60, usd_per_1k=0.2), ok("finetune", 90, setup_usd=10, usd_per_1k=0.2)))
    assert d.choice == "finetune" and d.break_even_requests is None
    assert any("never repays its $10.00 setup" in r for r in d.reasons)


def test_break_even_reported_beside_a_cheaper_choice():
    d = decide(inp(ok("rag", 90, usd_per_1k=1.0), ok("finetune", 92, setup_usd=4, usd_per_1k=0.2)))
    assert d.choice == "rag"
    assert d.break_even_requests == pytest.approx(4 / 0.0008)  # 5,000 requests
    assert any("after 5,000 requests" in r for r in d.reasons)


# --- missing inputs, failures, ties ---------------------------------------------------------


def test_no_corpus_rag_skipped():
    d = decide(inp(ok("baseline", 50), ok("prompting", 60), skipped("rag", "no corpus"),
                   skipped("finetune", "finetune mode 'never'"), has_corpus=False))
    assert d.choice == "none" and d.best == "prompting"
    assert d.why_not["rag"] == "skipped: no corpus"
    steps = " | ".join(d.next_steps)
    assert "add a document corpus" in steps and "run the fine-tune (--finetune always)" in steps


def test_pipelines_absent_from_outcomes_are_explained():
    d = decide(inp(ok("prompting", 90), has_corpus=False, has_train=False))
    assert d.choice == "prompting"
    assert d.why_not == {"baseline": "not run: no train set", "rag": "not run: no corpus and no train examples to retrieve",
                         "finetune": "not run: no train set"}


def test_no_train_set():
    d = decide(inp(skipped("baseline", "no train set"), ok("prompting", 55), ok("rag", 62),
                   skipped("finetune", "no train set"), has_train=False, has_corpus=True))
    assert d.choice == "none" and d.best == "rag"
    assert d.why_not["baseline"] == "skipped: no train set" == d.why_not["finetune"]
    assert any("collect a labelled train set" in s for s in d.next_steps)


def test_all_failed():
    d = decide(inp(failed("baseline", "sklearn error"), failed("prompting", "OOM"),
                   failed("rag", "chroma down"), failed("finetune", "CUDA error")))
    assert (d.choice, d.best, d.meets_target, d.mdd) == ("none", None, False, None)
    assert any("no pipeline produced a score" in r for r in d.reasons)
    assert d.why_not["prompting"] == "failed: OOM"
    assert "fix the prompting failure (OOM) and re-run" in d.next_steps
    assert d.comparisons == []


def test_everything_skipped():
    d = decide(inp(*(skipped(n, f"{n} off") for n in ("baseline", "prompting", "rag", "finetune"))))
    assert d.choice == "none" and d.best is None
    assert d.why_not == {n: f"skipped: {n} off" for n in ("baseline", "prompting", "rag", "finetune")}


def test_empty_outcomes():
    d = decide(inp())
    assert d.choice == "none" and d.best is None and set(d.why_not) == {"baseline", "prompting", "rag", "finetune"}


def test_exact_tie_goes_to_the_cheaper_pipeline():
    d = decide(inp(ok("prompting", 60), ok("rag", 60)))
    assert d.best == "prompting"
    assert d.comparisons == [{"a_name": "prompting", "b_name": "rag", "n": 100, "diff": 0.0, "ci": [0.0, 0.0],
                              "p_value": 1.0, "test": "mcnemar-exact", "significant": False}]


def test_noise_tie_names_cheaper_but_clear_gap_names_the_better():
    # 5 discordant -> p = 0.0625: tied, prompting named
    assert decide(inp(ok("prompting", 60), ok("rag", 65))).best == "prompting"
    # 6 discordant -> p = 0.03125: rag is better
    d = decide(inp(ok("prompting", 60), ok("rag", 66)))
    assert d.best == "rag"
    c = d.comparisons[0]
    assert (c["a_name"], c["b_name"], c["p_value"]) == ("prompting", "rag", pytest.approx(0.03125))


# --- other metrics --------------------------------------------------------------------------


def test_lower_is_better_metric():
    # ok(name, k) here means k errors out of 100; "meets" uses the upper CI bound.
    d = decide(DecisionInput(metric="error_rate", target=0.2, higher_is_better=False,
                             outcomes={"prompting": ok("prompting", 30), "rag": ok("rag", 10)}))
    assert d.choice == "rag"  # rag upper bound 0.1744 <= 0.2; prompting's 0.3964 > 0.2
    assert "upper bound" in d.why_not["prompting"] and "> target 0.200" in d.why_not["prompting"]
    # finetune: 1 error, upper bound 0.0545 <= 0.06, and 9 fewer errors than rag -> p = 2/512
    d = decide(DecisionInput(metric="error_rate", target=0.06, higher_is_better=False,
                             outcomes={"prompting": ok("prompting", 30), "rag": ok("rag", 10),
                                       "finetune": ok("finetune", 1, setup_usd=1)}))
    assert d.choice == "finetune" and d.best == "finetune"
    c = next(c for c in d.comparisons if c["a_name"] == "rag")
    assert c["diff"] == pytest.approx(-0.09) and c["p_value"] == pytest.approx(2 / 512)
    # the same numbers against a 0.05 target: 0.0545 > 0.05, nothing meets, best has the fewest errors
    d = decide(DecisionInput(metric="error_rate", target=0.05, higher_is_better=False,
                             outcomes={"rag": ok("rag", 10), "finetune": ok("finetune", 1)}))
    assert d.choice == "none" and d.best == "finetune"


def test_continuous_metric_uses_paired_bootstrap():
    n = 30
    rag = PipelineOutcome("rag", "ok", 0.5, None, [0.4, 0.5, 0.6] * (n // 3))
    ft = PipelineOutcome("finetune", "ok", 0.9, None, [0.85, 0.9, 0.95] * (n // 3))
    d = decide(DecisionInput(metric="token_f1", target=0.8, outcomes={"rag": rag, "finetune": ft}))
    assert d.choice == "finetune"
    c = d.comparisons[0]
    assert c["test"] == "paired-bootstrap" and c["diff"] == pytest.approx(0.4) and c["significant"]
    assert d.mdd is not None and 0 < d.mdd < 0.1


# --- should_run_finetune --------------------------------------------------------------------


def test_should_run_finetune_auto():
    run, why = should_run_finetune("auto", {"prompting": ok("prompting", 90)}, 0.8)
    assert run is False and "prompting already meets the target" in why and "0.826" in why
    run, why = should_run_finetune("auto", {"prompting": ok("prompting", 70), "rag": skipped("rag", "x")}, 0.8)
    assert run is True and "no cheaper pipeline meets the target" in why
    run, _ = should_run_finetune("AUTO", {"rag": ok("rag", 5)}, 0.2, higher_is_better=False)
    assert run is False


def test_should_run_finetune_always_and_never():
    good = {"baseline": ok("baseline", 99)}
    assert should_run_finetune("always", good, 0.8)[0] is True
    assert should_run_finetune("never", {}, 0.8)[0] is False
    with pytest.raises(ValueError):
        should_run_finetune("sometimes", {}, 0.8)


# --- output ---------------------------------------------------------------------------------


def test_to_dict_is_json_ready():
    d = decide(inp(ok("prompting", 60), ok("rag", 75), ok("finetune", 92, setup_usd=3, usd_per_1k=0.1)))
    assert isinstance(d, Decision)
    out = json.loads(json.dumps(d.to_dict()))
    assert out["choice"] == "finetune" and out["reasons"] and isinstance(out["comparisons"], list)
    assert set(out) == {"choice", "best", "meets_target", "reasons", "why_not", "next_steps",
                        "comparisons", "mdd", "break_even_requests"}


def test_pure_modules_import_no_ml_stack():
    code = (
        "import sys, advisor.stats, advisor.cost, advisor.decide\n"
        "bad = [m for m in ('torch', 'transformers', 'chromadb', 'langchain', 'sklearn') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_break_even_states_both_costs_when_the_finetune_is_no_dearer():
    d = decide(inp(ok("baseline", 95, setup_usd=0.5, usd_per_1k=0.3), ok("finetune", 92, setup_usd=0.1, usd_per_1k=0.2)))
    assert d.choice == "baseline" and d.break_even_requests == 0.0
    text = next(r for r in d.reasons if r.startswith("the fine-tune's setup"))
    assert "$0.10" in text and "$0.50" in text and "per 1,000" in text


def test_no_break_even_claim_when_a_cost_is_unknown():
    d = decide(inp(ok("baseline", 95), ok("finetune", 92, setup_usd=0.1, usd_per_1k=0.2)))
    assert d.choice == "baseline" and d.break_even_requests is None
    assert not any("fine-tune" in r and ("repays" in r or "cost no more" in r) for r in d.reasons)


def test_every_pair_is_compared_but_only_the_deciding_pairs_explain_the_noise():
    # all short of 0.95; finetune is clearly best; the three cheaper ones are within a few items
    d = decide(inp(ok("baseline", 62), ok("prompting", 58), ok("rag", 60), ok("finetune", 80), target=0.95))
    pairs = [(c["a_name"], c["b_name"]) for c in d.comparisons]
    assert pairs == [("baseline", "prompting"), ("baseline", "rag"), ("baseline", "finetune"),
                     ("prompting", "rag"), ("prompting", "finetune"), ("rag", "finetune")]  # cheapest first
    by = {(c["a_name"], c["b_name"]): c for c in d.comparisons}
    assert by[("prompting", "finetune")]["significant"] and by[("prompting", "finetune")]["diff"] == pytest.approx(0.22)
    assert not by[("prompting", "rag")]["significant"]
    assert d.best == "finetune"
    # the cheaper pipelines' mutual ties say nothing about this decision: no "cannot tell" reasons
    assert not any("cannot tell" in r for r in d.reasons)


def test_a_finetune_short_of_the_target_still_reports_beating_prompting():
    # finetune 80 vs prompting 58: significant, but its lower bound (0.711) misses 0.95
    d = decide(inp(ok("prompting", 58), ok("finetune", 80), target=0.95))
    assert d.choice == "none" and d.best == "finetune"
    assert any(r.startswith("finetune is significantly better than prompting (+0.220, p=") for r in d.reasons)
    d = decide(inp(ok("prompting", 78), ok("finetune", 80), target=0.95))  # 2 items apart: no claim
    assert not any("significantly better than prompting" in r for r in d.reasons)
