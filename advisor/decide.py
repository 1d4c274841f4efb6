"""The recommendation: measured results in, a decision a team can defend out.

Why pure: the rules are the product's judgement, so they must be testable on synthetic
results without a model in sight, and every branch must say *why* in numbers.

The workflow (DESIGN.md, "The decision"), cheapest first: baseline (classical, no LLM),
else prompting, else RAG -- the first that meets the target wins; else the LoRA fine-tune,
only if it meets the target AND beats the best cheaper pipeline in a significant paired
test AND its setup cost fits the budget; else ``none``: the best, named as short of
target, with next steps.

"Meets" means the CI bound on the pessimistic side clears the target (lower bound for
higher-is-better metrics, upper bound otherwise): a point score that merely touches
the target on a small eval set is not a promise. Ties inside the noise go to the
cheaper pipeline.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from advisor import cost
from advisor.stats import PairedComparison, items_needed, items_needed_for_pair, mdd_for, paired_compare, score_ci

# cheapest first; `constrained` (prompting with the task's format enforced while decoding)
# runs only for tasks that declare a format, and is tried before RAG and the fine-tune
ORDER = ("baseline", "prompting", "constrained", "rag", "finetune")
CHEAPER = ORDER[:-1]
LARGE_MDD = 0.10  # an eval set that cannot see a 10-point gap is too small to rank pipelines
FINETUNE_MODES = ("auto", "always", "never")


@dataclass
class PipelineOutcome:
    name: str  # "baseline" | "prompting" | "rag" | "finetune"
    status: str  # "ok" | "skipped" | "failed"
    score: float | None
    ci: tuple[float, float] | None
    per_example: list[float] | None  # aligned on the same eval items across pipelines
    setup_usd: float = 0.0
    usd_per_1k: float = 0.0
    reason: str = ""  # why skipped/failed


@dataclass
class DecisionInput:
    metric: str
    target: float
    outcomes: dict[str, PipelineOutcome]
    higher_is_better: bool = True
    budget_setup_usd: float | None = None
    requests_per_month: int | None = None
    has_train: bool = True
    has_corpus: bool = False
    base_model: str = ""


@dataclass
class Decision:
    choice: str  # baseline | prompting | rag | finetune | none
    best: str | None  # best pipeline (ties to the cheaper), even if short of target
    meets_target: bool  # the *choice* meets the target (False for "none")
    reasons: list[str] = field(default_factory=list)
    why_not: dict[str, str] = field(default_factory=dict)
    next_steps: list[str] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    mdd: float | None = None  # minimum detectable difference at this eval size
    break_even_requests: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _usable(o: PipelineOutcome | None) -> bool:
    return o is not None and o.status == "ok" and o.score is not None and math.isfinite(o.score)


def _ci(o: PipelineOutcome) -> tuple[float, float]:
    """The outcome's CI; computed from per-example scores, or the point score, if absent."""
    if o.ci is not None:
        return (float(o.ci[0]), float(o.ci[1]))
    if o.per_example:
        return score_ci(o.per_example)
    return (float(o.score), float(o.score))


def meets(outcome: PipelineOutcome | None, target: float, higher_is_better: bool = True) -> bool:
    """True when the pessimistic CI bound clears the target (lower >= t, or upper <= t)."""
    if not _usable(outcome):
        return False
    lo, hi = _ci(outcome)
    return lo >= target if higher_is_better else hi <= target


def _n(x: float) -> str:
    return f"{x:.3f}"


def _usd(x: float) -> str:
    return f"${x:,.2f}" if abs(x) >= 0.01 or x == 0 else f"${x:.2g}"


def _desc(o: PipelineOutcome, metric: str) -> str:
    lo, hi = _ci(o)
    return f"{metric} {_n(o.score)} (95% CI {_n(lo)}–{_n(hi)})"


def _bound_text(o: PipelineOutcome, target: float, hib: bool) -> str:
    lo, hi = _ci(o)
    if hib:
        return f"lower bound {_n(lo)} {'≥' if lo >= target else '<'} target {_n(target)}"
    return f"upper bound {_n(hi)} {'≤' if hi <= target else '>'} target {_n(target)}"


