"""Reading a task file: YAML, ${VAR} expansion, paths relative to the file, one-line errors.

Split from spec.py so the schema (spec.py) reads as a schema, and this file holds everything
between the bytes on disk and `TaskSpec.model_validate`: a SafeLoader that never builds Python
objects, variable expansion, path resolution, and the translation of YAML and pydantic errors
into an `AdvisorError` naming the file, the field and the fix. It never imports spec.py (spec.py
imports it); the model is passed in where an error message needs its field names.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError

from .errors import AdvisorError

if TYPE_CHECKING:
    from .spec import TaskSpec


def describe_kind(v: Any) -> str:
    """How a wrong value is named in a message: 'a mapping', 'a list', 'true/false', ..."""
    return {dict: "a mapping", list: "a list", bool: "true/false", int: "a number", float: "a number",
            str: "text"}.get(type(v), type(v).__name__)


# ---------------------------------------------------------------------------------------------
# reading the file

class SafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader (plain data only: a `!!python/...` tag is an error), plus a position for
    values that look like a date or number but are not one (`2024-13-01`, `!!float abc`), which
    SafeLoader reports as a bare ValueError (or AttributeError) without a line.

    Its constructor table is its own copy with YAML's own timestamp rule: a library may rewrite
    yaml.SafeLoader's shared table when imported (lm-format-enforcer maps timestamps to strings),
    and a task file must read the same whatever ran before it in the process."""

    yaml_constructors = {
        **yaml.SafeLoader.yaml_constructors,
        "tag:yaml.org,2002:timestamp": yaml.constructor.SafeConstructor.construct_yaml_timestamp,
    }

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


# A task or suite file is a page of settings: a few hundred values. Aliases (`*a`) share one
# value in memory, but anything that walks the document (validation, an error message) expands
# them, so a 1 KB "billion laughs" file becomes gigabytes. Both limits are far above real files.
MAX_YAML_VALUES = 100_000  # values in the document with every alias expanded
MAX_YAML_BYTES = 1_000_000


