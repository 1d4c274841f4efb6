"""The one list of pipelines: what each is called, in which order it is tried, when it applies,
what its stored result depends on and how it is priced.

Every other layer (engine, decision, estimate, reports, history) reads this list at call time,
so a new pipeline is one module under pipelines/ plus one `register()`-ed entry — the seed's
order of operational simplicity (baseline < prompting < RAG < fine-tune) lives here and
nowhere else. Light on purpose: no heavy import, so `advisor --help` stays instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .data import MIN_TRAIN_FOR_FINETUNE

if TYPE_CHECKING:  # pragma: no cover
    from .data import TaskData
    from .spec import TaskSpec
    from .usage import Usage


@dataclass(frozen=True)
class TokenCounts:
    """Tokens per request and per training run, from a tokenizer alone (`advisor estimate`)."""

    zero: float  # zero-shot prompt
    few: float  # few-shot prompt
    output: float
    input_only: float  # the raw input (what an embedder reads)
    train_input: float  # all train inputs, once
    rag_prompt: float | None  # None: nothing to retrieve from
    corpus_tokens: float
    train_per_example: float
    train_tokens: float  # the configured fine-tune's training tokens (epochs, max_steps)


@dataclass(frozen=True)
class Situation:
    """What an applicability check may look at: the task, its data and the results so far."""

    spec: "TaskSpec"
    data: "TaskData"
    outcomes: dict[str, Any] = field(default_factory=dict)  # name -> decide.PipelineOutcome (earlier ones)
    base: str | None = None  # the chosen base model
    finetune_base: str | None = None  # the local model a fine-tune trains (None: every candidate is an endpoint)

    @property
    def has_train(self) -> bool:
        return bool(self.data is not None and self.data.train)

    @property
    def has_corpus(self) -> bool:
        return bool(self.data is not None and self.data.corpus)


Applies = Callable[[Situation], "str | None"]  # None: run it; a string: why it is skipped
CostInputs = Callable[["Usage", dict], dict]  # (usage, timings) -> extra cost-model keywords
EstimateInputs = Callable[[TokenCounts, "TaskSpec"], "dict | None"]  # None: not estimable for this task


@dataclass(frozen=True)
class PipelineEntry:
    name: str  # the key in report.json "pipelines" and in the stage store
    title: str  # what people read
    factory: str  # "module:Class", imported only when the stage is computed
    model: str = "base"  # "embedder" | "base" | "finetune_base": which model the stage runs on
    key_sections: tuple[str, ...] = ("prompting",)  # spec sections its stored result depends on
    cost_kind: str = "prompting"  # how cost.estimate_pipeline_cost prices it
    applies: Applies = lambda s: None
    cost_inputs: CostInputs = lambda usage, timings: {}
    estimate_inputs: EstimateInputs = lambda c, spec: {"prompt_tokens": max(c.zero, c.few)}
    artifacts: tuple[str, ...] = ()  # run-folder paths the stored stage keeps (an adapter)
    gated: bool = False  # a fine-tune step: in auto mode only when no cheaper pipeline meets the target
    requires: tuple[str, ...] = ()  # data it cannot run without: "train", "corpus_or_train"
    colour: str = "#374151"  # plots
    always_listed: bool = True  # False: a pipeline only some tasks have gets no "why not" line when absent
    # a family (the fine-tuning methods, issue 14): the variants the task asks for, each its own
    # stage (the factory gets method=...; `default_method` keeps the plain stage name and key), the
    # decision and the reports' main rows see the one chosen on train data, a table shows them all
    methods: "Callable[[TaskSpec], tuple[str, ...]] | None" = None
    default_method: str | None = None
    # what people read when the chosen member is not the default ("IA³ fine-tune", not "LoRA fine-tune")
    method_titles: "tuple[tuple[str, str], ...]" = ()

    def missing_data(self, has_train: bool, has_corpus: bool) -> str | None:
        """Why it cannot run on this data (the same words in the engine's skip and the decision's why-not)."""
        if "train" in self.requires and not has_train:
            return "no train set"
        if "corpus_or_train" in self.requires and not (has_corpus or has_train):
            return "no corpus and no train examples to retrieve"
        return None


_CATALOGUE: list[PipelineEntry] = []


def register(entry: PipelineEntry, *, after: str | None = None) -> PipelineEntry:
    """Add a pipeline (built-ins here, plugins and tests alike); `after` places it in the order."""
    if any(e.name == entry.name for e in _CATALOGUE):
        raise ValueError(f"pipeline {entry.name!r} is already registered")
    at = len(_CATALOGUE) if after is None else names().index(after) + 1
    _CATALOGUE.insert(at, entry)
    return entry


def unregister(name: str) -> None:
    _CATALOGUE[:] = [e for e in _CATALOGUE if e.name != name]


def entries() -> tuple[PipelineEntry, ...]:
    return tuple(_CATALOGUE)


def names() -> tuple[str, ...]:
    """Pipelines in order of operational simplicity (the preference among ones that meet the target)."""
    return tuple(e.name for e in _CATALOGUE)


def entry(name: str) -> PipelineEntry | None:
    return next((e for e in _CATALOGUE if e.name == name), None)


def title(name: str, method: str | None = None) -> str:
    """A pipeline's title; for a family, the chosen member's (report.json carries it as
    pipelines.<name>.title, so a report never calls an IA³ fine-tune "LoRA fine-tune")."""
    e = entry(name)
    if e is None:
        return name
    return dict(e.method_titles).get(method, e.title) if method else e.title


def titles() -> dict[str, str]:
    return {e.name: e.title for e in _CATALOGUE}


def rank(name: str) -> int:
    """Workflow position (simplest first); unknown names after every known one."""
    order = names()
    return order.index(name) if name in order else len(order)


def cheaper_than_gated() -> tuple[str, ...]:
    """The pipelines a fine-tune step must beat before auto mode pays for it."""
    return tuple(e.name for e in _CATALOGUE if not e.gated)


def method_stage(e: PipelineEntry, method: str) -> str:
    """The stage a family member is stored under: the entry's own name for its default method."""
    return e.name if method == e.default_method else f"{e.name}-{method}"