def _best(cands: list[PipelineOutcome], hib: bool) -> PipelineOutcome | None:
    """Best point score; exact ties go to the earlier (cheaper) pipeline."""
    best = None
    for o in cands:
        if best is None or (o.score > best.score if hib else o.score < best.score):
            best = o
    return best


def _compare(a: PipelineOutcome, b: PipelineOutcome) -> PairedComparison | None:
    """Paired test of b against a (diff = b - a); None without aligned per-example scores."""
    if not a.per_example or not b.per_example:
        return None
    try:
        return paired_compare(a.per_example, b.per_example, names=(a.name, b.name))
    except ValueError:
        return None


def _beats(a: PipelineOutcome, b: PipelineOutcome, hib: bool) -> tuple[bool, str, PairedComparison | None]:
    """Is b significantly better than a? Paired test when possible, else disjoint CIs."""
    c = _compare(a, b)
    if c is not None:
        better = c.significant and (c.diff > 0 if hib else c.diff < 0)
        text = (
            f"{b.name} vs {a.name}: difference {c.diff:+.3f} (95% CI {c.ci[0]:+.3f} to {c.ci[1]:+.3f}), "
            f"p={c.p_value:.3g} ({c.test}, n={c.n})"
        )
        return better, text, c
    (alo, ahi), (blo, bhi) = _ci(a), _ci(b)
    better = blo > ahi if hib else bhi < alo
    text = (
        f"{b.name} vs {a.name}: no aligned per-example scores for a paired test; "
        f"CIs {'do not overlap' if better else 'overlap'}"
    )
    return better, text, None


def _too_small(c: PairedComparison, a: PipelineOutcome, b: PipelineOutcome, mdd: float | None) -> str | None:
    """Say so when a non-significant gap is below what this eval set can detect."""
    if c.significant or mdd is None or abs(c.diff) >= mdd:
        return None
    text = (
        f"the eval set (n={c.n}) cannot tell {a.name} and {b.name} apart: they differ by "
        f"{c.diff:+.3f} (p={c.p_value:.3g}), below the minimum detectable difference {_n(mdd)} "
        "(80% power, α=0.05)"
    )
    if c.diff != 0:
        need = items_needed_for_pair(a.per_example, b.per_example)
        text += (
            f"; about {need:,} items would be needed to detect a gap of {abs(c.diff):.3f} "
            "(from the observed paired differences)"
        )
    return text


def _not_run(name: str, inp: DecisionInput) -> str:
    if name == "rag" and not inp.has_corpus:
        return "not run: no corpus" + ("" if inp.has_train else " and no train examples to retrieve")
    if name in ("baseline", "finetune") and not inp.has_train:
        return "not run: no train set"
    return "not run"


