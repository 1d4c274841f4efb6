"""`advisor estimate`: the cost of every pipeline, for every candidate, before running any of them.

A dry run: a tokenizer counts the tokens each pipeline's prompts would have (zero-shot, few-shot,
RAG with k passages, the fine-tuning set); the cost model turns them into setup, per-request and
monthly dollars and memory. No generation, no training, no embeddings, no weights: a model's size
comes from model_facts (a config.json counted on the meta device, the shipped table, or `params:`),
so a team can price a model it has not downloaded. Where the base model's pretraining token count
is published, the fine-tune is set beside the cost of pretraining it (6·N·D).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from . import catalogue, cost
from .catalogue import TokenCounts
from .data import TaskData
from .errors import AdvisorError
from .model_facts import ModelFacts, model_facts
from .models import BUNDLED
from .spec import BUNDLED_LLM, TaskSpec

PARAMS_BY_NAME = {b.name: b.params for b in BUNDLED.values()}
APPROX_TOKENIZER = BUNDLED_LLM


def _mean_tokens(tok, texts: list[str]) -> float:
    if not texts:
        return 0.0
    return statistics.fmean(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"])


def _tokenizer(name: str, facts: ModelFacts | None, explicit: str | None, trust_remote_code: bool):
    """(tokenizer, note): the model's own when a local copy exists, else the bundled one as a stated
    approximation (token counts of similar BPE vocabularies differ by ~10-30%)."""
    from transformers import AutoTokenizer

    from .models import load_tokenizer

    if name in BUNDLED:
        return load_tokenizer(name), f"{name}'s own tokenizer"
    for src in (explicit, facts.config_dir if facts else None):
        if not src:
            continue
        p = Path(src).expanduser()
        if p.exists() and not any((p / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
            continue
        try:
            return AutoTokenizer.from_pretrained(str(p) if p.exists() else src, trust_remote_code=trust_remote_code), \
                f"the model's own tokenizer ({src})"
        except (OSError, ValueError):
            continue
    return load_tokenizer(APPROX_TOKENIZER), (
        f"approximation: {name}'s tokenizer is not available locally, so tokens are counted with "
        f"{APPROX_TOKENIZER}'s tokenizer (real counts differ by tens of percent)")


def _counts(spec: TaskSpec, data: TaskData, tok) -> TokenCounts:
    from pipelines.prompts import build_messages, pick_demos, split_dev

    sample = data.eval.examples[:64]
    labels = data.labels

    def prompt_tokens(demos=(), passages=None) -> float:
        msgs = [build_messages(spec, labels, e.input, demos=demos, passages=passages) for e in sample]
        if getattr(tok, "chat_template", None):
            rendered = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in msgs]
        else:  # a base model without a template: the messages' text
            rendered = ["\n\n".join(x["content"] for x in m) for m in msgs]
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
    rag_prompt, corpus_tokens = None, 0.0
    if data.corpus:
        chars_per_token = sum(len(d.text) for d in data.corpus) / max(
            1, sum(len(x) for x in tok([d.text for d in data.corpus], add_special_tokens=False)["input_ids"]))
        rag_prompt = zero + spec.rag.k * (spec.rag.chunk_chars / chars_per_token + 6)
        corpus_tokens = sum(len(d.text) for d in data.corpus) / chars_per_token
    elif train:  # retrieved examples as demonstrations
        per_demo = (few - zero) / max(1, len(demos)) if demos else 30.0
        rag_prompt = zero + spec.rag.k * per_demo
        corpus_tokens = sum(len(e.input) for e in train) / 4
    per_example = train_tokens = 0.0
    if train:
        pairs = [build_messages(spec, labels, e.input) + [{"role": "assistant", "content": e.expected[0]}] for e in train]
        if getattr(tok, "chat_template", None):
            rendered = [tok.apply_chat_template(m, tokenize=False) for m in pairs]
        else:
            rendered = ["\n\n".join(x["content"] for x in m) for m in pairs]
        per_example = _mean_tokens(tok, rendered)
        train_tokens = per_example * len(train) * spec.finetune.epochs
        if spec.finetune.max_steps:
            train_tokens = min(train_tokens, per_example * spec.finetune.max_steps * spec.finetune.batch_size
                               * spec.finetune.grad_accum)
    return TokenCounts(
        zero=zero, few=few, output=out_tokens, input_only=_mean_tokens(tok, [e.input for e in sample]),
        train_input=_mean_tokens(tok, [e.input for e in train]) * len(train), rag_prompt=rag_prompt,
        corpus_tokens=corpus_tokens, train_per_example=per_example, train_tokens=train_tokens,
    )


def _pretraining(facts: ModelFacts | None, hw: cost.Hardware, finetune: dict | None) -> dict | None:
    """6·N·D of the base model beside the LoRA's setup cost (None when D is not published)."""
    if facts is None or not facts.pretrain_tokens:
        return None
    pre = cost.pretraining_cost(facts.active_params, facts.pretrain_tokens, hw)
    pre["tokens_source"] = facts.tokens_source
    if finetune:
        pre["finetune_usd"] = finetune["setup_usd"]
        pre["ratio"] = cost.pretraining_ratio(finetune["setup_usd"], pre["usd"])
    return pre


