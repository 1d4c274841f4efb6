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


def _kind(v: Any) -> str:
    return {dict: "a mapping", list: "a list", bool: "true/false", int: "a number", float: "a number",
            str: "text"}.get(type(v), type(v).__name__)


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
    # pydantic adds union/validator tags such as 'list[str]' to a location; keep field names only
    parts = [str(p) for p in loc if isinstance(p, int) or str(p).isidentifier()]
    return ".".join(parts) or "(top level)"


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


# pydantic error type -> (what the value must be, how to fix it)
_TYPES = {
    "int_parsing": ("must be a whole number", "write a whole number"),
    "int_type": ("must be a whole number", "write a whole number"),
    "int_from_float": ("must be a whole number", "write a whole number"),
    "float_parsing": ("must be a number", "write a number"),
    "float_type": ("must be a number", "write a number"),
    "finite_number": ("must be a finite number", "write a number"),
    "bool_parsing": ("must be true or false", "write true or false"),
    "bool_type": ("must be true or false", "write true or false"),
    "string_type": ("must be text", "write a text value (quote it if needed)"),
    "list_type": ("must be a list", "write a list such as [a, b]"),
    "model_type": ("must be a mapping", "write 'key: value' lines under it"),
    "model_attributes_type": ("must be a mapping", "write 'key: value' lines under it"),
    "dict_type": ("must be a mapping", "write 'key: value' lines under it"),
}

# what to add when a required field is missing
_MISSING = {
    "name": "add e.g. 'name: my-task'",
    "type": "add 'type: classification' (or qa, generation)",
    "data": "add 'data:' with 'eval: path/to/eval.jsonl' under it",
    "data.eval": "add 'eval: path/to/eval.jsonl' under 'data'",
    "target": "add e.g. 'target: {metric: accuracy, min: 0.8}'",
    "target.metric": "add e.g. 'metric: accuracy' under 'target'",
    "target.min": "add e.g. 'min: 0.8' under 'target'",
}


def _got(v: Any) -> str:
    if v is None or isinstance(v, (dict, list, tuple, set, BaseModel)):
        return ""
    txt = repr(v) if isinstance(v, str) else str(v)
    if len(txt) > 60:
        txt = txt[:57] + "..."
    return f" (got {txt})"