def colour(name: str) -> str:
    e = entry(name)
    return e.colour if e else "#374151"


# ---------------------------------------------------------------------------- applicability


def _baseline_applies(s: Situation) -> str | None:
    if s.spec.type != "classification":
        return "not a classification task"
    if not s.has_train:
        return "no train set to fit a classifier on"
    if not s.spec.baseline.enabled:
        return "disabled in the task file (baseline.enabled: false)"
    return None


def _constrained_applies(s: Situation) -> str | None:
    if s.spec.decoding == "choices":
        return "choices decoding (label likelihood) already constrains the output to the labels"
    if s.spec.format is None:
        return "the task declares no output format"
    return None


def _rag_applies(s: Situation) -> str | None:
    return RAG.missing_data(s.has_train, s.has_corpus)


def finetune_gate(s: Situation) -> str | None:
    """What every fine-tune step checks: a local model, enough train pairs, and — in auto mode —
    no cheaper pipeline already meeting the target (the seed's order)."""
    if s.finetune_base is None:
        return ("every candidate is an endpoint; fine-tuning needs a local model "
                "(add one to models.candidates)")
    if not s.has_train:
        return "no train set"
    if len(s.data.train) < MIN_TRAIN_FOR_FINETUNE:
        return f"{len(s.data.train)} train examples; fine-tuning needs {MIN_TRAIN_FOR_FINETUNE}"
    run, why = _mode_gate(s)
    return None if run else why


def _mode_gate(s: Situation) -> tuple[bool, str]:
    """--finetune auto|always|never against the non-gated pipelines' results (decide's rule)."""
    from .decide import should_run_finetune  # scipy: only when a run gets this far

    return should_run_finetune(s.spec.finetune.mode, s.outcomes, s.spec.target.min, s.spec.higher_is_better)


