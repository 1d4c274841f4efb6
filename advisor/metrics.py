"""Per-example scorers and their aggregation (pure: no ML imports).

Like lm-evaluation-harness, each metric is registered with `higher_is_better` and how it
aggregates; per-example scores are always kept, because paired tests and CIs need them.
Every new metric (format checks, semantic similarity, a team's own scorer, the judge's
verdict) yields a per-item score in [0, 1], so the same CIs and paired tests apply to it.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

# ---------------------------------------------------------------------------------------------
# SQuAD v1.1 normalisation: lowercase, strip punctuation, drop articles, collapse whitespace.

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(s: str) -> str:
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(a) for a in answers))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    p = normalize_answer(prediction).split()
    return max(_f1(p, normalize_answer(a).split()) for a in answers) if answers else 0.0


def contains(prediction: str, answers: Sequence[str]) -> float:
    """Lenient: the normalised gold answer appears in the normalised prediction."""
    p = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(a) and f" {normalize_answer(a)} " in p for a in answers))


# ---------------------------------------------------------------------------------------------
# classification: lenient label extraction from free text


def _label_forms(label: str) -> list[str]:
    words = re.sub(r"[_\-]+", " ", label).strip()
    return list(dict.fromkeys([label.lower(), words.lower()]))


def extract_label(output: str, labels: Sequence[str]) -> str | None:
    """The label a free-text answer names, or None.

    "The review is positive." names `positive`; "pin blocked" names `pin_blocked`. Longer
    labels are tried first so that `top_up_failed` wins over a hypothetical `top_up`; when
    several labels appear, the one mentioned first wins (models tend to answer, then explain).
    """
    text = " " + re.sub(r"[_\-]+", " ", output.lower()) + " "
    text_raw = " " + output.lower() + " "
    best: tuple[int, int, str] | None = None  # (position, -length, label)
    for label in labels:
        for form in _label_forms(label):
            for hay in (text_raw, text):
                m = re.search(r"(?<![a-z0-9])" + re.escape(form) + r"(?![a-z0-9])", hay)
                if m:
                    cand = (m.start(), -len(form), label)
                    if best is None or cand < best:
                        best = cand
    return best[2] if best else None


# ---------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    per_example: Callable[[str, Sequence[str]], float] | None  # None: corpus-level only
    description: str
    # A corpus-level metric (per_example None): the metric of predicted vs gold labels over a
    # set of items, (predicted, gold, labels) -> score. Its CI is a bootstrap over items of
    # this function, its comparisons a paired bootstrap (advisor.stats), never a per-item mean.
    corpus: Callable[[Sequence[str | None], Sequence[str], Sequence[str]], float] | None = None

    @property
    def corpus_level(self) -> bool:
        return self.per_example is None


def _label_accuracy(prediction: str, answers: Sequence[str]) -> float:
    return float(prediction == answers[0])


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", True, _label_accuracy, "share of items whose label is right"),
    "macro_f1": Metric("macro_f1", True, None, "F1 per label, averaged over labels (scikit-learn)",
                       corpus=lambda pred, gold, labels: macro_f1(pred, gold, labels)),
    "token_f1": Metric("token_f1", True, token_f1, "SQuAD token F1, max over gold answers"),
    "exact_match": Metric("exact_match", True, exact_match, "SQuAD-normalised exact match"),
    "contains": Metric("contains", True, contains, "normalised gold answer appears in the output"),
    # needs the task's embedder: computed by the engine, the maths is semantic_similarity()
    "semantic_similarity": Metric("semantic_similarity", True, None,
                                  "cosine to the best gold answer (task embedder), optionally thresholded"),
    # need the task's `format:` section: format_checks()
    "json_valid": Metric("json_valid", True, None, "the whole output parses as JSON"),
    "json_schema": Metric("json_schema", True, None, "the output validates against format.schema"),
    "required_fields": Metric("required_fields", True, None, "the JSON object has every format.required field"),
    "regex_match": Metric("regex_match", True, None, "the output fully matches format.regex"),
    "format_ok": Metric("format_ok", True, None, "every declared format check passes"),
}

# The one list of metrics per task type (spec validates target.metric against it); the first
# of each type is its primary one. Format metrics need a `format:` section, custom scorers
# (`module:function`) are allowed for every type.
METRICS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "qa": ("token_f1", "exact_match", "contains", "semantic_similarity"),
    "generation": ("token_f1", "exact_match", "contains", "semantic_similarity"),
}
FORMAT_METRICS = ("json_valid", "json_schema", "required_fields", "regex_match", "format_ok")
TEXT_METRICS = ("token_f1", "exact_match", "contains")  # what every qa/generation run reports


def get_metric(name: str, higher_is_better: bool = True) -> Metric:
    """The registry entry, or a custom scorer's (which declares its own direction)."""
    if name in METRICS:
        return METRICS[name]
    return Metric(name, higher_is_better, None, "custom scorer")