def _one_line(err: ValidationError, file: str) -> AdvisorError:
    errors = err.errors()
    # an unknown key first: 'nme:' is better answered by "did you mean 'name'" than "name is required"
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc, kind, ctx = tuple(e["loc"]), e["type"], e.get("ctx") or {}
    got = e.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_fields(TaskSpec, loc[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        parent = _loc(loc[:-1])
        where = f"{file}: unknown key '{key}'" + ("" if not loc[:-1] else f" in '{parent}'")
        if close:
            return AdvisorError(f"did you mean '{close[0]}'?", where=where)
        return AdvisorError("not a setting here", where=where, fix=f"remove it, or use one of: {', '.join(known)}")
    field = _loc(loc)
    where = f"{file}: field '{field}'" if field != "(top level)" else file
    if kind == "missing":
        return AdvisorError("is required", where=where, fix=_MISSING.get(field, "add it"))
    if kind in ("value_error", "assertion_error"):
        msg = str(ctx.get("error", e["msg"]))
        return AdvisorError(msg, where=where)
    if got is None and kind != "literal_error":
        fix = _TYPES.get(kind, (None, "give it a value or remove the line"))[1]
        return AdvisorError("is empty", where=where, fix=fix)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(got), choices, n=1, cutoff=0.6) if isinstance(got, str) else []
        fix = f"did you mean '{close[0]}'?" if close else f"use one of: {', '.join(choices)}"
        what = "is empty" if got is None else f"{_got(got)[6:-1] or _kind(got)} is not allowed"
        return AdvisorError(what, where=where, fix=fix)
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        lim = next(ctx[k] for k in ("gt", "ge", "lt", "le") if k in ctx)
        lim = f"{lim:g}" if isinstance(lim, (int, float)) else lim
        op, fix = {
            "greater_than": ("greater than", f"write a number above {lim}"),
            "greater_than_equal": ("at least", f"write {lim} or more"),
            "less_than": ("less than", f"write a number below {lim}"),
            "less_than_equal": ("at most", f"write {lim} or less"),
        }[kind]
        return AdvisorError(f"must be {op} {lim}{_got(got)}", where=where, fix=fix)
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        fix = "list at least one model, e.g. bundled:smollm2-135m-instruct" if field == "models.candidates" else (
            f"list at least {n} item{'s' if n != 1 else ''}")
        return AdvisorError("is an empty list" if not got else f"needs at least {n} items", where=where, fix=fix)
    if kind in _TYPES:
        what, fix = _TYPES[kind]
        return AdvisorError(f"{what}{_got(got) or ', not ' + _kind(got)}", where=where, fix=fix)
    msg = e["msg"]
    return AdvisorError(f"{msg}{_got(got)}", where=where, fix="see examples/ for a valid task file")


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
    """Local model paths are relative to the task file too; ids and bundled: names stay.

    'models/mine' could be a hub id or a folder: a folder of that name beside the task file wins."""
    if name.startswith(("bundled:", "/")):
        return name
    if name.startswith((".", "~")):
        return str(_resolve(Path(name), base))
    try:
        local = (base / name).is_dir()
    except (OSError, ValueError):
        local = False
    return str(base / name) if local else name


def parse(raw: Any, *, file: str, base: Path) -> TaskSpec:
    """Validate an already-parsed YAML document (used by load and by the fuzz tests)."""
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else _kind(raw)
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
            f"{spec.target.min:g} is outside 0..1", where=f"{file}: field 'target.min'", fix="write a score such as 0.8"
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


class _SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader (plain data only: a `!!python/...` tag is an error), plus a position for
    values that look like a date or number but are not one (`2024-13-01`, `!!float abc`), which
    SafeLoader reports as a bare ValueError (or AttributeError) without a line."""

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except Exception as e:  # ValueError, and AttributeError from `!!timestamp nonsense`
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value {node.value!r} ({e})"[:200], node.start_mark
            ) from None


def _yaml_error(e: yaml.YAMLError, file: str, text: str = "") -> AdvisorError:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    pos = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
    problem = getattr(e, "problem", None) or (str(e).splitlines() or ["unreadable"])[0]
    ctx, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
    if ctx and cmark and mark and cmark.line != mark.line:  # where the unclosed thing began
        problem += f" ({ctx} started at line {cmark.line + 1}, column {cmark.column + 1})"
    tag = re.search(r"constructor for the tag '([^']*)'", problem)
    if tag:
        shown = tag.group(1).replace("tag:yaml.org,2002:", "!!")
        return AdvisorError(
            f"the YAML tag '{shown}' is not allowed (advisor reads plain YAML data only, never Python objects)",
            where=f"{file}{pos}", fix="remove the tag",
        )
    if problem.startswith("cannot read the value"):
        return AdvisorError(problem, where=f"{file}{pos}", fix="quote it to keep it as text, or correct it")
    line = text.split("\n")[mark.line] if mark and mark.line < text.count("\n") + 1 else ""
    fix = ("quote a value that uses ${VAR} inside [...] or {...}, e.g. ['${VAR}/docs']" if "${" in line
           else "fix the indentation or quoting there")
    return AdvisorError(f"YAML syntax error: {problem}", where=f"{file}{pos}", fix=fix)


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
        raise AdvisorError(
            f"not UTF-8 text (invalid byte at offset {e.start})", where=file, fix="re-save it as UTF-8"
        ) from None
    except OSError as e:
        raise AdvisorError(f"cannot read ({e.strerror})", where=file, fix="check its permissions") from None
    except ValueError as e:  # a NUL in the path
        raise AdvisorError(f"is not a usable path ({e})", where=repr(file), fix="check the path") from None
    try:
        raw = yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass: no Python objects
    except yaml.YAMLError as e:
        raise _yaml_error(e, file, text) from None
    except RecursionError:
        raise AdvisorError("YAML is nested too deeply", where=file, fix="write a flat task file (see examples/)") from None
    spec = parse(raw, file=file, base=path.resolve().parent)
    spec.source = path.resolve()
    return spec
