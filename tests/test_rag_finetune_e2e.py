"""RAG + fine-tune end to end through `advisor assess`: the real SmolLM2, real MiniLM, real Chroma,
a real LoRA trained for a few steps on the RAG prompts, then evaluated through RAG's chain on the
adapter. Checked against the RAG stage of the same run (independent values): the eval prompts
and retrieved passages are RAG's own, the training prompts are longer than the closed-book
LoRA's, and the reports show the stage."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e

FACTS = [
    ("zorblat", "Zorblat office", "The Zorblat office's door code is 4417. Its lights switch off at 8 pm."),
    ("vantrell", "Vantrell mascot", "The Vantrell company's mascot is a walrus named Gusbert."),
    ("plimsoll", "Plimsoll Labs parking", "Visitors to Plimsoll Labs park in lot Q7, behind the cafeteria."),
    ("canteen", "Canteen", "The canteen serves soup on Mondays and fish on Fridays."),
    ("quimby", "Quimby lab", "The Quimby lab closes at 9 pm on Fridays and is run by Dr Okafor."),
    ("wifi", "Guest Wi-Fi", "The guest Wi-Fi password is tangerine-42."),
]
TRAIN = [
    ("What is the door code of the Zorblat office?", "4417", "zorblat"),
    ("When do the Zorblat office lights switch off?", "8 pm", "zorblat"),
    ("What animal is the Vantrell mascot?", "a walrus", "vantrell"),
    ("What is the Vantrell mascot called?", "Gusbert", "vantrell"),
    ("Where is lot Q7?", "behind the cafeteria", "plimsoll"),
    ("What does the canteen serve on Mondays?", "soup", "canteen"),
    ("What does the canteen serve on Fridays?", "fish", "canteen"),
    ("Who runs the Quimby lab?", "Dr Okafor", "quimby"),
    ("When does the Quimby lab close on Fridays?", "9 pm", "quimby"),
    ("What is the guest Wi-Fi password?", "tangerine-42", "wifi"),
    ("Which code is needed for the Zorblat office?", "4417", "zorblat"),
    ("Who is Gusbert?", "the Vantrell company's mascot", "vantrell"),
    ("Where do visitors to Plimsoll Labs park?", "lot Q7", "plimsoll"),
    ("Which day does the canteen serve fish?", "Fridays", "canteen"),
    ("Which lab closes at 9 pm on Fridays?", "The Quimby lab", "quimby"),
    ("Which Wi-Fi uses the password tangerine-42?", "The guest Wi-Fi", "wifi"),
]
EVAL = [
    ("Which code opens the Zorblat office door?", "4417", "zorblat"),
    ("In which lot do visitors to Plimsoll Labs park?", "lot Q7", "plimsoll"),
    ("What is the password of the guest Wi-Fi?", "tangerine-42", "wifi"),
]


def _rows(items, prefix):
    return "".join(json.dumps({"id": f"{prefix}{i}", "question": q, "answer": [a], "ctx": c}) + "\n"
                   for i, (q, a, c) in enumerate(items))


@pytest.fixture
def task(tmp_path):
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps({"id": i, "title": t, "text": x}) + "\n"
                                                   for i, t, x in FACTS))
    (tmp_path / "train.jsonl").write_text(_rows(TRAIN, "t"))
    (tmp_path / "eval.jsonl").write_text(_rows(EVAL, "e"))
    (tmp_path / "task.yaml").write_text("""name: made-up-facts-ft
type: qa
instructions: Answer the question about the company.
data:
  eval: eval.jsonl
  train: train.jsonl
  corpus: corpus.jsonl
  fields: {id: id, input: question, expected: answer, context_id: ctx}
target: {metric: token_f1, min: 0.9}
prompting: {shots: 0, max_new_tokens: 12}
rag: {mode: documents, k: 2, distractor_share: 0.25}
finetune: {mode: always, cpu_max_steps: 3, batch_size: 4, val_fraction: 0}
""")
    return tmp_path / "task.yaml"


def _preds(run, name):
    return [json.loads(line) for line in (run / "predictions" / f"{name}.jsonl").read_text().splitlines()]


def test_rag_finetune_through_assess(task, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "advisor.cli", "assess", str(task), "--out", str(run), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    pipes = report["pipelines"]
    rf, rag, ft = pipes["rag_finetune"], pipes["rag"], pipes["finetune"]
    assert rf["status"] == "ok", rf
    assert rag["status"] == "ok" and ft["status"] == "ok"
    assert rf["n"] == 3 and 0.0 <= rf["score"] <= 1.0

    # evaluated through RAG's chain: the same passages retrieved for every item, the same prompts
    assert [p["retrieved"] for p in _preds(run, "rag_finetune")] == [p["retrieved"] for p in _preds(run, "rag")]
    u, ur, uf = rf["usage"], rag["usage"], ft["usage"]
    assert u["prompt_tokens_mean"] == ur["prompt_tokens_mean"]
    assert (u["query_tokens_mean"], u["corpus_tokens"]) == (ur["query_tokens_mean"], ur["corpus_tokens"])
    assert rf["details"]["prompt_variant"] == rag["details"]["prompt_variant"]
    # trained on those longer prompts, with the same LoRA (same trainable parameters)
    assert u["trainable_params"] == uf["trainable_params"] > 0
    assert u["train_seq_len"] > uf["train_seq_len"] + 30  # two passages in every training prompt
    assert u["steps"] == 3 and u["train_seconds"] > 0 and u["train_tokens_total"] > uf["train_tokens_total"]
    tp = rf["details"]["train_prompts"]
    assert tp["n"] == len(TRAIN) and tp["self_retrieved"] == 0
    assert tp["distractor_only"] == round(0.25 * len(TRAIN))  # no validation slice (val_fraction 0)
    assert (run / "adapter-rag" / "adapter_config.json").exists() and (run / "adapter" / "adapter_config.json").exists()

    # priced as training on the RAG prompts + RAG's serving
    c = rf["cost"]
    assert c["kind"] == "rag_finetune" and c["setup_usd"] > 0
    assert c["train_flops"] == pytest.approx(4 * u["model_shape"]["n_params"] * u["train_tokens_total"], rel=1e-9)
    assert c["prompt_tokens"] == ur["prompt_tokens_mean"]

    # every report shows it
    assert "RAG + fine-tune" in (run / "report.md").read_text()
    assert "RAG + fine-tune" in (run / "report.html").read_text()
    assert "rag_finetune" in report["recommendation"]["verdicts"]