def decide(inp: DecisionInput) -> Decision:
    """Apply the workflow to measured outcomes; every branch records its reason."""
    hib, t, metric = inp.higher_is_better, inp.target, inp.metric
    outs = inp.outcomes
    ok = [outs[n] for n in ORDER if _usable(outs.get(n))]
    reasons: list[str] = []
    steps: list[str] = []
    comps: dict[tuple[str, str], PairedComparison] = {}

    def record(c: PairedComparison | None) -> None:
        comps.update({(c.a_name, c.b_name): c} if c is not None else {})

    # Steps 1-3: the first cheaper pipeline that meets the target wins.
    choice: str | None = None
    for name in CHEAPER:
        o = outs.get(name)
        if _usable(o) and meets(o, t, hib):
            choice = name
            reasons.append(f"{name} meets the target: {_desc(o, metric)}; {_bound_text(o, t, hib)}")
            break
        if _usable(o):
            reasons.append(f"{name} is short of the target: {_desc(o, metric)}; {_bound_text(o, t, hib)}")
        elif o is not None:
            reasons.append(f"{name} {o.status}: {o.reason or 'no reason given'}")

    ft = outs.get("finetune")
    cheaper_ok = [o for o in ok if o.name in CHEAPER]
    best_cheaper = _best(cheaper_ok, hib)
    ft_fail: str | None = None  # why the fine-tune is not recommended
    ft_tied = False
    break_even: float | None = None

    if _usable(ft):
        alt = outs[choice] if choice else best_cheaper
        if alt is not None and _costs_known(alt, ft):
            break_even = _break_even(alt, ft)
        if choice is None:
            ft_fail, beat_text, c = _finetune_verdict(inp, ft, best_cheaper)
            record(c)
            ft_tied = c is not None and not c.significant
            if ft_fail is None:
                choice = "finetune"
                budget = "" if inp.budget_setup_usd is None else f" (budget {_usd(inp.budget_setup_usd)})"
                reasons += [
                    f"finetune meets the target: {_desc(ft, metric)}; {_bound_text(ft, t, hib)}",
                    f"finetune is significantly better than the best cheaper pipeline: {beat_text}",
                    f"setup cost {_usd(ft.setup_usd)}{budget}",
                ]
                if alt is not None and _costs_known(alt, ft):
                    reasons.append(_break_even_text(alt, ft, break_even, inp.requests_per_month))
            else:
                reasons.append(f"finetune {ft_fail}")
    elif ft is not None and choice is None:
        reasons.append(f"finetune {ft.status}: {ft.reason or 'no reason given'}")

    # Best pipeline (ties inside the noise go to the cheaper one).
    top = _best(ok, hib)
    best = top
    if choice is None and top is not None:
        for o in ok:
            if o is top:
                break
            better, _, c = _beats(o, top, hib)
            record(c)
            if not better:
                best = o
                how = f"p={c.p_value:.3g}" if c is not None else "overlapping CIs"
                reasons.append(
                    f"{o.name} and {top.name} are tied within the noise ({how}); the cheaper {o.name} is named best"
                )
                break
    if choice is not None:
        best = outs[choice]

    # Every pair of scored pipelines, cheaper first: "does the fine-tune beat prompting?" is
    # asked even when neither is the reference (at most 6 pairs).
    ref = best
    decisive = set(comps)  # pairs the rules above tested, plus every pair with the reference
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            if ref in (a, b):
                decisive.add((a.name, b.name))
            if (a.name, b.name) not in comps:
                record(_compare(a, b))
    mdd = mdd_for(ref.per_example) if ref is not None and ref.per_example else None

    # A cheaper choice is kept even when a later pipeline is clearly better: say so.
    if choice in CHEAPER:
        for o in ok:
            if ORDER.index(o.name) <= ORDER.index(choice):
                continue
            c = comps.get((choice, o.name))
            if c is not None and c.significant and (c.diff > 0 if hib else c.diff < 0):
                reasons.append(
                    f"{o.name} scores better ({_n(o.score)} vs {_n(outs[choice].score)}, p={c.p_value:.3g}) "
                    f"but {choice} already meets the target at lower cost"
                )
        if _usable(ft) and _costs_known(outs[choice], ft):
            reasons.append(_break_even_text(outs[choice], ft, break_even, inp.requests_per_month))
        running = _running_text(outs[choice], inp.requests_per_month)
        if choice == "baseline":
            reasons.append("no LLM needed" + (f": {running}" if running else ""))
            steps.append("ship the classical baseline (embeddings + classifier); no GPU is needed")
        elif running:
            reasons.append(running)

    # A fine-tune that is not recommended may still clearly beat the cheaper LLM pipelines:
    # that is the question the team asked, so say it beside the reason it was not chosen.
    if _usable(ft) and choice != "finetune":
        beaten = [(n, comps.get((n, "finetune"))) for n in ("prompting", "constrained", "rag")]
        wins = [f"{n} ({c.diff:+.3f}, p={c.p_value:.3g})" for n, c in beaten
                if c is not None and c.significant and (c.diff > 0) == hib]
        if wins:
            reasons.append(f"finetune is significantly better than {' and '.join(wins)}, but is not recommended "
                           "for the reasons above")

    # Say when the eval set is too small to separate the pipelines that mattered.
    small_flagged = False
    for (an, bn), c in comps.items():
        msg = _too_small(c, outs[an], outs[bn], mdd) if (an, bn) in decisive else None
        if msg and (choice is None or choice in (an, bn)):
            reasons.append(msg)
            small_flagged = True

    if choice is None:
        if not ok:
            reasons.append("no pipeline produced a score, so nothing can be recommended")
        elif meets(best, t, hib):
            reasons.append(
                f"no pipeline is recommended; the best is {best.name} ({_desc(best, metric)}), "
                "which clears the target but is not recommended for the reason above"
            )
        else:
            reasons.append(
                f"no pipeline meets the target; the best is {best.name} ({_desc(best, metric)}), "
                f"short of the target {_n(t)}"
            )
        steps = _next_steps(inp, best, ft, ft_fail, mdd, small_flagged or ft_tied)

    # `constrained` exists only for tasks that declare a format: absent, it needs no "why not"
    names = [n for n in ORDER if n != "constrained" or n in outs] + [n for n in outs if n not in ORDER]
    return Decision(
        choice=choice or "none",
        best=best.name if best is not None else None,
        meets_target=choice is not None,
        reasons=reasons,
        why_not={n: _why_not(n, inp, choice, ft_fail) for n in names if n != choice},
        next_steps=steps,
        comparisons=[c.to_dict() for _, c in sorted(comps.items(), key=lambda kv: (_rank(kv[0][0]), _rank(kv[0][1])))],
        mdd=mdd,
        break_even_requests=break_even,
    )


