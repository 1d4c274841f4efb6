"""Eval/train sets, labels, corpora and content hashes (advisor/data.py), on small files written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor import data, spec
from advisor.data import MIN_TRAIN_FOR_FINETUNE, load_corpus, load_examples, load_labels, load_task_data
from advisor.errors import AdvisorError
from helpers import ROWS, jsonl




def task(tmp_path: Path, body: str = "", *, head: str | None = None) -> spec.TaskSpec:
    """A classification task.yaml in tmp_path; `body` is appended, `head` replaces the default top."""
    top = head if head is not None else (
        "name: t\ntype: classification\ndata:\n  eval: eval.jsonl\ntarget: {metric: accuracy, min: 0.8}\n"
    )
    p = tmp_path / "task.yaml"
    p.write_text(top + body, encoding="utf-8")
    return spec.load(p)


def msg(err: pytest.ExceptionInfo, tmp_path: Path) -> str:
    """The message with this test's folder shown as <tmp>."""
    return str(err.value).replace(str(tmp_path.resolve()), "<tmp>")


# ---------------------------------------------------------------------------------------------
# eval / train sets


def test_jsonl_with_field_mapping(tmp_path, write):
    write("eval.jsonl", jsonl([
        {"qid": "q1", "question": "Capital of France?", "answers": ["Paris", "paris, France"], "ctx": "geo-1"},
        {"qid": "q2", "question": "  2+2?  ", "answers": "4", "ctx": 7},
    ]))
    s = task(tmp_path, head="name: t\ntype: qa\ndata:\n  eval: eval.jsonl\n"
                            "  fields: {input: question, expected: answers, id: qid, context_id: ctx}\n"
                            "target: {metric: token_f1, min: 0.5}\n")
    ds = load_examples(s.data.eval, s, "eval")
    assert [e.id for e in ds.examples] == ["q1", "q2"]
    assert ds.examples[0].expected == ("Paris", "paris, France") and ds.examples[0].context_id == "geo-1"
    assert ds.examples[1].input == "2+2?" and ds.examples[1].expected == ("4",) and ds.examples[1].context_id == "7"
    assert len(ds) == 2 and ds.path == s.data.eval


def test_default_ids_are_file_lines_and_blank_lines_are_skipped(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS[:2]) + "\n   \n" + jsonl(ROWS[2:3]))
    ds = load_examples(task(tmp_path).data.eval, task(tmp_path), "eval")
    assert [e.id for e in ds.examples] == ["eval-1", "eval-2", "eval-5"]


def test_unicode_line_separator_inside_a_jsonl_string(tmp_path, write):
    """U+2028 is legal inside a JSON string; str.splitlines() would cut the line there."""
    write("eval.jsonl", jsonl([{"text": "first\u2028second\x1cthird", "label": "a"}, {"text": "x", "label": "b"}]))
    ds = load_examples(task(tmp_path).data.eval, task(tmp_path), "eval")
    assert ds.examples[0].input == "first\u2028second\x1cthird" and len(ds) == 2


def test_csv_with_mapping_bom_quotes_and_trailing_comma(tmp_path, write):
    write("eval.csv", '\ufeffsentence,gold,extra\n"multi\nline, with comma",positive,x\nplain,negative,,\n')
    s = task(tmp_path, head="name: t\ntype: classification\ndata:\n  eval: eval.csv\n"
                            "  fields: {input: sentence, expected: gold}\ntarget: {metric: accuracy, min: 0.8}\n")
    ds = load_examples(s.data.eval, s, "eval")
    assert [e.input for e in ds.examples] == ["multi\nline, with comma", "plain"]
    assert [e.label for e in ds.examples] == ["positive", "negative"]
    assert [e.id for e in ds.examples] == ["eval-3", "eval-4"]  # the line where each record ends


def test_json_list_file(tmp_path, write):
    write("eval.json", json.dumps(ROWS[:2], indent=2))
    s = task(tmp_path, head="name: t\ntype: classification\ndata:\n  eval: eval.json\n"
                            "target: {metric: accuracy, min: 0.8}\n")
    assert [e.label for e in load_examples(s.data.eval, s, "eval").examples] == ["positive", "negative"]


def test_limit(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS))
    s = task(tmp_path)
    assert len(load_examples(s.data.eval, s, "eval", limit=3)) == 3


