"""The pipeline catalogue is the one list: a pipeline added through one entry shows up everywhere.

The toy pipeline lives in this file and is registered here only; nothing else in the code base
names it. It runs through the real engine and CLI next to the real classical baseline (the
LLM pipelines are left out of this run's catalogue so the test needs no language model).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor import catalogue, history
from advisor.cli import app
from pipelines.base import PipelineOutput, Prediction, Usage

FIXTURE = Path(__file__).parent / "fixtures" / "tiny_cls"


class MajorityPipeline:
    """Predicts the train set's most common label for every item: the dumbest honest classifier."""

    name = "majority"

    def prepare(self, ctx) -> None:
        self.label = Counter(e.expected[0] for e in ctx.data.train.examples).most_common(1)[0][0]

    def predict(self, examples) -> PipelineOutput:
        preds = [Prediction(e.id, self.label, prompt_tokens=len(e.input.split()), output_tokens=1) for e in examples]
        return PipelineOutput(preds, timings={"predict": 0.0},
                              usage=Usage(prompt_tokens_mean=sum(p.prompt_tokens for p in preds) / len(preds),
                                          output_tokens_mean=1.0))


TOY = catalogue.PipelineEntry(
    name="majority", title="Majority label (toy)", factory=f"{__name__}:MajorityPipeline", model="embedder",
    key_sections=(), cost_kind="prompting", requires=("train",),
    applies=lambda s: None if s.has_train else "no train set",
)


@pytest.fixture
def toy_only(monkeypatch):
    """This run's catalogue: the real classical baseline, then the toy (restored afterwards)."""
    monkeypatch.setattr(catalogue, "_CATALOGUE", [catalogue.BASELINE])
    catalogue.register(TOY, after="baseline")
    return TOY


def test_register_places_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(catalogue, "_CATALOGUE", list(catalogue.entries()))
    catalogue.register(TOY, after="prompting")
    assert catalogue.names()[:3] == ("baseline", "prompting", "majority")
    assert catalogue.rank("majority") == 2 and catalogue.rank("nobody") == len(catalogue.names())
    with pytest.raises(ValueError, match="already registered"):
        catalogue.register(TOY)
    catalogue.unregister("majority")
    assert "majority" not in catalogue.names()


def test_the_builtin_order_is_the_seeds_order_of_simplicity():
    names = catalogue.names()
    assert names.index("baseline") < names.index("prompting") < names.index("rag") < names.index("finetune")
    assert catalogue.entry("finetune").gated and "hardware" in catalogue.entry("finetune").key_sections


def test_a_toy_pipeline_from_one_entry_appears_in_every_report_the_history_and_the_estimate(
        tmp_path, monkeypatch, toy_only):
    task = tmp_path / "task.yaml"
    task.write_text((FIXTURE / "task.yaml").read_text())
    for f in ("eval.jsonl", "train.jsonl"):
        (tmp_path / f).write_text((FIXTURE / f).read_text())
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(app, ["assess", str(task), "--out", "run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Majority label (toy)" in result.stdout  # the terminal report

    report = json.loads((tmp_path / "run" / "report.json").read_text())
    toy = report["pipelines"]["majority"]
    evals = [json.loads(x) for x in (FIXTURE / "eval.jsonl").read_text().splitlines()]
    trains = [json.loads(x) for x in (FIXTURE / "train.jsonl").read_text().splitlines()]
    majority = Counter(r["label"] for r in trains).most_common(1)[0][0]
    expected = sum(r["label"] == majority for r in evals) / len(evals)  # by hand, from the data
    assert toy["status"] == "ok" and toy["score"] == pytest.approx(expected)
    assert toy["ci"] and toy["ci"][0] <= expected <= toy["ci"][1]
    assert "majority" in report["costs"]["pipelines"]
    assert list(report["pipelines"]) == ["baseline", "majority"]
    assert (tmp_path / "run" / "predictions" / "majority.jsonl").is_file()
    assert "Majority label (toy)" in (tmp_path / "run" / "report.md").read_text()
    assert "Majority label (toy)" in (tmp_path / "run" / "report.html").read_text()

    db = tmp_path / "h.sqlite"
    history.record_run(db, [report])
    with history.opened(db, readonly=True) as conn:
        (run,) = history.task_runs(conn, "1 = 1", ())
        assert list(run.pipelines) == ["baseline", "majority"]
        assert run.pipelines["majority"]["score"] == pytest.approx(expected)

    est = CliRunner().invoke(app, ["estimate", str(task), "--json"])
    assert est.exit_code == 0, est.output
    assert "majority" in json.loads(est.stdout)["pipelines"]
