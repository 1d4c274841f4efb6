"""The task file (task.yaml): pydantic models, path expansion, and one-line errors.

`load(path)` is the only entry point. Every problem becomes an `AdvisorError` naming the file,
the field and the fix, because a decision tool that answers a typo with a traceback loses trust.
The schema here is the truth; DESIGN.md only sketches it.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import AdvisorError

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
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Fields(_Strict):
    """Which column of the data files holds what."""

    input: str = "text"
    expected: str = "label"
    id: str | None = None
    context_id: str | None = None


class DataSpec(_Strict):
    eval: Path
    train: Path | None = None
    corpus: list[Path] | None = None
    fields: Fields = Field(default_factory=Fields)
    eval_limit: int | None = Field(default=None, ge=1)

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, Path)) else v


class ModelsSpec(_Strict):
    candidates: list[str] = Field(default_factory=lambda: [BUNDLED_LLM], min_length=1)
    embedding: str = BUNDLED_EMBEDDER
    selection_limit: int | None = Field(default=None, ge=1)
    trust_remote_code: bool = False


class Target(_Strict):
    metric: str
    min: float


class Budget(_Strict):
    setup_usd: float | None = Field(default=None, ge=0)
    requests_per_month: int = Field(default=100_000, gt=0)


class HardwareSpec(_Strict):
    gpu: str = "H100"
    usd_per_hour: float | None = Field(default=None, gt=0)


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
            raise ValueError("chunk_overlap must be smaller than chunk_chars")
        return self

    @field_validator("chroma_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/:]+(:\d+)?/?$", v):
            raise ValueError("chroma_url must look like http://host:port")
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
    seed: int = 0

    # set by load(): where the task came from (not part of the YAML)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v):
            raise ValueError("use letters, digits, '-', '_' or '.' (it names the run folder)")
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
# loading

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(text: str, *, where: str) -> str:
    """Expand ${VAR} and ${VAR:-default}; an unset variable without default is an error."""

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        value = os.environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        raise AdvisorError(
            f"${{{name}}} is not set",
            where=where,
            fix=f"export {name}=... or write ${{{name}:-default}}",
        )

    return _VAR.sub(sub, text)


def _loc(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _known_fields(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names allowed at `loc` (for "did you mean")."""
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        sub = next((a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is None:
            return []
        model = sub
    return [n for n in model.model_fields if n != "source"]


_FIXES = {
    "missing": "add it",
    "literal_error": None,
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "bool_parsing": "write true or false",
    "string_type": "write a text value",
    "list_type": "write a list",
    "model_type": "write a mapping (key: value lines)",
    "dict_type": "write a mapping (key: value lines)",
}


def _one_line(err: ValidationError, file: str) -> AdvisorError:
    e = err.errors()[0]
    loc, kind = tuple(e["loc"]), e["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_fields(TaskSpec, loc[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(known)}"
        parent = _loc(loc[:-1])
        where = f"{file}: unknown key '{key}'" + ("" if not loc[:-1] else f" in '{parent}'")
        return AdvisorError(hint, where=where)
    field = _loc(loc)
    msg = e["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind == "missing":
        return AdvisorError("is required", where=f"{file}: field '{field}'", fix="add it")
    fix = _FIXES.get(kind)
    got = e.get("input")
    got_txt = f" (got {got!r})" if got is not None and not isinstance(got, (dict, list)) else ""
    return AdvisorError(f"{msg}{got_txt}", where=f"{file}: field '{field}'", fix=fix)


def _expand_paths(raw: dict, file: str) -> None:
    """Expand ${VAR} in every path-valued field, in place, before validation."""
    data = raw.get("data")
    if isinstance(data, dict):
        for key in ("eval", "train"):
            if isinstance(data.get(key), str):
                data[key] = expand_vars(data[key], where=f"{file}: field 'data.{key}'")
        corpus = data.get("corpus")
        if isinstance(corpus, str):
            data["corpus"] = expand_vars(corpus, where=f"{file}: field 'data.corpus'")
        elif isinstance(corpus, list):
            data["corpus"] = [
                expand_vars(c, where=f"{file}: field 'data.corpus.{i}'") if isinstance(c, str) else c
                for i, c in enumerate(corpus)
            ]
    if isinstance(raw.get("labels"), str):
        raw["labels"] = expand_vars(raw["labels"], where=f"{file}: field 'labels'")
    models = raw.get("models")
    if isinstance(models, dict):
        if isinstance(models.get("candidates"), str):
            models["candidates"] = [models["candidates"]]
        if isinstance(models.get("candidates"), list):
            models["candidates"] = [
                expand_vars(c, where=f"{file}: field 'models.candidates.{i}'") if isinstance(c, str) else c
                for i, c in enumerate(models["candidates"])
            ]
        if isinstance(models.get("embedding"), str):
            models["embedding"] = expand_vars(models["embedding"], where=f"{file}: field 'models.embedding'")


def _resolve(p: Path, base: Path) -> Path:
    p = Path(os.path.expanduser(str(p)))
    return p if p.is_absolute() else (base / p)


def _resolve_model(name: str, base: Path) -> str:
    """Local model paths are relative to the task file too; ids and bundled: names stay."""
    if name.startswith(("bundled:", "/")) or not name.startswith((".", "~")):
        return name
    return str(_resolve(Path(name), base))


def parse(raw: Any, *, file: str, base: Path) -> TaskSpec:
    """Validate an already-parsed YAML document (used by load and by the fuzz tests)."""
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else type(raw).__name__
        raise AdvisorError(
            f"the task file is {kind}, not a mapping",
            where=file,
            fix="write 'key: value' lines such as 'name:', 'type:', 'data:', 'target:' (see examples/)",
        )
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise AdvisorError(f"key {bad_keys[0]!r} is not text", where=file, fix="use names such as 'name' or 'data'")
    _expand_paths(raw, file)
    try:
        spec = TaskSpec.model_validate(raw)
    except ValidationError as err:
        raise _one_line(err, file) from None
    allowed = METRICS_BY_TYPE[spec.type]
    if spec.target.metric not in allowed:
        raise AdvisorError(
            f"'{spec.target.metric}' is not a metric of a {spec.type} task",
            where=f"{file}: field 'target.metric'",
            fix=f"use one of: {', '.join(allowed)}",
        )
    if not 0 <= spec.target.min <= 1:
        raise AdvisorError(
            f"{spec.target.min} is outside 0..1", where=f"{file}: field 'target.min'", fix="write a score such as 0.8"
        )
    spec.data.eval = _resolve(spec.data.eval, base)
    if spec.data.train is not None:
        spec.data.train = _resolve(spec.data.train, base)
    if spec.data.corpus is not None:
        spec.data.corpus = [_resolve(c, base) for c in spec.data.corpus]
    if isinstance(spec.labels, Path):
        spec.labels = _resolve(spec.labels, base)
    spec.models.candidates = [_resolve_model(c, base) for c in spec.models.candidates]
    spec.models.embedding = _resolve_model(spec.models.embedding, base)
    return spec


def load(path: str | Path) -> TaskSpec:
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdvisorError("no such file", where=file, fix="check the path (see examples/ for a task file)") from None
    except IsADirectoryError:
        raise AdvisorError("is a folder, not a task file", where=file, fix="name the task.yaml inside it") from None
    except UnicodeDecodeError as e:
        raise AdvisorError(f"not UTF-8 text (byte {e.start})", where=file, fix="save it as UTF-8") from None
    except OSError as e:
        raise AdvisorError(f"cannot read ({e.strerror})", where=file, fix="check its permissions") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise AdvisorError(
            f"YAML syntax error: {problem}", where=f"{file}{pos}", fix="fix the indentation or quoting there"
        ) from None
    spec = parse(raw, file=file, base=path.resolve().parent)
    spec.source = path.resolve()
    return spec