def _local_rows(spec: TaskSpec, data: TaskData, facts: ModelFacts, c: TokenCounts, hw: cost.Hardware) -> dict:
    rpm = spec.budget.requests_per_month
    train = data.train.examples if data.train else []
    shape = {"n_layers": facts.n_layers or None, "hidden": facts.hidden or None}
    common = dict(n_params=facts.active_params, memory_params=facts.params, requests_per_month=rpm, hw=hw,
                  output_tokens=c.output, **shape)
    emb = BUNDLED.get(spec.models.embedding)
    rows: dict[str, dict] = {}
    # every pipeline of the catalogue that applies to this task's data (a situation without results:
    # a gated step is estimated, since the dry run cannot know whether the cheaper ones will do)
    sit = catalogue.Situation(spec, data, finetune_base="local")
    for e in catalogue.entries():
        why = e.applies(sit) if not e.gated else e.missing_data(bool(train), bool(data.corpus))
        kw = e.estimate_inputs(c, spec) if why is None else None
        if kw is None:
            continue
        rows[e.name] = cost.estimate_pipeline_cost(kind=e.cost_kind, embed_params=emb.params if emb else 0,
                                                   baseline_hw=cost.baseline_hardware(spec.baseline.device, hw),
                                                   **{**common, **kw})
        if "train_tokens" in kw and e.gated:
            rows[e.name]["train_tokens"] = kw["train_tokens"]
        rows[e.name]["title"] = catalogue.title(e.name, kw.get("method"))
    full = catalogue.finetune_estimate(c, spec, "full") if train else None
    if full and spec.finetune.methods[0] != "full":  # the contrast: every weight trainable (6·N·D, more memory)
        rows["full_finetune"] = cost.estimate_pipeline_cost(kind="full_finetune", **{**common, **full})
        rows["full_finetune"]["train_tokens"] = full["train_tokens"]
        rows["full_finetune"]["title"] = "Full fine-tune (contrast)"
    return rows


def endpoint_prices(spec: TaskSpec, name: str) -> tuple[float, float, str] | None:
    """($/M in, $/M out, where from) for an endpoint candidate: the task's, else the dated table."""
    ep = spec.models.endpoints[name]
    if ep.price_in is not None and ep.price_out is not None:
        return ep.price_in, ep.price_out, "prices from the task file"
    known = cost.hosted_price(ep.model or name)
    if known:
        return known[0], known[1], f"advisor's hosted price table, {cost.HOSTED_PRICES_DATE}"
    return None