# (case id, file name, content, task.yaml data.fields line or "", exact message with <tmp>)
ROW_ERRORS = [
    ("missing-file", None, None, "", "<tmp>/eval.jsonl (eval): no such file; check data.eval in task.yaml."),
    ("folder", "eval.jsonl/x", "", "",
     "<tmp>/eval.jsonl (eval): is a folder, expected a .jsonl, .json or .csv file; name a file in data.eval in task.yaml."),
    ("not-utf8", "eval.jsonl", '{"text": "caf\xe9", "label": "a"}\n'.encode("latin-1"), "",
     "<tmp>/eval.jsonl (eval): not UTF-8 text (invalid byte at offset 13); re-save it as UTF-8."),
    ("empty", "eval.jsonl", "\n\n", "", "<tmp>/eval.jsonl (eval): has no examples; add rows or point data.eval at another file."),
    ("bad-json-line", "eval.jsonl", jsonl(ROWS[:1]) + "{'text': 'x'}\n", "",
     "<tmp>/eval.jsonl:2 (eval): line is not valid JSON (Expecting property name enclosed in double quotes); "
     "one JSON object per line (JSON Lines)."),
    ("line-not-object", "eval.jsonl", '["x", "a"]\n', "",
     '<tmp>/eval.jsonl:1 (eval): line is not a JSON object; write {"field": ...} per line.'),
    ("missing-column", "eval.jsonl", jsonl([{"sentence": "x", "label": "a"}]), "",
     "<tmp>/eval.jsonl:1 (eval): no field 'text' (the row has: sentence, label); set data.fields.input in task.yaml."),
    ("missing-expected", "eval.jsonl", jsonl([{"text": "x", "gold": "a"}]), "",
     "<tmp>/eval.jsonl:1 (eval): no field 'label' (the row has: text, gold); set data.fields.expected in task.yaml."),
    ("csv-missing-column", "eval.csv", "txt,label\nhi,positive\n", "",
     "<tmp>/eval.csv:2 (eval): no field 'text' (the row has: txt, label); set data.fields.input in task.yaml."),
    ("csv-extra-values", "eval.csv", "text,label\nhello, world,positive\n", "",
     "<tmp>/eval.csv:2 (eval): row has 3 values but the header has 2 columns; quote values that contain commas."),
    ("csv-bad-quoting", "eval.csv", 'text,label\n"a"b",positive\n', "",
     "<tmp>/eval.csv:2 (eval): not valid CSV (',' expected after '\"'); check the quoting there."),
    ("input-not-text", "eval.jsonl", jsonl([{"text": 5, "label": "a"}]), "",
     "<tmp>/eval.jsonl:1 (eval): field 'text' is empty or not text; fill it in or drop the row."),
    ("expected-empty", "eval.jsonl", jsonl([{"text": "x", "label": []}]), "",
     "<tmp>/eval.jsonl:1 (eval): field 'label' is empty; fill it in or drop the row."),
    ("duplicate-id", "eval.jsonl", jsonl([{"id": 1, **ROWS[0]}, {"id": 2, **ROWS[1]}, {"id": 1, **ROWS[2]}]),
     "  fields: {id: id}\n",
     "<tmp>/eval.jsonl:3 (eval): duplicate id '1' (first at line 1); make ids unique or drop data.fields.id."),
    ("missing-id", "eval.jsonl", jsonl(ROWS[:1]), "  fields: {id: uid}\n",
     "<tmp>/eval.jsonl:1 (eval): no field 'uid'; fix data.fields.id in task.yaml or the row."),
    ("json-not-list", "eval.json", '{"text": "x"}', "",
     '<tmp>/eval.json (eval): expected a JSON list of objects; write [{...}, ...] or use JSON Lines (.jsonl).'),
    ("json-item-not-object", "eval.json", '[{"text": "x", "label": "a"}, 3]', "",
     '<tmp>/eval.json: item 2 (eval): item is not a JSON object; write {"field": ...} items.'),
    ("json-syntax", "eval.json", '[{"text": "x",\n "label": }]', "",
     "<tmp>/eval.json:2 (eval): not valid JSON (Expecting value); fix the JSON there."),
    ("json-deep", "eval.jsonl", "[" * 100_000 + "\n", "",
     "<tmp>/eval.jsonl:1 (eval): JSON is nested too deeply; one flat object per line."),
]


