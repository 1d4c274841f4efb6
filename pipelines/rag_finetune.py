"""RAG + fine-tune (retrieval-augmented fine-tuning): a LoRA trained on the RAG prompts.

Why: the reader, not retrieval, is RAG's bottleneck on a small model (FIELD-NOTES: squad_rag
recall@4 0.99, yet token F1 0.09-0.22; even the gold passage alone gives 0.12), and a LoRA trained
closed-book never sees passages. Training the adapter on the very prompts RAG builds teaches the
model to read them (calibration script: F1 0.34 vs 0.22 for RAG alone).

* **Same prompts as RAG.** A ``RagPipeline`` is prepared on the same context (same index, reader
  prompt chosen on the same train slice, cached), and every training prompt goes through its own
  ``_retrieve`` and ``_prompt``: for each train question its top-k passages, or for retrieved
  examples its k nearest *other* train items as demonstrations (``exclude_self``: an item never
  sees itself with its answer). The target is the gold answer in the task's format.
* **RAFT distractors.** ``rag.distractor_share`` of the training prompts (documents mode, items
  that name their gold passage) get only passages from other documents, so the adapter also learns
  from context without the answer (Zhang et al. 2024, "RAFT"); the validation slice keeps eval-like
  prompts. Whether it helps is measured on held-out *train* items by ``benchmarks/study_raft.py``;
  see ``DEFAULT_DISTRACTOR_SHARE`` for what is known.
* **Training** is the LoRA pipeline's loop (``FinetunePipeline``, through its ``train_pairs``
  hook), with ``finetune.max_length`` raised to fit the longest RAG prompt: cutting the prompt's
  start would train on prompts the eval never shows.
* **Evaluation** runs RAG's chain (retrieve | prompt | generate | parse) on top of the adapter,
  through the shared generator. The answer extraction is re-chosen on the held-out validation
  slice of the train set with the adapter on (a tuned reader answers with the span itself, which
  the base model's trimming can cut); never on eval items.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Sequence

from advisor.metrics import demo_answer

from .base import PipelineOutput, RunContext, SkipPipeline, Usage
from .finetune import FinetunePipeline, _ModelState
from .rag import RagPipeline
from .rag_index import source_of
from .rag_reader import EXTRACTORS
from .training import split_val

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Example

# Share of training prompts without their gold passage when the task does not set
# rag.distractor_share. 0: every prompt as RAG retrieves it. Measured (benchmarks/study_raft.py on
# squad_rag, 40 held-out *train* questions, 110 to train on, 25 steps, CPU, alone, 2026-11-29):
# share 0 F1 0.341, share 0.2 F1 0.270; difference -0.071 (95 % CI -0.176 to +0.004, paired
# bootstrap p = 0.19) — no evidence that RAFT's distractor-only prompts help this small reader, a
# hint that they hurt; so 0 stays (benchmarks/results/study_raft-squad_rag.json).
DEFAULT_DISTRACTOR_SHARE = 0.0
# passages asked for per training question when drawing distractors: k more than the pipeline's k
# leaves k others even when every top-k hit is a chunk of the gold document
DISTRACTOR_POOL_FACTOR = 2
# tokens per training micro-batch (rows x longest pair) above which it is split: activations grow
# with it, and 8 squad_rag pairs of ~650 tokens would hold several GB in fp32 on the CPU stand-in.
# The loss is normalised by the step's answer tokens, so the split changes float order only. On the
# bundled example (CPU, quiet, 2026-11-29) 2048 instead of 4096 took the run's peak RSS from 5.3 to
# 3.5 GB for 6 % more training time (91.8 vs 86.6 s); the float order moved its F1 0.458 -> 0.485.
MICRO_BATCH_TOKENS = 2048


def distractor_picks(eligible: Sequence[int], share: float, seed: int) -> set[int]:
    """A seeded round(share x n) of the eligible train indices get distractor-only contexts."""
    items = sorted(eligible)
    n = round(share * len(items))
    return set(random.Random(seed).sample(items, n)) if n else set()


def without_gold(row: dict, gold: str, k: int) -> dict:
    """The row's passages with every chunk of the gold document removed, the first k kept."""
    keep = [i for i, cid in enumerate(row.get("doc_ids", [])) if source_of(cid) != gold][:k]
    out = dict(row)
    out["passages"] = [row["passages"][i] for i in keep]
    out["doc_ids"] = [row["doc_ids"][i] for i in keep]
    out["ids"] = [d.id for d in row.get("demos", [])] + out["doc_ids"]
    return out


