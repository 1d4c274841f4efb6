"""An LLM judge: the task's rubric scored per item (PASS/FAIL with one line of reasoning).

Model-agnostic on purpose: a judge is anything that answers a chat, `chat(messages) -> text`
(`ChatFn`). Today that is the local model through pipelines/generation.Generator
(`local_chat`, format-constrained so the verdict always parses); an OpenAI-compatible endpoint
plugs in as another ChatFn without touching this module.

Every reply is cached on disk under a key hashing the judge model, the prompt version and the
messages, so a rerun makes no judge calls; what the calls cost is evaluation cost, kept apart
from the pipelines' serving cost. The verdict is calibrated against an exact metric on the same
items (agreement rate and flips), because a judge nobody checked is not a measurement.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

Messages = list[dict[str, str]]
ChatFn = Callable[[Messages], str]  # one conversation in, the judge's reply out

PROMPT_VERSION = 1  # bump when the judge prompts change: old cache entries stop matching
VERDICT = re.compile(r"verdict\s*:\s*\**\s*(pass|fail)", re.IGNORECASE)
REASONING = re.compile(r"reasoning\s*:\s*(.*)", re.IGNORECASE | re.DOTALL)
# what a local judge is held to while decoding: the verdict first (it always fits the token
# budget), then the reasoning, written freely (free text under a parser costs a vocabulary walk
# per token, so only the head is constrained)
LOCAL_REPLY_HEAD = r"Verdict: (PASS|FAIL)\nReasoning:"


@dataclass(frozen=True)
class JudgeItem:
    id: str
    question: str
    answer: str
    expected: tuple[str, ...] = ()
    passages: tuple[str, ...] = ()  # groundedness: what the answer must be supported by


@dataclass
class Verdict:
    passed: bool | None  # None: the reply had no verdict (scored as a fail)
    reasoning: str
    cached: bool

    @property
    def score(self) -> float:
        return 1.0 if self.passed else 0.0


@dataclass
class JudgeUsage:
    calls: int = 0  # replies actually requested this run
    cached: int = 0  # replies read from the cache
    seconds: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    unparsed: int = 0


def correctness_messages(rubric: str, item: JudgeItem) -> Messages:
    gold = " | ".join(item.expected) if item.expected else "(none given)"
    return [
        {"role": "system", "content": (
            f"You grade answers. Rubric: {rubric.strip()}\n"
            "Reply exactly as:\nVerdict: PASS or FAIL\nReasoning: one short sentence")},
        {"role": "user", "content": f"Question: {item.question}\nReference answer: {gold}\nAnswer to grade: {item.answer}"},
    ]


def groundedness_messages(item: JudgeItem) -> Messages:
    passages = "\n\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(item.passages, start=1))
    return [
        {"role": "system", "content": (
            "You check whether an answer is supported by the passages: PASS only if the passages state it.\n"
            "Reply exactly as:\nVerdict: PASS or FAIL\nReasoning: one short sentence")},
        {"role": "user", "content": f"Passages:\n{passages}\n\nQuestion: {item.question}\nAnswer: {item.answer}"},
    ]


def parse_reply(text: str) -> tuple[bool | None, str]:
    m = VERDICT.search(text)
    r = REASONING.search(text)
    reasoning = (r.group(1) if r else text).strip().splitlines()[0:1]
    return (m.group(1).lower() == "pass") if m else None, (reasoning[0] if reasoning else "")


class JudgeCache:
    """One small JSON file per reply: crash-safe (atomic writes), shared by every run."""

    def __init__(self, root: Path):
        self.root = root

    @staticmethod
    def key(model: str, messages: Messages) -> str:
        blob = json.dumps([PROMPT_VERSION, model, messages], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        try:
            return json.loads(self._path(key).read_text(encoding="utf-8"))["reply"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, reply: str) -> None:
        from .atomic import atomic_write_json

        atomic_write_json(self._path(key), {"reply": reply})


@dataclass
class Judge:
    model: str
    rubric: str
    chat: ChatFn
    cache: JudgeCache
    batch: Callable[[list[Messages]], list[str]] | None = None  # faster path for local models
    usage: JudgeUsage = field(default_factory=JudgeUsage)

    def _ask(self, conversations: list[Messages]) -> list[Verdict]:
        keys = [JudgeCache.key(self.model, m) for m in conversations]
        replies: list[str | None] = [self.cache.get(k) for k in keys]
        todo = [i for i, r in enumerate(replies) if r is None]
        self.usage.cached += len(conversations) - len(todo)
        if todo:
            t0 = time.perf_counter()
            fresh = (self.batch([conversations[i] for i in todo]) if self.batch
                     else [self.chat(conversations[i]) for i in todo])
            self.usage.seconds += time.perf_counter() - t0
            self.usage.calls += len(todo)
            for i, reply in zip(todo, fresh):
                replies[i] = reply
                self.cache.put(keys[i], reply)  # each reply saved: an interrupted judge loses nothing
        out = []
        for i, reply in enumerate(replies):
            passed, why = parse_reply(reply or "")
            self.usage.unparsed += passed is None
            out.append(Verdict(passed, why, i not in todo))
        return out

    def correctness(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return self._ask([correctness_messages(self.rubric, it) for it in items])

    def groundedness(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return self._ask([groundedness_messages(it) for it in items])


def calibration(judge: Sequence[float], reference: Sequence[float]) -> dict:
    """How the judge's verdicts agree with an exact metric on the same items (>= 0.5 = pass)."""
    pairs = [(j >= 0.5, r >= 0.5) for j, r in zip(judge, reference)]
    n = len(pairs)
    agree = sum(a == b for a, b in pairs)
    return {
        "n": n,
        "agreement": round(agree / n, 6) if n else None,
        "flips_up": sum(a and not b for a, b in pairs),  # judge passes what the metric fails
        "flips_down": sum(b and not a for a, b in pairs),  # judge fails what the metric passes
    }


def local_chat(generator, max_new_tokens: int, usage: JudgeUsage | None = None):
    """(chat, batch) over a local model: greedy, its verdict held to LOCAL_REPLY_HEAD while decoding."""
    from pipelines.constrained import generate_constrained

    def make_parser():
        from lmformatenforcer import RegexParser

        return RegexParser(LOCAL_REPLY_HEAD)

    def batch(conversations: list[Messages]) -> list[str]:
        gens = generate_constrained(generator, conversations, make_parser, max_new_tokens, desc="judge",
                                    free_after="Reasoning:")
        if usage is not None:
            usage.prompt_tokens += sum(g.prompt_tokens for g in gens)
            usage.output_tokens += sum(g.output_tokens for g in gens)
        return [g.text for g in gens]

    return (lambda messages: batch([messages])[0]), batch
