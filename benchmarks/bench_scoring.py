"""Classification: label-likelihood scoring ("choices") vs free generation + label extraction.

banking77 (20 intents), zero-shot prompt with the label list (the prompting pipeline's prompt),
the same shared Generator for both: `score_choices` ranks every label by log-likelihood with the
prompt's KV cache (and the prefix all prompts share) reused across labels; the reference
generates up to the task's max_new_tokens and extracts a label leniently (advisor.metrics).
Speed in items/s and accuracy on the same N test items; sentiment_mr (2 labels) shows the
other end: the cost of scoring grows with the labels' total tokens, generation's does not.
"""

from __future__ import annotations

import time

from .common import comparison, llm, load_task


def _compare(task: str, n: int) -> dict:
    """Label scoring vs generation + extraction on the first n test items of a benchmark task."""
    from advisor.metrics import score
    from pipelines.generation import Generator, answer
    from pipelines.prompts import build_messages

    spec, data = load_task(task)
    labels = data.labels
    items = data.eval.examples[:n]
    prompts = [build_messages(spec, labels, e.input) for e in items]
    ids = [e.id for e in items]
    gold = [e.expected for e in items]
    gen = Generator(llm())
    new_tokens = spec.max_new_tokens

    # warm-up both paths on two items, outside the timings
    answer(gen, prompts[:2], ids[:2], decoding="choices", labels=labels, max_new_tokens=new_tokens, desc="")
    answer(gen, prompts[:2], ids[:2], decoding="generate", labels=labels, max_new_tokens=new_tokens, desc="")

    t0, c0 = time.perf_counter(), time.process_time()
    ours = answer(gen, prompts, ids, decoding="choices", labels=labels, max_new_tokens=new_tokens, desc="")
    ours_s, ours_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    ref = answer(gen, prompts, ids, decoding="generate", labels=labels, max_new_tokens=new_tokens, desc="")
    ref_s, ref_cpu = time.perf_counter() - t0, time.process_time() - c0

    s_ours = score("classification", [p.output for p in ours], gold, labels, constrained=True)
    s_ref = score("classification", [p.output for p in ref], gold, labels, constrained=False)
    return {
        "task": task, "n": n, "labels": len(labels), "max_new_tokens": new_tokens,
        "ours_seconds": round(ours_s, 3), "reference_seconds": round(ref_s, 3),
        # CPU seconds of this process: steadier than wall time when other work shares the cores
        "ours_cpu_seconds": round(ours_cpu, 3), "reference_cpu_seconds": round(ref_cpu, 3),
        "ours_accuracy": round(s_ours.metrics["accuracy"], 4), "reference_accuracy": round(s_ref.metrics["accuracy"], 4),
        "reference_unparsable_rate": round(s_ref.unparsed_rate or 0.0, 4),
        "ours_macro_f1": round(s_ours.metrics["macro_f1"], 4), "reference_macro_f1": round(s_ref.metrics["macro_f1"], 4),
        "prompt_tokens_mean": round(sum(p.prompt_tokens for p in ours) / n, 1),
        "reference_output_example": ref[0].output,
    }


def run(quick: bool) -> dict:
    b77 = _compare("banking77", 24 if quick else 80)
    mr = _compare("sentiment_mr", 16 if quick else 60)
    ref_name = "greedy generation (max_new_tokens {}) + label extraction"
    comps = {}
    for key, r in (("banking77", b77), ("sentiment_mr", mr)):
        comps[f"scoring_items_per_s_{key}"] = comparison(
            r["n"] / r["ours_seconds"], r["n"] / r["reference_seconds"], "items/s", 1.0,
            what=f"{key} zero-shot, {r['n']} items, {r['labels']} labels",
            reference_name=ref_name.format(r["max_new_tokens"]),
        )
        comps[f"scoring_accuracy_{key}"] = comparison(
            r["ours_accuracy"], r["reference_accuracy"], "accuracy", 1.0,
            what=f"{key}: accuracy on the same items (target: not worse)", reference_name="generation + extraction",
        )
    return {"comparisons": comps, "details": {"banking77": b77, "sentiment_mr": mr}}
