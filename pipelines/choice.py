"""Choosing a prompt variant on held-out *train* items without paying for every variant on every item.

Prompting (zero- vs few-shot) and the RAG reader (prompt wording x answer extraction) each pick a
variant on a dev slice of the train set; generating the whole slice once per variant was most of
the example's warm run (README: 63 s + 21 s of 165 s). Two ways to pay less:

* **Racing** (Maron & Moore's races, with a paired t bound instead of Hoeffding's): the slice is
  run in rounds (16, then the rest); after each round every *arm* (a variant, or a variant x
  extraction pair, which is free once the variant's text is generated) is compared, item by item,
  with the leader. An arm whose mean paired difference has a one-sided upper bound below zero
  (``RACE_ALPHA``) cannot win at the slice's noise level and is dropped; a *run* (what costs a
  generation pass) is dropped with its last arm. When one run is left, its remaining items are
  not generated: the best of its arms on the items seen wins. When no arm separates, every item
  is run, exactly as before. Only per-item metrics race (accuracy, token F1, ...); a metric with
  no per-item value (macro F1) runs the whole slice in one round. What it trades: a variant that
  trails by more than the noise on the first 16 items but would have overtaken on the last 16
  is not chosen; and when nothing separates, two passes of 16 instead of one of 32 per variant (tests/test_choice.py; the note of issue 15 gives the measured cases).
* **A choice cache** under the advisor home, keyed by everything that decides the outcome: the
  model, the decoding, the metric, the racing rules and every variant's rendered dev prompts and
  expected answers (so the demos, retrieved passages, instructions and labels). Identical inputs
  give the identical choice, so a run of the same model on the same task (``--fresh`` included,
  as for the RAG index) reuses it instead of regenerating. Anything else that changes misses.

Never on eval items: callers pass the dev slice only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

CHOICE_VERSION = 1  # bump when what a cached choice means changes
# items per round before the last (the last takes the rest): one look at half of the 32-item slice.
# Rounds of 8, 8, 16 dropped no variant on the example and cost more than one pass (batches of 8
# generate fewer tokens/s than 32, and each round recomputes the prefix cache): issue 15 note.
RACE_ROUNDS = (16,)
RACE_ALPHA = 0.025  # one-sided: drop an arm when P(it is at least as good as the leader) < alpha

PER_ITEM_METRICS = ("accuracy", "token_f1", "exact_match", "contains")  # the metrics that can race


def item_scores(scored, metric: str) -> list[float]:
    """Per-item values of `metric` from an advisor.metrics.Scored; a metric with none (macro F1)
    gives a constant vector whose mean is the aggregate (it then runs in one round: racing=False)."""
    n = len(next(iter(scored.per_example.values()), []))
    return scored.per_example.get(metric) or [scored.metrics[metric]] * n


# run(name, item indices) -> {arm name: per-item scores over those indices}
RunFn = Callable[[str, list[int]], dict[str, list[float]]]


@dataclass
class RaceResult:
    winner: str  # an arm name
    scores: dict[str, float]  # arm -> mean score over the items it ran (rounded to 4 places)
    items: dict[str, int]  # arm -> items it ran
    dropped: dict[str, int] = field(default_factory=dict)  # arm -> items seen when it was dropped
    generated: int = 0  # prompts generated (run x items)
    full: int = 0  # prompts a full evaluation of every run would have generated
    reused: bool = False  # from the choice cache: nothing generated

    def to_dict(self) -> dict:
        return asdict(self)


def rounds(n: int, racing: bool = True) -> list[int]:
    """Round sizes over n items: RACE_ROUNDS then the rest (one round when not racing)."""
    if not racing:
        return [n] if n else []
    out, left = [], n
    for r in RACE_ROUNDS:
        if left <= r:
            break
        out.append(r)
        left -= r
    return out + ([left] if left else [])


def upper_bound(diffs: Sequence[float], alpha: float = RACE_ALPHA) -> float:
    """One-sided (1 - alpha) upper confidence bound of the mean of paired differences (t)."""
    from scipy import stats

    n = len(diffs)
    mean = sum(diffs) / n
    if n < 2:
        return math.inf
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    if var == 0:
        return mean
    return mean + stats.t.ppf(1 - alpha, n - 1) * math.sqrt(var / n)


def race(run: RunFn, runs: Sequence[str], n_items: int, *, prefer: Callable[[str], object] = lambda a: 0,
         racing: bool = True) -> RaceResult:
    """Run `runs` on items 0..n_items-1 round by round, dropping arms that cannot win.

    Ties (equal rounded means) go to the arm with the larger ``prefer(arm)``; the winner is the
    arm with the best mean over the items every surviving run ran.
    """
    alive_runs = list(runs)
    per: dict[str, list[float]] = {}  # arm -> per-item scores so far
    arm_run: dict[str, str] = {}
    dropped: dict[str, int] = {}
    generated, seen = 0, 0

    def mean(arm: str) -> float:
        v = per[arm]
        return round(sum(v) / len(v), 4) if v else 0.0

    def best(arms: list[str]) -> str:
        return max(arms, key=lambda a: (mean(a), prefer(a)))

    for size in rounds(n_items, racing):
        idx = list(range(seen, seen + size))
        for name in alive_runs:
            for arm, scores in run(name, idx).items():
                per.setdefault(arm, []).extend(scores)
                arm_run[arm] = name
            generated += size
        seen += size
        alive = [a for a in per if a not in dropped and arm_run[a] in alive_runs]
        if seen >= n_items:
            break
        leader = best(alive)
        for a in alive:
            if a != leader and upper_bound([x - y for x, y in zip(per[a], per[leader])]) < 0:
                dropped[a] = seen
        alive = [a for a in alive if a not in dropped]
        alive_runs = [r for r in alive_runs if any(arm_run[a] == r for a in alive)]
        if len(alive_runs) == 1:
            break
    alive = [a for a in per if a not in dropped and arm_run[a] in alive_runs]
    return RaceResult(best(alive), {a: mean(a) for a in per}, {a: len(v) for a, v in per.items()}, dropped,
                      generated, n_items * len(runs))


# ---------------------------------------------------------------------------------------------
# the choice cache


def choice_key(kind: str, model: str, inputs: Mapping) -> str:
    """What identifies a choice: its kind, the model, and every input that decides the outcome."""
    from advisor.data import content_hash

    return content_hash({"v": CHOICE_VERSION, "kind": kind, "model": model, "rounds": RACE_ROUNDS,
                         "alpha": RACE_ALPHA, "inputs": inputs})


def model_identity(generator) -> str:
    """The generating model as the cache key sees it (name, where its weights are, their size)."""
    llm = getattr(generator, "llm", None)
    if llm is None:
        return "?"
    return f"{llm.name}|{llm.path}|{llm.n_params}"


def _cache_dir(home: Path | None) -> Path:
    from advisor.models import advisor_home

    return Path(home or advisor_home()) / "choices"


def load_choice(key: str, home: Path | None = None) -> RaceResult | None:
    """A cached race result, or None (missing or unreadable: the choice is made again)."""
    path = _cache_dir(home) / f"{key}.json"
    try:
        data = json.loads(path.read_text())
        return RaceResult(**{**data, "reused": True})
    except (OSError, ValueError, TypeError):
        return None


def save_choice(key: str, result: RaceResult, home: Path | None = None) -> None:
    """Written whole or not at all (advisor.atomic): a killed run never leaves half a file."""
    from advisor.atomic import atomic_write_json

    try:
        atomic_write_json(_cache_dir(home) / f"{key}.json", {**result.to_dict(), "reused": False})
    except OSError:  # a read-only home only costs the reuse
        pass


def choose(kind: str, model: str, inputs: Mapping, run: RunFn, runs: Sequence[str], n_items: int, *,
           prefer: Callable[[str], object] = lambda a: 0, racing: bool = True,
           home: Path | None = None) -> RaceResult:
    """The cached choice for these exact inputs, else a race (then cached).

    ``ADVISOR_CHOICE=full`` pays the old price (every variant on every item, no cache: the
    benchmark's same-run reference); ``ADVISOR_CHOICE=race`` races without the cache.
    """
    mode = os.environ.get("ADVISOR_CHOICE", "").strip().lower()
    if mode == "full":
        return race(run, runs, n_items, prefer=prefer, racing=False)
    racing_on = racing and mode in ("", "race", "cache")
    key = choice_key(kind, model, {**inputs, "racing": racing_on})
    hit = load_choice(key, home) if mode != "race" else None
    if hit is not None:
        return hit
    result = race(run, runs, n_items, prefer=prefer, racing=racing_on)
    if mode != "race":
        save_choice(key, result, home)
    return result
