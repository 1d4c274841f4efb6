"""The prompt builder every LLM pipeline shares: system prompt, demonstrations, passages.

Demonstrations are given as prior chat turns (user: input, assistant: answer): FIELD-NOTES
measured that a small model copies labels from turns but not from a block of text. One builder
for prompting, constrained decoding, RAG and the fine-tunes, so a score difference between
pipelines comes from what each adds, never from a different wording.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import TYPE_CHECKING, Sequence

from advisor.metrics import demo_answer

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Example
    from advisor.spec import TaskSpec

    from .generation import Messages

DEV_SLICE = 32  # held-out train items used to choose between prompt variants


def system_prompt(spec: "TaskSpec", labels: Sequence[str] | None, *, with_context: bool = False) -> str:
    parts = [spec.instructions.strip()] if spec.instructions.strip() else []
    if spec.type == "classification" and labels:
        parts.append("Answer with exactly one label from this list: " + ", ".join(labels) + ".")
    elif spec.type == "qa":
        if with_context:
            parts.append("Answer from the numbered passages. Reply with the shortest exact phrase from them.")
        else:
            parts.append("Reply with the shortest possible answer: a few words, no sentence.")
    return "\n".join(parts) or "Answer the user's input."


def format_context(passages: Sequence[tuple[str, str]]) -> str:
    """Numbered passages: [(title, text), ...] -> text block."""
    lines = []
    for i, (title, text) in enumerate(passages, start=1):
        head = f"[{i}] {title}: " if title else f"[{i}] "
        lines.append(head + text.strip())
    return "\n\n".join(lines)


def build_messages(
    spec: "TaskSpec",
    labels: Sequence[str] | None,
    query: str,
    *,
    demos: Sequence["Example"] = (),
    passages: Sequence[tuple[str, str]] | None = None,
) -> "Messages":
    msgs: "Messages" = [{"role": "system", "content": system_prompt(spec, labels, with_context=bool(passages))}]
    for d in demos:
        msgs.append({"role": "user", "content": d.input})
        msgs.append({"role": "assistant", "content": demo_answer(d.expected[0], spec.format_rules())})
    if passages:
        user = f"Passages:\n{format_context(passages)}\n\nQuestion: {query}"
    else:
        user = query
    msgs.append({"role": "user", "content": user})
    return msgs


def pick_demos(pool: Sequence["Example"], k: int, *, balanced: bool, seed: int) -> list["Example"]:
    """k deterministic demonstrations; for classification, round-robin over labels."""
    if k <= 0 or not pool:
        return []
    rng = random.Random(seed)
    if not balanced:
        return rng.sample(list(pool), min(k, len(pool)))
    by_label: dict[str, list] = defaultdict(list)
    for e in pool:
        by_label[e.label].append(e)
    for group in by_label.values():
        rng.shuffle(group)
    order = sorted(by_label)
    rng.shuffle(order)
    picked: list = []
    while len(picked) < min(k, len(pool)):
        for lab in order:
            if by_label[lab] and len(picked) < k:
                picked.append(by_label[lab].pop())
    rng.shuffle(picked)
    return picked


def split_dev(train: Sequence["Example"], seed: int, size: int = DEV_SLICE) -> tuple[list, list]:
    """(pool, dev): a seeded held-out slice of the train set for choosing prompt variants."""
    items = list(train)
    random.Random(seed).shuffle(items)
    if len(items) < size + 4:
        return items, []
    return items[size:], items[:size]