def training_prompts(rag: RagPipeline, train: Sequence["Example"], share: float, seed: int,
                     held_out: Sequence[int] = ()) -> tuple[list[list[dict]], dict]:
    """The chat prompt of every train item, built by the RAG pipeline's own retriever and reader
    prompt (the item itself excluded from what it retrieves), and a summary of them.

    ``share`` of the items outside ``held_out`` (the validation slice) that name their gold passage
    get distractor-only passages (documents mode)."""
    k = rag.k
    distract = set()
    if rag.uses_docs and share > 0:
        held = set(held_out)
        eligible = [i for i, e in enumerate(train) if e.context_id and i not in held]
        distract = distractor_picks(eligible, share, seed)
    batch = rag._retrieve({"examples": list(train), "exclude_self": True})
    rows = batch["rows"]
    if distract:  # a wider search for those items only: the others keep exactly the eval-time query
        order = sorted(distract)
        wide = rag._retrieve({"examples": [train[i] for i in order], "exclude_self": True,
                              "k": DISTRACTOR_POOL_FACTOR * k})
        for i, row in zip(order, wide["rows"]):
            rows[i] = without_gold(row, train[i].context_id, k)
    prompts = [r["messages"] for r in rag._prompt(batch)["rows"]]
    with_gold = [any(source_of(c) == e.context_id for c in r.get("doc_ids", []))
                 for r, e in zip(rows, train) if e.context_id]
    summary = {
        "n": len(train), "distractor_share": share, "distractor_only": len(distract),
        "gold_in_context": round(sum(with_gold) / len(with_gold), 4) if with_gold else None,
        "self_retrieved": sum(e.id in r["ids"] for r, e in zip(rows, train)),
    }
    return prompts, summary


