"""Eval / train sets and document corpora: loading, validation and content hashes.

Each loader names the file and line of a problem, because "KeyError: 'label'" from deep inside
a pipeline is how a tool silently scores the wrong column. Hashes are of the *parsed* content
(after the field mapping), so a cache keyed on them changes exactly when what we score changes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from .errors import AdvisorError
from .spec import TaskSpec
from .spec_loading import NotARegularFile, TooLarge, read_bounded_text

if TYPE_CHECKING:  # pragma: no cover
    from .leakage import Leakage

MIN_TRAIN_FOR_FINETUNE = 16
CORPUS_SUFFIXES = (".md", ".txt", ".markdown", ".rst")


@dataclass(frozen=True)
class Example:
    id: str
    input: str
    expected: tuple[str, ...]  # one label, or every acceptable answer
    context_id: str | None = None

    @property
    def label(self) -> str:
        return self.expected[0]


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str


@dataclass
class Dataset:
    examples: list[Example]
    path: Path
    hash: str

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class TaskData:
    eval: Dataset
    train: Dataset | None
    labels: list[str] | None
    corpus: list[Document] | None
    corpus_hash: str | None = None
    notes: list[str] = field(default_factory=list)  # warnings every report format shows
    corpus_skipped: list[tuple[str, str]] = field(default_factory=list)  # (document, why)
    leakage: "Leakage | None" = None

    @property
    def hashes(self) -> dict[str, str | None]:
        return {
            "eval": self.eval.hash,
            "train": self.train.hash if self.train else None,
            "corpus": self.corpus_hash,
            "labels": content_hash(self.labels) if self.labels else None,
        }


def content_hash(obj: object) -> str:
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# rows


# csv's default field limit (128 KiB) is smaller than a long document; a real limit still applies
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _task(spec: TaskSpec | None) -> str:
    """How messages name the task file."""
    return spec.source.name if spec is not None and spec.source else "the task file"


def _field_of(what: str) -> str:
    return {"eval": "data.eval", "train": "data.train", "corpus": "data.corpus", "labels": "labels"}.get(what, what)


# Bounds on what is read: a data file is read whole, so a device (/dev/zero), a pipe or a
# runaway file must be refused, not read until memory runs out; one item longer than any
# context a model here could take (a 50 MB line) would otherwise reach a tokenizer and abort.
MAX_DATA_BYTES = 512_000_000
MAX_INPUT_CHARS = 200_000  # ~50k tokens: beyond the context of every model advisor runs on CPU


def _read_text(path: Path, what: str, task: str = "the task file") -> str:
    try:
        # opening a FIFO would block before fstat could refuse it
        if path.exists() and not path.is_file() and not path.is_dir():
            raise NotARegularFile(path)
        # utf-8-sig: a byte-order mark (Excel's CSVs) would otherwise become part of the first column name
        return read_bounded_text(path, MAX_DATA_BYTES, encoding="utf-8-sig")
    except NotARegularFile as e:
        raise AdvisorError(
            f"is {e.strerror}", where=f"{path} ({what})", fix=f"name a file in {_field_of(what)} in {task}"
        ) from None
    except TooLarge as e:
        raise AdvisorError(
            f"is {e.strerror} (advisor reads data files whole)", where=f"{path} ({what})",
            fix="use a sample of it (advisor's statistics need hundreds of items, not millions)",
        ) from None
    except FileNotFoundError:
        raise AdvisorError(
            "no such file", where=f"{path} ({what})", fix=f"check {_field_of(what)} in {task}"
        ) from None
    except IsADirectoryError:
        raise AdvisorError(
            "is a folder, expected a .jsonl, .json or .csv file", where=f"{path} ({what})",
            fix=f"name a file in {_field_of(what)} in {task}",
        ) from None
    except UnicodeDecodeError as e:
        raise AdvisorError(
            f"not UTF-8 text (invalid byte at offset {e.start})", where=f"{path} ({what})", fix="re-save it as UTF-8"
        ) from None
    except OSError as e:
        raise AdvisorError(f"cannot read ({e.strerror})", where=f"{path} ({what})", fix="check its permissions") from None
    except ValueError as e:  # e.g. a NUL in the path
        raise AdvisorError(f"is not a usable path ({e})", where=f"{path!r} ({what})", fix=f"check {_field_of(what)}") from None


def iter_rows(path: Path, what: str, task: str = "the task file") -> Iterator[tuple[int, dict]]:
    """(line number, row) for a .jsonl / .json / .csv file (.json items are numbered from 1)."""
    text = _read_text(path, what, task)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # newline="": quoted fields may span lines; line_num is the line where a record ends
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)  # bad quoting is an error
        try:
            for row in reader:
                if any(str(v).strip() for v in row.get(None) or ()):  # more values than header columns
                    raise AdvisorError(
                        f"row has {len(row) - 1 + len(row[None])} values but the header has {len(row) - 1} columns",
                        where=f"{path}:{reader.line_num} ({what})", fix="quote values that contain commas",
                    )
                row.pop(None, None)  # empty trailing values (a trailing comma)
                yield reader.line_num, row
        except csv.Error as e:
            raise AdvisorError(
                # line_num counts lines fully read; the broken one is the next
                f"not valid CSV ({e})", where=f"{path}:{reader.line_num + 1} ({what})", fix="check the quoting there"
            ) from None
        return
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise AdvisorError(
                f"not valid JSON ({e.msg})", where=f"{path}:{e.lineno} ({what})", fix="fix the JSON there"
            ) from None
        except RecursionError:
            raise AdvisorError("JSON is nested too deeply", where=f"{path} ({what})", fix="write a list of objects") from None
        if not isinstance(rows, list):
            raise AdvisorError(
                "expected a JSON list of objects", where=f"{path} ({what})", fix="write [{...}, ...] or use JSON Lines (.jsonl)"
            )
        for i, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise AdvisorError(
                    "item is not a JSON object", where=f"{path}: item {i} ({what})", fix="write {\"field\": ...} items"
                )
            yield i, row
        return
    # split on \n only: str.splitlines() would also split inside a string holding U+2028 or \x1c
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AdvisorError(
                f"line is not valid JSON ({e.msg})", where=f"{path}:{i} ({what})", fix="one JSON object per line (JSON Lines)"
            ) from None
        except RecursionError:
            raise AdvisorError("JSON is nested too deeply", where=f"{path}:{i} ({what})", fix="one flat object per line") from None
        if not isinstance(row, dict):
            raise AdvisorError(
                "line is not a JSON object", where=f"{path}:{i} ({what})", fix="write {\"field\": ...} per line"
            )
        yield i, row


def _as_answers(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value if v is not None and str(v).strip())
    if value is None:
        return ()
    return (str(value),)


def load_examples(path: Path, spec: TaskSpec, what: str, limit: int | None = None) -> Dataset:
    f = spec.data.fields
    task = _task(spec)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for line, row in iter_rows(path, what, task):
        for col in (f.input, f.expected):
            if col not in row:
                have = ", ".join(str(k) for k in list(row)[:8]) or "nothing"
                raise AdvisorError(
                    f"no field '{col}' (the row has: {have})",
                    where=f"{path}:{line} ({what})",
                    fix=f"set data.fields.{'input' if col == f.input else 'expected'} in {task}",
                )
        text = row[f.input]
        if not isinstance(text, str) or not text.strip():
            raise AdvisorError(
                f"field '{f.input}' is empty or not text", where=f"{path}:{line} ({what})", fix="fill it in or drop the row"
            )
        if len(text) > MAX_INPUT_CHARS:
            raise AdvisorError(
                f"field '{f.input}' is {len(text):,} characters; items over {MAX_INPUT_CHARS:,} (far beyond a small "
                "model's context) are refused", where=f"{path}:{line} ({what})", fix="shorten the item or drop the row",
            )
        answers = _as_answers(row[f.expected])
        if not answers:
            raise AdvisorError(
                f"field '{f.expected}' is empty", where=f"{path}:{line} ({what})", fix="fill it in or drop the row"
            )
        if f.id:
            if f.id not in row:
                raise AdvisorError(
                    f"no field '{f.id}'", where=f"{path}:{line} ({what})", fix=f"fix data.fields.id in {task} or the row"
                )
            ex_id = str(row[f.id])
            if ex_id in seen:
                raise AdvisorError(
                    f"duplicate id '{ex_id}' (first at line {seen[ex_id]})",
                    where=f"{path}:{line} ({what})",
                    fix="make ids unique or drop data.fields.id",
                )
            seen[ex_id] = line
        else:
            ex_id = f"{what}-{line}"
        ctx = row.get(f.context_id) if f.context_id else None
        examples.append(Example(ex_id, text.strip(), answers, None if ctx is None else str(ctx)))
        if limit and len(examples) >= limit:
            break
    if not examples:
        raise AdvisorError("has no examples", where=f"{path} ({what})", fix=f"add rows or point {_field_of(what)} at another file")
    return Dataset(examples, path, _examples_hash(examples))


def _examples_hash(examples: list[Example]) -> str:
    return content_hash([[e.id, e.input, list(e.expected), e.context_id] for e in examples])


# ---------------------------------------------------------------------------------------------
# labels


def load_labels(spec: TaskSpec, datasets: Iterable[Dataset]) -> list[str] | None:
    if spec.type != "classification":
        return None
    task = _task(spec)
    if isinstance(spec.labels, list):
        labels = [str(x) for x in spec.labels]
        where = f"{task}: field 'labels'"
    elif isinstance(spec.labels, Path):
        text = _read_text(spec.labels, "labels", task)
        where = f"{spec.labels} (labels)"
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as e:
            raise AdvisorError(
                f"not valid JSON ({e.msg})", where=f"{spec.labels}:{e.lineno} (labels)", fix='write ["label a", "label b"]'
            ) from None
        except RecursionError:
            raise AdvisorError("JSON is nested too deeply", where=where, fix='write ["label a", "label b"]') from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise AdvisorError("expected a JSON list of label strings", where=where, fix='write ["label a", "label b"]')
    else:
        labels = sorted({e.label for d in datasets for e in d.examples})
        where = f"{task}: labels inferred from the data"
    dup = next((x for i, x in enumerate(labels) if x in labels[:i]), None)
    if dup is not None:
        raise AdvisorError(f"label '{dup}' is listed twice", where=where, fix="list each label once")
    if len(labels) < 2:
        raise AdvisorError(
            f"a classification task needs at least 2 labels, found {len(labels)}", where=where,
            fix="list every label in 'labels' (or use type: generation)",
        )
    return labels


def check_labels(ds: Dataset, labels: list[str], what: str) -> None:
    known = set(labels)
    for e in ds.examples:
        if e.label not in known:
            raise AdvisorError(
                f"label '{e.label}' of example {e.id} is not in the label list",
                where=f"{ds.path} ({what})",
                fix=f"add it to labels or fix the row (labels: {', '.join(labels[:6])}{'...' if len(labels) > 6 else ''})",
            )


# ---------------------------------------------------------------------------------------------
# corpus


def _document_text(path: Path) -> tuple[str | None, str | None]:
    """(text, None) for a readable UTF-8 text document, else (None, why it is skipped)."""
    try:
        data = path.read_bytes() if path.stat().st_size <= MAX_DATA_BYTES else None
    except OSError as e:
        return None, f"cannot read ({e.strerror})"
    if data is None:
        return None, f"larger than {MAX_DATA_BYTES / 1e6:g} MB"
    if b"\x00" in data:
        return None, "binary (NUL bytes), not text"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (invalid byte at offset {e.start})"
    if not text.strip():
        return None, "empty"
    return text.strip(), None


def load_corpus(paths: list[Path], task: str = "the task file",
                skipped: list[tuple[str, str]] | None = None) -> list[Document]:
    """JSONL files (id, title, text), single .md/.txt files and/or folders of them (recursive).

    In a folder, a document that cannot be used (not UTF-8, binary, empty, unreadable) is skipped
    and appended to `skipped` as (path, reason), for the report to say so; a file named on its
    own must be usable."""
    docs: list[Document] = []
    for p in paths:
        if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES:
            text = _read_text(p, "corpus", task)
            if "\x00" in text:
                raise AdvisorError("is binary (NUL bytes), not text", where=f"{p} (data.corpus)",
                                   fix="name UTF-8 .md/.txt documents in data.corpus")
            text = text.strip()
            if not text:
                raise AdvisorError("is empty", where=f"{p} (data.corpus)", fix="add text or remove it from data.corpus")
            docs.append(Document(p.name, p.stem.replace("_", " "), text))
        elif p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in CORPUS_SUFFIXES)
            found = 0
            for q in files:
                text, why = _document_text(q)
                rel = q.relative_to(p).as_posix()
                if text is None:
                    if skipped is not None:
                        skipped.append((f"{p.name}/{rel}", why))
                    continue
                docs.append(Document(rel, q.stem.replace("_", " "), text))
                found += 1
            if not found:
                raise AdvisorError(
                    "has no readable .md or .txt documents",
                    where=f"{p} (data.corpus)",
                    fix="add UTF-8 .md/.txt files or point at a .jsonl corpus",
                )
        elif not p.exists():
            raise AdvisorError("no such file or folder", where=f"{p} (data.corpus)", fix=f"check data.corpus in {task}")
        else:
            for line, row in iter_rows(p, "corpus", task):
                if row.get("text") is None or not str(row["text"]).strip():
                    raise AdvisorError(
                        "no 'text' field", where=f"{p}:{line} (corpus)", fix="each line needs id, title and text"
                    )
                doc_id = str(row.get("id", f"{p.stem}-{line}"))
                docs.append(Document(doc_id, str(row.get("title", "")), str(row["text"]).strip()))
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise AdvisorError(
                f"duplicate document id '{d.id}'", where=f"{task}: field 'data.corpus'", fix="make document ids unique"
            )
        seen.add(d.id)
    return docs


# ---------------------------------------------------------------------------------------------


def load_task_data(spec: TaskSpec) -> TaskData:
    eval_ds = load_examples(spec.data.eval, spec, "eval", limit=spec.data.eval_limit)
    train_ds = load_examples(spec.data.train, spec, "train") if spec.data.train else None
    labels = load_labels(spec, [d for d in (eval_ds, train_ds) if d])
    if labels:
        check_labels(eval_ds, labels, "eval")
        if train_ds:
            check_labels(train_ds, labels, "train")
    if train_ds and spec.finetune.mode == "always" and len(train_ds) < MIN_TRAIN_FOR_FINETUNE:
        raise AdvisorError(
            f"{len(train_ds)} training examples are too few to fine-tune (minimum {MIN_TRAIN_FOR_FINETUNE})",
            where=f"{train_ds.path} (train)",
            fix="add examples or set finetune.mode: auto",
        )
    if spec.finetune.mode == "always" and train_ds is None:
        raise AdvisorError(
            "fine-tuning needs a train set", where=f"{_task(spec)}: field 'data.train'",
            fix="add data.train or set finetune.mode: auto",
        )
    skipped: list[tuple[str, str]] = []
    corpus = load_corpus(spec.data.corpus, _task(spec), skipped) if spec.data.corpus else None
    corpus_hash = content_hash([[d.id, d.title, d.text] for d in corpus]) if corpus else None
    from .leakage import apply_leakage

    leak, train_ds = apply_leakage(spec, eval_ds, train_ds, corpus)
    data = TaskData(eval_ds, train_ds, labels, corpus, corpus_hash, corpus_skipped=skipped, leakage=leak)
    data.notes += leak.notes()
    if skipped:
        shown = "; ".join(f"{name}: {why}" for name, why in skipped[:5]) + ("; ..." if len(skipped) > 5 else "")
        data.notes.append(f"{len(skipped)} of {len(skipped) + len(corpus or [])} corpus documents skipped ({shown})")
    return data
