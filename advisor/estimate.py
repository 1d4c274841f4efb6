"""`advisor estimate`: the cost of every pipeline before running any of them.

A dry run: the tokenizer counts the tokens each pipeline's prompts would have (zero-shot,
few-shot, RAG with k passages, the fine-tuning set); the cost model turns them into setup,
per-request and monthly dollars and memory. No generation, no training, no embeddings.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import cost
from .data import TaskData
from .models import BUNDLED, load_tokenizer, model_shape
from .spec import TaskSpec

PARAMS_BY_NAME = {b.name: b.params for b in BUNDLED.values()}


def _mean_tokens(tok, texts: list[str]) -> float:
    if not texts:
        return 0.0
    return statistics.fmean(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])


def estimate(spec: TaskSpec, data: TaskData, *, n_params: int | None = None) -> dict[str, Any]:
    from pipelines.prompting import build_messages, pick_demos, split_dev

    base = spec.models.candidates[0]
    tok = load_tokenizer(base, spec.models.trust_remote_code)
    n_params = n_params or PARAMS_BY_NAME.get(base) or 0
    hw = cost.get_hardware(spec.hardware.gpu, spec.hardware.usd_per_hour)
    rpm = spec.budget.requests_per_month
    sample = data.eval.examples[:64]
    labels = data.labels

    def prompt_tokens(demos=(), passages=None) -> float:
        msgs = [build_messages(spec, labels, e.input, demos=demos, passages=passages) for e in sample]
        rendered = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
        return _mean_tokens(tok, rendered)

    out_tokens = (
        statistics.fmean(len(tok(lab, add_special_tokens=False)["input_ids"]) + 1 for lab in labels)
        if spec.decoding == "choices" and labels else float(spec.max_new_tokens)
    )
    zero = prompt_tokens()
    train = data.train.examples if data.train else []
    pool, _ = split_dev(train, spec.seed)
    demos = pick_demos(pool, spec.prompting.shots, balanced=spec.type == "classification", seed=spec.seed)
    few = prompt_tokens(demos) if demos else zero
    shape = model_shape(base)
    rows: dict[str, dict] = {}
    common = dict(n_params=n_params, requests_per_month=rpm, hw=hw, output_tokens=out_tokens, **shape)
    emb = BUNDLED.get(spec.models.embedding)
    if spec.type == "classification" and train:
        # no LLM: the embedder reads each input once (the LLM's tokenizer stands in for its own)
        rows["baseline"] = cost.estimate_pipeline_cost(
            kind="baseline", prompt_tokens=_mean_tokens(tok, [e.input for e in sample]),
            train_tokens=_mean_tokens(tok, [e.input for e in train]) * len(train),
            embed_params=emb.params if emb else 0, **{**common, "output_tokens": 0},
        )
    rows["prompting"] = cost.estimate_pipeline_cost(kind="prompting", prompt_tokens=max(zero, few), **common)
    if data.corpus or train:
        if data.corpus:
            chars_per_token = sum(len(d.text) for d in data.corpus) / max(
                1, sum(len(x) for x in tok([d.text for d in data.corpus], add_special_tokens=False)["input_ids"]))
            passage_tokens = spec.rag.chunk_chars / chars_per_token
            rag_prompt = zero + spec.rag.k * (passage_tokens + 6)
            corpus_tokens = sum(len(d.text) for d in data.corpus) / chars_per_token
        else:  # retrieved examples as demonstrations
            per_demo = (few - zero) / max(1, len(demos)) if demos else 30.0
            rag_prompt = zero + spec.rag.k * per_demo
            corpus_tokens = sum(len(e.input) for e in train) / 4
        rows["rag"] = cost.estimate_pipeline_cost(
            kind="rag", prompt_tokens=rag_prompt, corpus_tokens=corpus_tokens,
            embed_params=emb.params if emb else 0, query_tokens=_mean_tokens(tok, [e.input for e in sample]), **common,
        )
    if train:
        pairs = [build_messages(spec, labels, e.input) + [{"role": "assistant", "content": e.expected[0]}] for e in train]
        rendered = [tok.apply_chat_template(m, tokenize=False) for m in pairs]
        per_example = _mean_tokens(tok, rendered)
        epochs = spec.finetune.epochs
        train_tokens = per_example * len(train) * epochs
        if spec.finetune.max_steps:
            train_tokens = min(train_tokens, per_example * spec.finetune.max_steps * spec.finetune.batch_size
                               * spec.finetune.grad_accum)
        for kind in ("finetune", "full_finetune"):
            rows[kind] = cost.estimate_pipeline_cost(
                kind=kind, prompt_tokens=zero, train_tokens=train_tokens, train_seq_len=int(per_example),
                train_batch=spec.finetune.batch_size, **common,
            )
            rows[kind]["train_tokens"] = train_tokens
    return {
        "task": spec.name, "base_model": base, "n_params": n_params,
        "hardware": {"name": hw.name, "usd_per_hour": hw.usd_per_hour, "peak_flops": hw.peak_flops},
        "requests_per_month": rpm, "pipelines": rows,
        "note": "dry run: token counts from the tokenizer; nothing generated or trained",
    }
