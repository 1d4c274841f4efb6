"""Issue 16's metrics without a model: format compliance on hand-made outputs, semantic
similarity against cosines computed by hand, custom scorers (loading, one-line errors), the
task-file rules for target.metric, and the judge's cache and calibration with a fake chat."""

import math

import pytest

from advisor import metrics
from advisor.errors import AdvisorError
from advisor.judge import Judge, JudgeCache, JudgeItem, calibration, parse_reply
from advisor.spec import parse

SCHEMA = {"type": "object", "properties": {"intent": {"type": "string", "enum": ["pin_blocked", "card_arrival"]},
                                           "urgent": {"type": "boolean"}},
          "required": ["intent"], "additionalProperties": False}


# --------------------------------------------------------------------------- format compliance

@pytest.mark.parametrize("output, valid, schema_ok, required_ok", [
    ('{"intent": "pin_blocked"}', 1, 1, 1),
    ('  {"intent": "card_arrival", "urgent": true}\n', 1, 1, 1),
    ('{"intent": "lost_card"}', 1, 0, 1),  # not in the enum
    ('{"intent": "pin_blocked", "extra": 1}', 1, 0, 1),  # additionalProperties: false
    ('{"urgent": true}', 1, 0, 0),  # required field missing
    ('{"intent": ""}', 1, 0, 0),  # empty is not filled
    ('["pin_blocked"]', 1, 0, 0),  # JSON, but not an object
    ("pin_blocked", 0, 0, 0),
    ('Sure! {"intent": "pin_blocked"}', 0, 0, 0),  # chatter around the JSON is a failed parse
    ('{"intent": "pin_blocked"', 0, 0, 0),  # truncated
])
def test_json_schema_and_required_fields(output, valid, schema_ok, required_ok):
    rules = metrics.FormatRules(schema=SCHEMA, required=("intent",))
    got = metrics.format_checks(output, rules)
    assert got == {"json_valid": valid, "json_schema": schema_ok, "required_fields": required_ok,
                   "format_ok": float(valid and schema_ok and required_ok)}


@pytest.mark.parametrize("output, ok", [
    ("2024-01-31", 1), ("  2024-01-31 \n", 1), ("2024-1-31", 0), ("on 2024-01-31", 0), ("2024-01-31 extra", 0),
])
def test_regex_must_match_the_whole_output(output, ok):
    rules = metrics.FormatRules(regex=r"\d{4}-\d{2}-\d{2}")
    assert metrics.format_checks(output, rules) == {"regex_match": ok, "format_ok": ok}


def test_content_metrics_read_the_answer_field():
    rules = metrics.FormatRules(schema=SCHEMA, answer_field="intent")
    outs = ['{"intent": "pin_blocked"}', "pin_blocked", '{"intent": "card_arrival"}']
    # gold given as the bare value or as the whole document: both mean the same answer
    s = metrics.score("generation", outs, [("pin_blocked",), ("pin_blocked",), ('{"intent": "pin_blocked"}',)],
                      rules=rules)
    assert s.per_example["exact_match"] == [1.0, 0.0, 0.0]  # unparsable output has no answer
    assert s.per_example["json_schema"] == [1.0, 0.0, 1.0]
    assert s.metrics["format_ok"] == pytest.approx(2 / 3)
    assert metrics.demo_answer("pin_blocked", rules) == '{"intent": "pin_blocked"}'


# --------------------------------------------------------------------------- semantic similarity

def test_semantic_similarity_is_the_cosine_to_the_best_gold():
    pred = [[3.0, 4.0], [1.0, 0.0], [0.0, 0.0]]
    golds = [[[4.0, 3.0], [3.0, 4.0]],  # cos 24/25 and 1 -> best is 1
             [[1.0, 1.0]],  # cos = 1/sqrt(2)
             [[1.0, 0.0]]]  # zero vector: no similarity
    got = metrics.semantic_similarity(pred, golds)
    assert got == pytest.approx([1.0, 1 / math.sqrt(2), 0.0])
    assert metrics.semantic_similarity([[3.0, 4.0]], [[[4.0, 3.0]]]) == pytest.approx([24 / 25])
    assert metrics.semantic_similarity([[1.0, 0.0]], [[[-1.0, 0.0]]]) == [0.0]  # opposite: clipped to 0
    assert metrics.semantic_similarity(pred, golds, threshold=0.75) == [1.0, 0.0, 0.0]  # 0.707 < 0.75


# --------------------------------------------------------------------------- custom scorers

def test_custom_scorer_loads_relative_to_the_task_and_reports_the_bad_item(tmp_path):
    (tmp_path / "scorers").mkdir()
    (tmp_path / "scorers" / "refunds.py").write_text(
        "def ok(prediction, expected, item):\n"
        "    if item['id'] == 'b':\n"
        "        raise KeyError('policy')\n"
        "    return 'refund' in prediction\n"
        "def scale(prediction, expected, item):\n"
        "    return 7\n"
    )
    fn = metrics.load_custom_scorer("scorers.refunds:ok", tmp_path, where="t.yaml: field 'target.metric'")
    items = [{"id": "a"}, {"id": "c"}]
    assert metrics.run_custom_scorer(fn, "m", ["a refund", "no"], [("x",), ("y",)], items, ["a", "c"]) == [1.0, 0.0]
    with pytest.raises(AdvisorError, match=r"eval item 'b': raised KeyError") as e:
        metrics.run_custom_scorer(fn, "m", ["x", "y"], [("x",), ("y",)], [{"id": "a"}, {"id": "b"}], ["a", "b"])
    assert "\n" not in str(e.value)
    bad = metrics.load_custom_scorer("scorers.refunds:scale", tmp_path, where="w")
    with pytest.raises(AdvisorError, match=r"eval item 'a': returned 7, not a number in \[0, 1\]"):
        metrics.run_custom_scorer(bad, "m", ["x"], [("x",)], [{"id": "a"}], ["a"])
    with pytest.raises(AdvisorError, match="has no function 'nope'"):
        metrics.load_custom_scorer("scorers.refunds:nope", tmp_path, where="w")


