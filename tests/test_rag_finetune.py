"""RAG + fine-tune's training prompts, without the LLM: the real RagPipeline (real in-process
Chroma, real chain steps) over a fake bag-of-words embedder, so the prompts are exactly what the
RAG pipeline builds and retrieval is predictable.

* the training prompt of a question is the RAG eval prompt of that question (same retriever,
  same reader prompt);
* retrieved demonstrations never include the train item itself;
* RAFT: the chosen share of training prompts loses its gold passage, the others and the
  validation slice do not.
"""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pytest

from advisor.data import load_task_data
from advisor.spec import load
from pipelines.base import RunContext
from pipelines.rag import RagPipeline
from pipelines.rag_finetune import distractor_picks, training_prompts, without_gold

DIM = 256


class FakeTokenizer:
    def __call__(self, texts, **kw):
        return {"input_ids": [list(range(len(t.split()))) for t in texts]}


class FakeEmbedder:
    """Bag of words hashed into DIM buckets, L2-normalised: shared words = nearer."""

    device = "cpu"
    max_seq_length = 512
    tokenizer = FakeTokenizer()

    def get_sentence_embedding_dimension(self) -> int:
        return DIM

    def encode(self, texts, **kw):
        out = np.zeros((len(texts), DIM), dtype="float32")
        for i, t in enumerate(texts):
            for w in re.findall(r"[a-z0-9]+", t.lower()):
                out[i, zlib.crc32(w.encode()) % DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


@pytest.fixture
def fake_embedder(monkeypatch):
    import advisor.models
    import pipelines.embed_onnx

    monkeypatch.setattr(advisor.models, "load_embedder", lambda name: FakeEmbedder())
    monkeypatch.setattr(advisor.models, "embedder_path", lambda name: "unused")
    monkeypatch.setattr(pipelines.embed_onnx, "fast_encoder", lambda st, *a, **kw: st)


TOPICS = ["walrus", "tangerine", "volcano", "harbour", "glacier", "meadow", "lantern", "orchard"]
DOCS = [{"id": f"d-{t}", "title": f"The {t}", "text": f"The {t} fact: the {t} code is {i}{i}{i}."}
        for i, t in enumerate(TOPICS)]
TRAIN_QA = [{"id": f"q-{t}", "question": f"What is the {t} code?", "answer": [f"{i}{i}{i}"], "ctx": f"d-{t}"}
            for i, t in enumerate(TOPICS)]


def _rag(tmp_path, task: str, files: dict[str, list[dict]]) -> tuple[RagPipeline, object]:
    for name, rows in files.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(task)
    spec = load(tmp_path / "task.yaml")
    data = load_task_data(spec)
    rag = RagPipeline(prompt="sandwich-top2" if spec.type == "qa" else None)
    rag.prepare(RunContext(spec, data, None, generator=object(), cache_dir=tmp_path / "home"))
    return rag, data


QA_TASK = """name: facts
type: qa
instructions: Answer the question.
data:
  eval: eval.jsonl
  train: train.jsonl
  corpus: corpus.jsonl
  fields: {id: id, input: question, expected: answer, context_id: ctx}
target: {metric: token_f1, min: 0.5}
rag: {mode: documents, k: 2, chunk_chars: 400, chunk_overlap: 0}
"""


def test_training_prompts_are_the_rag_eval_prompts(tmp_path, fake_embedder):
    rag, data = _rag(tmp_path, QA_TASK, {"corpus.jsonl": DOCS, "train.jsonl": TRAIN_QA, "eval.jsonl": TRAIN_QA[:1]})
    train = data.train.examples
    prompts, summary = training_prompts(rag, train, share=0.0, seed=0)
    # what the RAG chain shows the same questions at evaluation
    evaluated = [r["messages"] for r in rag._prompt(rag._retrieve({"examples": train}))["rows"]]
    assert prompts == evaluated
    assert summary["distractor_only"] == 0 and summary["gold_in_context"] == 1.0
    first = prompts[0][-1]["content"]
    assert first.startswith("Question: What is the walrus code?") and "The walrus fact" in first
    assert "exact words from the passages" in prompts[0][0]["content"]  # the reader prompt's wording


def test_distractor_share_removes_the_gold_passage_from_that_share_only(tmp_path, fake_embedder):
    rag, data = _rag(tmp_path, QA_TASK, {"corpus.jsonl": DOCS, "train.jsonl": TRAIN_QA, "eval.jsonl": TRAIN_QA[:1]})
    train = data.train.examples
    plain, _ = training_prompts(rag, train, share=0.0, seed=0)
    held = [0, 1]  # the validation slice keeps eval-like prompts
    prompts, summary = training_prompts(rag, train, share=0.5, seed=0, held_out=held)
    # 0.5 of the 6 eligible items (8 minus the 2 held out) = 3 prompts without their gold passage
    assert summary["distractor_only"] == 3
    changed = [i for i, (a, b) in enumerate(zip(plain, prompts)) if a != b]
    assert len(changed) == 3 and not set(changed) & set(held)
    for i in changed:
        user = prompts[i][-1]["content"]
        topic = TOPICS[i]
        assert f"The {topic} fact" not in user  # the gold passage is gone
        assert user.count("] The ") == 2  # still k=2 passages, from other documents
        assert user.startswith(f"Question: What is the {topic} code?")
    assert summary["gold_in_context"] == pytest.approx(5 / 8)
    # the choice is seeded: the same items every time
    again, _ = training_prompts(rag, train, share=0.5, seed=0, held_out=held)
    assert again == prompts


def test_distractor_picks_and_without_gold():
    picks = distractor_picks(range(10), 0.3, seed=1)
    assert len(picks) == 3 and picks == distractor_picks(range(10), 0.3, seed=1) and picks <= set(range(10))
    assert distractor_picks(range(10), 0.0, 1) == set() and distractor_picks([], 0.5, 1) == set()
    assert distractor_picks(range(4), 1.0, 1) == {0, 1, 2, 3}
    row = {"passages": [("A", "gold 1"), ("B", "other"), ("A", "gold 2"), ("C", "third"), ("D", "fourth")],
           "doc_ids": ["a#0", "b#0", "a#1", "c#0", "d#0"], "demos": [], "ids": ["a#0", "b#0", "a#1", "c#0", "d#0"]}
    out = without_gold(row, "a", k=2)
    assert out["passages"] == [("B", "other"), ("C", "third")] and out["doc_ids"] == ["b#0", "c#0"]
    assert out["ids"] == ["b#0", "c#0"] and row["doc_ids"][0] == "a#0"  # the input row is untouched


CLS_TRAIN = [{"id": f"t{i}", "text": text, "label": label} for i, (text, label) in enumerate([
    ("my card was swallowed by the machine", "card"), ("the machine kept my card", "card"),
    ("the cash machine ate my card", "card"), ("send money to my sister", "transfer"),
    ("transfer money to my landlord", "transfer"), ("money transfer to a friend failed", "transfer"),
])]
CLS_TASK = """name: intents
type: classification
labels: [card, transfer]
instructions: Route the message.
data: {eval: eval.jsonl, train: train.jsonl}
target: {metric: accuracy, min: 0.8}
rag: {k: 2}
"""


def test_retrieved_demonstrations_never_include_the_item_itself(tmp_path, fake_embedder):
    rag, data = _rag(tmp_path, CLS_TASK, {"train.jsonl": CLS_TRAIN, "eval.jsonl": CLS_TRAIN[:2]})
    assert rag.mode == "examples"
    train = data.train.examples
    prompts, summary = training_prompts(rag, train, share=0.5, seed=0)
    assert summary["self_retrieved"] == 0 and summary["distractor_only"] == 0  # no passages to withhold
    # without the exclusion, each item's nearest train example is itself (same text, distance 0)
    unexcluded = rag._retrieve({"examples": train})["rows"]
    assert all(r["ids"][0] == e.id for r, e in zip(unexcluded, train))
    for p, e in zip(prompts, train):
        # the eval prompt's shape: system, k demonstrations as chat turns, the question last
        assert [m["role"] for m in p] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert p[-1]["content"] == e.input
        demos = [p[1]["content"], p[3]["content"]]
        assert e.input not in demos
    # the demonstrations are the item's nearest *other* examples, nearest last, as at evaluation
    card = prompts[0]
    assert card[4]["content"] == "card" and card[3]["content"] in {r["text"] for r in CLS_TRAIN[1:3]}


# ---------------------------------------------------------------------------------------------
# when the workflow runs it (catalogue entry)


def _outcome(name, k, n=100):
    from advisor.decide import PipelineOutcome
    from advisor.stats import wilson_ci

    return PipelineOutcome(name, "ok", k / n, wilson_ci(k, n), [1.0] * k + [0.0] * (n - k))


def test_runs_in_auto_mode_only_when_rag_helped_and_nothing_cheaper_meets(tmp_path):
    from advisor import catalogue
    from advisor.decide import PipelineOutcome

    qa = [{"id": f"q{i}", "question": f"question {i}?", "answer": ["a"], "ctx": "d-walrus"} for i in range(16)]
    for name, rows in {"corpus.jsonl": DOCS, "train.jsonl": qa, "eval.jsonl": qa[:2]}.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "task.yaml").write_text(QA_TASK.replace("min: 0.5", "min: 0.8"))
    spec = load(tmp_path / "task.yaml")
    data = load_task_data(spec)
    entry = catalogue.entry("rag_finetune")
    assert catalogue.names()[-2:] == ("finetune", "rag_finetune") and entry.gated and entry.title == "RAG + fine-tune"

    def why(mode="auto", base="m", **outs):
        spec.finetune.mode = mode
        return entry.applies(catalogue.Situation(spec, data, outs, "m", base))

    helped = dict(prompting=_outcome("prompting", 50), rag=_outcome("rag", 60), finetune=_outcome("finetune", 55))
    assert why(**helped) is None
    hurt = {**helped, "rag": _outcome("rag", 45)}
    assert why(**hurt).startswith("RAG did not help prompting (0.45 vs 0.5)")
    assert why("always", **hurt) is None
    assert "disabled" in why("never", **helped)
    # something cheaper meets the 0.80 target (lower 95% bound 0.88 at 95/100): not worth training
    assert why(**{**helped, "finetune": _outcome("finetune", 95)}).startswith("LoRA fine-tune already meets the target (0.950")
    assert why(**{**helped, "rag": _outcome("rag", 95)}).startswith("RAG already meets the target (0.950")
    assert why("always", **{**helped, "finetune": _outcome("finetune", 95)}) is None
    no_rag = {**helped, "rag": PipelineOutcome("rag", "failed", None, None, None, reason="boom")}
    assert why("always", **no_rag) == "RAG did not run, so there are no RAG prompts to train on (boom)"
    assert why(base=None, **helped).startswith("every candidate is an endpoint")
