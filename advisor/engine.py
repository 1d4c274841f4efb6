"""Orchestration: task -> stages (baseline, base-model selection, prompting, RAG, LoRA) -> report.

Each stage's result is stored as soon as it finishes (see stages.py), so an interrupted run
loses nothing already computed. Heavy libraries load only when a stage has to be computed:
a rerun whose stages are all cached never imports torch.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import __version__, cost, decide, metrics, stats
from .data import MIN_TRAIN_FOR_FINETUNE, Example, TaskData, load_task_data
from .environment import environment, redact
from .errors import AdvisorError, Interrupted
from .spec import TaskSpec
from .stages import RUN_MARKER, StageStore, atomic_write_json, atomic_write_text, previous_runs, run_task, stage_key

SCHEMA_VERSION = 1
PIPELINES = {
    "baseline": "pipelines.baseline:BaselinePipeline",
    "prompting": "pipelines.prompting:PromptingPipeline",
    "rag": "pipelines.rag:RagPipeline",
    "finetune": "pipelines.finetune:FinetunePipeline",
}
ORDER = ("baseline", "prompting", "rag", "finetune")

Progress = Callable[[str, int, "int | None"], None]


def _no_progress(task: str, done: int, total: int | None) -> None:
    return None


def load_pipeline(name: str, **kwargs: Any):
    module, cls = PIPELINES[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


def default_out_dir(task_name: str, runs_root: Path) -> Path:
    """runs/<task>-<time>, created atomically and unique: two runs started in the same second get
    -2, -3, ... (mkdir fails on an existing name, so two processes can never share a folder)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = runs_root / (f"{task_name}-{stamp}" + ("" if i == 1 else f"-{i}"))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AdvisorError("no free run-folder name", where=str(runs_root), fix="clean up old runs or pass --out")


def check_out_dir(out_dir: Path, task_name: str) -> None:
    """`--out` writes only into a new or empty folder, or a run folder of the same task (its marker
    says so): anything else may be someone's files, and is refused before any work."""
    try:
        entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    except OSError:
        return  # unreadable: ensure_writable names the problem
    if not entries:
        return
    owner = run_task(out_dir)
    if owner == task_name:
        return
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    why = (f"is a run folder of another task ('{owner[:80]}')" if owner is not None
           else f"is not empty and not an advisor run folder (holds {shown})")
    raise AdvisorError(why, where=str(out_dir), fix="choose a new or empty folder for --out")