def _task(**over):
    raw = {"name": "t", "type": "generation", "data": {"eval": "e.jsonl"}, "target": {"metric": "token_f1", "min": 0.5}}
    raw.update(over)
    return raw


@pytest.mark.parametrize("over, message", [
    ({"target": {"metric": "json_schema", "min": 0.9}}, "'json_schema' needs format.schema"),
    ({"target": {"metric": "format_ok", "min": 0.9}}, "'format_ok' needs a format section"),
    ({"target": {"metric": "regex_match", "min": 0.9}, "format": {"json": True}}, "needs format.regex"),
    ({"target": {"metric": "mine:score", "min": 0.9}}, "scorer module"),
    ({"target": {"metric": "token_f1", "min": 0.5, "threshold": 0.8}}, "threshold only applies"),
    ({"target": {"metric": "bleu", "min": 0.5}}, "not a metric of a generation task"),
    ({"format": {"schema": {"type": "objekt"}}}, "not a valid JSON Schema"),
    ({"format": {"regex": "(unclosed"}}, "is not a regular expression"),
])
def test_target_metric_rules(tmp_path, over, message):
    with pytest.raises(AdvisorError, match=message):
        parse(_task(**over), file="t.yaml", base=tmp_path)


def test_metrics_the_task_file_accepts(tmp_path):
    (tmp_path / "mine.py").write_text("def score(p, e, i):\n    return 1.0\n")
    (tmp_path / "s.json").write_text('{"type": "object"}')
    assert parse(_task(target={"metric": "mine:score", "min": 0.5, "higher_is_better": False}),
                 file="t.yaml", base=tmp_path).higher_is_better is False
    spec = parse(_task(target={"metric": "json_schema", "min": 0.9}, format={"schema": "s.json", "required": ["a"]}),
                 file="t.yaml", base=tmp_path)
    assert spec.format_rules().schema == {"type": "object"}
    assert spec.format_rules().checks == ("json_valid", "json_schema", "required_fields", "format_ok")
    assert parse(_task(target={"metric": "semantic_similarity", "min": 0.5, "threshold": 0.8}),
                 file="t.yaml", base=tmp_path).target.threshold == 0.8


# --------------------------------------------------------------------------- the judge (fake chat)

def test_judge_replies_are_cached_so_a_rerun_makes_no_calls(tmp_path):
    calls = []

    def chat(messages):
        calls.append(messages)
        return "Verdict: PASS\nReasoning: matches the reference." if "Paris" in messages[-1]["content"] \
            else "Verdict: FAIL\nReasoning: wrong city."

    items = [JudgeItem("1", "Capital of France?", "Paris", ("Paris",)),
             JudgeItem("2", "Capital of Italy?", "Milan", ("Rome",))]
    first = Judge("m", "Is the answer correct?", chat, JudgeCache(tmp_path)).correctness(items)
    assert [v.score for v in first] == [1.0, 0.0] and len(calls) == 2
    assert first[1].reasoning == "wrong city."
    again = Judge("m", "Is the answer correct?", chat, JudgeCache(tmp_path))
    second = again.correctness(items)
    assert len(calls) == 2 and again.usage.calls == 0 and again.usage.cached == 2
    assert [(v.score, v.reasoning, v.cached) for v in second] == [(1.0, "matches the reference.", True),
                                                                  (0.0, "wrong city.", True)]
    Judge("m", "Another rubric", chat, JudgeCache(tmp_path)).correctness(items[:1])
    assert len(calls) == 3  # a different rubric is a different question


def test_calibration_counts_agreement_and_flips():
    judge = [1, 1, 0, 0, 1, 1]
    exact = [1, 0, 0, 1, 1, 0.4]  # 0.4 < 0.5: a fail for the exact metric
    assert calibration(judge, exact) == {"n": 6, "agreement": 0.5, "flips_up": 2, "flips_down": 1}


def test_parse_reply_tolerates_an_endpoint_judges_formatting():
    assert parse_reply("**Verdict:** pass\nReasoning: fine") == (True, "fine")
    assert parse_reply("I think it is good") == (None, "I think it is good")


def test_groundedness_asks_about_the_retrieved_passages(tmp_path):
    seen = []

    def chat(messages):
        seen.append(messages[-1]["content"])
        supported = "1889" in messages[-1]["content"].split("Question:")[0]
        return f"Verdict: {'PASS' if supported else 'FAIL'}\nReasoning: checked the passages."

    items = [JudgeItem("a", "When was the tower built?", "1889", passages=("The tower was completed in 1889.",)),
             JudgeItem("b", "When was the tower built?", "1920", passages=("The bridge opened in 1920.",))]
    verdicts = Judge("m", "unused", chat, JudgeCache(tmp_path)).groundedness(items)
    assert [v.score for v in verdicts] == [1.0, 0.0]
    assert "[1] The tower was completed in 1889." in seen[0] and "Answer: 1889" in seen[0]