def _rank(name: str) -> int:
    """Workflow order (cheapest first); names outside it after."""
    return ORDER.index(name) if name in ORDER else len(ORDER)


def _finetune_verdict(
    inp: DecisionInput, ft: PipelineOutcome, cheaper: PipelineOutcome | None
) -> tuple[str | None, str, PairedComparison | None]:
    """Step 4: (why the fine-tune is not recommended, or None; comparison text; paired test)."""
    t, hib = inp.target, inp.higher_is_better
    beats, text, c = True, "no cheaper pipeline produced a score to compare against", None
    if cheaper is not None:
        beats, text, c = _beats(cheaper, ft, hib)
    if not meets(ft, t, hib):
        return f"short of the target: {_desc(ft, inp.metric)}; {_bound_text(ft, t, hib)}", text, c
    if not beats:
        return f"meets the target but is not significantly better than the cheaper {cheaper.name}: {text}", text, c
    if inp.budget_setup_usd is not None and ft.setup_usd > inp.budget_setup_usd:
        over = f"its setup {_usd(ft.setup_usd)} is over the budget of {_usd(inp.budget_setup_usd)}"
        return f"meets the target but {over}", text, c
    return None, text, c


def _why_not(name: str, inp: DecisionInput, choice: str | None, ft_fail: str | None) -> str:
    o, t, hib = inp.outcomes.get(name), inp.target, inp.higher_is_better
    if o is None:
        return _not_run(name, inp)
    if o.status == "skipped":
        return f"skipped: {o.reason or 'no reason given'}"
    if not _usable(o):
        return f"failed: {o.reason or 'no score produced'}"
    if choice is not None and name in ORDER and ORDER.index(name) > ORDER.index(choice):
        return f"not needed: {choice} already meets the target at lower cost ({name}: {_desc(o, inp.metric)})"
    if name == "finetune" and ft_fail:
        return ft_fail
    if meets(o, t, hib):  # only reachable for names outside the workflow
        return f"meets the target but is not part of the workflow ({_desc(o, inp.metric)})"
    return f"missed the target: {_desc(o, inp.metric)}; {_bound_text(o, t, hib)}"


def _running_text(o: PipelineOutcome, rpm: int | None) -> str:
    if o.usd_per_1k <= 0:
        return ""  # cost unknown: say nothing rather than "$0.00"
    text = f"it costs {_usd(o.usd_per_1k)} per 1,000 requests"
    if rpm:
        text += f", {_usd(o.usd_per_1k * rpm / 1000)} per month at {rpm:,} requests"
    return text


def _costs_known(*outcomes: PipelineOutcome) -> bool:
    """A per-request cost of 0 means "not costed" (no hardware or usage): no break-even then."""
    return all(o.usd_per_1k > 0 for o in outcomes)


def _break_even(alt: PipelineOutcome, ft: PipelineOutcome) -> float | None:
    """Requests after which the fine-tune is cheaper overall than ``alt`` (None: never)."""
    ft_per, alt_per = ft.usd_per_1k / 1000, alt.usd_per_1k / 1000
    if ft.setup_usd <= alt.setup_usd:
        return 0.0 if ft_per <= alt_per else None
    return cost.break_even_requests(alt.setup_usd, alt_per, ft.setup_usd, ft_per)


