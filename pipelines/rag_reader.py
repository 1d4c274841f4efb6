"""The RAG reader: how retrieved passages are shown to the generator, and how its answer is read.

A 135M model reads context poorly (FIELD-NOTES: gold passage only, F1 0.12), so for generated
answers over documents a few prompt wordings and answer extractions are compared on a held-out
slice of the *train* set (never the eval set) and the best is kept (``RagPipeline`` runs the
choice; the variants and defaults live here). On 32 held-out squad_rag train questions (token
F1, raw -> trimmed answer): the default prompt with 4 passages 0.06 -> 0.09; the question before
and after 4 passages 0.08 -> 0.17; the same with the top 2 passages 0.14 -> 0.25, with the top 1
0.13 -> 0.21. The two best wordings are tried at run time; the extraction is chosen on the same
generations (free). The trial is raced and cached (``pipelines/choice.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from langchain_core.output_parsers import BaseOutputParser

from .prompts import build_messages, format_context

DEV_MIN = 8  # fewer held-out train items than this: keep the default prompt


# ---------------------------------------------------------------------------------------------
# reader prompts and answer extraction (QA over documents)


@dataclass(frozen=True)
class ReaderPrompt:
    """How retrieved passages are shown to a generating reader."""

    name: str
    passages: int | None = None  # how many of the k retrieved passages it reads (None: all)
    sandwich: bool = False  # the question before and after the passages
    exact_words: bool = False  # ask for "the exact words from the passage"


READER_PROMPTS = {
    p.name: p for p in (
        ReaderPrompt("plain"),
        ReaderPrompt("sandwich", sandwich=True, exact_words=True),
        ReaderPrompt("sandwich-top2", passages=2, sandwich=True, exact_words=True),
        ReaderPrompt("sandwich-top1", passages=1, sandwich=True, exact_words=True),
    )
}
DEFAULT_PROMPT = "sandwich-top2"
# tried on the train slice at run time (each costs one generation pass over it); the others can
# be forced: RagPipeline(prompt="plain")
CANDIDATE_PROMPTS = ("sandwich-top2", "sandwich-top1")

_LEAD_INS = [
    # "The answer to this question is: X", "Answer: X"
    re.compile(r"^.{0,80}?\banswer\b[^:.]{0,80}?(?:\bis\b\s*:?|:)\s*", re.I),
    # "[2] Sky (United Kingdom): X" (a copied passage header)
    re.compile(r"^\[\d+\]\s*[^:]{0,60}:\s*"),
    re.compile(r"^(?:according to|based on|in) (?:the )?(?:passages?|context)(?:\s*\[?\d+\]?)?,?\s*", re.I),
]
_SENT_END = re.compile(r"(?<!\b[A-Z])[.!?](?=\s|$)|\n")


def first_sentence(text: str) -> str:
    """The text up to its first sentence end or line break (abbreviations like 'U.S.' kept)."""
    t = text.strip()
    m = _SENT_END.search(t)
    return t[: m.start()].strip() if m and m.start() > 0 else t


def strip_lead_in(text: str) -> str:
    """Drop "The answer is:", "According to passage [1]," and copied passage headers."""
    t = text.strip()
    for pattern in _LEAD_INS:
        t = pattern.sub("", t, count=1).strip()
    return t.strip('"').strip() or text.strip()


def drop_question_words(text: str, question: str) -> str:
    """Remove leading/trailing words restated from the question ("The Amazon covers over half" -> ...).

    Only the ends are trimmed, so the middle of an answer keeps its words; the whole answer is
    kept when every word is in the question.
    """
    def norm(w: str) -> str:
        return re.sub(r"[^\w]", "", w.lower())

    stop = {"the", "a", "an", "is", "was", "are", "were", "of", "in", "to", "it", "that", "this", "by", "for", "on"}
    q = {norm(w) for w in question.split()} | stop
    words = text.split()
    i, j = 0, len(words)
    while i < j and norm(words[i]) in q:
        i += 1
    while j > i and norm(words[j - 1]) in q:
        j -= 1
    return " ".join(words[i:j]) if i < j else text


def short_clause(text: str, question: str, max_words: int = 6) -> str:
    """first-sentence-trim, then a long answer is cut at its first comma or semicolon."""
    a = drop_question_words(strip_lead_in(first_sentence(text)), question)
    if len(a.split()) > max_words:
        head = re.split(r"[,;](?=\s)", a, maxsplit=1)[0].strip()  # not inside "7,000,000"
        a = head or a
    return a


EXTRACTORS: dict[str, Callable[[str, str], str]] = {
    "raw": lambda text, q: text.strip(),
    "first-sentence": lambda text, q: strip_lead_in(first_sentence(text)),
    "first-sentence-trim": lambda text, q: drop_question_words(strip_lead_in(first_sentence(text)), q),
    "short-clause": short_clause,
}
# Without a train slice to choose on: what did best on held-out squad_rag *train* items
# (question before and after the top-2 passages; answers trimmed to the new words).
DEFAULT_EXTRACTOR = "first-sentence-trim"


class AnswerParser(BaseOutputParser[str]):
    """Output parser: the reader's free text -> the answer that is scored."""

    extractor: str = DEFAULT_EXTRACTOR

    def parse(self, text: str, question: str = "") -> str:  # type: ignore[override]
        return EXTRACTORS[self.extractor](text, question)

    @property
    def _type(self) -> str:
        return "advisor_answer"


def reader_messages(spec, labels, query: str, passages: Sequence[tuple[str, str]], demos: Sequence = (),
                    prompt: ReaderPrompt = READER_PROMPTS[DEFAULT_PROMPT]):
    """build_messages with the reader-prompt variant applied (passage count, wording, sandwich)."""
    shown = list(passages[: prompt.passages] if prompt.passages else passages)
    msgs = build_messages(spec, labels, query, demos=demos, passages=shown or None)
    if not shown or not (prompt.sandwich or prompt.exact_words):
        return msgs
    noun = "passage" if len(shown) == 1 else "passages"
    if prompt.exact_words and spec.type == "qa":
        head = spec.instructions.strip()
        rule = f"Answer with the exact words from the {noun}: a short phrase, not a sentence."
        msgs[0] = {"role": "system", "content": f"{head}\n{rule}" if head else rule}
    body = f"{noun.capitalize()}:\n{format_context(shown)}"
    if prompt.sandwich:
        tail = f"Question: {query}"
        if prompt.exact_words and spec.type == "qa":
            tail += f"\nAnswer with the exact words from the {noun}:"
        msgs[-1] = {"role": "user", "content": f"Question: {query}\n\n{body}\n\n{tail}"}
    return msgs