def _expanded_size(root: yaml.Node, file: str) -> None:
    """Count the values of the document as validation would see them (aliases expanded), from
    the composed node graph, where a shared node is one object: cheap, and refuses a bomb or a
    recursive alias before anything is expanded."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise AdvisorError(
                "a YAML alias refers to a value that contains it (a recursive alias)",
                where=f"{file}:{node.start_mark.line + 1}", fix="write the value out instead of using the alias",
            )
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_YAML_VALUES:
            raise AdvisorError(
                f"YAML aliases expand to more than {MAX_YAML_VALUES:,} values (an alias bomb?)",
                where=f"{file}:{node.start_mark.line + 1}", fix="write the values out without nested aliases",
            )
        sizes[key] = total
        return total

    size(root)


def parse_yaml(text: str, file: str) -> Any:
    """Safe YAML with the alias limit; syntax errors as one-line AdvisorErrors."""
    try:
        loader = SafeLoader(text)  # the reader checks the characters here: ReaderError
    except yaml.YAMLError as e:
        raise _yaml_error(e, file, text) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, file)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _yaml_error(e, file, text) from None
    except RecursionError:
        raise AdvisorError("YAML is nested too deeply", where=file, fix="write a flat task file (see examples/)") from None
    finally:
        loader.dispose()


def read_bounded_text(path: Path, max_bytes: int, *, encoding: str = "utf-8") -> str:
    """The text of a regular file of at most `max_bytes`. A device (/dev/zero), a pipe or a
    file that grows past the limit is refused instead of read until memory runs out. OSError
    and UnicodeDecodeError propagate for the caller to name."""
    import stat

    with open(path, "rb") as f:  # FileNotFoundError, IsADirectoryError, PermissionError...
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(path)
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(path, max_bytes)
    return data.decode(encoding)


class NotARegularFile(OSError):
    def __init__(self, path: Path):
        super().__init__(f"not a regular file: {path}")
        self.strerror = "not a regular file (a device, pipe or socket)"


class TooLarge(OSError):
    def __init__(self, path: Path, limit: int):
        super().__init__(f"larger than {limit} bytes: {path}")
        self.limit = limit
        self.strerror = f"larger than {_size(limit)}"


def _size(n: int) -> str:
    return f"{n / 1e9:g} GB" if n >= 1e9 else f"{n / 1e6:g} MB" if n >= 1e6 else f"{n:,} bytes"


def read_yaml(path: Path) -> Any:
    """The parsed YAML document at `path` (any shape; `check_document` judges it)."""
    file = str(path)
    try:
        # opening a FIFO would block before fstat could refuse it
        if path.exists() and not path.is_file() and not path.is_dir():
            raise NotARegularFile(path)
        text = read_bounded_text(path, MAX_YAML_BYTES)
    except FileNotFoundError:
        raise AdvisorError("no such file", where=file, fix="check the path (see examples/ for a task file)") from None
    except IsADirectoryError:
        raise AdvisorError("is a folder, not a task file", where=file, fix="name the task.yaml inside it") from None
    except UnicodeDecodeError as e:
        raise AdvisorError(
            f"not UTF-8 text (invalid byte at offset {e.start})", where=file, fix="re-save it as UTF-8"
        ) from None
    except NotARegularFile as e:
        raise AdvisorError(f"is {e.strerror}", where=file, fix="name a task.yaml file") from None
    except TooLarge as e:
        raise AdvisorError(f"is {e.strerror}, too large for a task file", where=file,
                           fix="check the path (a task file is a page of settings)") from None
    except OSError as e:
        raise AdvisorError(f"cannot read ({e.strerror})", where=file, fix="check its permissions") from None
    except ValueError as e:  # a NUL in the path
        raise AdvisorError(f"is not a usable path ({e})", where=repr(file), fix="check the path") from None
    return parse_yaml(text, file)


def check_document(raw: Any, file: str) -> None:
    """The document must be a mapping with text keys before pydantic sees it."""
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else describe_kind(raw)
        raise AdvisorError(
            f"the task file is {kind}, not a mapping",
            where=file,
            fix="write 'key: value' lines such as 'name:', 'type:', 'data:', 'target:' (see examples/)",
        )
    bad_keys = [k for k in raw if not isinstance(k, str)]
    if bad_keys:
        raise AdvisorError(f"key {bad_keys[0]!r} is not text", where=file, fix="use names such as 'name' or 'data'")


# ---------------------------------------------------------------------------------------------
# ${VAR} expansion

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


def expand_path_vars(raw: dict, file: str) -> None:
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


# ---------------------------------------------------------------------------------------------
# paths relative to the task file

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


def resolve_paths(spec: TaskSpec, base: Path) -> None:
    """Make every file, folder and local model path of a validated spec relative to `base`, in place."""
    spec.data.eval = _resolve(spec.data.eval, base)
    if spec.data.train is not None:
        spec.data.train = _resolve(spec.data.train, base)
    if spec.data.corpus is not None:
        spec.data.corpus = [_resolve(c, base) for c in spec.data.corpus]
    if isinstance(spec.labels, Path):
        spec.labels = _resolve(spec.labels, base)
    m = spec.models
    # endpoint candidates are server names, not paths; `facts` follow their model's resolved name
    resolved = {c: c if c in m.endpoints else _resolve_model(c, base) for c in m.candidates}
    m.facts = {resolved.get(k, k): v for k, v in m.facts.items()}
    m.candidates = [resolved[c] for c in m.candidates]
    spec.models.embedding = _resolve_model(spec.models.embedding, base)


# ---------------------------------------------------------------------------------------------
# pydantic ValidationError -> one line

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


def one_line_error(err: ValidationError, file: str, model: type[BaseModel]) -> AdvisorError:
    """The first problem of `err` (raised validating `model`) as one line: file, field and fix."""
    errors = err.errors()
    # an unknown key first: 'nme:' is better answered by "did you mean 'name'" than "name is required"
    e = next((x for x in errors if x["type"] == "extra_forbidden"), errors[0])
    loc, kind, ctx = tuple(e["loc"]), e["type"], e.get("ctx") or {}
    got = e.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        known = _known_fields(model, loc[:-1])
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
        what = "is empty" if got is None else f"{_got(got)[6:-1] or describe_kind(got)} is not allowed"
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
        return AdvisorError(f"{what}{_got(got) or ', not ' + describe_kind(got)}", where=where, fix=fix)
    msg = e["msg"]
    return AdvisorError(f"{msg}{_got(got)}", where=where, fix="see examples/ for a valid task file")