def gate_reason(s: Situation) -> str:
    """The sentence a gated pipeline that does run carries ("run because: ...")."""
    return _mode_gate(s)[1]


def _rag_finetune_applies(s: Situation) -> str | None:
    """A fine-tune step that also needs RAG: in auto mode only when retrieval helped prompting
    (retrieval that hurt is no reason to train on its prompts) and nothing cheaper — the
    closed-book fine-tune included — meets the target."""
    from .decide import should_run_finetune

    why = finetune_gate(s)
    if why is not None:
        return why
    rag = s.outcomes.get("rag")
    if rag is None or rag.status != "ok" or rag.score is None:
        return "RAG did not run, so there are no RAG prompts to train on" + (f" ({rag.reason})" if rag and rag.reason
                                                                                else "")
    if s.spec.finetune.mode != "auto":
        return None
    run, why = should_run_finetune("auto", s.outcomes, s.spec.target.min, s.spec.higher_is_better,
                                   cheaper=names()[: rank("rag_finetune")])
    if not run:
        return why
    prompting = s.outcomes.get("prompting")
    if prompting is not None and prompting.status == "ok" and prompting.score is not None:
        helped = rag.score > prompting.score if s.spec.higher_is_better else rag.score < prompting.score
        if not helped:
            return (f"RAG did not help prompting ({rag.score:.3g} vs {prompting.score:.3g}), so its prompts are no "
                    "better to train on (--finetune always runs it anyway)")
    return None


# ---------------------------------------------------------------------------- cost inputs


def _baseline_cost(u: "Usage", timings: dict) -> dict:
    return {"train_tokens": u.train_tokens or 0}


def _rag_cost(u: "Usage", timings: dict) -> dict:
    return {"index_seconds": timings.get("index", 0.0), "query_tokens": u.query_tokens_mean or 0,
            "corpus_tokens": u.corpus_tokens or 0}


def _finetune_cost(u: "Usage", timings: dict) -> dict:
    return {"train_tokens": u.train_tokens_total or 0, "trainable_params": u.trainable_params or 0,
            "measured_train_seconds": u.train_seconds, "measured_device": u.device_hardware,
            "measured_load_per_core": u.cpu_load_per_core, "train_seq_len": u.train_seq_len,
            "method": u.extra.get("method", "lora")}  # full: 6·N·D, the parameter-efficient methods 4·N·D


def _rag_finetune_cost(u: "Usage", timings: dict) -> dict:
    """Training on the RAG prompts (a LoRA's inputs) and RAG's index and query embedding."""
    return {**_rag_cost(u, timings), **_finetune_cost(u, timings)}


def _baseline_estimate(c: TokenCounts, spec) -> dict | None:
    # no LLM: the embedder reads each input once (the LLM's tokenizer stands in for its own)
    return {"prompt_tokens": c.input_only, "train_tokens": c.train_input, "output_tokens": 0} if c.train_input else None


def _rag_estimate(c: TokenCounts, spec) -> dict | None:
    if c.rag_prompt is None:
        return None
    return {"prompt_tokens": c.rag_prompt, "corpus_tokens": c.corpus_tokens, "query_tokens": c.input_only}


def _finetune_estimate(c: TokenCounts, spec) -> dict | None:
    """The first listed method (finetune.methods): the one a dry run prices."""
    return finetune_estimate(c, spec, spec.finetune.methods[0])


def finetune_estimate(c: TokenCounts, spec, method: str) -> dict | None:
    """Cost inputs of training ``method`` on the task's train pairs: full is 6·N·D, and prompt
    tuning's virtual tokens run with every training row and every request."""
    if not c.train_tokens:
        return None
    per = c.train_per_example
    virtual = spec.finetune.prompt_tuning_tokens if method == "prompt_tuning" else 0
    scale = (per + virtual) / per if per else 1.0
    return {"prompt_tokens": c.zero + virtual, "train_tokens": c.train_tokens * scale,
            "train_seq_len": int(per + virtual), "train_batch": spec.finetune.batch_size, "method": method}


