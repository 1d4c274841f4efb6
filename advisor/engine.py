"""Orchestration: task -> base-model selection -> a stage per catalogue pipeline, simplest first -> report.

Each stage's result is stored as soon as it finishes (see stages.py), so an interrupted run
loses nothing already computed. Heavy libraries load only when a stage has to be computed:
a rerun whose stages are all cached never imports torch.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import __version__, catalogue, cost, decide, family, metrics, run_folder, stats
from .data import Example, TaskData, load_task_data
from .environment import environment, redact
from .errors import AdvisorError, Interrupted
from .spec import TaskSpec
from .atomic import atomic_write_text
from .stages import StageStore, previous_runs, stage_key
from .usage import Usage

SCHEMA_VERSION = 1

Progress = Callable[[str, int, "int | None"], None]


def _no_progress(task: str, done: int, total: int | None) -> None:
    return None


def load_pipeline(name: str, **kwargs: Any):
    module, cls = catalogue.entry(name).factory.split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


@dataclass
class Assessment:
    spec: TaskSpec
    out_dir: Path | None  # None: a new runs/<task>-<time> folder under runs_root, made by validate()
    finetune_mode: str | None = None  # CLI override of spec.finetune.mode
    fresh: bool = False
    progress: Progress = _no_progress
    log: Callable[[str], None] = lambda msg: None
    runs_root: Path | None = None
    data: TaskData | None = None
    results: dict[str, dict] = field(default_factory=dict)
    evaluation_cost: dict[str, Any] = field(default_factory=dict)  # the judge's, not a pipeline's
    _llms: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None  # chosen by select_base_model (an endpoint or a local model)
    _scorer: Callable | None = None
    _embedder: Any = None
    # a family's members (the fine-tune's finetune.methods): each one's stage result; results[name] is the chosen
    method_results: dict[str, dict] = field(default_factory=dict)

    # ------------------------------------------------------------------ set-up
    def validate(self) -> None:
        """Everything that can be known wrong before work starts: data, models, run folder."""
        from . import models

        if self.finetune_mode:
            self.spec.finetune.mode = self.finetune_mode  # type: ignore[assignment]
        self.data = load_task_data(self.spec)
        for name in self.spec.models.candidates:
            if self.spec.models.is_endpoint(name):
                self.llm(name)[1].client.check()  # reachable, key accepted, model known: before any work
            else:
                models.check_available(name, "llm")
        if self._needs_embedder():
            models.check_available(self.spec.models.embedding, "embedding")
        if metrics.is_custom(self.spec.metric):
            self._scorer = metrics.load_custom_scorer(
                self.spec.metric, self._task_dir(), where=f"{self.spec.source or 'task'}: field 'target.metric'")
        if self.spec.judge:
            models.check_available(self.spec.judge.model, "llm")
        run_folder.check_home(models.advisor_home())
        self.out_dir = run_folder.claim_run_dir(self.out_dir, self.spec.name, self.runs_root or Path("runs"))

    def _task_dir(self) -> Path:
        return self.spec.source.parent if self.spec.source else Path.cwd()

    def _needs_embedder(self) -> bool:
        d = self.data
        return bool(d and (d.corpus or d.train)) or self.spec.metric == "semantic_similarity"

    def llm(self, name: str):
        """(model, generator) for a candidate; an endpoint candidate gets an endpoint-backed generator."""
        if name not in self._llms and self.spec.models.is_endpoint(name):
            self._llms[name] = self._endpoint(name)
        if name not in self._llms:
            from pipelines.generation import Generator

            from . import models

            self.progress(f"loading {name}", 0, None)
            loaded = models.load_llm(
                name, progress=lambda msg, frac: self.progress(msg, 0, None),
                trust_remote_code=self.spec.models.trust_remote_code,
            )
            self._llms[name] = (loaded, Generator(loaded, progress=self.progress))
        return self._llms[name]

    def _endpoint(self, name: str):
        from pipelines.endpoint import EndpointClient, EndpointGenerator

        from .models import advisor_home

        ep = self.spec.models.endpoints[name]
        tok = None
        if ep.tokenizer and self.spec.decoding == "choices":
            from .models import load_tokenizer

            tok = load_tokenizer(ep.tokenizer, self.spec.models.trust_remote_code)
        gen = EndpointGenerator(EndpointClient(name, ep, advisor_home()), choices=ep.choices, progress=self.progress,
                                tokenizer=tok)
        facts = self._endpoint_facts(name)
        if facts is not None:
            gen.llm.n_params, gen.llm.n_layers, gen.llm.hidden = facts.params, facts.n_layers, facts.hidden
        return gen.llm, gen

    def _endpoint_facts(self, name: str):
        """Size of the model behind an endpoint when it is an open model advisor knows (else None)."""
        from .model_facts import model_facts

        ep = self.spec.models.endpoints[name]
        try:
            return model_facts(ep.model or name, self.spec.models.facts.get(name))
        except AdvisorError:
            return None

    def _context(self, llm_name: str | None):
        from pipelines.base import RunContext

        from .models import advisor_home

        llm, gen = self.llm(llm_name) if llm_name else (None, None)
        return RunContext(self.spec, self.data, llm, gen, self.progress, self.out_dir, advisor_home())

    # ------------------------------------------------------------------ scoring
    def _score(self, name: str, out, examples: list[Example]) -> dict:
        """Every metric of the task on these predictions; the target metric judged on itself.

        ``per_example`` holds the target metric per item when it has one (accuracy, token F1);
        a corpus-level target (macro-F1) keeps per-item accuracy there (``per_example_metric``
        says which) and is judged from the stored predictions at decision time. CIs are not
        computed here: they come from these stored scores when the report is made, so a change
        to the statistics never invalidates a cached stage.
        """
        spec = self.spec
        constrained = name == "baseline" or spec.decoding == "choices"
        outputs = [p.output for p in out.predictions]
        rules = spec.format_rules()
        scored = metrics.score(spec.type, outputs, [e.expected for e in examples], self.data.labels,
                               constrained=constrained, rules=rules)
        self._extra_metrics(scored, outputs, examples)
        per_metric = spec.metric if spec.metric in scored.per_example else "accuracy"
        primary = scored.per_example[per_metric]
        main = scored.metrics[spec.metric]
        preds = []
        for i, (p, e) in enumerate(zip(out.predictions, examples)):
            row = {"id": e.id, "input": e.input, "expected": list(e.expected), "output": p.output}
            if p.raw is not None:
                row["raw"] = p.raw
            if scored.extracted is not None and not constrained:
                row["extracted"] = scored.extracted[i]
            row["score"] = primary[i]
            for check in (rules.checks if rules and spec.type != "classification" else ()):
                row[check] = scored.per_example[check][i]
            row.update({"prompt_tokens": p.prompt_tokens, "output_tokens": p.output_tokens, **p.extra})
            preds.append(row)
        result = {
            "status": "ok",
            "score": round(main, 6),
            "ci": None,
            "n": len(examples),
            "metrics": {k: round(v, 6) for k, v in scored.metrics.items()},
            "per_example": primary,
            "per_example_metric": per_metric,
            "timings": out.timings,
            "usage": Usage.from_dict(out.usage).to_dict(),
            "details": out.details,
            "notes": out.notes,
            "predictions": preds,
        }
        if scored.unparsed_rate is not None and not constrained:
            result["metrics"]["unparsed_rate"] = round(scored.unparsed_rate, 6)
        return result

    def _extra_metrics(self, scored: metrics.Scored, outputs: list[str], examples: list[Example]) -> None:
        """The target metrics that need more than text: the task's embedder, the team's scorer."""
        spec, m = self.spec, self.spec.metric
        if m == "semantic_similarity":
            rules = spec.format_rules()
            emb = self.embedder()
            answers = [metrics.answer_of(o, rules) for o in outputs]
            golds = [list(e.expected) for e in examples]
            flat = [g for gs in golds for g in gs]
            pv = emb.encode(answers, batch_size=64, show_progress_bar=False)
            gv = emb.encode(flat, batch_size=64, show_progress_bar=False)
            per_gold, k = [], 0
            for gs in golds:
                per_gold.append(gv[k:k + len(gs)])
                k += len(gs)
            scored.per_example[m] = metrics.semantic_similarity(pv, per_gold, spec.target.threshold)
        elif metrics.is_custom(m):
            if self._scorer is None:
                self._scorer = metrics.load_custom_scorer(m, self._task_dir(), where=f"{spec.source}: field 'target.metric'")
            items = [{"id": e.id, "input": e.input, "expected": list(e.expected), "context_id": e.context_id}
                     for e in examples]
            scored.per_example[m] = metrics.run_custom_scorer(
                self._scorer, m, outputs, [e.expected for e in examples], items, [e.id for e in examples])
        else:
            return
        scored.metrics[m] = metrics.mean(scored.per_example[m])

    def embedder(self):
        if self._embedder is None:
            from .models import load_embedder

            self._embedder = load_embedder(self.spec.models.embedding)
        return self._embedder

    def _scorer_hash(self) -> str | None:
        """A custom scorer's source is part of what a cached score depends on."""
        if not metrics.is_custom(self.spec.metric):
            return None
        import hashlib

        file = metrics.custom_scorer_file(self.spec.metric, self._task_dir())
        return hashlib.sha256(file.read_bytes()).hexdigest()[:16] if file.is_file() else None

    def _subset_scorer(self, result: dict):
        """fn(item indices) -> the corpus-level target metric of this result's predictions."""
        rows = result.get("predictions") or []
        if not rows or self.data.labels is None:
            return None
        gold = [r["expected"][0] for r in rows]
        return metrics.subset_scorer(self.spec.metric, _predicted_labels(rows), gold, self.data.labels)

    def _corpus_level(self) -> bool:
        return metrics.METRICS[self.spec.metric].corpus_level if self.spec.metric in metrics.METRICS else False

    def _skip(self, reason: str) -> dict:
        return {"status": "skipped", "reason": reason}

    # ------------------------------------------------------------------ stages
    def _stage(self, store: StageStore, name: str, key: str, compute: Callable[[], dict],
               artifacts: list[str] = ()) -> dict:
        cached = store.get(name, key)
        if cached is not None:
            self.log(f"{name}: reused (key {key})")
            return cached
        result = compute()
        store.put(name, key, result, artifacts if result.get("status") == "ok" else [])
        return result

    def _run_pipeline(self, name: str, llm_name: str | None, log_name: str | None = None, **kwargs) -> dict:
        from pipelines.base import SkipPipeline

        examples = self.data.eval.examples
        t0 = time.perf_counter()
        try:
            pipe = load_pipeline(name, **kwargs)
            pipe.prepare(self._context(llm_name))
            prep = time.perf_counter() - t0
            out = pipe.predict(examples)
            out.notes = [*out.notes, *self._context_notes(llm_name, out)]
        except SkipPipeline as e:
            return self._skip(str(e))
        except (AdvisorError, Interrupted, MemoryError):
            raise
        except Exception as e:  # one broken pipeline must not sink the others' results
            log = self.out_dir / "logs" / f"{log_name or name}.log"
            atomic_write_text(log, redact(traceback.format_exc()))
            return {"status": "failed", "reason": redact(f"{type(e).__name__}: {e}"[:300]) + f" (traceback: {log})"}
        out.timings = {"prepare": round(prep, 3), **out.timings, "total": round(time.perf_counter() - t0, 3)}
        self._endpoint_details(llm_name, out)
        return self._score(name, out, examples)

    def _context_notes(self, llm_name: str | None, out) -> list[str]:
        """Prompts that filled the model's context were cut (the generator keeps their end): say
        how many, since their scores and token counts are those of the cut prompts."""
        gen = self._llms.get(llm_name, (None, None))[1] if llm_name else None
        if gen is None or not out.predictions:
            return []
        reserve = 8 if self.spec.decoding == "choices" else self.spec.max_new_tokens  # as generation.encode
        limit = gen.max_context - reserve
        cut = sum(p.prompt_tokens >= limit for p in out.predictions)
        if not cut:
            return []
        return [f"{cut} of {len(out.predictions)} prompts were longer than the model's {gen.max_context}-token context "
                f"and were cut to their last {limit} tokens (scored and priced as cut)"]

    def _endpoint_details(self, llm_name: str | None, out) -> None:
        if llm_name and self.spec.models.is_endpoint(llm_name):
            stats = self.llm(llm_name)[1].take_stats()
            out.details["endpoint"] = {"model": llm_name, **stats}
            if "unparsed_rate" in stats:
                out.notes.append(f"choices on the endpoint: {stats['choice_methods']} "
                                 f"(first_token = label ranked by the first answer token's log-probabilities; "
                                 f"generate = short answer matched to a label); unparsed {stats['unparsed_rate']:.1%}")

    def _base_key(self, *sections: str, model: str | None = None, **extra) -> dict:
        return {
            "spec": self.spec.section("type", "decoding", "instructions", "target", "seed", "format", *sections),
            "data": self.data.hashes,
            "model": model,
            **({"scorer": self._scorer_hash()} if metrics.is_custom(self.spec.metric) else {}),
            **extra,
        }

    def select_base_model(self, store: StageStore) -> dict:
        """The smallest candidate not significantly worse than the best, zero-shot, on a held-out
        slice of *train* (as prompt variants are chosen): choosing on the eval items would bias
        the final CIs, which come from those same items."""
        cands = self.spec.models.candidates
        if len(cands) == 1:
            return {"chosen": cands[0], "table": [{"model": cands[0], "score": None, "chosen": True,
                                                   "note": "only candidate"}]}
        from pipelines.prompts import split_dev

        _, dev = split_dev(self.data.train.examples if self.data.train else [], self.spec.seed)
        if not dev:
            table = [{"model": m, "score": None, "chosen": i == 0,
                      "note": "no train slice to choose on; the first candidate is used"} for i, m in enumerate(cands)]
            return {"chosen": cands[0], "table": table, "basis": "none: train set too small for a dev slice"}
        key = stage_key("select", basis="train-dev", **self._base_key("models", "prompting"))

        def compute() -> dict:
            from pipelines.prompting import PromptingPipeline

            limit = self.spec.models.selection_limit
            examples = dev[: limit or None]
            table = []
            for name in cands:
                pipe = PromptingPipeline(variant="zero-shot")
                pipe.prepare(self._context(name))
                out = pipe.predict(examples)
                res = self._score("prompting", out, examples)
                usage = Usage.from_dict(out.usage)
                llm, _ = self.llm(name)
                self._endpoint_details(name, out)
                table.append({"model": name, "score": res["score"], "n": res["n"], "per_example": res["per_example"],
                              "params": llm.n_params, "seconds": out.timings.get("predict"),
                              "endpoint": self.spec.models.is_endpoint(name),
                              "prompt_tokens_mean": usage.prompt_tokens_mean,
                              "output_tokens_mean": usage.output_tokens_mean,
                              "usd_per_1k_requests": self._usd_per_1k(name, usage)})
                per_1k = table[-1]["usd_per_1k_requests"]
                table[-1]["monthly_usd"] = (per_1k * self.spec.budget.requests_per_month / 1000
                                            if per_1k is not None else None)
                self._llms.pop(name, None)  # free memory; the chosen one is reloaded
            return {"table": table, "basis": f"{len(examples)} held-out train items"}

        stored = self._stage(store, "select", key, compute)
        table = [dict(r) for r in stored["table"]]
        rule = decide.choose_base_model(table, self.spec.metric in metrics.METRICS
                                        and metrics.METRICS[self.spec.metric].higher_is_better)
        return {"chosen": rule["chosen"], "table": rule["table"], "basis": stored.get("basis")}

    def _usd_per_1k(self, name: str, usage: Usage) -> float | None:
        """$ per 1,000 zero-shot requests of a candidate, from its measured tokens: token prices for
        an endpoint, the cost model on the task's card for a local model."""
        p, o = usage.prompt_tokens_mean, usage.output_tokens_mean
        hw = cost.get_hardware(self.spec.hardware.gpu, self.spec.hardware.usd_per_hour)
        if self.spec.models.is_endpoint(name):
            from .estimate import endpoint_rows

            row = endpoint_rows(self.spec, name, self._endpoint_facts(name), p, None, o, hw)["prompting"]
            return row["usd_per_1k_requests"]
        n = self.llm(name)[0].n_params
        return cost.usd_per_1k(cost.usd_per_request(n, p, o, hw)) if n else None

    def finetune_base(self, base: str, selection: dict) -> str | None:
        """The model a LoRA trains: the base model, or, when that is an endpoint (not fine-tunable),
        the best-scoring local candidate (None when every candidate is an endpoint)."""
        models = self.spec.models
        if not models.is_endpoint(base):
            return base
        local = [r for r in selection["table"] if not models.is_endpoint(r["model"])]
        if not local:
            return None
        return max(local, key=lambda r: (r.get("score") or 0, -(r.get("params") or 0)))["model"]

    def run(self) -> dict:
        if self.data is None:
            self.validate()
        spec, data = self.spec, self.data
        t_start = time.perf_counter()
        runs_root = self.runs_root or self.out_dir.parent
        store = StageStore(self.out_dir, search=previous_runs(runs_root, spec.name), fresh=self.fresh)
        res = self.results

        # 0-4. every pipeline of the catalogue, simplest first; the base model is chosen before
        # the first one that needs it. A gated step (a fine-tune) sees the results before it.
        selection = self.select_base_model(store)
        base = selection["chosen"]
        ft_base = self.finetune_base(base, selection)
        for e in catalogue.entries():
            sit = catalogue.Situation(spec, data, self._outcomes(), base, ft_base)
            why = e.applies(sit)
            if why is not None:
                res[e.name] = self._skip(why)
                continue
            model = {"embedder": None, "base": base, "finetune_base": ft_base}[e.model]
            if e.methods is not None:  # a family: one stage per method the task asks for
                res[e.name] = self._family(store, e, model)
            else:
                key = stage_key(e.name, **self._base_key(*e.key_sections, model=model or spec.models.embedding))
                res[e.name] = self._stage(store, e.name, key, lambda e=e, m=model: self._run_pipeline(e.name, m),
                                          artifacts=list(e.artifacts))
            if e.gated and res[e.name].get("status") == "ok":
                notes = res[e.name].setdefault("notes", [])
                notes.append(f"run because: {catalogue.gate_reason(sit)}")
                if ft_base != base:
                    notes.append(f"trained on {ft_base}, the best local candidate: {base} is an "
                                 "endpoint, and an endpoint is prompted, not fine-tuned")

        # 4b. the LLM judge (its own cache makes reruns free; its cost is the evaluation's)
        if spec.judge:
            self.run_judge()

        # 5. cost and decision (cheap: always recomputed)
        self.base_model = base
        llm_params, llm_shape = self._llm_shape(ft_base or base)
        costs = self.costs(llm_params, llm_shape)
        costs["pretraining"] = self._pretraining_contrast(ft_base, costs)
        for name, c in costs["pipelines"].items():
            if res.get(name, {}).get("status") == "ok":
                res[name]["cost"] = c
        decision = decide.decide(decide.DecisionInput(
            metric=spec.metric, target=spec.target.min, outcomes=self._outcomes(),
            higher_is_better=self.spec.higher_is_better,
            budget_setup_usd=spec.budget.setup_usd, requests_per_month=spec.budget.requests_per_month,
            has_train=bool(data.train), has_corpus=bool(data.corpus), base_model=base,
            margin=spec.decision.margin, horizon_months=spec.budget.horizon_months,
        ))
        for name, v in decision.verdicts.items():  # each pipeline's CI on the target metric itself
            if name in res:
                res[name]["ci"] = [round(x, 6) for x in v["ci"]]
                res[name]["verdict"] = {k: v[k] for k in ("verdict", "probability", "items_to_confirm", "interval",
                                                          "total_usd")}
        for e in catalogue.entries():  # a family's table: every member judged and priced like a pipeline
            if e.methods is not None and len(e.methods(spec)) > 1 and e.name in res:
                res[e.name]["methods"] = self._method_rows(store, e)
        return self.report(selection, costs, decision.to_dict(), store, time.perf_counter() - t_start)

    # ------------------------------------------------------------------ cost, decision, report
    def _outcomes(self) -> dict[str, decide.PipelineOutcome]:
        """Stored stage results as decision inputs; the CI is left to the decision, computed on
        the target metric itself (per-item scores, or a subset scorer for a corpus metric)."""
        corpus_level = self._corpus_level()
        return {n: self._outcome(n, self.results[n], corpus_level) for n in catalogue.names() if n in self.results}

    def _outcome(self, name: str, r: dict, corpus_level: bool) -> decide.PipelineOutcome:
        c = r.get("cost", {})
        fn = self._subset_scorer(r) if corpus_level and r["status"] == "ok" else None
        return decide.PipelineOutcome(
            name=name, status=r["status"], score=r.get("score"), ci=None,
            per_example=r.get("per_example") if not corpus_level else None,
            setup_usd=c.get("setup_usd", 0.0), usd_per_1k=c.get("usd_per_1k_requests", 0.0),
            reason=r.get("reason", ""), score_fn=fn, n_items=r.get("n") if fn else None,
            device=c.get("device", ""), prices_elsewhere=decide.prices_of(c.get("also_priced_on")),
            title=catalogue.title(name, r.get("method")),
        )

    def _llm_shape(self, base: str) -> tuple[int, dict]:
        from .models import BUNDLED, model_shape

        if base in self._llms:
            llm = self._llms[base][0]
            return llm.n_params, {"n_layers": llm.n_layers, "hidden": llm.hidden}
        for r in self.results.values():
            shape = Usage.from_dict(r.get("usage")).model_shape
            if shape:
                return shape["n_params"], {"n_layers": shape["n_layers"], "hidden": shape["hidden"]}
        b = BUNDLED.get(base)
        return (b.params if b else 0), model_shape(base)

    def costs(self, n_params: int, shape: dict) -> dict:
        from .models import BUNDLED

        spec = self.spec
        hw = cost.get_hardware(spec.hardware.gpu, spec.hardware.usd_per_hour)
        rpm = spec.budget.requests_per_month
        emb = BUNDLED.get(spec.models.embedding)
        embed_params = emb.params if emb else 22_713_216
        out: dict[str, dict] = {}
        endpoint_base = spec.models.is_endpoint(self.base_model or "")
        for e in catalogue.entries():
            r = self.results.get(e.name, {})
            if r.get("status") != "ok":
                continue
            u = Usage.from_dict(r.get("usage"))
            if endpoint_base and e.model == "base" and e.cost_kind in ("prompting", "rag"):
                from .estimate import endpoint_rows

                p = u.prompt_tokens_mean
                rows = endpoint_rows(spec, self.base_model, self._endpoint_facts(self.base_model), p, p,
                                     u.output_tokens_mean, hw)
                out[e.name] = {**rows[e.cost_kind], "kind": e.name}
                continue
            for target in [r, *(self.method_results.values() if e.methods is not None else ())]:
                if target.get("status") != "ok":
                    continue
                u = Usage.from_dict(target.get("usage"))  # a family's members are priced alike
                priced = cost.estimate_pipeline_cost(
                    kind=e.cost_kind, n_params=n_params, prompt_tokens=u.prompt_tokens_mean,
                    output_tokens=u.output_tokens_mean, requests_per_month=rpm, hw=hw,
                    embed_params=embed_params, train_batch=spec.finetune.batch_size, **shape,
                    baseline_hw=cost.baseline_hardware(spec.baseline.device, hw),  # read by the baseline kind only
                    **e.cost_inputs(u, target.get("timings", {})),
                )
                if target is r:
                    out[e.name] = priced
                else:
                    target["cost"] = priced
        full = None
        ft = self.results.get("finetune", {})
        train_tokens = Usage.from_dict(ft.get("usage")).train_tokens_total or self._planned_train_tokens()
        full_ran = self.method_results.get("full", {}).get("status") == "ok"
        if train_tokens and n_params and not full_ran:  # a measured full fine-tune is a row of its own
            full = cost.estimate_pipeline_cost(
                kind="full_finetune", n_params=n_params,
                prompt_tokens=self._serving_prompt_tokens(),
                output_tokens=spec.max_new_tokens, requests_per_month=rpm, hw=hw, train_tokens=train_tokens,
                **shape,
            )
        return {"hardware": {"name": hw.name, "usd_per_hour": hw.usd_per_hour, "peak_flops": hw.peak_flops},
                "pipelines": out, "full_finetune_estimate": full}

    def _pretraining_contrast(self, model: str | None, costs: dict) -> dict | None:
        """The seed's contrast: pretraining the fine-tuned model's base (6·N·D_pretrain) beside the
        LoRA's setup cost, when the pretraining token count is published."""
        from .estimate import _pretraining
        from .model_facts import model_facts

        if not model:
            return None
        try:
            facts = model_facts(model, self.spec.models.facts.get(model), self.spec.models.trust_remote_code)
        except AdvisorError:
            return None
        hw = cost.get_hardware(self.spec.hardware.gpu, self.spec.hardware.usd_per_hour)
        ft = costs["pipelines"].get("finetune")
        if ft is None and costs.get("full_finetune_estimate"):  # no LoRA run: price the planned one
            planned = self._planned_train_tokens()
            ft = {"setup_usd": cost.train_seconds(cost.train_flops(facts.active_params, planned, "lora"), hw)
                  * hw.usd_per_second} if planned else None
        out = _pretraining(facts, hw, ft)
        if out:
            out["model"] = model
        return out

    # ------------------------------------------------------------------ a family (the fine-tuning methods)
    def _family(self, store: StageStore, e: "catalogue.PipelineEntry", model: str | None) -> dict:
        """Each method the task asks for as its own stage, then the family's result (advisor/family.py)."""
        from pipelines.methods import artifact_dir

        methods = list(e.methods(self.spec))
        self.method_results = {}
        for m in methods:
            stage = catalogue.method_stage(e, m)
            key = family.member_key(e, m, self._base_key(*e.key_sections, model=model), self.spec.finetune)
            self.method_results[m] = self._stage(
                store, stage, key, lambda m=m, stage=stage: self._run_pipeline(e.name, model, log_name=stage, method=m),
                artifacts=[artifact_dir(m)])
        out = family.assemble(e, methods, self.method_results, self.out_dir)
        if len(methods) == 1:  # one method (today's LoRA): no family, no table
            self.method_results = {}
        return out

    def _method_rows(self, store: StageStore, e: "catalogue.PipelineEntry") -> list[dict]:
        """report.json pipelines.<family>.methods: a row per member, each judged on the target metric."""
        chosen = self.results[e.name].get("method")
        corpus_level = self._corpus_level()
        return [family.member_row(
            e, m, r, chosen=m == chosen, reused=store.status.get(catalogue.method_stage(e, m)) == "reused",
            judged=decide.judge(self._outcome(m, r, corpus_level), self.spec.target.min, self.spec.higher_is_better)
            if r["status"] == "ok" else None)
            for m, r in self.method_results.items()]

    def _serving_prompt_tokens(self) -> float:
        """A fine-tuned model is served with the zero-shot prompt (no demos, no passages)."""
        for name in ("finetune", "prompting"):
            u = Usage.from_dict(self.results.get(name, {}).get("usage"))
            if u.prompt_tokens_mean:
                return u.prompt_tokens_mean
        return 0.0

    def _planned_train_tokens(self) -> int:
        """Rough train tokens of the configured fine-tune (chars/4), for estimates without a run."""
        if not self.data or not self.data.train:
            return 0
        chars = sum(len(e.input) + len(e.expected[0]) + len(self.spec.instructions) + 40 for e in self.data.train.examples)
        return int(chars / 4 * self.spec.finetune.epochs)

    def report(self, selection: dict, costs: dict, decision: dict, store: StageStore, seconds: float) -> dict:
        spec, data = self.spec, self.data
        device = next((llm.device for llm, _ in self._llms.values()), None)
        pipes = {}
        corpus_level = self._corpus_level()
        for name in catalogue.names():
            r = dict(self.results.get(name, self._skip("not run")))
            rows = r.pop("predictions", None)
            if corpus_level and rows:  # what the nightly gate needs to recompute the metric itself
                r["per_example_prediction"] = _predicted_labels(rows)
            r["reused"] = store.status.get(name) == "reused"
            r["title"] = catalogue.title(name, r.get("method"))  # a family: its chosen member's title
            pipes[name] = r
        src = spec.source
        try:
            shown = os.path.relpath(src) if src else None
        except ValueError:
            shown = str(src)
        report = {
            "schema_version": SCHEMA_VERSION,
            "advisor_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "task": {
                "name": spec.name, "type": spec.type, "metric": spec.metric, "decoding": spec.decoding,
                "target": spec.target.min, "higher_is_better": spec.higher_is_better,
                "format_checks": list(spec.format_rules().checks) if spec.format else [],
                "source": shown, "n_eval": len(data.eval), "n_train": len(data.train) if data.train else 0,
                "n_corpus_docs": len(data.corpus) if data.corpus else 0, "labels": data.labels,
                "hashes": data.hashes, "eval_ids": [e.id for e in data.eval.examples],
                **({"eval_gold": [e.expected[0] for e in data.eval.examples]} if corpus_level else {}),
                "finetune_mode": spec.finetune.mode, "trust_remote_code": spec.models.trust_remote_code,
                "leakage": data.leakage.to_dict() if data.leakage else None,
                "corpus_skipped": [{"document": d, "reason": r} for d, r in data.corpus_skipped],
            },
            "base_model": selection["chosen"],
            "base_model_selection": selection["table"],
            "pipelines": pipes,
            "costs": costs,
            "evaluation_cost": self.evaluation_cost,
            "comparisons": decision.get("comparisons", []),
            "recommendation": decision,
            "stages": dict(store.status),
            # data problems every report format shows: leakage, skipped corpus documents
            "warnings": list(data.notes),
            "environment": environment(device),
            "wall_seconds": round(seconds, 2),
        }
        return report

    def predictions(self) -> dict[str, list[dict]]:
        """Each scored pipeline's per-item rows (predictions/<name>.jsonl), for the caller to write."""
        return {name: r["predictions"] for name, r in self.results.items() if r.get("predictions")}

    # ------------------------------------------------------------------ the LLM judge
    def run_judge(self) -> None:
        """Judge every ok pipeline's answers (and RAG's groundedness), calibrated on the same items."""
        from .judge import Judge, JudgeCache, JudgeItem, JudgeUsage, calibration, local_chat
        from .models import BUNDLED, advisor_home

        jspec = self.spec.judge
        usage = JudgeUsage()
        holder: dict[str, Any] = {}

        def batch(conversations):  # the judge model loads only when a reply is not cached
            if "batch" not in holder:
                _, gen = self.llm(jspec.model)
                holder["batch"] = local_chat(gen, jspec.max_new_tokens, usage)[1]
            return holder["batch"](conversations)

        judge = Judge(jspec.model, jspec.rubric, lambda m: batch([m])[0], JudgeCache(advisor_home() / "judge-cache"),
                      batch=batch, usage=usage)
        reference = jspec.reference or "exact_match"
        rules = self.spec.format_rules()
        docs = {d.id: d.text for d in (self.data.corpus or [])}
        for name in catalogue.names():
            r = self.results.get(name, {})
            if r.get("status") != "ok" or not r.get("predictions"):
                continue
            rows = r["predictions"]
            items = [JudgeItem(p["id"], p["input"], metrics.answer_of(p["output"], rules), tuple(p["expected"]),
                               tuple(docs[i] for i in p.get("retrieved", []) if i in docs)) for p in rows]
            verdicts = judge.correctness(items)
            per = [v.score for v in verdicts]
            ref = r["per_example"] if reference == self.spec.metric else metrics.score(
                self.spec.type, [p["output"] for p in rows], [p["expected"] for p in rows], rules=rules,
            ).per_example[reference]
            ci = stats.score_ci(per)
            r["judge"] = {"score": round(metrics.mean(per), 6), "ci": [round(x, 6) for x in ci], "n": len(per),
                          "reference": reference, **calibration(per, ref)}
            r.setdefault("metrics", {})["judge"] = r["judge"]["score"]
            for p, v in zip(rows, verdicts):
                p["judge_verdict"], p["judge_reasoning"] = v.score, v.reasoning
            if name == "rag" and jspec.groundedness and any(it.passages for it in items):
                with_p = [(p, it) for p, it in zip(rows, items) if it.passages]
                g = judge.groundedness([it for _, it in with_p])
                for (p, _), v in zip(with_p, g):
                    p["grounded"], p["grounded_reasoning"] = v.score, v.reasoning
                gs = [v.score for v in g]
                r["groundedness"] = {"score": round(metrics.mean(gs), 6), "n": len(gs)}
                r["metrics"]["groundedness"] = r["groundedness"]["score"]
        params = BUNDLED[jspec.model].params if jspec.model in BUNDLED else None
        self.evaluation_cost["judge"] = {
            "model": jspec.model, "calls": usage.calls, "cached": usage.cached, "unparsed": usage.unparsed,
            "seconds": round(usage.seconds, 3), "prompt_tokens": usage.prompt_tokens,
            "output_tokens": usage.output_tokens, "usd": self._judge_usd(params, usage),
            "note": "evaluation cost: not part of any pipeline's serving or setup cost",
        }

    def _judge_usd(self, n_params: int | None, usage) -> float | None:
        if not n_params or not usage.calls:
            return 0.0 if not usage.calls else None
        hw = cost.get_hardware(self.spec.hardware.gpu, self.spec.hardware.usd_per_hour)
        per_call = cost.usd_per_request(n_params, usage.prompt_tokens / usage.calls,
                                        usage.output_tokens / usage.calls, hw)
        return round(per_call * usage.calls, 8)


def _predicted_labels(rows: list[dict]) -> list[str | None]:
    """The label each stored prediction was given (extracted; None: unparsable)."""
    return [r.get("extracted", r["output"]) for r in rows]
