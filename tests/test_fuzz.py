"""Fuzzing (issue 8): random and mutated task files through spec loading and data loading.

The property: every input ends as a valid spec (and loaded data) or as an AdvisorError whose
message is one non-empty line; never any other exception. Four generators:

* random YAML-like documents (nested mappings of known and unknown keys, any scalar) -> spec.parse
* a complete valid task with fields deleted, retyped, garbled or renamed -> YAML file -> spec.load
  -> data loading and model checks
* the valid task's YAML text with characters deleted, inserted or swapped -> spec.load
* data files (JSONL, CSV, JSON, labels, corpus) with random or garbled content -> load_task_data

Runs are derandomized (the same examples every time, so `make test` is stable); set
ADVISOR_FUZZ_EXAMPLES=5000 for a longer, random search. `test_report_counts` prints how many
examples each generator tried.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advisor import spec
from advisor.data import load_task_data
from advisor.errors import AdvisorError
from advisor.models import check_available

SCALE = int(os.environ.get("ADVISOR_FUZZ_EXAMPLES", "0"))
RANDOM = SCALE > 0


def fuzz_settings(n: int):
    return settings(max_examples=SCALE or n, deadline=None, derandomize=not RANDOM, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


TRIED: Counter = Counter()
OUTCOMES: Counter = Counter()

VALID = {
    "name": "fuzz-task",
    "type": "classification",
    "decoding": "choices",
    "instructions": "Label the review.",
    "labels": ["negative", "positive"],
    "data": {"eval": "eval.jsonl", "train": "train.csv", "corpus": ["docs", "kb.jsonl"],
             "fields": {"input": "text", "expected": "label", "id": "id"}, "eval_limit": 10},
    "models": {"candidates": ["bundled:smollm2-135m-instruct"], "embedding": "bundled:all-minilm-l6-v2",
               "selection_limit": 4, "trust_remote_code": False},
    "target": {"metric": "accuracy", "min": 0.8},
    "budget": {"setup_usd": 50, "requests_per_month": 100000},
    "hardware": {"gpu": "H100", "usd_per_hour": 2.5},
    "prompting": {"shots": 4, "max_new_tokens": 8},
    "finetune": {"mode": "auto", "r": 8, "alpha": 16, "targets": "q,v", "epochs": 2, "max_steps": 10},
    "rag": {"mode": "documents", "k": 4, "chunk_chars": 800, "chunk_overlap": 100},
    "baseline": {"enabled": True, "k": 8},
    "seed": 0,
}
KNOWN_KEYS = sorted({k for k in VALID} | {k for v in VALID.values() if isinstance(v, dict) for k in v}
                    | {"context_id", "usd_per_hour", "chroma_url", "lr", "cpu_max_steps"})
EVAL = "".join(json.dumps({"id": f"e{i}", "text": t, "label": lab}) + "\n"
               for i, (t, lab) in enumerate([("great", "positive"), ("awful", "negative"), ("fine", "positive")]))
TRAIN = "id,text,label\n" + "".join(f"t{i},sample {i},{'positive' if i % 2 else 'negative'}\n" for i in range(20))


TEXT_WITHOUT_LABELS = yaml.safe_dump({k: v for k, v in VALID.items() if k != "labels"})


def write_data(folder: Path) -> None:
    (folder / "eval.jsonl").write_text(EVAL, encoding="utf-8")
    (folder / "train.csv").write_text(TRAIN, encoding="utf-8")
    (folder / "docs").mkdir(exist_ok=True)
    (folder / "docs" / "a.md").write_text("# A\nalpha", encoding="utf-8")
    (folder / "kb.jsonl").write_text(json.dumps({"id": "k1", "title": "K", "text": "kappa"}) + "\n", encoding="utf-8")
    (folder / "labels.json").write_text('["negative", "positive"]', encoding="utf-8")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    write_data(d)
    return d


def check_message(err: AdvisorError) -> None:
    msg = str(err)
    assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
    assert msg.endswith((".", "?")), repr(msg)
    assert "Traceback" not in msg


def outcome(kind: str, fn) -> object | None:
    """Run fn: a result or an AdvisorError are fine; anything else fails the property."""
    TRIED[kind] += 1
    try:
        res = fn()
    except AdvisorError as e:
        check_message(e)
        OUTCOMES[f"{kind}: clean error"] += 1
        return None
    OUTCOMES[f"{kind}: valid"] += 1
    return res


def full_check(path: Path, kind: str) -> None:
    """spec.load, then (for a valid spec) data loading and the model checks, as `assess` does."""
    s = outcome(kind, lambda: spec.load(path))
    if s is None:
        return
    assert isinstance(s, spec.TaskSpec) and s.decoding in ("choices", "generate")

    def data_and_models():
        d = load_task_data(s)
        for name in s.models.candidates:
            check_available(name, "llm")
        check_available(s.models.embedding, "embedding")
        return d

    outcome(kind + " -> data", data_and_models)


# ---------------------------------------------------------------------------------------------
# 1. random documents

tricky = st.sampled_from(["classification", "qa", "accuracy", "token_f1", "auto", "H100", "h200", "", " ", "eval.jsonl",
                     "docs", "labels.json", "train.csv", "${HOME}/x", "${ADVISOR_FUZZ_UNSET}", "${X:-eval.jsonl}",
                     "bundled:x", "bundled:all-minilm-l6-v2", "my model", "a/b/c", "org/model", "./nowhere",
                     "~/nowhere", "a\x00b", "[/INST]", "x" * 300, -1, 0, 0.5, 10**9, float("nan"), float("inf")])
scalars = st.one_of(
    tricky, st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=8))
documents = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(keys, inner, max_size=6)), max_leaves=25)


@fuzz_settings(250)
@given(doc=st.one_of(documents, st.dictionaries(keys, documents, max_size=10)))
def test_random_documents(doc, workdir):
    outcome("random document", lambda: spec.parse(doc, file="fuzz.yaml", base=workdir))


# ---------------------------------------------------------------------------------------------
# 2. mutated valid tasks


def paths_of(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths_of(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from paths_of(v, prefix + (i,))


def garble(s: str, data) -> str:
    if not s:
        return data.draw(st.text(max_size=5))
    i = data.draw(st.integers(0, len(s)))
    how = data.draw(st.sampled_from(["delete", "insert", "swap", "upper", "truncate"]))
    if how == "delete":
        return s[:i] + s[i + 1:]
    if how == "insert":
        return s[:i] + data.draw(st.text(min_size=1, max_size=3)) + s[i:]
    if how == "swap" and i < len(s) - 1:
        return s[:i] + s[i + 1] + s[i] + s[i + 2:]
    if how == "upper":
        return s.upper()
    return s[:i]


@fuzz_settings(300)
@given(data=st.data())
def test_mutated_tasks(data, workdir):
    task = copy.deepcopy(VALID)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in paths_of(task) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = task
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        op = data.draw(st.sampled_from(["delete", "retype", "garble", "rename", "null"]))
        if op == "delete":
            del parent[last]
        elif op == "retype":
            parent[last] = data.draw(st.one_of(tricky, scalars, st.lists(scalars, max_size=3),
                                               st.dictionaries(keys, scalars, max_size=3)))
        elif op == "null":
            parent[last] = None
        elif op == "garble" and isinstance(parent[last], str):
            parent[last] = garble(parent[last], data)
        elif op == "garble" and isinstance(parent[last], (int, float)) and not isinstance(parent[last], bool):
            parent[last] = data.draw(st.sampled_from([-1, 0, 10**9, 0.5, -0.5, float("nan"), float("inf")]))
        elif op == "rename" and isinstance(parent, dict):
            parent[garble(str(last), data)] = parent.pop(last)
    folder = Path(tempfile.mkdtemp(dir=workdir))
    write_data(folder)
    p = folder / "task.yaml"
    p.write_text(yaml.safe_dump(task, allow_unicode=True), encoding="utf-8")
    full_check(p, "mutated task")


def test_unmutated_task_is_valid(workdir):
    """The fuzz base must itself load, or every mutation would only test the same error."""
    p = workdir / "valid.yaml"
    p.write_text(yaml.safe_dump(VALID), encoding="utf-8")
    d = load_task_data(spec.load(p))
    assert len(d.eval) == 3 and len(d.train) == 20 and len(d.corpus) == 2


# ---------------------------------------------------------------------------------------------
# 3. garbled YAML text

VALID_TEXT = yaml.safe_dump(VALID, sort_keys=False)
YAML_NOISE = st.sampled_from([
    ":", "- ", "[", "]", "{", "}", "\t", "  ", "\n", "&a ", "*a", "!!", "!!python/object:x ", "'", '"', "#", "%", "@",
    "`", "|", ">", "? ", "\x00", "\ufeff", "\u2028", "${X", " 2024-13-01", " !!float x", " !!int 0x", " !!binary x",
    " !!timestamp 2020-99-99", " !!python/name:os.system", " !!set {a}", " .nan", " -.inf", " [", " a b", " ~",
])


@fuzz_settings(300)
@given(data=st.data())
def test_garbled_yaml_text(data, workdir):
    text = VALID_TEXT
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["insert", "delete", "replace", "value"]))
        piece = data.draw(st.one_of(YAML_NOISE, st.text(max_size=4)))
        if op == "value":  # a whole value replaced: 'name: 2024-13-01', 'eval: !!binary x'
            lines = text.split("\n")
            j = data.draw(st.integers(0, len(lines) - 1))
            if ": " in lines[j]:
                lines[j] = lines[j].split(": ", 1)[0] + ": " + piece.strip()
            text = "\n".join(lines)
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "delete":
            text = text[:i] + text[i + data.draw(st.integers(1, 20)):]
        else:
            text = text[:i] + piece + text[i + len(piece):]
    folder = Path(tempfile.mkdtemp(dir=workdir))
    write_data(folder)
    p = folder / "task.yaml"
    p.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    full_check(p, "garbled yaml")


@fuzz_settings(100)
@given(raw=st.binary(max_size=200))
def test_random_bytes_as_task_file(raw, workdir):
    folder = Path(tempfile.mkdtemp(dir=workdir))
    p = folder / "task.yaml"
    p.write_bytes(raw)
    full_check(p, "random bytes")


# ---------------------------------------------------------------------------------------------
# 4. data files

json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=10)
rows = st.dictionaries(st.sampled_from(["id", "text", "label", "title", "other", ""]), json_values, max_size=5)


@fuzz_settings(250)
@given(data=st.data())
def test_garbled_data_files(data, workdir):
    folder = Path(tempfile.mkdtemp(dir=workdir))
    write_data(folder)
    target = data.draw(st.sampled_from(["eval.jsonl", "train.csv", "kb.jsonl", "labels.json", "docs/a.md"]))
    mode = data.draw(st.sampled_from(["rows", "garble", "bytes", "csv"]))
    if mode == "csv":
        target = "train.csv"
    path = folder / target
    if mode == "rows":
        content = "".join(json.dumps(r) + "\n" for r in data.draw(st.lists(rows, max_size=5)))
        if target == "labels.json":
            content = json.dumps(data.draw(json_values))
        path.write_text(content, encoding="utf-8")
    elif mode == "garble":
        text = path.read_text(encoding="utf-8")
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(text)))
            text = text[:i] + data.draw(st.one_of(st.text(max_size=3), st.sampled_from([",", '"', "\n", "{", "}"]))) \
                + text[i + data.draw(st.integers(0, 3)):]
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    elif mode == "bytes":
        path.write_bytes(data.draw(st.binary(max_size=120)))
    else:
        cells = st.lists(st.sampled_from(list('ab ,"\n\r') + ["label", "text", "id"]), max_size=5).map("".join)
        lines = data.draw(st.lists(st.lists(cells, min_size=1, max_size=4), max_size=5))
        path.write_text("\n".join(",".join(c) for c in lines), encoding="utf-8")
    task = copy.deepcopy(VALID)
    if data.draw(st.booleans()):
        task["labels"] = "labels.json"
    if data.draw(st.booleans()):
        task["data"]["eval"] = data.draw(st.sampled_from(["train.csv", "kb.jsonl", "labels.json", "docs", "docs/a.md"]))
    if data.draw(st.booleans()):
        del task["labels"]
    p = folder / "task.yaml"
    p.write_text(yaml.safe_dump(task), encoding="utf-8")
    full_check(p, "garbled data")


# ---------------------------------------------------------------------------------------------
# 5. issue 17: YAML anchors and aliases (bombs, recursion) and hostile data (control and NUL
#    characters, near-duplicate and copied items, very long inputs)

MAX_MESSAGE = 2000  # every part of a message is capped (errors.MAX_PART); a line stays a line


@fuzz_settings(120)
@given(data=st.data())
def test_alias_structures(data, workdir):
    """Anchors defined and reused at random depth and fan-out, sometimes recursively, in the
    labels and anywhere else: a valid spec or one short line, never a blow-up."""
    depth = data.draw(st.integers(1, 8))
    fan = data.draw(st.integers(1, 12))
    rows = ["  - &a0 [" + ", ".join(data.draw(st.lists(st.sampled_from(["lol", "negative", "1", "[/INST]", "~"]),
                                                       min_size=1, max_size=6))) + "]"]
    for i in range(1, depth):
        refs = [f"*a{data.draw(st.integers(0, i - 1))}" for _ in range(fan)]
        if data.draw(st.integers(0, 9)) == 0:
            refs.append(f"*a{i}")  # the alias inside its own anchor: a recursive value
        rows.append(f"  - &a{i} [" + ", ".join(refs) + "]")
    key = data.draw(st.sampled_from(["labels", "instructions", "name", "extra"]))
    text = TEXT_WITHOUT_LABELS + f"{key}:\n" + "\n".join(rows) + "\n"
    folder = Path(tempfile.mkdtemp(dir=workdir))
    write_data(folder)
    p = folder / "task.yaml"
    p.write_text(text, encoding="utf-8")
    TRIED["aliases"] += 1
    try:
        spec.load(p)
        OUTCOMES["aliases: valid"] += 1
    except AdvisorError as e:
        check_message(e)
        assert len(str(e)) < MAX_MESSAGE, len(str(e))
        OUTCOMES["aliases: clean error" + (" (alias limit)" if "alias" in str(e) else "")] += 1


HOSTILE = st.sampled_from(["\x1b]0;title\x07", "\x1b[2J", "\x00", "\x9b31m", "\u202e", "\r", "<img src=x onerror=1>",
                           "&amp;", "x" * 5000])


@fuzz_settings(80)
@given(data=st.data())
def test_hostile_rows_and_documents(data, workdir):
    """Eval/train rows with control and NUL characters, copied or reworded across eval and train,
    and corpus documents that are binary or not UTF-8: loaded (leakage counted, bad documents
    skipped with a reason) or refused with one short line."""
    folder = Path(tempfile.mkdtemp(dir=workdir))
    write_data(folder)
    texts = [t + data.draw(HOSTILE) if data.draw(st.booleans()) else t
             for t in data.draw(st.lists(st.sampled_from(["great film", "awful film", "Great film!", "fine"]),
                                         min_size=1, max_size=6))]
    evals = [{"id": f"e{i}", "text": t, "label": "positive"} for i, t in enumerate(texts)]
    train = evals[: data.draw(st.integers(0, len(evals)))] + [
        {"id": f"t{i}", "text": f"sample {i}", "label": "negative"} for i in range(4)]
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals), encoding="utf-8")
    (folder / "train.jsonl").write_text("".join(json.dumps({**r, "id": "c" + r["id"]}) + "\n" for r in train),
                                        encoding="utf-8")
    (folder / "docs" / "b.md").write_bytes(data.draw(st.binary(max_size=40)))
    task = copy.deepcopy(VALID)
    task["data"]["train"] = "train.jsonl"
    task["data"]["leakage"] = data.draw(st.sampled_from(["warn", "drop"]))
    p = folder / "task.yaml"
    p.write_text(yaml.safe_dump(task), encoding="utf-8")
    d = outcome("hostile rows", lambda: load_task_data(spec.load(p)))
    if d is not None:
        assert d.leakage is not None and all("\n" not in n for n in d.notes)
        assert all(doc.text and "\x00" not in doc.text for doc in d.corpus)


def test_report_counts(capsys):
    """How many examples each generator tried (the issue asks for the number); printed with -s."""
    total = sum(TRIED.values())
    with capsys.disabled():
        print(f"\nfuzz examples tried: {total} ({dict(TRIED)})")
        print(f"fuzz outcomes: {dict(sorted(OUTCOMES.items()))}")
    if TRIED:  # when the file runs as a whole (not with -k on one test)
        assert total >= 100
