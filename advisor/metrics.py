"""Per-example scorers and their aggregation (pure: no ML imports).

Like lm-evaluation-harness, each metric is registered with `higher_is_better` and how it
aggregates; per-example scores are always kept, because paired tests and CIs need them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
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
}


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
) -> Scored:
    """Score outputs against expected answers with every metric of the task type.

    `constrained=True` means the outputs are already labels (choices decoding), so no
    extraction is needed and nothing can be unparsable.
    """
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
    names = ("token_f1", "exact_match", "contains")
    per = {m: [METRICS[m].per_example(o, e) for o, e in zip(outputs, expected)] for m in names}
    return Scored({m: (sum(v) / n if n else 0.0) for m, v in per.items()}, per)


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

    def score_on(idx) -> float:
        pi, gi = p[idx], g[idx]
        tp = np.bincount(gi[pi == gi], minlength=k + 1)[:k]
        pred_n = np.bincount(pi, minlength=k + 1)[:k]
        gold_n = np.bincount(gi, minlength=k + 1)[:k]
        denom = pred_n + gold_n
        f1 = np.divide(2.0 * tp, denom, out=np.zeros(k), where=denom > 0)
        return float(f1.mean())

    return score_on