@pytest.mark.parametrize("name, content, fields, message", [c[1:] for c in ROW_ERRORS], ids=[c[0] for c in ROW_ERRORS])
def test_row_errors(tmp_path, write, name, content, fields, message):
    if name is not None:
        write(name, content)
    eval_name = (name or "eval.jsonl").split("/")[0]
    s = task(tmp_path, head="name: t\ntype: classification\ndata:\n"
                            f"  eval: {eval_name}\n{fields}target: {{metric: accuracy, min: 0.8}}\n")
    with pytest.raises(AdvisorError) as err:
        load_examples(s.data.eval, s, "eval")
    assert msg(err, tmp_path) == message


# ---------------------------------------------------------------------------------------------
# labels


def test_labels_from_list_json_file_or_inferred(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS))
    s = task(tmp_path, "labels: [positive, negative, neutral]\n")
    ds = load_examples(s.data.eval, s, "eval")
    assert load_labels(s, [ds]) == ["positive", "negative", "neutral"]  # the given order is kept
    write("meta/labels.json", '["negative", "positive"]')
    s = task(tmp_path, "labels: meta/labels.json\n")
    assert load_labels(s, [ds]) == ["negative", "positive"]
    s = task(tmp_path)
    write("train.jsonl", jsonl([{"text": "meh", "label": "neutral"}]))
    train = load_examples(tmp_path / "train.jsonl", s, "train")
    assert load_labels(s, [ds, train]) == ["negative", "neutral", "positive"]  # sorted, from eval and train


def test_labels_only_for_classification(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS))
    s = task(tmp_path, head="name: t\ntype: generation\ndata:\n  eval: eval.jsonl\ntarget: {metric: token_f1, min: 0.5}\n")
    assert load_labels(s, [load_examples(s.data.eval, s, "eval")]) is None


LABEL_ERRORS = [
    ("repeat-in-list", "labels: [a, b, a]\n", None,
     "task.yaml: field 'labels': label 'a' is listed twice; list each label once."),
    ("one-label", "labels: [a]\n", None,
     "task.yaml: field 'labels': a classification task needs at least 2 labels, found 1; "
     "list every label in 'labels' (or use type: generation)."),
    ("file-missing", "labels: labels.json\n", None, "<tmp>/labels.json (labels): no such file; check labels in task.yaml."),
    ("file-not-json", "labels: labels.json\n", "[a, b]",
     '<tmp>/labels.json:1 (labels): not valid JSON (Expecting value); write ["label a", "label b"].'),
    ("file-not-list", "labels: labels.json\n", '{"a": 1}',
     '<tmp>/labels.json (labels): expected a JSON list of label strings; write ["label a", "label b"].'),
    ("file-repeat", "labels: labels.json\n", '["a", "a"]',
     "<tmp>/labels.json (labels): label 'a' is listed twice; list each label once."),
    ("inferred-one", "", None,
     "task.yaml: labels inferred from the data: a classification task needs at least 2 labels, found 1; "
     "list every label in 'labels' (or use type: generation)."),
]


@pytest.mark.parametrize("body, file, message", [c[1:] for c in LABEL_ERRORS], ids=[c[0] for c in LABEL_ERRORS])
def test_label_errors(tmp_path, write, body, file, message):
    write("eval.jsonl", jsonl([{"text": "x", "label": "a"}]))
    if file is not None:
        write("labels.json", file)
    s = task(tmp_path, body)
    with pytest.raises(AdvisorError) as err:
        load_labels(s, [load_examples(s.data.eval, s, "eval")])
    assert msg(err, tmp_path) == message


def test_eval_label_not_in_list(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS + [{"text": "so-so", "label": "neutral"}]))
    s = task(tmp_path, "labels: [negative, positive]\n")
    with pytest.raises(AdvisorError) as err:
        load_task_data(s)
    assert msg(err, tmp_path) == ("<tmp>/eval.jsonl (eval): label 'neutral' of example eval-5 is not in the label "
                                  "list; add it to labels or fix the row (labels: negative, positive).")


def test_train_too_small_to_finetune(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS))
    write("train.jsonl", jsonl(ROWS))
    head = "name: t\ntype: classification\ndata:\n  eval: eval.jsonl\n  train: train.jsonl\n" \
           "target: {metric: accuracy, min: 0.8}\n"
    with pytest.raises(AdvisorError) as err:
        load_task_data(task(tmp_path, "finetune: {mode: always}\n", head=head))
    assert msg(err, tmp_path) == (
        f"<tmp>/train.jsonl (train): 4 training examples are too few to fine-tune (minimum {MIN_TRAIN_FOR_FINETUNE}); "
        "add examples or set finetune.mode: auto."
    )
    assert load_task_data(task(tmp_path, "finetune: {mode: auto}\n", head=head)).train is not None  # auto: fine


