"""The task file (task.yaml): its pydantic schema, and `load()` that returns a checked TaskSpec.

`load(path)` is the only entry point. Every problem becomes an `AdvisorError` naming the file,
the field and the fix, because a decision tool that answers a typo with a traceback loses trust.
The schema here is the truth; DESIGN.md only sketches it. How the file is read (YAML, ${VAR},
paths relative to the file, one-line errors) lives in spec_loading.py, so this file stays the schema.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import metrics as _metrics
from .errors import AdvisorError
from .spec_loading import (
    check_document,
    expand_path_vars,
    one_line_error,
    read_yaml,
    resolve_paths,
)
from .spec_loading import describe_kind as _kind

TaskType = Literal["classification", "qa", "generation"]

# the registry's list (one place); re-exported here because callers read it from spec
METRICS_BY_TYPE = _metrics.METRICS_BY_TYPE
DEFAULT_MAX_NEW_TOKENS = {"classification": 8, "qa": 32, "generation": 64}
# The decision's defaults live here, the one place both the spec and advisor/decide.py read
# (decide imports scipy; the spec must not, so that `advisor --help` stays instant).
# "As good as": a gap smaller than 5 points of a 0-1 score is one a team would rather not pay
# (in setup or operations) to close. At n = 60 a paired difference's one-sided bound sits
# ~0.06-0.1 below its estimate, so a smaller default could almost never be shown.
DEFAULT_MARGIN = 0.05
DEFAULT_HORIZON_MONTHS = 12  # months over which costs of ownership are compared
BUNDLED_LLM = "bundled:smollm2-135m-instruct"
BUNDLED_EMBEDDER = "bundled:all-minilm-l6-v2"


class _Strict(BaseModel):
    # allow_inf_nan=False: `.nan` / `.inf` in a YAML number is a typo, never a price or a score.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _path_value(v: Any) -> Any:
    """A path field: text (or a Path), not empty, no NUL; anything else is a clear error."""
    if isinstance(v, Path):
        return v
    if v is None or (isinstance(v, str) and not v.strip()):
        raise ValueError("is empty; write a path relative to the task file")
    if not isinstance(v, str):
        raise ValueError(f"must be a path (text), not {_kind(v)}; write a path relative to the task file")
    if "\x00" in v:
        raise ValueError("contains a NUL character; write a plain path")
    return v


class Fields(_Strict):
    """Which column of the data files holds what."""

    input: str = "text"
    expected: str = "label"
    id: str | None = None
    context_id: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> "Fields":
        if self.input == self.expected:
            raise ValueError(f"input and expected are both '{self.input}'; map them to different columns")
        return self


class DataSpec(_Strict):
    eval: Path
    train: Path | None = None
    corpus: list[Path] | None = None
    fields: Fields = Field(default_factory=Fields)
    eval_limit: int | None = Field(default=None, ge=1)
    # eval items also in the train set (exact or near-duplicate) inflate every pipeline that
    # learns from train: warn (the report counts them) or drop them from the train set
    leakage: Literal["warn", "drop"] = "warn"

    @field_validator("eval", mode="before")
    @classmethod
    def _eval_path(cls, v: Any) -> Any:
        return _path_value(v)

    @field_validator("train", mode="before")
    @classmethod
    def _train_path(cls, v: Any) -> Any:
        return None if v is None else _path_value(v)

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if v is None:
            return None
        if isinstance(v, list):
            if not v:
                raise ValueError("is an empty list; name a .jsonl file or a folder of .md/.txt, or remove it")
            return [_path_value(x) for x in v]
        return [_path_value(v)]


class ModelFactsSpec(_Strict):
    """What the task says about a model advisor cannot read: its size (and, optionally, shape)."""

    params: float | None = Field(default=None, gt=0)
    active_params: float | None = Field(default=None, gt=0)
    n_layers: int | None = Field(default=None, ge=1)
    hidden: int | None = Field(default=None, ge=1)
    context: int | None = Field(default=None, ge=1)
    pretrain_tokens: float | None = Field(default=None, gt=0)


class EndpointSpec(_Strict):
    """An OpenAI-compatible server as a candidate: a hosted API, or a team's vLLM / llama.cpp /
    Ollama / TGI. The key is read from the environment variable named here, never from the file."""

    base_url: str
    model: str | None = None  # the server's model name (default: the candidate's name)
    api_key_env: str | None = None
    price_in: float | None = Field(default=None, ge=0)  # $ per million input tokens
    price_out: float | None = Field(default=None, ge=0)  # $ per million output tokens
    max_concurrency: int = Field(default=4, ge=1, le=64)
    max_retries: int = Field(default=4, ge=0, le=10)
    timeout_s: float = Field(default=60, gt=0)
    choices: Literal["auto", "prompt_logprobs", "first_token", "generate"] = "auto"
    # a local copy of the served model's tokenizer (a folder, HF id in the cache or bundled: name):
    # token counts in `advisor estimate`, and exact label likelihoods from prompt log-probabilities
    tokenizer: str | None = None

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+(/\S*)?$", v):
            raise ValueError(f"{v!r} is not a server address; write e.g. http://127.0.0.1:8080/v1")
        return v.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(f"{v!r} is not an environment variable name; write the variable's name (e.g. OPENAI_API_KEY), "
                             "never the key itself")
        return v


def _checked(model: type[BaseModel], values: dict, i: int, name: str) -> BaseModel:
    """Validate a candidate mapping's part here, so an error names the candidate the user wrote."""
    try:
        return model.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        field = ".".join(str(x) for x in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        raise ValueError(f"candidates item {i} ('{name}'), {field}: {msg}") from None


_FACT_KEYS = set(ModelFactsSpec.model_fields)
_ENDPOINT_KEYS = set(EndpointSpec.model_fields)


class ModelsSpec(_Strict):
    candidates: list[str] = Field(default_factory=lambda: [BUNDLED_LLM], min_length=1)
    embedding: str = BUNDLED_EMBEDDER
    selection_limit: int | None = Field(default=None, ge=1)
    trust_remote_code: bool = False
    # filled from candidates written as mappings ({name: ..., params: ...} / {name: ..., base_url: ...})
    endpoints: dict[str, EndpointSpec] = Field(default_factory=dict)
    facts: dict[str, ModelFactsSpec] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _candidate_mappings(cls, v: Any) -> Any:
        """A candidate may be a mapping: its name stays in `candidates` (a list of names for every
        consumer), its endpoint settings go to `endpoints`, its size to `facts`."""
        if not isinstance(v, dict) or not isinstance(v.get("candidates"), list):
            return v
        v = dict(v)
        names, endpoints, facts = [], dict(v.get("endpoints") or {}), dict(v.get("facts") or {})
        for i, c in enumerate(v["candidates"]):
            if not isinstance(c, dict):
                names.append(c)
                continue
            name = c.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ValueError(f"candidates item {i} has no 'name'; write e.g. {{name: my-model, params: 8.0e9}}")
            unknown = set(c) - _FACT_KEYS - _ENDPOINT_KEYS - {"name"}
            if unknown:
                raise ValueError(f"candidates item {i} ('{name}') has unknown key(s) {', '.join(sorted(unknown))}; "
                                 f"use params/pretrain_tokens or base_url/model/api_key_env/price_in/price_out")
            ep = {k: c[k] for k in c if k in _ENDPOINT_KEYS}
            fa = {k: c[k] for k in c if k in _FACT_KEYS}
            if ep:
                if "base_url" not in ep:
                    raise ValueError(f"candidates item {i} ('{name}') has endpoint settings but no base_url")
                endpoints[name] = _checked(EndpointSpec, ep, i, name)
            if fa:
                facts[name] = _checked(ModelFactsSpec, fa, i, name)
            if not ep and not fa:
                raise ValueError(f"candidates item {i} ('{name}') says nothing but its name; write it as a plain name")
            names.append(name)
        v["candidates"], v["endpoints"], v["facts"] = names, endpoints, facts
        return v

    @model_validator(mode="after")
    def _unique(self) -> "ModelsSpec":
        seen = set()
        for c in self.candidates:
            if c in seen:
                raise ValueError(f"candidate '{c}' is listed twice; list each model once")
            seen.add(c)
        return self

    def is_endpoint(self, name: str) -> bool:
        return name in self.endpoints

    @property
    def local_candidates(self) -> list[str]:
        return [c for c in self.candidates if c not in self.endpoints]

    @field_validator("candidates", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, list):
            for i, x in enumerate(v):
                if isinstance(x, str) and (not x.strip() or "\x00" in x):
                    raise ValueError(f"item {i} is not a model name; write e.g. {BUNDLED_LLM}")
        return v

    @field_validator("embedding")
    @classmethod
    def _embedding_name(cls, v: str) -> str:
        if not v.strip() or "\x00" in v:
            raise ValueError(f"is not a model name; write e.g. {BUNDLED_EMBEDDER}")
        return v


class Target(_Strict):
    metric: str  # a registry name, a format check, or a custom scorer `module:function`
    min: float
    threshold: float | None = Field(default=None, ge=0, le=1)  # semantic_similarity: cosine >= t counts 1
    higher_is_better: bool = True  # custom scorers only: the registry knows its own metrics


class FormatSpec(_Strict):
    """The output format the task requires: checked for every pipeline, enforced by `constrained`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False, populate_by_name=True)

    json_: bool = Field(default=False, alias="json")  # the output must be JSON
    schema_: dict | str | None = Field(default=None, alias="schema")  # JSON Schema: inline, or a .json file
    regex: str | None = None  # the whole output must match
    required: list[str] = Field(default_factory=list)  # fields the JSON object must fill
    answer_field: str | None = None  # content metrics score this field of the JSON, not the raw text

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"is not a regular expression ({e}); fix the pattern") from None
        return v

    def rules(self) -> "_metrics.FormatRules":
        schema = self.schema_ if isinstance(self.schema_, dict) else None
        return _metrics.FormatRules(self.json_, schema, self.regex, tuple(self.required), self.answer_field)


class JudgeSpec(_Strict):
    """An LLM judge: a rubric scored per item (PASS/FAIL with its reasoning), cached."""

    model: str = BUNDLED_LLM
    rubric: str = Field(min_length=1)
    max_new_tokens: int = Field(default=48, ge=8, le=512)  # room for the reasoning line
    reference: str | None = None  # the exact metric it is calibrated against (default: exact_match)
    groundedness: bool = True  # RAG: is the answer supported by the retrieved passages?


class Budget(_Strict):
    setup_usd: float | None = Field(default=None, ge=0)
    requests_per_month: int = Field(default=100_000, gt=0)
    # Months over which a pipeline's cost of ownership (setup + requests) is compared.
    horizon_months: int = Field(default=DEFAULT_HORIZON_MONTHS, ge=1, le=120)


class DecisionSpec(_Strict):
    """How the recommendation weighs evidence (advisor/decide.py)."""

    # "As good as": a simpler pipeline is preferred when its one-sided 95 % lower bound on
    # (its score - the better one's) is above -margin (non-inferiority), on the metric's scale.
    margin: float = Field(default=DEFAULT_MARGIN, ge=0, lt=1)


class HardwareSpec(_Strict):
    gpu: str = "H100"
    usd_per_hour: float | None = Field(default=None, gt=0)

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
        return _hardware_name(v)


def _hardware_name(v: str) -> str:
    """A name from cost.HARDWARE, in its own spelling; ValueError with a close match otherwise."""
    from .cost import HARDWARE  # pure, stdlib only

    names = {k.lower(): k for k in HARDWARE}
    if v.strip().lower() in names:
        return names[v.strip().lower()]
    close = difflib.get_close_matches(v.strip().lower(), list(names), n=1, cutoff=0.6)
    hint = f"did you mean '{names[close[0]]}'? " if close else ""
    raise ValueError(f"unknown hardware '{v}'; {hint}known: {', '.join(HARDWARE)}")


class PromptingSpec(_Strict):
    shots: int = Field(default=4, ge=0, le=64)
    max_new_tokens: int | None = Field(default=None, ge=1, le=1024)


FinetuneMethod = Literal["lora", "full", "prompt_tuning", "ia3"]
METHOD_NAMES: tuple[str, ...] = get_args(FinetuneMethod)
# Default learning rates of the other methods, at the scale their authors and peft's examples use:
# full fine-tuning of a small LM ~1e-5..1e-4 (every weight moves), IA³ 3e-3 (Liu et al. 2022),
# prompt tuning 3e-2 (a few embeddings from scratch; peft's causal-LM example).
METHOD_LR = {"full": 5e-5, "ia3": 3e-3, "prompt_tuning": 3e-2}
# finetune fields added with the methods: left out of stage keys at their defaults, so that a
# LoRA-only task keeps the key (and the cached result) it had before them
METHOD_FIELDS_DEFAULTS = {"methods": ["lora"], "method_lr": {}, "prompt_tuning_tokens": 20,
                          "prompt_tuning_init": "text"}


class FinetuneSpec(_Strict):
    mode: Literal["auto", "always", "never"] = "auto"
    r: int = Field(default=8, ge=1, le=512)
    alpha: float = Field(default=16, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    targets: str | list[str] = "q,v"
    lr: float = Field(default=1e-3, gt=0, lt=1)
    warmup_ratio: float = Field(default=0.06, ge=0, lt=1)
    epochs: float = Field(default=2, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    cpu_max_steps: int = Field(default=100, ge=1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    val_fraction: float = Field(default=0.1, ge=0, lt=0.5)
    max_length: int = Field(default=512, ge=16)
    seed: int = 0
    # processes for the training stage (`advisor assess --gpus N`): >1 launches it with accelerate
    # (DDP; CPU processes over gloo when there is no GPU); everything else stays in one process
    devices: int = Field(default=1, ge=1, le=64)
    # an accelerate config file for that launch, e.g. FSDP for a model that does not fit one card
    accelerate_config: str | None = None
    # fine-tuning methods measured side by side (issue 14): each trains as its own stage and the
    # decision treats them as one family, "the fine-tune" being the one with the lowest validation
    # loss. lora: r/alpha/targets above; full: every base weight; prompt_tuning: learned virtual
    # tokens before the prompt; ia3: learned scaling vectors (k, v, down_proj on Llama).
    methods: list[FinetuneMethod] = Field(default_factory=lambda: ["lora"], min_length=1)
    # learning rate per method; `lr` stays LoRA's, the others default to METHOD_LR
    method_lr: dict[FinetuneMethod, float] = Field(default_factory=dict)
    prompt_tuning_tokens: int = Field(default=20, ge=1, le=512)
    # text: the virtual tokens start as the embeddings of the task's instructions (repeated to
    # fill them); random: as embeddings of tokens drawn from the vocabulary
    prompt_tuning_init: Literal["text", "random"] = "text"

    @field_validator("methods")
    @classmethod
    def _distinct_methods(cls, v: list[str]) -> list[str]:
        dup = sorted({m for m in v if v.count(m) > 1})
        if dup:
            raise ValueError(f"{', '.join(dup)} is listed twice; list each method once")
        return v

    @field_validator("method_lr")
    @classmethod
    def _positive_lr(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [m for m, lr in v.items() if not 0 < lr < 1]
        if bad:
            raise ValueError(f"the learning rate of {bad[0]} must be between 0 and 1 (exclusive)")
        return v

    @model_validator(mode="after")
    def _one_process_for_other_methods(self) -> "FinetuneSpec":
        if self.devices > 1 and self.methods != ["lora"]:
            raise ValueError("several processes (devices > 1) train LoRA only; "
                             "set methods: [lora] or devices: 1")
        return self

    def lr_for(self, method: str) -> float:
        """LoRA keeps `lr` (today's tasks are tuned for it); the others have their own scale."""
        if method in self.method_lr:
            return self.method_lr[method]
        return self.lr if method == "lora" else METHOD_LR[method]


class RagSpec(_Strict):
    mode: Literal["auto", "documents", "examples", "both"] = "auto"
    k: int = Field(default=4, ge=1, le=64)
    chunk_chars: int = Field(default=800, ge=50)
    chunk_overlap: int = Field(default=100, ge=0)
    chroma_url: str | None = None
    # RAG + fine-tune (RAFT): share of its training prompts whose gold passage is left out, so the
    # adapter also learns from retrieved context that does not hold the answer (documents mode).
    # None: the pipeline's default (pipelines/rag_finetune.DEFAULT_DISTRACTOR_SHARE)
    distractor_share: float | None = Field(default=None, ge=0, le=1)

    @model_validator(mode="after")
    def _overlap_fits(self) -> "RagSpec":
        if self.chunk_overlap >= self.chunk_chars:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_chars ({self.chunk_chars}); "
                "lower rag.chunk_overlap"
            )
        return self

    @field_validator("chroma_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/:]+(:\d+)?/?$", v):
            raise ValueError(f"{v!r} is not a server address; write e.g. http://localhost:8000")
        return v


class BaselineSpec(_Strict):
    enabled: bool = True
    k: int = Field(default=8, ge=1)
    # Where the classical baseline is priced (cost only, not part of its cached result): a team
    # does run a kNN on a CPU. It is also priced on hardware.gpu to compare like with like.
    device: str = "CPU"

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        return _hardware_name(v)


class TaskSpec(_Strict):
    name: str = Field(min_length=1)
    type: TaskType
    decoding: Literal["choices", "generate"] | None = None
    instructions: str = ""
    labels: list[str] | Path | None = None
    data: DataSpec
    models: ModelsSpec = Field(default_factory=ModelsSpec)
    target: Target
    budget: Budget = Field(default_factory=Budget)
    hardware: HardwareSpec = Field(default_factory=HardwareSpec)
    prompting: PromptingSpec = Field(default_factory=PromptingSpec)
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    rag: RagSpec = Field(default_factory=RagSpec)
    baseline: BaselineSpec = Field(default_factory=BaselineSpec)
    format: FormatSpec | None = None
    judge: JudgeSpec | None = None
    decision: DecisionSpec = Field(default_factory=DecisionSpec)
    seed: int = 0

    # set by load(): where the task came from (not part of the YAML)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("labels", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        """A list of labels (numbers become text, as they do in the data) or a JSON file path."""
        if v is None or isinstance(v, Path):
            return v
        if isinstance(v, str):
            return Path(_path_value(v))
        if isinstance(v, list):
            out = []
            for i, x in enumerate(v):
                if isinstance(x, (str, int, float, bool)) and str(x).strip():
                    out.append(str(x))
                else:
                    raise ValueError(f"item {i} ({x!r}) is not a label name; write each label as text")
            return out
        raise ValueError(
            f"must be a list of labels or the path of a JSON file, not {_kind(v)}; write e.g. [negative, positive]"
        )

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError(f"{v!r} is not a usable name (it names the run folder); use letters, digits, '-', '_' or '.'")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "TaskSpec":
        if self.decoding is None:
            self.decoding = "choices" if self.type == "classification" else "generate"
        elif self.decoding == "choices" and self.type != "classification":
            raise ValueError("decoding 'choices' is only for classification tasks; use 'generate'")
        if self.type != "classification" and self.labels is not None:
            raise ValueError("labels are only for classification tasks; remove 'labels'")
        return self

    @property
    def metric(self) -> str:
        return self.target.metric

    def format_rules(self) -> "_metrics.FormatRules | None":
        return self.format.rules() if self.format else None

    @property
    def higher_is_better(self) -> bool:
        return _metrics.get_metric(self.metric, self.target.higher_is_better).higher_is_better

    @property
    def max_new_tokens(self) -> int:
        return self.prompting.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[self.type]

    def section(self, *names: str) -> dict:
        """JSON-able dump of some sections: what a cached stage depends on."""
        dumped = self.model_dump(mode="json")
        # fields added later are left out at their defaults, so that stage keys of tasks that
        # do not use them (and the results cached under those keys) stay the same
        later = (("target", "threshold", None), ("target", "higher_is_better", True), ("rag", "distractor_share", None),
                 *(("finetune", k, default) for k, default in METHOD_FIELDS_DEFAULTS.items()))
        for section, k, default in later:
            if dumped[section].get(k) == default:
                dumped[section].pop(k)
        dumped["baseline"].pop("device", None)  # prices the result, does not change it
        dumped["finetune"].pop("mode", None)  # gates whether a fine-tune runs, not what it computes
        return {n: dumped[n] for n in names if not (n in ("format", "judge") and dumped[n] is None)}


# ---------------------------------------------------------------------------------------------
# entry points (the reading machinery is in spec_loading.py)

def parse(raw: Any, *, file: str, base: Path) -> TaskSpec:
    """Validate an already-parsed YAML document (used by load and by the fuzz tests)."""
    check_document(raw, file)
    expand_path_vars(raw, file)
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as err:
        raise one_line_error(err, file, TaskSpec) from None
    _load_schema(spec, file, base)
    _check_metric(spec, file, base)
    if not 0 <= spec.target.min <= 1:
        raise AdvisorError(
            f"{spec.target.min:g} is outside 0..1", where=f"{file}: field 'target.min'", fix="write a score such as 0.8"
        )
    resolve_paths(spec, base)
    return spec


def _check_metric(spec: TaskSpec, file: str, base: Path) -> None:
    """target.metric: a registry metric of the type, a declared format check, or `module:function`."""
    where = f"{file}: field 'target.metric'"
    m, t = spec.target.metric, spec.target
    declared = spec.format_rules().checks if spec.format and spec.type != "classification" else ()
    if spec.format is not None and spec.type == "classification":
        raise AdvisorError("a classification answer is a label, not a format", where=f"{file}: field 'format'",
                           fix="remove 'format' (choices decoding already constrains the output to the labels)")
    if _metrics.is_custom(m):
        if not _metrics.custom_scorer_file(m, base).is_file():
            raise AdvisorError(f"scorer module {_metrics.custom_scorer_file(m, base)} not found", where=where,
                               fix="write module:function with the module's .py file beside the task file")
    elif m in _metrics.FORMAT_METRICS:
        if m not in declared:
            need = {"json_schema": "format.schema", "regex_match": "format.regex",
                    "required_fields": "format.required"}.get(m, "a format section (e.g. format: {json: true})")
            raise AdvisorError(f"'{m}' needs {need} in the task", where=where, fix=f"add {need} or pick another metric")
    elif m not in METRICS_BY_TYPE[spec.type]:
        allowed = [*METRICS_BY_TYPE[spec.type], *declared]
        raise AdvisorError(
            f"'{m}' is not a metric of a {spec.type} task", where=where,
            fix=f"use one of: {', '.join(allowed)}, or a custom scorer module:function",
        )
    if t.threshold is not None and m != "semantic_similarity":
        raise AdvisorError("a threshold only applies to semantic_similarity", where=f"{file}: field 'target.threshold'",
                           fix="remove it or use metric: semantic_similarity")
    if not t.higher_is_better and not _metrics.is_custom(m):
        raise AdvisorError(f"'{m}' is a registry metric with a known direction", where=f"{file}: field 'target.higher_is_better'",
                           fix="remove it (only custom scorers declare their direction)")
    if spec.judge is not None and spec.type == "classification":
        raise AdvisorError("a judge scores free-text answers", where=f"{file}: field 'judge'",
                           fix="remove 'judge' for a classification task")


def _load_schema(spec: TaskSpec, file: str, base: Path) -> None:
    """format.schema: read a .json file relative to the task file, and check it is a JSON Schema."""
    if spec.format is None or spec.format.schema_ is None:
        return
    import json

    import jsonschema

    where = f"{file}: field 'format.schema'"
    schema = spec.format.schema_
    if isinstance(schema, str):
        path = Path(schema) if Path(schema).is_absolute() else base / schema
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise AdvisorError(f"cannot read {path} ({e.strerror or e})", where=where, fix="fix the path") from None
        except ValueError as e:
            raise AdvisorError(f"{path} is not JSON ({e})", where=where, fix="write the schema as JSON") from None
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise AdvisorError(f"not a valid JSON Schema ({e.message})", where=where, fix="fix the schema") from None
    spec.format.schema_ = schema


def load(path: str | Path) -> TaskSpec:
    path = Path(path)
    raw = read_yaml(path)
    spec = parse(raw, file=str(path), base=path.resolve().parent)
    spec.source = path.resolve()
    return spec
