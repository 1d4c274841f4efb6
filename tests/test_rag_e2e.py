"""RAG end to end with the real bundled models (SmolLM2 + MiniLM) on tiny made-up data.

* A made-up fact the model cannot know is answered with RAG and not without it (the same model,
  decoding and task, prompted without passages).
* A second prepare over the same corpus builds nothing.
* Retrieved train examples (dynamic few-shot) as chat turns for a classification task.
* Chroma server mode: ``chroma run`` from the installed package on a free loopback port, stopped
  by its PID. The suite's network guard (conftest) fails any test that tries a non-loopback
  connection, so each of these also shows the RAG path stays on the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from advisor.data import load_task_data
from advisor.metrics import contains
from advisor.spec import load
from pipelines.base import RunContext
from pipelines.prompting import PromptingPipeline
from pipelines.rag import RagPipeline
from helpers import free_port, stop

pytestmark = pytest.mark.e2e

DOCS = [
    {"id": "zorblat", "title": "Zorblat office",
     "text": "The Zorblat office is on the third floor. The Zorblat office's door code is 4417. "
             "Lights switch off automatically at 8 pm."},
    {"id": "vantrell", "title": "Vantrell mascot",
     "text": "The Vantrell company's mascot is a walrus named Gusbert. Gusbert wears a purple hat."},
    {"id": "parking", "title": "Parking at Plimsoll Labs",
     "text": "Visitors to Plimsoll Labs park in lot Q7, behind the cafeteria. Staff park in lot B."},
    {"id": "canteen", "title": "Canteen",
     "text": "The canteen serves soup on Mondays and fish on Fridays. It closes at 3 pm."},
]
QUESTIONS = [
    {"id": "q1", "question": "What is the door code of the Zorblat office?", "answer": ["4417"], "ctx": "zorblat"},
    {"id": "q2", "question": "What is the name of the Vantrell company's mascot?", "answer": ["Gusbert"],
     "ctx": "vantrell"},
    {"id": "q3", "question": "In which lot do visitors to Plimsoll Labs park?", "answer": ["lot Q7", "Q7"],
     "ctx": "parking"},
]


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture
def qa_task(write):
    write("corpus.jsonl", _jsonl(DOCS))
    write("eval.jsonl", _jsonl(QUESTIONS))

    def make(rag: str = "{k: 2}"):
        path = write("task.yaml", f"""name: made-up-facts
type: qa
instructions: Answer the question about the company.
data:
  eval: eval.jsonl
  corpus: corpus.jsonl
  fields: {{id: id, input: question, expected: answer, context_id: ctx}}
target: {{metric: token_f1, min: 0.5}}
prompting: {{max_new_tokens: 16}}
rag: {rag}
""")
        spec = load(path)
        return spec, load_task_data(spec)

    return make


def _ctx(spec, data, smollm, generator, home: Path) -> RunContext:
    return RunContext(spec, data, smollm, generator, cache_dir=home)


def _found(preds, examples) -> list[float]:
    return [contains(p.output, e.expected) for p, e in zip(preds, examples)]


def test_made_up_fact_answered_with_rag_not_without(qa_task, smollm, generator, tmp_path):
    spec, data = qa_task()
    examples = data.eval.examples

    prompting = PromptingPipeline(variant="zero-shot")
    prompting.prepare(_ctx(spec, data, smollm, generator, tmp_path))
    closed = prompting.predict(examples).predictions

    rag = RagPipeline()
    seen: list[tuple] = []
    ctx = _ctx(spec, data, smollm, generator, tmp_path)
    ctx.progress = lambda desc, done, total: seen.append((desc, done, total))
    rag.prepare(ctx)
    out = rag.predict(examples)
    preds = out.predictions

    by_id = {p.id: p for p in preds}
    assert "4417" in by_id["q1"].output, [p.output for p in preds]
    assert "4417" not in next(p.output for p in closed if p.id == "q1")
    assert sum(_found(preds, examples)) >= 2, [p.output for p in preds]
    assert sum(_found(closed, examples)) == 0, [p.output for p in closed]

    # what the report needs
    assert by_id["q1"].extra["retrieved"][0] == "zorblat#0" and len(by_id["q1"].extra["retrieved"]) == 2
    assert out.details["mode"] == "documents" and out.details["k"] == 2
    assert out.details["retrieval"] == {"n": 3, "k": 2, "recall@1": 1.0, "recall@2": 1.0, "mrr": 1.0}
    idx = out.details["index"]
    assert idx["reused"] is False and idx["chunks"] == 4 and idx["size_bytes"] > 0
    assert out.timings["index"] == idx["build_seconds"]  # the build is what the index timing reports
    assert {"retrieve", "predict"} <= set(out.timings)
    u = out.usage.to_dict()  # the report.json form of the Usage record
    closed_tokens = sum(p.prompt_tokens for p in closed) / len(closed)
    assert u["prompt_tokens_mean"] > closed_tokens + 40  # the passages are in the prompt
    assert 5 < u["query_tokens_mean"] < 30 and u["corpus_tokens"] > 60 and u["index_chunks"] == 4
    # progress went through the callback, queries embedded as one batch
    assert ("RAG: embedding corpus chunks", 4, 4) in seen
    assert [s for s in seen if s[0] == "RAG: embedding queries"] == [("RAG: embedding queries", 0, 3),
                                                                      ("RAG: embedding queries", 3, 3)]

    # the same index as a LangChain retriever, for one query at a time
    hits = rag.as_retriever().invoke("door code of the Zorblat office")
    assert hits[0].id == "zorblat#0" and hits[0].metadata["title"] == "Zorblat office" and len(hits) == 2

    # a second prepare over the same corpus builds nothing
    again = RagPipeline()
    seen.clear()
    again.prepare(ctx)
    out2 = again.predict(examples)
    idx2 = out2.details["index"]
    assert idx2["reused"] is True and idx2["build_seconds"] == 0 and idx2["hash"] == idx["hash"]
    assert out2.timings["index"] == 0
    assert not [s for s in seen if s[0] == "RAG: embedding corpus chunks"]
    assert [p.output for p in out2.predictions] == [p.output for p in preds]
    assert any("index reused" in n for n in out2.notes)

    # other chunking: another index
    spec3, data3 = qa_task("{k: 2, chunk_chars: 60, chunk_overlap: 10}")
    third = RagPipeline()
    third.prepare(_ctx(spec3, data3, smollm, generator, tmp_path))
    info = third.index["documents"]
    assert not info.reused and info.hash != idx["hash"] and info.chunks > 4


TRAIN_CLS = [
    ("my blorp card got swallowed by the machine", "blorp_card"),
    ("the blorp card is stuck in the cash machine", "blorp_card"),
    ("an atm ate my blorp card", "blorp_card"),
    ("how do I zap money to my sister", "zap_transfer"),
    ("I want to zap funds to another account", "zap_transfer"),
    ("zap transfer to my landlord failed", "zap_transfer"),
    ("what are the fees for quex exchange", "quex_fee"),
    ("how much does a quex exchange cost", "quex_fee"),
    ("is there a charge on quex currency exchange", "quex_fee"),
]
EVAL_CLS = [
    ("the machine kept my blorp card", "blorp_card"),
    ("please zap cash to my friend", "zap_transfer"),
    ("what is the fee on quex exchanges", "quex_fee"),
]


def test_retrieved_examples_as_demonstrations(write, smollm, generator, tmp_path):
    write("train.jsonl", _jsonl({"text": t, "label": lab} for t, lab in TRAIN_CLS))
    write("eval.jsonl", _jsonl({"text": t, "label": lab} for t, lab in EVAL_CLS))
    path = write("task.yaml", """name: made-up-intents
