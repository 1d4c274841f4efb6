"""The engine's side of the decision, without models: the target metric is judged on itself
(issue 12: a macro-F1 target was judged on per-item accuracy and a majority-class pipeline
was reported as meeting it)."""

import json

import pytest

from advisor import decide, spec as spec_mod
from advisor.data import load_task_data
from advisor.engine import Assessment


@pytest.fixture
def majority_task(tmp_path):
    rows = [{"text": f"item {i}", "label": "maj" if i < 54 else "min"} for i in range(60)]  # 90/10
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(
        "name: skewed\ntype: classification\nlabels: [maj, min]\ndata: {eval: eval.jsonl}\n"
        "target: {metric: macro_f1, min: 0.80}\nbudget: {horizon_months: 6}\ndecision: {margin: 0.03}\n")
    s = spec_mod.load(tmp_path / "task.yaml")
    a = Assessment(s, tmp_path / "run")
    a.data = load_task_data(s)
    return a


def _result(a: Assessment, outputs: list[str]) -> dict:
    from pipelines.base import PipelineOutput, Prediction

    out = PipelineOutput([Prediction(id=str(i), output=o, prompt_tokens=1, output_tokens=1) for i, o in enumerate(outputs)])
    return a._score("prompting", out, a.data.eval.examples)


def test_a_macro_f1_target_is_judged_on_macro_f1_not_accuracy(majority_task):
    a = majority_task
    res = _result(a, ["maj"] * 60)
    # scikit-learn macro-F1 of always "maj" on 54/6: (2*54/(54+60) + 0) / 2 = 0.4737; accuracy 0.9
    assert res["score"] == pytest.approx(0.473684, abs=1e-6) and res["metrics"]["accuracy"] == pytest.approx(0.9)
    assert res["per_example_metric"] == "accuracy" and res["ci"] is None  # CIs come at decision time
    a.results = {"prompting": res}
    outcomes = a._outcomes()
    o = outcomes["prompting"]
    assert o.score_fn is not None and o.per_example is None and o.n_items == 60
    d = decide.decide(decide.DecisionInput(metric="macro_f1", target=0.8, outcomes=outcomes))
    v = d.verdicts["prompting"]
    # before: Wilson on accuracy, "meets the target: macro_f1 0.474 (95% CI 0.826-0.945)"
    assert d.choice == "none" and v["verdict"] == "misses" and v["interval"] == "bootstrap-metric"
    assert v["ci"][0] <= 0.4737 <= v["ci"][1] < 0.6


def test_spec_decision_margin_and_horizon_reach_the_spec(majority_task):
    s = majority_task.spec
    assert s.decision.margin == 0.03 and s.budget.horizon_months == 6
    defaults = spec_mod.TaskSpec.model_validate({"name": "x", "type": "qa", "data": {"eval": "e.jsonl"},
                                                 "target": {"metric": "token_f1", "min": 0.5}})
    assert defaults.decision.margin == decide.DEFAULT_MARGIN and defaults.budget.horizon_months == 12


def test_the_decision_defaults_have_one_source():
    """decide and the spec read the same constants (identity: two literals would be two floats),
    and the spec still imports no scipy (advisor --help stays instant)."""
    import subprocess
    import sys

    assert decide.DEFAULT_MARGIN is spec_mod.DEFAULT_MARGIN
    assert decide.DEFAULT_HORIZON_MONTHS is spec_mod.DEFAULT_HORIZON_MONTHS
    assert spec_mod.DecisionSpec.model_fields["margin"].default is spec_mod.DEFAULT_MARGIN
    assert spec_mod.Budget.model_fields["horizon_months"].default is spec_mod.DEFAULT_HORIZON_MONTHS
    inp = decide.DecisionInput(metric="accuracy", target=0.8, outcomes={})
    assert inp.margin is spec_mod.DEFAULT_MARGIN and inp.horizon_months is spec_mod.DEFAULT_HORIZON_MONTHS
    code = "import sys, advisor.spec; print('SCIPY', 'scipy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "SCIPY False" in out.stdout, out.stdout + out.stderr


def test_the_baseline_is_priced_on_baseline_device_and_on_the_tasks_gpu(majority_task):
    a = majority_task
    a.base_model = "bundled:smollm2-135m-instruct"
    ok = {"status": "ok", "score": 0.9, "n": 60, "per_example": [1.0] * 54 + [0.0] * 6}
    a.results = {"baseline": {**ok, "usage": {"prompt_tokens_mean": 50, "train_tokens": 100_000}},
                 "rag": {**ok, "usage": {"prompt_tokens_mean": 300, "output_tokens_mean": 2, "query_tokens_mean": 50},
                         "timings": {"index": 1.0}}}
    costs = a.costs(134_515_008, {"n_layers": 30, "hidden": 576})["pipelines"]
    b = costs["baseline"]
    # all-MiniLM-L6-v2 (22,713,216 params), 50 tokens: 2 x 22,713,216 x 50 = 2.2713e9 FLOPs per request
    # CPU stand-in 1.92e11 x 0.15 = 2.88e10 FLOP/s at $0.10/h; H100 989e12 x 0.4 = 3.956e14 FLOP/s at $3.00/h
    flops = 2 * 22_713_216 * 50
    assert b["device"] == "CPU" and costs["rag"]["device"] == "H100"
    assert b["usd_per_1k_requests"] == pytest.approx(1000 * flops / 2.88e10 * 0.10 / 3600)
    assert b["also_priced_on"][0]["device"] == "H100"
    assert b["also_priced_on"][0]["usd_per_1k_requests"] == pytest.approx(1000 * flops / 3.956e14 * 3.00 / 3600)
    for name, c in costs.items():
        a.results[name]["cost"] = c
    o = a._outcomes()["baseline"]
    assert o.device == "CPU" and [p.device for p in o.prices_elsewhere] == ["H100"]
    assert a._outcomes()["rag"].device == "H100"


def test_a_macro_f1_reports_labels_the_history_can_gate_on(majority_task, tmp_path):
    """report.json carries each item's predicted and gold label for a corpus-level target, and the
    nightly gate recomputes macro-F1 from them (not per-item accuracy)."""
    from types import SimpleNamespace

    from advisor import history, regression

    a = majority_task
    store = SimpleNamespace(status={})
    reports = []
    for outputs in (["maj"] * 54 + ["min"] * 6, ["maj"] * 60):  # perfect (macro-F1 1.0), then always "maj"
        a.results = {"prompting": _result(a, outputs)}
        reports.append(a.report({"chosen": "m", "table": []}, {}, {"choice": "none"}, store, 0.0))
    r = reports[1]
    assert r["task"]["eval_gold"] == ["maj"] * 54 + ["min"] * 6
    assert r["pipelines"]["prompting"]["per_example_prediction"] == ["maj"] * 60
    assert "predictions" not in r["pipelines"]["prompting"]
    db = tmp_path / "h.sqlite"
    for rep in reports:
        history.record_run(db, rep)
    e = next(e for e in regression.compare(db)["tasks"][0]["pipelines"] if e["pipeline"] == "prompting")
    # 1.0 -> (2*54/114 + 0)/2 = 0.4737 (accuracy only 1.0 -> 0.9)
    assert e["baseline"] == pytest.approx(1.0) and e["current_on_shared"] == pytest.approx(0.473684, abs=1e-6)
    assert e["verdict"] == "drop"