def test_finetune_always_without_train(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS))
    with pytest.raises(AdvisorError) as err:
        load_task_data(task(tmp_path, "finetune: {mode: always}\n"))
    assert str(err.value) == ("task.yaml: field 'data.train': fine-tuning needs a train set; "
                              "add data.train or set finetune.mode: auto.")


def test_load_task_data_everything(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS))
    write("train.jsonl", jsonl(ROWS * 5))
    write("docs/a.md", "# A\nalpha")
    head = "name: t\ntype: classification\ndata:\n  eval: eval.jsonl\n  train: train.jsonl\n  corpus: docs\n" \
           "  eval_limit: 3\ntarget: {metric: accuracy, min: 0.8}\n"
    d = load_task_data(task(tmp_path, head=head))
    assert len(d.eval) == 3 and len(d.train) == 20 and d.labels == ["negative", "positive"]
    assert [doc.id for doc in d.corpus] == ["a.md"]
    assert set(d.hashes) == {"eval", "train", "corpus", "labels"} and all(d.hashes.values())


# ---------------------------------------------------------------------------------------------
# hashes: change exactly when what is scored changes


def eval_hash(tmp_path: Path, content: str, fields: str = "", name: str = "eval.jsonl") -> str:
    (tmp_path / name).write_text(content, encoding="utf-8")
    s = task(tmp_path, head=f"name: t\ntype: classification\ndata:\n  eval: {name}\n{fields}"
                            "target: {metric: accuracy, min: 0.8}\n")
    return load_examples(s.data.eval, s, "eval").hash


def test_hash_ignores_formatting_and_unused_columns(tmp_path):
    h = eval_hash(tmp_path, jsonl(ROWS))
    spaced = "".join(json.dumps(r, indent=None, separators=(" ,  ", " :  ")) + "\n" for r in ROWS)
    assert eval_hash(tmp_path, spaced) == h
    reordered = jsonl([{"label": r["label"], "text": r["text"]} for r in ROWS])
    assert eval_hash(tmp_path, reordered) == h
    assert eval_hash(tmp_path, jsonl([{**r, "note": "unused"} for r in ROWS])) == h
    assert eval_hash(tmp_path, jsonl(ROWS).replace("\n", "\r\n")) == h
    renamed = jsonl([{"sentence": r["text"], "gold": r["label"]} for r in ROWS])  # mapping follows the rename
    assert eval_hash(tmp_path, renamed, "  fields: {input: sentence, expected: gold}\n") == h


def test_hash_changes_with_content_and_mapping(tmp_path):
    h = eval_hash(tmp_path, jsonl(ROWS))
    changed_label = [dict(r) for r in ROWS]
    changed_label[0]["label"] = "negative"
    changed_text = [dict(r) for r in ROWS]
    changed_text[3]["text"] = "hated it!"
    two_cols = jsonl([{**r, "alt": r["text"].upper()} for r in ROWS])
    hashes = {
        "label": eval_hash(tmp_path, jsonl(changed_label)),
        "text": eval_hash(tmp_path, jsonl(changed_text)),
        "order": eval_hash(tmp_path, jsonl(ROWS[::-1])),
        "fewer": eval_hash(tmp_path, jsonl(ROWS[:3])),
        "mapping": eval_hash(tmp_path, two_cols, "  fields: {input: alt}\n"),
        "ids": eval_hash(tmp_path, jsonl([{"id": f"x{i}", **r} for i, r in enumerate(ROWS)]), "  fields: {id: id}\n"),
    }
    assert h not in hashes.values()
    assert len(set(hashes.values())) == len(hashes)
    assert eval_hash(tmp_path, two_cols) == h  # the new column is not mapped: nothing scored changed


