"""Prompting: zero-shot and few-shot (prompts from pipelines/prompts.py, the shared builder).

Which variant (zero- or few-shot) is used is chosen on a held-out slice of the *train* set, never on
the eval set, because prompt choices move a 135M model by ~20 points and choosing on the test
set would flatter prompting.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

from .base import PipelineOutput, RunContext, Usage
from .generation import answer
from .prompts import build_messages, pick_demos, split_dev

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Example

class PromptingPipeline:
    name = "prompting"

    def __init__(self, *, variant: str | None = None):
        self.forced_variant = variant  # "zero-shot" | "few-shot" | None (choose on dev slice)

    def prepare(self, ctx: RunContext) -> None:
        self.ctx = ctx
        spec, data = ctx.spec, ctx.data
        self.labels = data.labels
        train = data.train.examples if data.train else []
        pool, dev = split_dev(train, spec.seed)
        self.demos = pick_demos(pool, spec.prompting.shots, balanced=spec.type == "classification", seed=spec.seed)
        self.variants = {"zero-shot": []}
        if self.demos:
            self.variants[f"{len(self.demos)}-shot"] = self.demos
        self.dev_scores: dict[str, float] = {}
        self.race = None
        t0 = time.perf_counter()
        if self.forced_variant:
            self.variant = "zero-shot" if self.forced_variant == "zero-shot" else list(self.variants)[-1]
            self.why = "forced"
        elif len(self.variants) == 1:
            self.variant, self.why = "zero-shot", "no train set for demonstrations" if not train else "shots: 0"
        elif not dev:
            self.variant, self.why = list(self.variants)[-1], "train set too small for a dev slice; using few-shot"
        else:
            self._race(dev)
        self.select_seconds = time.perf_counter() - t0

    def _race(self, dev: list["Example"]) -> None:
        """Zero- vs few-shot on the dev slice, raced and cached (pipelines/choice.py)."""
        from advisor.metrics import choice_metric, score

        from .choice import PER_ITEM_METRICS, choose, item_scores, model_identity

        spec, labels = self.ctx.spec, self.labels
        constrained = spec.decoding == "choices"

        def run(name: str, idx: list[int]) -> dict[str, list[float]]:
            items = [dev[i] for i in idx]
            preds = self._run(items, self.variants[name], desc=f"{self.name}: choosing variant ({name}, dev)")
            s = score(spec.type, [p.output for p in preds], [e.expected for e in items], labels, constrained=constrained,
                      rules=spec.format_rules())
            return {name: item_scores(s, choice_metric(s, spec.metric, spec.type))}

        inputs = {
            "prompts": {name: [build_messages(spec, labels, e.input, demos=demos) for e in dev]
                        for name, demos in self.variants.items()},
            "expected": [list(e.expected) for e in dev], "labels": labels, "type": spec.type, "metric": spec.metric,
            "decoding": spec.decoding, "max_new_tokens": spec.max_new_tokens,
            **({"format": spec.section("format")} if spec.format else {}),
        }
        res = choose(self.name, model_identity(self.ctx.generator), inputs, run, list(self.variants),
                     len(dev), prefer=lambda v: v == "zero-shot", racing=spec.metric in PER_ITEM_METRICS, home=self.ctx.cache_dir)
        self.race = res
        self.dev_scores = res.scores
        self.variant = res.winner
        self.why = f"best on {len(dev)} held-out train items"
        if res.reused:
            self.why += " (choice reused: same model, prompts and dev items as an earlier run)"
        elif res.generated < res.full:
            self.why += f" (raced: {res.generated} of {res.full} dev generations)"

    def _run(self, examples: Sequence["Example"], demos, desc: str):
        spec = self.ctx.spec
        prompts = [build_messages(spec, self.labels, e.input, demos=demos) for e in examples]
        return answer(
            self.ctx.generator, prompts, [e.id for e in examples], decoding=spec.decoding,
            labels=self.labels, max_new_tokens=spec.max_new_tokens, desc=desc,
        )

    def predict(self, examples: list["Example"]) -> PipelineOutput:
        t0 = time.perf_counter()
        preds = self._run(examples, self.variants[self.variant], desc=f"{self.name} ({self.variant})")
        secs = time.perf_counter() - t0
        n = max(1, len(preds))
        return PipelineOutput(
            preds,
            timings={"select_variant": round(self.select_seconds, 3), "predict": round(secs, 3)},
            usage=Usage(prompt_tokens_mean=sum(p.prompt_tokens for p in preds) / n,
                        output_tokens_mean=sum(p.output_tokens for p in preds) / n),
            details={
                "variant": self.variant, "variant_reason": self.why, "dev_scores": self.dev_scores,
                "variant_race": self.race.to_dict() if self.race else None,
                "shots": len(self.variants[self.variant]),
                "demo_ids": [d.id for d in self.variants[self.variant]],
            },
        )