def _break_even_text(alt: PipelineOutcome, ft: PipelineOutcome, be: float | None, rpm: int | None) -> str:
    if be is None:
        return (
            f"the fine-tune never repays its {_usd(ft.setup_usd)} setup against {alt.name}: its requests "
            f"are not cheaper ({_usd(ft.usd_per_1k)} vs {_usd(alt.usd_per_1k)} per 1,000)"
        )
    if be == 0:
        return (
            f"the fine-tune's setup ({_usd(ft.setup_usd)}) and requests ({_usd(ft.usd_per_1k)} per 1,000) "
            f"cost no more than {alt.name}'s ({_usd(alt.setup_usd)}, {_usd(alt.usd_per_1k)} per 1,000)"
        )
    text = f"the fine-tune repays its {_usd(ft.setup_usd)} setup against {alt.name} after {be:,.0f} requests"
    if rpm:
        text += f" (about {be / rpm:.1f} months at {rpm:,} requests/month)"
    return text


def _next_steps(
    inp: DecisionInput,
    best: PipelineOutcome | None,
    ft: PipelineOutcome | None,
    ft_fail: str | None,
    mdd: float | None,
    tied: bool,
) -> list[str]:
    """Concrete things to try when nothing is recommended."""
    steps: list[str] = []
    for name, o in inp.outcomes.items():
        if o.status == "failed":
            steps.append(f"fix the {name} failure ({o.reason or 'no reason given'}) and re-run")
    if best is None or not meets(best, inp.target, inp.higher_is_better):
        model = f" than {inp.base_model}" if inp.base_model else ""
        steps.append(f"try a bigger base model{model}")
    if ft is None or ft.status == "skipped":
        if inp.has_train:
            steps.append("run the fine-tune (--finetune always)")
        else:
            steps.append(
                "collect a labelled train set: it enables the classical baseline, few-shot prompting and a fine-tune"
            )
    elif _usable(ft):
        if ft_fail and ft_fail.startswith("short"):
            steps.append("add more training data (or epochs) for the fine-tune")
        if ft_fail and "budget" in ft_fail:
            steps.append(f"raise budget.setup_usd to at least {_usd(ft.setup_usd)} or train on cheaper hardware")
    rag = inp.outcomes.get("rag")
    if not inp.has_corpus and not _usable(rag):
        steps.append("add a document corpus (or use rag mode 'examples') to try RAG")
    prompting = inp.outcomes.get("prompting")
    rag_helped = _usable(rag) and (not _usable(prompting) or (rag.score > prompting.score) == inp.higher_is_better)
    if rag_helped and _usable(ft):  # retrieval that hurt prompting is no reason to add it to the adapter
        steps.append("combine RAG with the fine-tune (retrieve on top of the adapter)")
    if best is not None and best.per_example and (tied or (mdd is not None and mdd > LARGE_MDD)):
        gap = LARGE_MDD / 2
        p = best.score if 0.0 <= best.score <= 1.0 else 0.5
        steps.append(
            f"enlarge the eval set: at n={len(best.per_example)} the minimum detectable difference is "
            f"{_n(mdd)}; about {items_needed(gap, baseline=p):,} items detect a {gap:.2f} gap "
            "(assuming independent errors; fewer when pipelines agree on most items)"
        )
    return steps


def should_run_finetune(
    mode: str, outcomes: dict[str, PipelineOutcome], target: float, higher_is_better: bool = True
) -> tuple[bool, str]:
    """--finetune auto|always|never: auto trains only when no cheaper pipeline meets the target."""
    m = str(mode).strip().lower()
    if m not in FINETUNE_MODES:
        raise ValueError(f"finetune mode must be one of {FINETUNE_MODES}, got {mode!r}")
    if m == "never":
        return False, "fine-tune disabled (finetune mode 'never')"
    if m == "always":
        return True, "fine-tune forced (finetune mode 'always')"
    for name in CHEAPER:
        o = outcomes.get(name)
        if meets(o, target, higher_is_better):
            lo, hi = _ci(o)
            return False, (
                f"skipped: {name} already meets the target ({_n(o.score)}, 95% CI "
                f"{_n(lo)}–{_n(hi)} vs target {_n(target)})"
            )
    return True, "no cheaper pipeline meets the target, so the fine-tune is worth trying"