def test_label_and_corpus_hashes(tmp_path, write):
    write("eval.jsonl", jsonl(ROWS))
    write("docs/a.md", "alpha")
    head = "name: t\ntype: classification\ndata:\n  eval: eval.jsonl\n  corpus: docs\ntarget: {metric: accuracy, min: 0.8}\n"
    h1 = load_task_data(task(tmp_path, "labels: [negative, positive]\n", head=head)).hashes
    h2 = load_task_data(task(tmp_path, "labels: [negative, positive, neutral]\n", head=head)).hashes
    assert h1["eval"] == h2["eval"] and h1["corpus"] == h2["corpus"] and h1["labels"] != h2["labels"]
    write("docs/a.md", "alpha beta")
    h3 = load_task_data(task(tmp_path, "labels: [negative, positive]\n", head=head)).hashes
    assert h3["corpus"] != h1["corpus"] and h3["eval"] == h1["eval"] and h3["labels"] == h1["labels"]
    write("docs/a.md", "alpha")
    assert load_task_data(task(tmp_path, "labels: [negative, positive]\n", head=head)).hashes == h1


def test_content_hash_is_stable():
    assert data.content_hash({"b": 1, "a": [1, "x"]}) == data.content_hash({"a": [1, "x"], "b": 1})
    assert len(data.content_hash("x")) == 16


# ---------------------------------------------------------------------------------------------
# corpus


def test_corpus_from_jsonl(tmp_path, write):
    p = write("kb.jsonl", jsonl([{"id": "d1", "title": "Alpha", "text": " alpha text "},
                                 {"title": "No id", "text": "beta"}]))
    docs = load_corpus([p])
    assert [(d.id, d.title, d.text) for d in docs] == [("d1", "Alpha", "alpha text"), ("kb-2", "No id", "beta")]


def test_corpus_from_folder_recursive(tmp_path, write):
    write("docs/b_second.md", "# B\nbeta")
    write("docs/sub/a_first.txt", "alpha")
    write("docs/sub/skip.pdf", "not a document type")
    write("docs/empty.md", "   \n")
    write("docs/latin.txt", "caf\xe9".encode("latin-1"))  # unreadable: skipped, not fatal
    docs = load_corpus([tmp_path / "docs"])
    assert [(d.id, d.title, d.text) for d in docs] == [("b_second.md", "b second", "# B\nbeta"),
                                                      ("sub/a_first.txt", "a first", "alpha")]


def test_corpus_single_markdown_file_and_mixed(tmp_path, write):
    md = write("guide.md", "# Guide\nhow to")
    kb = write("kb.jsonl", jsonl([{"id": "d1", "text": "x"}]))
    docs = load_corpus([md, kb])
    assert [(d.id, d.title) for d in docs] == [("guide.md", "guide"), ("d1", "")]


CORPUS_ERRORS = [
    ("no-documents", {"docs/a.pdf": "x", "docs/b.md": "  "}, "docs",
     "<tmp>/docs (data.corpus): has no readable .md or .txt documents; add UTF-8 .md/.txt files or point at a "
     ".jsonl corpus."),
    ("missing", {}, "nowhere", "<tmp>/nowhere (data.corpus): no such file or folder; check data.corpus in task.yaml."),
    ("no-text", {"kb.jsonl": jsonl([{"id": "d1", "title": "t"}])}, "kb.jsonl",
     "<tmp>/kb.jsonl:1 (corpus): no 'text' field; each line needs id, title and text."),
    ("duplicate-id", {"kb.jsonl": jsonl([{"id": "d1", "text": "x"}, {"id": "d1", "text": "y"}])}, "kb.jsonl",
     "task.yaml: field 'data.corpus': duplicate document id 'd1'; make document ids unique."),
    ("bad-line", {"kb.jsonl": "not json\n"}, "kb.jsonl",
     "<tmp>/kb.jsonl:1 (corpus): line is not valid JSON (Expecting value); one JSON object per line (JSON Lines)."),
    ("empty-md", {"a.md": "\n"}, "a.md", "<tmp>/a.md (data.corpus): is empty; add text or remove it from data.corpus."),
]


@pytest.mark.parametrize("files, corpus, message", [c[1:] for c in CORPUS_ERRORS], ids=[c[0] for c in CORPUS_ERRORS])
def test_corpus_errors(tmp_path, write, files, corpus, message):
    write("eval.jsonl", jsonl(ROWS))
    for name, content in files.items():
        write(name, content)
    s = task(tmp_path, head="name: t\ntype: classification\ndata:\n  eval: eval.jsonl\n"
                            f"  corpus: {corpus}\ntarget: {{metric: accuracy, min: 0.8}}\n")
    with pytest.raises(AdvisorError) as err:
        load_task_data(s)
    assert msg(err, tmp_path) == message
