"""Eval / train sets and document corpora: loading, validation and content hashes.

Each loader names the file and line of a problem, because "KeyError: 'label'" from deep inside
a pipeline is how a tool silently scores the wrong column. Hashes are of the *parsed* content
(after the field mapping), so a cache keyed on them changes exactly when what we score changes.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from .errors import AdvisorError
from .spec import TaskSpec

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
    notes: list[str] = field(default_factory=list)

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


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AdvisorError("no such file", where=f"{path} ({what})", fix="check the path in the task file") from None
    except IsADirectoryError:
        raise AdvisorError("is a folder, expected a .jsonl or .csv file", where=f"{path} ({what})") from None
    except UnicodeDecodeError as e:
        raise AdvisorError(
            f"not UTF-8 text (invalid byte at offset {e.start})", where=f"{path} ({what})", fix="re-save it as UTF-8"
        ) from None
    except OSError as e:
        raise AdvisorError(f"cannot read ({e.strerror})", where=f"{path} ({what})", fix="check its permissions") from None


def iter_rows(path: Path, what: str) -> Iterator[tuple[int, dict]]:
    """(line number, row) for a .jsonl / .json / .csv file."""
    text = _read_text(path, what)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        for i, row in enumerate(reader, start=2):
            yield i, row
        return
    if suffix == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise AdvisorError(f"not valid JSON ({e.msg})", where=f"{path}:{e.lineno}") from None
        if not isinstance(rows, list):
            raise AdvisorError("expected a JSON list of objects", where=str(path), fix="or use JSON Lines (.jsonl)")
        for i, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise AdvisorError("item is not a JSON object", where=f"{path}: item {i}")
            yield i, row
        return
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise AdvisorError(
                f"line is not valid JSON ({e.msg})", where=f"{path}:{i}", fix="one JSON object per line (JSON Lines)"
            ) from None
        if not isinstance(row, dict):
            raise AdvisorError("line is not a JSON object", where=f"{path}:{i}", fix="write {\"field\": ...} per line")
        yield i, row


def _as_answers(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value if v is not None and str(v).strip())
    if value is None:
        return ()
    return (str(value),)


def load_examples(path: Path, spec: TaskSpec, what: str, limit: int | None = None) -> Dataset:
    f = spec.data.fields
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for line, row in iter_rows(path, what):
        for col in (f.input, f.expected):
            if col not in row:
                have = ", ".join(list(row)[:8])
                raise AdvisorError(
                    f"no field '{col}' (the row has: {have})",
                    where=f"{path}:{line} ({what})",
                    fix=f"set data.fields.{'input' if col == f.input else 'expected'} in the task file",
                )
        text = row[f.input]
        if not isinstance(text, str) or not text.strip():
            raise AdvisorError(f"field '{f.input}' is empty or not text", where=f"{path}:{line} ({what})")
        answers = _as_answers(row[f.expected])
        if not answers:
            raise AdvisorError(f"field '{f.expected}' is empty", where=f"{path}:{line} ({what})")
        if f.id:
            if f.id not in row:
                raise AdvisorError(f"no field '{f.id}'", where=f"{path}:{line} ({what})", fix="set data.fields.id")
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
        raise AdvisorError("has no examples", where=f"{path} ({what})", fix="add at least one row")
    digest = content_hash([[e.id, e.input, list(e.expected), e.context_id] for e in examples])
    return Dataset(examples, path, digest)


# ---------------------------------------------------------------------------------------------
# labels


def load_labels(spec: TaskSpec, datasets: Iterable[Dataset]) -> list[str] | None:
    if spec.type != "classification":
        return None
    if isinstance(spec.labels, list):
        labels = [str(x) for x in spec.labels]
    elif isinstance(spec.labels, Path):
        text = _read_text(spec.labels, "labels")
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as e:
            raise AdvisorError(f"not valid JSON ({e.msg})", where=f"{spec.labels}:{e.lineno}") from None
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise AdvisorError("expected a JSON list of label strings", where=str(spec.labels))
    else:
        labels = sorted({e.label for d in datasets for e in d.examples})
    if len(set(labels)) != len(labels):
        raise AdvisorError("labels repeat", where="labels", fix="list each label once")
    if len(labels) < 2:
        raise AdvisorError("a classification task needs at least 2 labels", where="labels")
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


def load_corpus(paths: list[Path]) -> list[Document]:
    """JSONL files (id, title, text) and/or folders of .md/.txt files, searched recursively."""
    docs: list[Document] = []
    for p in paths:
        if p.is_dir():
            files = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in CORPUS_SUFFIXES)
            found = 0
            for q in files:
                try:
                    text = q.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError):
                    continue
                if text.strip():
                    rel = q.relative_to(p).as_posix()
                    docs.append(Document(rel, q.stem.replace("_", " "), text.strip()))
                    found += 1
            if not found:
                raise AdvisorError(
                    "has no readable .md or .txt documents",
                    where=f"{p} (data.corpus)",
                    fix="add UTF-8 .md/.txt files or point at a .jsonl corpus",
                )
        elif not p.exists():
            raise AdvisorError("no such file or folder", where=f"{p} (data.corpus)", fix="check the path in the task file")
        else:
            for line, row in iter_rows(p, "corpus"):
                if "text" not in row or not str(row["text"]).strip():
                    raise AdvisorError("no 'text' field", where=f"{p}:{line} (corpus)", fix="each line needs id, title, text")
                doc_id = str(row.get("id", f"{p.stem}-{line}"))
                docs.append(Document(doc_id, str(row.get("title", "")), str(row["text"]).strip()))
    seen: set[str] = set()
    for d in docs:
        if d.id in seen:
            raise AdvisorError(f"duplicate document id '{d.id}'", where="data.corpus", fix="make document ids unique")
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
            "fine-tuning needs a train set", where="data.train", fix="add data.train or set finetune.mode: auto"
        )
    corpus = load_corpus(spec.data.corpus) if spec.data.corpus else None
    corpus_hash = content_hash([[d.id, d.title, d.text] for d in corpus]) if corpus else None
    return TaskData(eval_ds, train_ds, labels, corpus, corpus_hash)
