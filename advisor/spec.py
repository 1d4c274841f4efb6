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
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import AdvisorError
from .spec_loading import (
    check_document,
    expand_path_vars,
    expand_vars,  # noqa: F401 - re-exported: part of this module's API before the split
    one_line_error,
    read_yaml,
    resolve_paths,
)
from .spec_loading import describe_kind as _kind

TaskType = Literal["classification", "qa", "generation"]

# metric -> higher is better; the first metric of each type is its primary one.
METRICS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "qa": ("token_f1", "exact_match", "contains"),
    "generation": ("token_f1", "exact_match", "contains"),
}
DEFAULT_MAX_NEW_TOKENS = {"classification": 8, "qa": 32, "generation": 64}
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


class ModelsSpec(_Strict):
    candidates: list[str] = Field(default_factory=lambda: [BUNDLED_LLM], min_length=1)
    embedding: str = BUNDLED_EMBEDDER
    selection_limit: int | None = Field(default=None, ge=1)
    trust_remote_code: bool = False

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
    metric: str
    min: float


class Budget(_Strict):
    setup_usd: float | None = Field(default=None, ge=0)
    requests_per_month: int = Field(default=100_000, gt=0)
    # Months over which a pipeline's cost of ownership (setup + requests) is compared.
    horizon_months: int = Field(default=12, ge=1, le=120)


class DecisionSpec(_Strict):
    """How the recommendation weighs evidence (advisor/decide.py)."""

    # "As good as": a simpler pipeline is preferred when its one-sided 95 % lower bound on
    # (its score - the better one's) is above -margin (non-inferiority), on the metric's scale.
    margin: float = Field(default=0.05, ge=0, lt=1)


class HardwareSpec(_Strict):
    gpu: str = "H100"
    usd_per_hour: float | None = Field(default=None, gt=0)

    @field_validator("gpu")
    @classmethod
    def _known_gpu(cls, v: str) -> str:
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


class RagSpec(_Strict):
    mode: Literal["auto", "documents", "examples", "both"] = "auto"
    k: int = Field(default=4, ge=1, le=64)
    chunk_chars: int = Field(default=800, ge=50)
    chunk_overlap: int = Field(default=100, ge=0)
    chroma_url: str | None = None

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

    @property
    def max_new_tokens(self) -> int:
        return self.prompting.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[self.type]

    def section(self, *names: str) -> dict:
        """JSON-able dump of some sections: what a cached stage depends on."""
        dumped = self.model_dump(mode="json")
        return {n: dumped[n] for n in names}


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
    allowed = METRICS_BY_TYPE[spec.type]
    if spec.target.metric not in allowed:
        raise AdvisorError(
            f"'{spec.target.metric}' is not a metric of a {spec.type} task",
            where=f"{file}: field 'target.metric'",
            fix=f"use one of: {', '.join(allowed)}",
        )
    if not 0 <= spec.target.min <= 1:
        raise AdvisorError(
            f"{spec.target.min:g} is outside 0..1", where=f"{file}: field 'target.min'", fix="write a score such as 0.8"
        )
    resolve_paths(spec, base)
    return spec


def load(path: str | Path) -> TaskSpec:
    path = Path(path)
    raw = read_yaml(path)
    spec = parse(raw, file=str(path), base=path.resolve().parent)
    spec.source = path.resolve()
    return spec