type: classification
instructions: Route the customer message to one intent.
data: {eval: eval.jsonl, train: train.jsonl}
target: {metric: accuracy, min: 0.8}
rag: {k: 3}
""")
    spec = load(path)
    data = load_task_data(spec)
    pipe = RagPipeline()
    pipe.prepare(_ctx(spec, data, smollm, generator, tmp_path))
    out = pipe.predict(data.eval.examples)
    assert out.details["mode"] == "examples" and out.details["retrieval"] is None
    assert out.details["index"]["chunks"] == len(TRAIN_CLS) and out.details["index"]["name"].startswith("examples-")
    train_ids = {e.id: e.label for e in data.train.examples}
    for p, e in zip(out.predictions, data.eval.examples):
        got = p.extra["retrieved"]
        assert len(got) == 3 and all(i in train_ids for i in got)
        assert train_ids[got[0]] == e.label  # the nearest example has the same intent
    # demonstrations are prior chat turns, nearest last
    batch = pipe._prompt(pipe._retrieve({"examples": data.eval.examples[:1]}))
    msgs = batch["rows"][0]["messages"]
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert msgs[-2]["content"] == "blorp_card" and msgs[-1]["content"] == EVAL_CLS[0][0]
    assert [p.output for p in out.predictions] == [lab for _, lab in EVAL_CLS]


# ---------------------------------------------------------------------------------------------
# Chroma server mode



def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chroma exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("chroma server not ready")


def test_chroma_server_mode(qa_task, smollm, generator, tmp_path):
    chroma = Path(sys.executable).with_name("chroma")
    assert chroma.exists(), "the chromadb package's `chroma` command is missing from the venv"
    port = free_port()
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        _wait_ready(port, proc)
        spec, data = qa_task(f"{{k: 2, chroma_url: 'http://127.0.0.1:{port}'}}")
        home = tmp_path / "home"
        pipe = RagPipeline()
        pipe.prepare(_ctx(spec, data, smollm, generator, home))
        out = pipe.predict(data.eval.examples)
        assert "4417" in out.predictions[0].output
        assert out.details["store"] == f"http://127.0.0.1:{port}"
        assert out.details["retrieval"]["recall@1"] == 1.0
        assert not (home / "chroma").exists()  # nothing stored locally
        import chromadb
        from chromadb.config import Settings

        client = chromadb.HttpClient(host="127.0.0.1", port=port, settings=Settings(anonymized_telemetry=False))
        names = [c.name for c in client.list_collections()]
        assert names == [out.details["index"]["name"]]
        # a second client of the shared server reuses the index
        again = RagPipeline()
        again.prepare(_ctx(spec, data, smollm, generator, home))
        assert again.index["documents"].reused
    finally:
        stop(proc, timeout=15)
    assert proc.returncode is not None