def claim_run_dir(out_dir: Path | None, task_name: str, runs_root: Path) -> Path:
    """The run folder, created (unique when no --out is given) and marked with the task's name."""
    if out_dir is None:
        ensure_writable(runs_root)
        out_dir = default_out_dir(task_name, runs_root)
    else:
        check_out_dir(out_dir, task_name)
        ensure_writable(out_dir)
    if run_task(out_dir) is None:
        atomic_write_json(out_dir / RUN_MARKER, {"task": task_name, "advisor": __version__,
                                                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return out_dir


MIN_FREE_BYTES = 50_000_000  # reports, predictions and a LoRA adapter of a small model fit easily


def ensure_writable(out_dir: Path) -> None:
    """Fail before any work when the run folder cannot be written; on failure leave nothing behind."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AdvisorError("is a file, not a run folder", where=str(out_dir), fix="choose another --out")
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        free = shutil.disk_usage(next(p for p in (out_dir, *out_dir.parents) if p.exists())).free
    except (OSError, StopIteration):
        free = MIN_FREE_BYTES
    if free < MIN_FREE_BYTES:
        raise AdvisorError(
            f"only {free / 1e6:.0f} MB free on its disk (a run needs ~{MIN_FREE_BYTES / 1e6:.0f} MB)",
            where=str(out_dir), fix="free some space or choose another --out",
        )
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        for p in created:  # deepest first: only the folders this call made
            try:
                p.rmdir()
            except OSError:
                pass
        raise AdvisorError(
            f"cannot write the run folder ({e.strerror or e})", where=str(out_dir), fix="choose another --out"
        ) from None


def check_home(home: Path) -> None:
    """The advisor home holds converted models and the Chroma store that the LLM and RAG stages
    write: check it before the first stage, not as failed pipelines and a baseline-only verdict."""
    where, fix = f"ADVISOR_HOME ({home})", "set ADVISOR_HOME to a writable folder"
    if home.exists() and not home.is_dir():
        raise AdvisorError("is a file, not a folder", where=where, fix=fix)
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise AdvisorError(f"cannot write ({e.strerror or e})", where=where, fix=fix) from None


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
    _llms: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ set-up
    def validate(self) -> None:
        """Everything that can be known wrong before work starts: data, models, run folder."""
        from . import models

        if self.finetune_mode:
            self.spec.finetune.mode = self.finetune_mode  # type: ignore[assignment]
        self.data = load_task_data(self.spec)
        for name in self.spec.models.candidates:
            models.check_available(name, "llm")
        if self._needs_embedder():
            models.check_available(self.spec.models.embedding, "embedding")
        check_home(models.advisor_home())
        self.out_dir = claim_run_dir(self.out_dir, self.spec.name, self.runs_root or Path("runs"))

    def _needs_embedder(self) -> bool:
        d = self.data
        return bool(d and (d.corpus or d.train))

    def llm(self, name: str):
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
        scored = metrics.score(spec.type, outputs, [e.expected for e in examples], self.data.labels,
                               constrained=constrained)
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
            "usage": out.usage,
            "details": out.details,
            "notes": out.notes,
            "predictions": preds,
        }
        if scored.unparsed_rate is not None and not constrained:
            result["metrics"]["unparsed_rate"] = round(scored.unparsed_rate, 6)
        return result

    def _subset_scorer(self, result: dict):
        """fn(item indices) -> the corpus-level target metric of this result's predictions."""
        rows = result.get("predictions") or []
        if not rows or self.data.labels is None:
            return None
        predicted = [r.get("extracted", r["output"]) for r in rows]  # extracted None: unparsable
        gold = [r["expected"][0] for r in rows]
        return metrics.subset_scorer(self.spec.metric, predicted, gold, self.data.labels)

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

    def _run_pipeline(self, name: str, llm_name: str | None, **kwargs) -> dict:
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
            log = self.out_dir / "logs" / f"{name}.log"
            atomic_write_text(log, redact(traceback.format_exc()))
            return {"status": "failed", "reason": redact(f"{type(e).__name__}: {e}"[:300]) + f" (traceback: {log})"}
        out.timings = {"prepare": round(prep, 3), **out.timings, "total": round(time.perf_counter() - t0, 3)}
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

    def _base_key(self, *sections: str, model: str | None = None, **extra) -> dict:
        return {
            "spec": self.spec.section("type", "decoding", "instructions", "target", "seed", *sections),
            "data": self.data.hashes,
            "model": model,
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
        from pipelines.prompting import split_dev

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
                llm, _ = self.llm(name)
                table.append({"model": name, "score": res["score"], "n": res["n"], "per_example": res["per_example"],
                              "params": llm.n_params, "seconds": out.timings.get("predict")})
                self._llms.pop(name, None)  # free memory; the chosen one is reloaded
            return {"table": table, "basis": f"{len(examples)} held-out train items"}

        stored = self._stage(store, "select", key, compute)
        table = [dict(r) for r in stored["table"]]
        rule = decide.choose_base_model(table, self.spec.metric in metrics.METRICS
                                        and metrics.METRICS[self.spec.metric].higher_is_better)
        return {"chosen": rule["chosen"], "table": rule["table"], "basis": stored.get("basis")}

    def run(self) -> dict:
        if self.data is None:
            self.validate()
        spec, data = self.spec, self.data
        t_start = time.perf_counter()
        runs_root = self.runs_root or self.out_dir.parent
        store = StageStore(self.out_dir, search=previous_runs(runs_root, spec.name), fresh=self.fresh)
        res = self.results

        # 0. classical baseline (classification only)
        if spec.type != "classification":
            res["baseline"] = self._skip("not a classification task")
        elif not data.train:
            res["baseline"] = self._skip("no train set to fit a classifier on")
        elif not spec.baseline.enabled:
            res["baseline"] = self._skip("disabled in the task file (baseline.enabled: false)")
        else:
            key = stage_key("baseline", **self._base_key("baseline", model=spec.models.embedding))
            res["baseline"] = self._stage(store, "baseline", key, lambda: self._run_pipeline("baseline", None))

        # 1. base model first
        selection = self.select_base_model(store)
        base = selection["chosen"]

        # 2. prompting
        key = stage_key("prompting", **self._base_key("prompting", model=base))
        res["prompting"] = self._stage(store, "prompting", key, lambda: self._run_pipeline("prompting", base))

        # 3. RAG
        if not (data.corpus or data.train):
            res["rag"] = self._skip("no corpus and no train set to retrieve from")
        else:
            key = stage_key("rag", **self._base_key("prompting", "rag", "models", model=base))
            res["rag"] = self._stage(store, "rag", key, lambda: self._run_pipeline("rag", base))

        # 4. LoRA, only when needed (or asked)
        mode = spec.finetune.mode
        outcomes = self._outcomes()
        run_ft, why = decide.should_run_finetune(mode, outcomes, spec.target.min, self._higher_is_better())
        if not data.train:
            res["finetune"] = self._skip("no train set")
        elif len(data.train) < MIN_TRAIN_FOR_FINETUNE:
            res["finetune"] = self._skip(f"{len(data.train)} train examples; fine-tuning needs {MIN_TRAIN_FOR_FINETUNE}")
        elif not run_ft:
            res["finetune"] = self._skip(why)
        else:
            key = stage_key("finetune", **self._base_key("prompting", "finetune", model=base))
            res["finetune"] = self._stage(store, "finetune", key, lambda: self._run_pipeline("finetune", base),
                                          artifacts=["adapter"])
            res["finetune"].setdefault("notes", []).append(f"run because: {why}")

        # 5. cost and decision (cheap: always recomputed)
        llm_params, llm_shape = self._llm_shape(base)
        costs = self.costs(llm_params, llm_shape)
        for name, c in costs["pipelines"].items():
            if res.get(name, {}).get("status") == "ok":
                res[name]["cost"] = c
        decision = decide.decide(decide.DecisionInput(
            metric=spec.metric, target=spec.target.min, outcomes=self._outcomes(),
            higher_is_better=self._higher_is_better(),
            budget_setup_usd=spec.budget.setup_usd, requests_per_month=spec.budget.requests_per_month,
            has_train=bool(data.train), has_corpus=bool(data.corpus), base_model=base,
            margin=spec.decision.margin, horizon_months=spec.budget.horizon_months,
        ))
        for name, v in decision.verdicts.items():  # each pipeline's CI on the target metric itself
            if name in res:
                res[name]["ci"] = [round(x, 6) for x in v["ci"]]
                res[name]["verdict"] = {k: v[k] for k in ("verdict", "probability", "items_to_confirm", "interval",
                                                          "total_usd")}
        report = self.report(selection, costs, decision.to_dict(), store, time.perf_counter() - t_start)
        self.write(report)
        return report

    # ------------------------------------------------------------------ cost, decision, report
    def _higher_is_better(self) -> bool:
        m = metrics.METRICS.get(self.spec.metric)
        return m.higher_is_better if m else True

    def _outcomes(self) -> dict[str, decide.PipelineOutcome]:
        """Stored stage results as decision inputs; the CI is left to the decision, computed on
        the target metric itself (per-item scores, or a subset scorer for a corpus metric)."""
        corpus_level = metrics.METRICS[self.spec.metric].corpus_level if self.spec.metric in metrics.METRICS else False
        out = {}
        for name in ORDER:
            r = self.results.get(name)
            if r is None:
                continue
            c = r.get("cost", {})
            fn = self._subset_scorer(r) if corpus_level and r["status"] == "ok" else None
            out[name] = decide.PipelineOutcome(
                name=name, status=r["status"], score=r.get("score"), ci=None,
                per_example=r.get("per_example") if not corpus_level else None,
                setup_usd=c.get("setup_usd", 0.0), usd_per_1k=c.get("usd_per_1k_requests", 0.0),
                reason=r.get("reason", ""), score_fn=fn, n_items=r.get("n") if fn else None,
            )
        return out

    def _llm_shape(self, base: str) -> tuple[int, dict]:
        from .models import BUNDLED, model_shape

        if base in self._llms:
            llm = self._llms[base][0]
            return llm.n_params, {"n_layers": llm.n_layers, "hidden": llm.hidden}
        for r in self.results.values():
            shape = r.get("usage", {}).get("model_shape")
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
        for name in ORDER:
            r = self.results.get(name, {})
            if r.get("status") != "ok":
                continue
            u = r.get("usage", {})
            kw: dict[str, Any] = dict(
                kind=name, n_params=n_params, prompt_tokens=u.get("prompt_tokens_mean", 0),
                output_tokens=u.get("output_tokens_mean", 0), requests_per_month=rpm, hw=hw, **shape,
            )
            if name == "baseline":
                kw.update(embed_params=embed_params, train_tokens=u.get("train_tokens", 0))
            elif name == "rag":
                kw.update(index_seconds=r.get("timings", {}).get("index", 0.0), embed_params=embed_params,
                          query_tokens=u.get("query_tokens_mean", 0), corpus_tokens=u.get("corpus_tokens", 0))
            elif name == "finetune":
                kw.update(train_tokens=u.get("train_tokens_total", 0), trainable_params=u.get("trainable_params", 0),
                          measured_train_seconds=u.get("train_seconds"), measured_device=u.get("device_hardware"),
                          measured_load_per_core=u.get("cpu_load_per_core"),
                          train_seq_len=u.get("train_seq_len"), train_batch=spec.finetune.batch_size)
            out[name] = cost.estimate_pipeline_cost(**kw)
        full = None
        ft = self.results.get("finetune", {})
        train_tokens = ft.get("usage", {}).get("train_tokens_total") or self._planned_train_tokens()
        if train_tokens:
            full = cost.estimate_pipeline_cost(
                kind="full_finetune", n_params=n_params,
                prompt_tokens=self._serving_prompt_tokens(),
                output_tokens=spec.max_new_tokens, requests_per_month=rpm, hw=hw, train_tokens=train_tokens,
                **shape,
            )
        return {"hardware": {"name": hw.name, "usd_per_hour": hw.usd_per_hour, "peak_flops": hw.peak_flops},
                "pipelines": out, "full_finetune_estimate": full}

    def _serving_prompt_tokens(self) -> float:
        """A fine-tuned model is served with the zero-shot prompt (no demos, no passages)."""
        for name in ("finetune", "prompting"):
            u = self.results.get(name, {}).get("usage", {})
            if u.get("prompt_tokens_mean"):
                return u["prompt_tokens_mean"]
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
        for name in ORDER:
            r = dict(self.results.get(name, self._skip("not run")))
            r.pop("predictions", None)
            r["reused"] = store.status.get(name) == "reused"
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
                "target": spec.target.min, "higher_is_better": metrics.METRICS[spec.metric].higher_is_better,
                "source": shown, "n_eval": len(data.eval), "n_train": len(data.train) if data.train else 0,
                "n_corpus_docs": len(data.corpus) if data.corpus else 0, "labels": data.labels,
                "hashes": data.hashes, "eval_ids": [e.id for e in data.eval.examples],
                "finetune_mode": spec.finetune.mode, "trust_remote_code": spec.models.trust_remote_code,
                "leakage": data.leakage.to_dict() if data.leakage else None,
                "corpus_skipped": [{"document": d, "reason": r} for d, r in data.corpus_skipped],
            },
            "base_model": selection["chosen"],
            "base_model_selection": selection["table"],
            "pipelines": pipes,
            "costs": costs,
            "comparisons": decision.get("comparisons", []),
            "recommendation": decision,
            "stages": dict(store.status),
            # data problems every report format shows: leakage, skipped corpus documents
            "warnings": list(data.notes),
            "environment": environment(device),
            "wall_seconds": round(seconds, 2),
        }
        return report

    def write(self, report: dict) -> None:
        from .report import files

        for name in ORDER:
            r = self.results.get(name, {})
            if r.get("predictions"):
                lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in r["predictions"])
                atomic_write_text(self.out_dir / "predictions" / f"{name}.jsonl", redact(lines))
        self._remove_stale_outputs()
        files.write_all(report, self.out_dir)

    def _remove_stale_outputs(self) -> None:
        """A reused run folder keeps no output of an earlier run that this run did not produce
        (predictions, failure logs, an adapter): beside the new report they would read as its own.
        stages/ stays: it is the keyed cache resume relies on, never shown as a result."""
        for name in ORDER:
            r = self.results.get(name, {})
            if not r.get("predictions"):
                (self.out_dir / "predictions" / f"{name}.jsonl").unlink(missing_ok=True)
            if r.get("status") != "failed":
                (self.out_dir / "logs" / f"{name}.log").unlink(missing_ok=True)
        if self.results.get("finetune", {}).get("status") != "ok" and (self.out_dir / "adapter").exists():
            shutil.rmtree(self.out_dir / "adapter", ignore_errors=True)
            (self.out_dir / "stages" / "finetune.json").unlink(missing_ok=True)  # its artifact is gone