def _rag_finetune_estimate(c: TokenCounts, spec) -> dict | None:
    """The configured fine-tune with the retrieved passages added to every training prompt."""
    rag, ft = _rag_estimate(c, spec), _finetune_estimate(c, spec)
    if rag is None or ft is None or not c.train_per_example:
        return None
    per = c.train_per_example + max(0.0, c.rag_prompt - c.zero)
    return {**rag, "train_tokens": c.train_tokens * per / c.train_per_example, "train_seq_len": int(per),
            "train_batch": spec.finetune.batch_size}


# ---------------------------------------------------------------------------- the built-ins

BASELINE = register(PipelineEntry(
    name="baseline", title="Classical baseline", factory="pipelines.baseline:BaselinePipeline", model="embedder",
    key_sections=("baseline",), cost_kind="baseline", applies=_baseline_applies, cost_inputs=_baseline_cost,
    estimate_inputs=_baseline_estimate, requires=("train",), colour="#6b7280",
))
PROMPTING = register(PipelineEntry(
    name="prompting", title="Prompting", factory="pipelines.prompting:PromptingPipeline",
    key_sections=("prompting",), cost_kind="prompting", colour="#2563eb",
))
# prompting with the task's declared format enforced while decoding: the cheap fix for a format,
# tried before RAG and a fine-tune; only for tasks that declare one
CONSTRAINED = register(PipelineEntry(
    name="constrained", title="Constrained decoding", factory="pipelines.constrained:ConstrainedPipeline",
    key_sections=("prompting",), cost_kind="constrained", applies=_constrained_applies, colour="#7c3aed",
    always_listed=False,
    estimate_inputs=lambda c, spec: {"prompt_tokens": max(c.zero, c.few)} if spec.format is not None else None,
))
RAG = register(PipelineEntry(
    name="rag", title="RAG", factory="pipelines.rag:RagPipeline",
    key_sections=("prompting", "rag", "models"), cost_kind="rag", applies=_rag_applies, cost_inputs=_rag_cost,
    estimate_inputs=_rag_estimate, requires=("corpus_or_train",), colour="#ea7a0c",
))
FINETUNE = register(PipelineEntry(
    name="finetune", title="LoRA fine-tune", factory="pipelines.finetune:FinetunePipeline", model="finetune_base",
    # hardware: the training device and its name are part of the measured result
    key_sections=("prompting", "finetune", "hardware"), cost_kind="finetune", applies=finetune_gate,
    cost_inputs=_finetune_cost, estimate_inputs=_finetune_estimate, gated=True, requires=("train",),
    colour="#16a34a",
    # finetune.methods (lora, full, prompt_tuning, ia3); each one's weights: pipelines.methods.artifact_dir
    methods=lambda spec: tuple(spec.finetune.methods), default_method="lora",
    method_titles=(("lora", "LoRA fine-tune"), ("full", "Full fine-tune"), ("prompt_tuning", "Prompt tuning"),
                   ("ia3", "IA³ fine-tune")),
    artifacts=("adapter", "adapter-full", "adapter-prompt_tuning", "adapter-ia3"),
))
# a LoRA trained on RAG's own prompts, evaluated through RAG's chain on the adapter: the last step
RAG_FINETUNE = register(PipelineEntry(
    name="rag_finetune", title="RAG + fine-tune", factory="pipelines.rag_finetune:RagFinetunePipeline",
    model="finetune_base", key_sections=("prompting", "rag", "finetune", "hardware", "models"),
    cost_kind="rag_finetune", applies=_rag_finetune_applies, cost_inputs=_rag_finetune_cost,
    estimate_inputs=_rag_finetune_estimate, artifacts=("adapter-rag",), gated=True,
    requires=("train", "corpus_or_train"), colour="#0d9488",
))
