"""Leakage: eval items that the pipelines can see before they are scored.

An eval item that is also a train pair (exactly, or reworded) flatters every pipeline that
learns from train — the baseline, few-shot demos, retrieved examples, the fine-tunes — and an
eval input found verbatim in the corpus lets RAG retrieve the item itself. Found once at load
time, reported in every format, and optionally removed from train (`data.leakage: drop`).
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from .data import Dataset, Document, Example, _examples_hash
from .errors import AdvisorError
from .spec import TaskSpec

NEAR_DUPLICATE_JACCARD = 0.8  # word-set overlap above which two texts are one item reworded
MIN_CORPUS_MATCH_WORDS = 8  # shorter inputs ("yes", a label) occur in any corpus by chance
DIRECT_SCAN_CHARS = 50_000_000  # needles × corpus characters below which str.find over the corpus is fastest
_WORD = re.compile(r"\w+")


@dataclass
class Leakage:
    """Eval items that also occur in the train set (exact after case/space/punctuation
    normalisation, or near-duplicates by word overlap) or verbatim in the RAG corpus."""

    exact: list[tuple[str, str]] = field(default_factory=list)  # (eval id, train id)
    near: list[tuple[str, str]] = field(default_factory=list)
    in_corpus: list[tuple[str, str]] = field(default_factory=list)  # (eval id, document id)
    dropped_train: int = 0

    def to_dict(self) -> dict:
        return {"exact": len(self.exact), "near_duplicate": len(self.near), "in_corpus": len(self.in_corpus),
                "dropped_train": self.dropped_train, "near_duplicate_jaccard": NEAR_DUPLICATE_JACCARD,
                "examples": [list(p) for p in (self.exact + self.near + self.in_corpus)[:5]]}

    def notes(self) -> list[str]:
        out = []
        n_train = len({e for e, _ in self.exact + self.near})
        if n_train:
            what = (f"{len({e for e, _ in self.exact})} exact, {len({e for e, _ in self.near})} near-duplicate "
                    f"(word overlap ≥ {NEAR_DUPLICATE_JACCARD:g})")
            fate = (f"{self.dropped_train} train items dropped (data.leakage: drop)" if self.dropped_train else
                    "scores of pipelines that learn from train (baseline, few-shot, RAG examples, LoRA) may be inflated; "
                    "set data.leakage: drop to remove them from train")
            out.append(f"leakage: {n_train} eval items also in the train set ({what}); {fate}")
        if self.in_corpus:
            out.append(f"leakage: {len({e for e, _ in self.in_corpus})} eval inputs found verbatim in the corpus "
                       "(RAG may retrieve the item itself)")
        return out


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def find_leakage(eval_ex: list[Example], train_ex: list[Example], corpus: list[Document] | None,
                 threshold: float = NEAR_DUPLICATE_JACCARD) -> Leakage:
    """Exact and near-duplicate eval/train pairs, and eval inputs verbatim in the corpus.

    Near duplicates are a set-similarity join with prefix filtering: with words ordered rarest
    first, two word sets with Jaccard ≥ t share a word among the first |x| - ceil(t·|x|) + 1 of
    each, so only pairs sharing such a word are compared (fast for 10k × 3k items)."""
    leak = Leakage()
    if train_ex:
        train_tokens = [_words(e.input) for e in train_ex]
        eval_tokens = [_words(e.input) for e in eval_ex]
        train_words = [set(ws) for ws in train_tokens]
        eval_words = [set(ws) for ws in eval_tokens]
        exact: dict[str, int] = {}
        for i, ws in enumerate(train_tokens):
            exact.setdefault(" ".join(ws), i)
        freq = Counter(w for ws in train_words for w in ws)
        freq.update(w for ws in eval_words for w in ws)
        rank = {w: r for r, (w, _) in enumerate(sorted(freq.items(), key=lambda x: (x[1], x[0])))}.__getitem__

        def prefix(ws: set[str]) -> list[str]:
            return sorted(ws, key=rank)[: len(ws) - math.ceil(threshold * len(ws)) + 1]

        # word -> train items having it in their prefix, sorted by set size (for the size filter:
        # Jaccard ≥ t needs t·|x| ≤ |y| ≤ |x|/t)
        posting: dict[str, list[tuple[int, int]]] = {}
        for i, ws in enumerate(train_words):
            for w in prefix(ws):
                posting.setdefault(w, []).append((len(ws), i))
        index = {w: ([n for n, _ in sorted(v)], [i for _, i in sorted(v)]) for w, v in posting.items()}
        for e, tokens, ws in zip(eval_ex, eval_tokens, eval_words):
            hit = exact.get(" ".join(tokens))
            if hit is not None:
                leak.exact.append((e.id, train_ex[hit].id))
                continue
            if not ws:
                continue
            lo, hi = math.ceil(threshold * len(ws) - 1e-9), math.floor(len(ws) / threshold + 1e-9)
            cands: set[int] = set()
            for w in prefix(ws):
                if w in index:
                    sizes, ids = index[w]
                    cands.update(ids[bisect.bisect_left(sizes, lo): bisect.bisect_right(sizes, hi)])
            best, best_j, n = None, threshold, len(ws)
            for i in cands:
                other = train_words[i]
                inter = len(ws & other)
                j = inter / (n + len(other) - inter)
                if j >= best_j:
                    best, best_j = i, j
            if best is not None:
                leak.near.append((e.id, train_ex[best].id))
    if corpus:
        leak.in_corpus = _in_corpus(eval_ex, corpus)
    return leak


def _in_corpus(eval_ex: list[Example], corpus: list[Document]) -> list[tuple[str, str]]:
    """(eval id, document id) for eval inputs of at least MIN_CORPUS_MATCH_WORDS words found
    verbatim (after normalisation) in a document."""
    n = MIN_CORPUS_MATCH_WORDS
    needles = [(e, ws) for e in eval_ex if len(ws := _words(e.input)) >= n]
    if not needles:
        return []
    doc_words = [_words(d.text) for d in corpus]
    total = sum(len(ws) for ws in doc_words) * 6  # ~characters of the normalised corpus
    found: list[tuple[str, str]] = []
    if len(needles) * total <= DIRECT_SCAN_CHARS:
        # few needles or a small corpus: str.find over one joined string, at C speed
        parts, starts, pos = [], [], 0
        for ws in doc_words:
            starts.append(pos)
            parts.append(" " + " ".join(ws) + " \n")
            pos += len(parts[-1])
        text = "".join(parts)
        for e, ws in needles:
            at = text.find(" " + " ".join(ws) + " ")
            if at >= 0:
                found.append((e.id, corpus[bisect.bisect_right(starts, at) - 1].id))
        return found
    # many needles and a large corpus: one pass over the corpus looking up each window of n words
    anchors: dict[tuple[str, ...], list[tuple[Example, list[str]]]] = {}
    for e, ws in needles:
        anchors.setdefault(tuple(ws[:n]), []).append((e, ws))
    seen: set[str] = set()
    for d, ws in zip(corpus, doc_words):
        for i in range(len(ws) - n + 1):
            for e, needle in anchors.get(tuple(ws[i: i + n]), ()):
                if e.id not in seen and ws[i: i + len(needle)] == needle:
                    seen.add(e.id)
                    found.append((e.id, d.id))
    order = {e.id: k for k, e in enumerate(eval_ex)}
    return sorted(found, key=lambda p: order[p[0]])


def apply_leakage(spec: TaskSpec, eval_ds: Dataset, train_ds: Dataset | None,
                   corpus: list[Document] | None) -> tuple[Leakage, Dataset | None]:
    uses_documents = spec.rag.mode in ("auto", "documents", "both")
    leak = find_leakage(eval_ds.examples, train_ds.examples if train_ds else [], corpus if uses_documents else None)
    if spec.data.leakage == "drop" and train_ds and (leak.exact or leak.near):
        leaked = {t for _, t in leak.exact + leak.near}
        kept = [e for e in train_ds.examples if e.id not in leaked]
        if not kept:
            raise AdvisorError(
                "every train item is also in the eval set", where=f"{train_ds.path} (train)",
                fix="use a train set disjoint from the eval set, or data.leakage: warn",
            )
        leak.dropped_train = len(train_ds) - len(kept)
        train_ds = Dataset(kept, train_ds.path, _examples_hash(kept))
    return leak, train_ds