class RagFinetunePipeline(FinetunePipeline):
    name = "rag_finetune"
    adapter_folder = "adapter-rag"  # beside the closed-book LoRA's "adapter"

    def __init__(self, *, distractor_share: float | None = None, share_prefix: bool = False):
        # No packing by default: the prompts share only their system turn (~35 of ~600 tokens on
        # squad_rag), while a packed row of 8 such pairs needs a dense 4,800 x 4,800 block mask per
        # layer (attention kept for the backward pass: ~0.8 GB a layer in fp32), so rows padded to
        # the longest in their length-grouped batch are far cheaper here.
        super().__init__(share_prefix=share_prefix)
        self.forced_share = distractor_share  # studies and tests; else rag.distractor_share, else the default

    # ------------------------------------------------------------------ prepare = RAG index + train
    def prepare(self, ctx: RunContext) -> None:
        if ctx.llm is None:
            raise SkipPipeline("needs a language model")
        if not ctx.data.train:
            raise SkipPipeline("no train set")
        spec = ctx.spec
        t0 = time.perf_counter()
        self.rag = RagPipeline()
        self.rag.prepare(ctx)  # same index and reader prompt as the RAG stage (both reused when cached)
        rag_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        share = next(s for s in (self.forced_share, spec.rag.distractor_share, DEFAULT_DISTRACTOR_SHARE)
                     if s is not None)
        train = ctx.data.train.examples
        ft = spec.finetune
        _, val_idx = split_val(len(train), ft.val_fraction, ft.seed)
        self.val_examples = [train[i] for i in val_idx]
        prompts, self.prompt_summary = training_prompts(self.rag, train, share, ft.seed, val_idx)
        answers = [demo_answer(e.expected[0], spec.format_rules()) for e in train]
        self._pairs = (prompts, answers)
        longest = self._longest_pair(ctx, prompts, answers)
        limit = self.rag.ctx.generator.max_context if self.rag.ctx.generator else longest
        max_length = max(ft.max_length, min(longest, limit))
        prompts_s = time.perf_counter() - t0

        # the LoRA loop, on these pairs; one process (finetune.devices > 1 launches the plain LoRA).
        # Long prompts: smaller micro-batches, more accumulation, the same optimizer steps and batch.
        micro, accum = ft.batch_size, ft.grad_accum
        while micro % 2 == 0 and micro * max_length > MICRO_BATCH_TOKENS:
            micro, accum = micro // 2, accum * 2
        tuned = ft.model_copy(update={"max_length": max_length, "devices": 1, "batch_size": micro, "grad_accum": accum})
        super().prepare(RunContext(spec.model_copy(update={"finetune": tuned}), ctx.data, ctx.llm, ctx.generator,
                                   ctx.progress, ctx.run_dir, ctx.cache_dir))
        self.timings = {"rag_prepare": round(rag_s, 3), "train_prompts": round(prompts_s, 3), **self.timings}
        self.details["train_prompts"] = {**self.prompt_summary, "max_length": max_length,
                                         "longest_pair_tokens": longest}
        if max_length != ft.max_length:
            self.notes.append(f"finetune.max_length raised from {ft.max_length} to {max_length} tokens to hold the "
                              f"longest RAG training prompt (cutting its start would train on prompts eval never shows)")
        if micro != ft.batch_size:
            self.notes.append(f"micro-batches of {micro} with {accum} accumulation steps (finetune.batch_size "
                              f"{ft.batch_size} x grad_accum {ft.grad_accum}): the RAG prompts are long, the batch "
                              f"per optimizer step is the same")
        if ft.devices > 1:
            self.notes.append(f"trained in one process: finetune.devices {ft.devices} applies to the plain LoRA only")

    def train_pairs(self, ctx: RunContext) -> tuple[list[list[dict]], list[str]]:
        return self._pairs

    @staticmethod
    def _longest_pair(ctx: RunContext, prompts: list[list[dict]], answers: list[str]) -> int:
        """Tokens of the longest prompt + answer + end of turn, as training.encode_pairs counts them."""
        tok = ctx.llm.tokenizer
        texts = [tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
        p = tok(texts, add_special_tokens=False)["input_ids"]
        a = tok(list(answers), add_special_tokens=False)["input_ids"]
        return max((len(x) + len(y) + 1 for x, y in zip(p, a)), default=0)

    # ------------------------------------------------------------------ predict = RAG chain on the adapter
    def predict(self, examples: list["Example"]) -> PipelineOutput:
        from peft import PeftModel

        model = self.ctx.llm.model
        state = _ModelState.capture(model)
        t0 = time.perf_counter()
        peft_model = PeftModel.from_pretrained(model, str(self.adapter_dir))
        peft_model.eval()
        load_s = time.perf_counter() - t0
        try:  # the adapter layers sit inside the shared model: RAG's generator runs them
            t0 = time.perf_counter()
            extractor_why = self._choose_extractor()
            choose_s = time.perf_counter() - t0
            out = self.rag.predict(examples)
        finally:
            state.restore(peft_model, model)
        u = out.usage  # RAG's per-request figures on top of the training ones
        usage = Usage.from_dict({**self.usage, "distractor_share": self.prompt_summary["distractor_share"],
                                 "index_chunks": u.extra.get("index_chunks")})
        usage.prompt_tokens_mean, usage.output_tokens_mean = u.prompt_tokens_mean, u.output_tokens_mean
        usage.query_tokens_mean, usage.corpus_tokens = u.query_tokens_mean, u.corpus_tokens
        rag_t = {k: v for k, v in out.timings.items() if k in ("index", "select_reader", "retrieve", "chain")}
        timings = {**self.timings, **rag_t, "load_adapter": round(load_s, 3), "choose_extractor": round(choose_s, 3),
                   "predict": out.timings["predict"]}
        rag_d = {k: out.details[k] for k in ("mode", "k", "embedding", "embedding_backend", "store", "index",
                                             "indexes", "retrieval", "prompt_variant", "variant_reason", "chunking")}
        details = {**self.details, **rag_d, "extractor": self.rag.extractor, "extractor_reason": extractor_why,
                   "extractor_dev_scores": self.extractor_scores}
        return PipelineOutput(out.predictions, timings=timings, usage=usage, details=details,
                              notes=[*self.notes, *out.notes])

    def _choose_extractor(self) -> str:
        """Answer extraction chosen with the adapter on, on the held-out validation slice of train."""
        from advisor.metrics import choice_metric, score

        self.extractor_scores: dict[str, float] = {}
        spec, rag = self.ctx.spec, self.rag
        if spec.decoding == "choices" or not rag.uses_docs:
            return "label scoring or retrieved examples: the output is used as it is"
        val = self.val_examples
        if not val:
            return f"no validation slice: kept RAG's ({rag.extractor})"
        batch = rag._generate(rag._prompt(rag._retrieve({"examples": val, "exclude_self": True,
                                                         "desc": "RAG + fine-tune: choosing the answer extraction"})))
        texts = [p.output for p in batch["predictions"]]
        for name, fn in EXTRACTORS.items():
            s = score(spec.type, [fn(t, e.input) for t, e in zip(texts, val)], [e.expected for e in val],
                      rag.labels, rules=spec.format_rules())
            self.extractor_scores[name] = round(s.metrics[choice_metric(s, spec.metric, spec.type)], 4)
        hib = spec.higher_is_better
        # ties go to "raw" (EXTRACTORS' first): a tuned reader's output needs no trimming
        best = max(self.extractor_scores, key=lambda n: self.extractor_scores[n] if hib else -self.extractor_scores[n])
        rag.extractor = best
        return f"best {spec.metric} on {len(val)} held-out train items with the adapter on"