@dataclass
class Scored:
    """What a pipeline's predictions score: aggregates, per-example vectors, extracted labels."""

    metrics: dict[str, float]
    per_example: dict[str, list[float]]
    extracted: list[str | None] | None = None
    unparsed_rate: float | None = None


def macro_f1(predicted: Sequence[str | None], gold: Sequence[str], labels: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    pred = [p if p is not None else "__none__" for p in predicted]
    return float(f1_score(list(gold), pred, labels=list(labels), average="macro", zero_division=0))


def score(
    task_type: str,
    outputs: Sequence[str],
    expected: Sequence[Sequence[str]],
    labels: Sequence[str] | None = None,
    *,
    constrained: bool = False,
    rules: "FormatRules | None" = None,
) -> Scored:
    """Score outputs against expected answers with every metric of the task type.

    `constrained=True` means the outputs are already labels (choices decoding), so no
    extraction is needed and nothing can be unparsable. With format `rules`, every declared
    format check is scored too, and content metrics read `rules.answer_field` of the JSON.
    """
    if rules is not None and rules.checks and task_type != "classification":
        golds = [tuple(gold_answer(a, rules) for a in e) for e in expected]
        base = score(task_type, [answer_of(o, rules) for o in outputs], golds, labels)
        checks = [format_checks(o, rules) for o in outputs]
        for name in rules.checks:
            base.per_example[name] = [c[name] for c in checks]
            base.metrics[name] = mean(base.per_example[name])
        return base
    if len(outputs) != len(expected):
        raise ValueError(f"{len(outputs)} outputs for {len(expected)} examples")
    n = len(outputs)
    if task_type == "classification":
        if labels is None:
            raise ValueError("classification needs labels")
        extracted = list(outputs) if constrained else [extract_label(o, labels) for o in outputs]
        gold = [e[0] for e in expected]
        acc = [float(p == g) for p, g in zip(extracted, gold)]
        unparsed = sum(p is None for p in extracted) / n if n else 0.0
        return Scored(
            {"accuracy": sum(acc) / n if n else 0.0, "macro_f1": macro_f1(extracted, gold, labels)},
            {"accuracy": acc},
            extracted,
            unparsed,
        )
    per = {m: [METRICS[m].per_example(o, e) for o, e in zip(outputs, expected)] for m in TEXT_METRICS}
    return Scored({m: (sum(v) / n if n else 0.0) for m, v in per.items()}, per)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def choice_metric(scored: Scored, metric: str, task_type: str) -> str:
    """What chooses a prompt variant on train items: the target metric when it is computed
    there, else the type's primary one (scorers, embeddings and judges don't run on dev slices)."""
    return metric if metric in scored.metrics else METRICS_BY_TYPE[task_type][0]



# ---------------------------------------------------------------------------------------------
# format compliance: JSON that parses, a JSON Schema, a regular expression, required fields


@dataclass(frozen=True)
class FormatRules:
    """The output format a task declares (spec `format:`), as plain data for pure checks."""

    json: bool = False
    schema: dict | None = None
    regex: str | None = None
    required: tuple[str, ...] = ()
    answer_field: str | None = None

    @property
    def checks(self) -> tuple[str, ...]:
        """The format metrics this declaration makes meaningful, in report order."""
        out = []
        if self.json or self.schema is not None or self.required or self.answer_field:
            out.append("json_valid")
        if self.schema is not None:
            out.append("json_schema")
        if self.required:
            out.append("required_fields")
        if self.regex is not None:
            out.append("regex_match")
        return tuple(out) + (("format_ok",) if out else ())


def parse_json(text: str) -> tuple[bool, object]:
    """(parsed?, value). The whole output must be one JSON value (surrounding blanks allowed)."""
    try:
        return True, json.loads(text)
    except (ValueError, TypeError):
        return False, None


def format_checks(prediction: str, rules: FormatRules) -> dict[str, float]:
    """Per-item 0/1 for every declared check, plus `format_ok` (all of them pass)."""
    names = rules.checks
    if not names:
        return {}
    out: dict[str, float] = {}
    ok, value = parse_json(prediction) if "json_valid" in names else (False, None)
    if "json_valid" in names:
        out["json_valid"] = float(ok)
    if "json_schema" in names:
        import jsonschema  # light, pure Python

        out["json_schema"] = float(ok and jsonschema.Draft202012Validator(rules.schema).is_valid(value))
    if "required_fields" in names:
        out["required_fields"] = float(
            ok and isinstance(value, dict) and all(value.get(f) not in (None, "", [], {}) for f in rules.required)
        )
    if "regex_match" in names:
        out["regex_match"] = float(re.fullmatch(rules.regex, prediction.strip(), flags=re.DOTALL) is not None)
    out["format_ok"] = float(all(out.values()))
    return out


def answer_of(prediction: str, rules: FormatRules | None) -> str:
    """The part of a structured output that content metrics score (`format.answer_field`).

    Unparsable output has no answer: it scores as an empty string, not as its raw text.
    """
    if rules is None or not rules.answer_field:
        return prediction
    ok, value = parse_json(prediction)
    if not ok or not isinstance(value, dict):
        return ""
    v = value.get(rules.answer_field)
    return "" if v is None else v if isinstance(v, str) else json.dumps(v)


def gold_answer(expected: str, rules: FormatRules | None) -> str:
    """A gold answer in the data may be the whole JSON document or just the field's value."""
    if rules is None or not rules.answer_field:
        return expected
    ok, value = parse_json(expected)
    return answer_of(expected, rules) if ok and isinstance(value, dict) else expected


def demo_answer(expected: str, rules: FormatRules | None) -> str:
    """What a demonstration (or a fine-tuning target) shows: the answer in the required format,
    so that a model is never taught to answer in another shape than the one it is scored on."""
    if rules is None or not rules.answer_field:
        return expected
    ok, value = parse_json(expected)
    return expected if ok and isinstance(value, dict) else json.dumps({rules.answer_field: expected}, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# semantic similarity (vectors come from the task's embedder; the maths is here)


def semantic_similarity(
    pred_vecs: Sequence[Sequence[float]], gold_vecs: Sequence[Sequence[Sequence[float]]],
    threshold: float | None = None,
) -> list[float]:
    """Per item: cosine between the prediction and its *best* gold answer, clipped to [0, 1];
    with a threshold, 1.0 when that cosine reaches it, else 0.0."""
    import numpy as np

    out = []
    for p, golds in zip(pred_vecs, gold_vecs):
        p = np.asarray(p, dtype=float)
        best = 0.0
        for g in golds:
            g = np.asarray(g, dtype=float)
            denom = float(np.linalg.norm(p) * np.linalg.norm(g))
            if denom > 0:
                best = max(best, float(p @ g) / denom)
        best = min(1.0, max(0.0, best))
        out.append(float(best >= threshold) if threshold is not None else best)
    return out


# ---------------------------------------------------------------------------------------------
# custom scorers: `target.metric: my_scorers:refund_policy_ok`, a file beside the task


CUSTOM_METRIC = re.compile(r"^([A-Za-z_][\w.]*):([A-Za-z_]\w*)$")


def is_custom(name: str) -> bool:
    return CUSTOM_METRIC.match(name) is not None


def custom_scorer_file(name: str, task_dir: Path) -> Path:
    """`pkg.mod:fn` -> task_dir/pkg/mod.py (the task folder is the import root)."""
    module = CUSTOM_METRIC.match(name).group(1)  # type: ignore[union-attr]
    return task_dir.joinpath(*module.split(".")).with_suffix(".py")


def load_custom_scorer(name: str, task_dir: Path, *, where: str) -> Callable:
    """Import the callable by path relative to the task file, without touching sys.path."""
    import importlib.util

    from .errors import AdvisorError

    module, attr = CUSTOM_METRIC.match(name).groups()  # type: ignore[union-attr]
    file = custom_scorer_file(name, task_dir)
    if not file.is_file():
        raise AdvisorError(f"scorer module {file} not found", where=where,
                           fix=f"put {module.replace('.', '/')}.py beside the task file, or fix the name")
    mod_spec = importlib.util.spec_from_file_location(f"advisor_scorer_{module.replace('.', '_')}", file)
    mod = importlib.util.module_from_spec(mod_spec)  # type: ignore[arg-type]
    try:
        mod_spec.loader.exec_module(mod)  # type: ignore[union-attr]
    except Exception as e:  # the user's code: one line, not their traceback
        raise AdvisorError(f"importing {file} failed: {type(e).__name__}: {e}", where=where,
                           fix="fix the scorer module") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise AdvisorError(f"{file} has no function '{attr}'", where=where,
                           fix=f"define def {attr}(prediction, expected, item) -> float in [0, 1] or bool")
    return fn


def run_custom_scorer(fn: Callable, name: str, outputs: Sequence[str], expected: Sequence[Sequence[str]],
                      items: Sequence[object], ids: Sequence[str]) -> list[float]:
    """Call the scorer per item; a raise or a value outside [0, 1] is one line naming the item."""
    from .errors import AdvisorError

    scores = []
    for out, exp, item, item_id in zip(outputs, expected, items, ids):
        where = f"scorer {name}, eval item '{item_id}'"
        try:
            v = fn(out, list(exp), item)
        except Exception as e:
            raise AdvisorError(f"raised {type(e).__name__}: {e}", where=where, fix="fix the scorer") from None
        if isinstance(v, bool):
            v = float(v)
        if not isinstance(v, (int, float)) or not (0.0 <= float(v) <= 1.0) or v != v:
            raise AdvisorError(f"returned {v!r}, not a number in [0, 1] or a bool", where=where,
                               fix="return a float in [0, 1] or True/False")
        scores.append(float(v))
    return scores
def subset_scorer(name: str, predicted: Sequence[str | None], gold: Sequence[str],
                  labels: Sequence[str]) -> Callable[..., float]:
    """fn(indices) -> the corpus-level metric on those items (repeats allowed: a bootstrap
    resample). macro-F1 is computed from label counts with numpy (thousands of resamples in
    a second, same value as scikit-learn's); other corpus metrics call their own function."""
    import numpy as np

    if name != "macro_f1":
        fn = METRICS[name].corpus
        if fn is None:
            raise ValueError(f"{name} is not a corpus-level metric")
        return lambda idx: float(fn([predicted[i] for i in idx], [gold[i] for i in idx], labels))
    code = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    p = np.array([code.get(x, k) if x is not None else k for x in predicted])  # k: none of the labels
    g = np.array([code.get(x, k) for x in gold])

    def score_many(rows):
        """One macro-F1 per row of item indices (a bootstrap's resamples at once)."""
        rows = np.atleast_2d(np.asarray(rows))
        pi, gi = p[rows], g[rows]
        off = (np.arange(rows.shape[0]) * (k + 1))[:, None]  # row r counts in bins r*(k+1)...
        size = rows.shape[0] * (k + 1)
        tp = np.bincount((gi + off)[pi == gi], minlength=size).reshape(-1, k + 1)[:, :k]
        pred_n = np.bincount((pi + off).ravel(), minlength=size).reshape(-1, k + 1)[:, :k]
        gold_n = np.bincount((gi + off).ravel(), minlength=size).reshape(-1, k + 1)[:, :k]
        denom = pred_n + gold_n
        f1 = np.divide(2.0 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
        return f1.mean(axis=1)

    def score_on(idx) -> float:
        return float(score_many(np.asarray(idx)[None, :])[0])

    score_on.batch = score_many
    return score_on
