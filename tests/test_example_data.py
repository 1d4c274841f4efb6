"""The bundled example (examples/acme-handbook): its data is what `make assess` measures, so it
must be right by construction. Fast: no models, only the task loader and the SQuAD normaliser."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from advisor import data, spec
from advisor.metrics import normalize_answer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "acme-handbook"


@pytest.fixture(scope="module")
def task():
    s = spec.load(EXAMPLE / "task.yaml")
    return s, data.load_task_data(s)


def _rows(name: str) -> list[dict]:
    return [json.loads(line) for line in (EXAMPLE / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def test_task_file_loads_with_expected_sizes(task):
    s, d = task
    assert s.name == "acme-handbook" and s.type == "qa" and s.metric == "token_f1"
    assert len(d.eval) == 40 and len(d.train) == 60
    assert 12 <= len(d.corpus) <= 16


def test_documents_are_short_pages(task):
    for doc in task[1].corpus:
        words = len(doc.text.split())
        assert 150 <= words <= 400, f"{doc.id}: {words} words"


def test_ids_are_unique_across_splits():
    ids = [r["id"] for r in _rows("eval.jsonl") + _rows("train.jsonl")]
    dup = [i for i, n in Counter(ids).items() if n > 1]
    assert not dup, dup


def test_rows_have_exactly_the_documented_fields():
    for r in _rows("eval.jsonl") + _rows("train.jsonl"):
        assert set(r) == {"id", "question", "answers", "context_id"}, r["id"]
        assert isinstance(r["answers"], list) and r["answers"], r["id"]


def test_every_answer_is_a_short_verbatim_span_of_its_document(task):
    docs = {doc.id: doc.text.lower() for doc in task[1].corpus}
    for ds in (task[1].eval, task[1].train):
        for ex in ds.examples:
            assert ex.context_id in docs, f"{ex.id}: no document '{ex.context_id}' (ids: {sorted(docs)})"
            for ans in ex.expected:
                assert ans.lower() in docs[ex.context_id], f"{ex.id}: {ans!r} not in {ex.context_id}"
                assert 1 <= len(ans.split()) <= 5, f"{ex.id}: {ans!r} is not 1-5 words"
                assert normalize_answer(ans), f"{ex.id}: {ans!r} normalises to nothing"


def test_questions_do_not_give_away_their_answer(task):
    for ds in (task[1].eval, task[1].train):
        for ex in ds.examples:
            q = f" {normalize_answer(ex.input)} "
            assert f" {normalize_answer(ex.expected[0])} " not in q, ex.id


def test_train_and_eval_ask_about_different_facts(task):
    """No question repeats, and within a document no eval answer is also a train answer."""
    ev, tr = task[1].eval.examples, task[1].train.examples
    assert not {normalize_answer(e.input) for e in ev} & {normalize_answer(e.input) for e in tr}
    train_answers: dict[str, set[str]] = {}
    for e in tr:
        train_answers.setdefault(e.context_id, set()).update(normalize_answer(a) for a in e.expected)
    for e in ev:
        shared = {normalize_answer(a) for a in e.expected} & train_answers.get(e.context_id, set())
        assert not shared, f"{e.id} shares the answer {shared} with a train question on {e.context_id}"


def test_every_document_is_asked_about_in_both_splits(task):
    docs = {doc.id for doc in task[1].corpus}
    assert {e.context_id for e in task[1].eval.examples} == docs
    assert {e.context_id for e in task[1].train.examples} == docs