def endpoint_rows(spec: TaskSpec, name: str, facts: ModelFacts | None, prompt: float, rag_prompt: float | None,
                  output: float, hw: cost.Hardware) -> dict:
    """Prompting (and RAG) on an endpoint: token prices, or, for a served open model without a
    price, its size priced on the task's card (the team runs the server)."""
    rpm = spec.budget.requests_per_month
    prices = endpoint_prices(spec, name)
    rows = {}
    for kind, p in (("prompting", prompt), ("rag", rag_prompt)):
        if p is None:
            continue
        if prices:
            rows[kind] = cost.endpoint_pipeline_cost(kind=kind, prompt_tokens=p, output_tokens=output, price_in=prices[0],
                                                     price_out=prices[1], requests_per_month=rpm, price_source=prices[2])
        elif facts is not None:
            rows[kind] = cost.estimate_pipeline_cost(kind=kind, n_params=facts.active_params, memory_params=facts.params,
                                                     prompt_tokens=p, output_tokens=output, requests_per_month=rpm, hw=hw)
            rows[kind]["assumptions"].append(
                f"endpoint: no token price given; {name} ({facts.params / 1e9:.1f}B) priced as served on {hw.name}")
        else:
            rows[kind] = cost.endpoint_pipeline_cost(kind=kind, prompt_tokens=p, output_tokens=output, price_in=0.0,
                                                     price_out=0.0, requests_per_month=rpm,
                                                     price_source="no price known: set price_in and price_out")
    return rows


def _facts_or_none(spec: TaskSpec, name: str) -> ModelFacts | None:
    ep = spec.models.endpoints.get(name)
    given = spec.models.facts.get(name)
    try:
        return model_facts(ep.model or name if ep else name, given, spec.models.trust_remote_code)
    except AdvisorError:
        if ep is None:
            raise
        return None


def estimate_candidate(spec: TaskSpec, data: TaskData, name: str, hw: cost.Hardware, _tok_cache: dict) -> dict:
    ep = spec.models.endpoints.get(name)
    facts = _facts_or_none(spec, name)
    tok, tok_note = _tokenizer(name, facts, ep.tokenizer if ep else None, spec.models.trust_remote_code)
    key = getattr(tok, "name_or_path", id(tok))
    if key not in _tok_cache:
        _tok_cache[key] = _counts(spec, data, tok)
    c = _tok_cache[key]
    if ep is not None:
        rows = endpoint_rows(spec, name, facts, max(c.zero, c.few), c.rag_prompt, c.output, hw)
        kind = "endpoint"
    else:
        rows = _local_rows(spec, data, facts, c, hw)
        kind = "local"
    return {
        "model": name, "kind": kind, "n_params": facts.params if facts else None,
        "active_params": facts.active_params if facts else None, "facts": facts.to_dict() if facts else None,
        "tokenizer": tok_note, "pipelines": rows,
        "pretraining": _pretraining(facts, hw, rows.get("finetune")) if ep is None else None,
        "notes": (["fine-tuning stays local: an endpoint candidate is prompted (and given RAG), not fine-tuned"]
                  if ep is not None else []),
    }


def estimate(spec: TaskSpec, data: TaskData, *, n_params: int | None = None) -> dict[str, Any]:
    hw = cost.get_hardware(spec.hardware.gpu, spec.hardware.usd_per_hour)
    cache: dict = {}
    cands = [estimate_candidate(spec, data, name, hw, cache) for name in spec.models.candidates]
    first = cands[0]
    return {
        "task": spec.name, "base_model": first["model"], "n_params": n_params or first["n_params"] or 0,
        "hardware": {"name": hw.name, "usd_per_hour": hw.usd_per_hour, "peak_flops": hw.peak_flops,
                     "train_mfu": hw.train_mfu},
        "requests_per_month": spec.budget.requests_per_month, "pipelines": first["pipelines"],
        "pretraining": first["pretraining"], "tokenizer": first["tokenizer"], "candidates": cands,
        "note": "dry run: token counts from a tokenizer; nothing generated or trained; no weights loaded",
    }
