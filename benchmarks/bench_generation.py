"""Generation: our batched, length-sorted, left-padded Generator vs a transformers
`pipeline("text-generation")` called one prompt at a time — the obvious way with the same library.

Same model object, same chat prompts (banking77 test messages, zero-shot), greedy decoding, same
max_new_tokens. Outputs must be identical; tokens/s of both counts the new tokens of each answer
(up to and including the end-of-turn token) the same way for both.

Second comparison: few-shot prompts (4 train demos every prompt shares) with the shared-prefix
KV cache vs the same Generator with the cache turned off: what a few-shot variant costs.
"""

from __future__ import annotations

import time

from .common import comparison, data_dir, llm, read_jsonl, timer

SYSTEM = "Route the customer message of a bank to one intent. Name the intent in a few words."
TARGET = 4.0
PREFIX_TARGET = 1.5  # few-shot prompts are ~3/4 shared demos: prefill is most of the work


def prompts(n: int) -> list[list[dict]]:
    rows = read_jsonl(data_dir() / "banking77" / "test.jsonl")[:n]
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["text"]}] for r in rows]


def fewshot_prompts(n: int) -> list[list[dict]]:
    demos = read_jsonl(data_dir() / "banking77" / "train.jsonl")[:4]
    turns = [t for d in demos for t in ({"role": "user", "content": d["text"]},
                                        {"role": "assistant", "content": d["label"]})]
    return [[p[0], *turns, p[1]] for p in prompts(n)]


def _new_tokens(tok, text: str, max_new: int) -> int:
    """New tokens of one answer, counted from its text: the same rule for both sides."""
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    return min(n + 1, max_new)  # + end of turn when it stopped early


def run(quick: bool) -> dict:
    import torch
    from transformers import pipeline

    from pipelines.generation import Generator

    n, max_new = (16, 16) if quick else (64, 32)
    m = llm()
    msgs = prompts(n)
    gen = Generator(m)  # the defaults the engine uses
    pipe = pipeline("text-generation", model=m.model, tokenizer=m.tokenizer, device=torch.device(m.device))
    greedy = dict(max_new_tokens=max_new, do_sample=False, pad_token_id=m.tokenizer.pad_token_id)

    # warm-up both paths once (first-call allocations, lazy inits), outside the timings
    gen.generate(msgs[:2], 4)
    pipe(msgs[0], max_new_tokens=4, do_sample=False, return_full_text=False)

    t0, c0 = time.perf_counter(), time.process_time()
    ours = gen.generate(msgs, max_new)
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0

    t0, c0 = time.perf_counter(), time.process_time()
    ref = [pipe(p, return_full_text=False, **greedy)[0]["generated_text"].strip() for p in msgs]
    ref_s, ref_cpu = time.perf_counter() - t0, time.process_time() - c0

    fewshot = fewshot_prompts(n)
    with timer() as cached_t:
        cached = gen.generate(fewshot, max_new)
    plain_gen = Generator(m)
    plain_gen.MIN_SHARED_PREFIX = 10**9  # the cache off, everything else the same
    with timer() as plain_t:
        plain = plain_gen.generate(fewshot, max_new)
    same_fewshot = sum(a.text == b.text for a, b in zip(cached, plain))
    shared = gen._shared_prefix(gen.encode(fewshot))

    ours_text = [g.text for g in ours]
    same = sum(a == b for a, b in zip(ours_text, ref))
    tok = m.tokenizer
    ours_tokens = sum(_new_tokens(tok, t, max_new) for t in ours_text)
    ref_tokens = sum(_new_tokens(tok, t, max_new) for t in ref)
    mismatches = [{"i": i, "ours": a, "reference": b} for i, (a, b) in enumerate(zip(ours_text, ref)) if a != b]
    return {
        "comparisons": {
            "generation_tokens_per_s": comparison(
                ours_tokens / ours_s, ref_tokens / ref_s, "tokens/s", TARGET,
                what=f"greedy generation, {n} banking77 prompts, max_new_tokens {max_new}",
                reference_name="transformers pipeline('text-generation'), one prompt at a time",
            ),
            "generation_outputs_identical": comparison(
                same, n, "prompts", 1.0, what="outputs identical to the reference (count of prompts)",
            ),
            "fewshot_prefix_cache_prompts_per_s": comparison(
                n / cached_t["seconds"], n / plain_t["seconds"], "prompts/s", PREFIX_TARGET,
                what=f"4-shot generation, {n} banking77 prompts sharing a {shared}-token prefix",
                reference_name="the same Generator with the shared-prefix cache off",
            ),
            "fewshot_outputs_identical": comparison(
                same_fewshot, n, "prompts", 1.0, what="4-shot outputs identical with and without the cache",
            ),
        },
        "details": {
            "n_prompts": n, "max_new_tokens": max_new, "batch_size": gen.batch_size,
            "ours_seconds": round(ours_s, 3), "reference_seconds": round(ref_s, 3),
            # CPU seconds of this process: steadier than wall time when other work shares the cores
            "ours_cpu_seconds": round(ours_cpu, 3), "reference_cpu_seconds": round(ref_cpu, 3),
            "ours_new_tokens": ours_tokens, "reference_new_tokens": ref_tokens,
            "prompt_tokens_mean": round(sum(g.prompt_tokens for g in ours) / n, 1),
            "identical": same, "mismatches": mismatches[:5],
            "example": {"prompt": msgs[0][-1]["content"], "output": ours_text[0]},
        },
    }
