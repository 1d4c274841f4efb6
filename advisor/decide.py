"""The recommendation: measured results in, a decision a team can act on out.

Why pure: the rules are the product's judgement, so they must be testable on synthetic
results without a model in sight, and every branch must say *why* in numbers.

Each scored pipeline first gets a **verdict** against the target, with its confidence:

* ``meets``  -- the pessimistic 95 % bound clears the target (lower bound for
  higher-is-better metrics);
* ``likely`` -- the point score clears it but the bound does not yet; we state the
  probability that the true score is at or beyond the target (Jeffreys posterior for 0/1
  scores, the bootstrap distribution otherwise) and how many eval items would confirm it;
* ``misses`` -- the point score does not clear it.

The choice (DESIGN.md, "The decision"): the operationally simplest pipeline that *meets*
the target (baseline < prompting < RAG < fine-tune) -> verdict ``confirmed``; else the
simplest *likely* one that is as good as the best likely one (non-inferior within
``margin``) -> ``provisional``, with what would confirm it; ``none`` only when nothing is
even likely, naming the best by score. A pipeline whose setup is over the budget is never
chosen. Cost enters as each pipeline's total over a horizon (setup + per-request cost x
requests/month x months): when a dearer-to-build pipeline is cheaper to own at the stated
volume, the report says so, with the break-even volume. Pairwise comparisons are
Holm-adjusted across the reported family.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

from advisor import catalogue, cost
from advisor.spec import DEFAULT_HORIZON_MONTHS, DEFAULT_MARGIN  # one source: the spec's defaults
from advisor.stats import (
    ALPHA,
    PairedComparison,
    agresti_coull_ci,
    bootstrap_ci,
    check_finite,
    holm,
    is_binary,
    items_needed,
    items_needed_for_pair,
    items_to_clear,
    mdd_for,
    metric_ci,
    noninferiority_bound,
    paired_compare,
    paired_metric_compare,
    prob_at_least,
)

# The order of operational simplicity (the preference among pipelines that meet the target)
# is the catalogue's: advisor/catalogue.py is the one list of pipelines.
LARGE_MDD = 0.10  # an eval set that cannot see a 10-point gap is too small to rank pipelines
FINETUNE_MODES = ("auto", "always", "never")
VERDICTS = ("meets", "likely", "misses")


@dataclass(frozen=True)
class Price:
    """What a pipeline costs on one device."""

    device: str
    setup_usd: float
    usd_per_1k: float


def prices_of(rows: list[dict] | None) -> tuple[Price, ...]:
    """cost.estimate_pipeline_cost's ``also_priced_on`` rows as Price records."""
    return tuple(Price(r["device"], float(r["setup_usd"]), float(r["usd_per_1k_requests"])) for r in rows or ())


@dataclass
class PipelineOutcome:
    name: str  # "baseline" | "prompting" | "rag" | "finetune"
    status: str  # "ok" | "skipped" | "failed"
    score: float | None
    ci: tuple[float, float] | None  # given: used as is; None: computed from the scores below
    per_example: list[float] | None  # the target metric per item, aligned across pipelines
    setup_usd: float = 0.0
    usd_per_1k: float = 0.0
    reason: str = ""  # why skipped/failed
    # A corpus-level target metric (macro-F1): the metric on the items at these indices.
    # Its CI, probability and comparisons come from bootstraps over items of this function;
    # ``per_example`` is then not the target metric and is not used for the decision.
    score_fn: Callable | None = None
    n_items: int | None = None
    # Where setup_usd/usd_per_1k are priced ("CPU", "H100", "endpoint"; "" unknown), and the
    # same pipeline priced on other devices: costs are compared only on one device.
    device: str = ""
    prices_elsewhere: tuple[Price, ...] = ()
    # What the sentences call it ("RAG + fine-tune", "IA³ fine-tune"); empty: the catalogue's title.
    title: str = ""

    @property
    def shown(self) -> str:
        return self.title or catalogue.title(self.name)


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
    margin: float = DEFAULT_MARGIN
    horizon_months: int = DEFAULT_HORIZON_MONTHS
    alpha: float = ALPHA


@dataclass
class Verdict:
    """One pipeline judged against the target."""

    name: str
    score: float
    ci: tuple[float, float]
    verdict: str  # meets | likely | misses
    probability: float | None  # P(true score at or beyond the target); None: no scores to tell
    n: int | None
    n_to_confirm: int | None  # eval items in all at which the bound would clear the target
    interval: str  # agresti-coull | bootstrap | bootstrap-metric | given
    setup_usd: float = 0.0
    usd_per_1k: float = 0.0
    total_usd: float | None = None  # setup + requests over the horizon; None: not costed
    device: str = ""  # where setup_usd/usd_per_1k are priced
    title: str = ""  # what the sentences call it (the outcome's title)

    @property
    def items_to_confirm(self) -> int | None:
        """Eval items to label on top of the n already scored (likely verdicts only)."""
        return None if self.n_to_confirm is None else max(0, self.n_to_confirm - (self.n or 0))


@dataclass
class Decision:
    choice: str  # baseline | prompting | rag | finetune | none
    best: str | None  # the choice, or the best by score when there is none
    meets_target: bool  # the *choice* meets the target (confirmed)
    reasons: list[str] = field(default_factory=list)  # why the choice: headline first
    why_not: dict[str, str] = field(default_factory=dict)  # one line per other pipeline
    next_steps: list[str] = field(default_factory=list)
    comparisons: list[dict] = field(default_factory=list)
    mdd: float | None = None  # minimum detectable difference at this eval size
    break_even_requests: float | None = None
    verdict: str = "none"  # confirmed | provisional | none
    probability: float | None = None  # the choice's P(true score at or beyond the target)
    items_to_confirm: int | None = None  # for a provisional choice
    headline: str = ""
    verdicts: dict[str, dict] = field(default_factory=dict)
    margin: float = DEFAULT_MARGIN
    horizon_months: int = DEFAULT_HORIZON_MONTHS

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------- verdicts


def _usable(o: PipelineOutcome | None) -> bool:
    return o is not None and o.status == "ok" and o.score is not None and math.isfinite(o.score)


def _n_of(o: PipelineOutcome) -> int | None:
    if o.score_fn is not None and o.n_items:
        return int(o.n_items)
    return len(o.per_example) if o.per_example else None


def _interval(o: PipelineOutcome, target: float, hib: bool) -> tuple[tuple[float, float], float | None, int | None, str]:
    """(CI, P(at or beyond target), items in all to clear the target, interval name)."""
    score = float(o.score)
    if o.score_fn is not None and o.n_items:
        ci, reps = metric_ci(o.score_fn, o.n_items)
        ci = ci if o.ci is None else (float(o.ci[0]), float(o.ci[1]))
        se = float(reps.std(ddof=1))
        return (ci, prob_at_least(target, replicates=reps, higher_is_better=hib),
                items_to_clear(target, score, o.n_items, binary=False, se=se, higher_is_better=hib), "bootstrap-metric")
    if o.per_example:
        x = check_finite(o.per_example)
        n = x.size
        if is_binary(x):
            ci = agresti_coull_ci(int(x.sum()), n) if o.ci is None else (float(o.ci[0]), float(o.ci[1]))
            return (ci, prob_at_least(target, x, higher_is_better=hib),
                    items_to_clear(target, float(x.mean()), n, binary=True, higher_is_better=hib), "agresti-coull")
        ci = bootstrap_ci(x) if o.ci is None else (float(o.ci[0]), float(o.ci[1]))
        se = float(x.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        return (ci, prob_at_least(target, x, higher_is_better=hib),
                items_to_clear(target, float(x.mean()), n, binary=False, se=se, higher_is_better=hib), "bootstrap")
    if o.ci is not None:
        return (float(o.ci[0]), float(o.ci[1])), None, None, "given"
    return (score, score), None, None, "given"


def _clears(lo: float, hi: float, target: float, hib: bool) -> bool:
    return lo >= target if hib else hi <= target


def judge(o: PipelineOutcome, target: float, hib: bool = True) -> tuple[str, tuple[float, float], float | None, int | None, str]:
    """(verdict, CI, probability, items in all to confirm, interval name) for one outcome."""
    ci, prob, need, how = _interval(o, target, hib)
    if _clears(ci[0], ci[1], target, hib):
        return "meets", ci, prob, None, how
    if (o.score >= target) if hib else (o.score <= target):
        return "likely", ci, prob, need, how
    return "misses", ci, prob, None, how


def meets(outcome: PipelineOutcome | None, target: float, higher_is_better: bool = True) -> bool:
    """True when the pessimistic CI bound clears the target (lower >= t, or upper <= t)."""
    if not _usable(outcome):
        return False
    ci, _, _, _ = _interval(outcome, target, higher_is_better)
    return _clears(ci[0], ci[1], target, higher_is_better)


def _screen(o: PipelineOutcome) -> PipelineOutcome:
    """NaN/infinite per-item scores make an outcome failed, with the count, not a comparison."""
    if o.status != "ok" or not o.per_example or o.score_fn is not None:
        return o
    try:
        check_finite(o.per_example)
    except ValueError as e:
        return replace(o, status="failed", reason=str(e), per_example=None)
    return o


# ---------------------------------------------------------------------------------- text


def _n(x: float) -> str:
    return f"{x:.3f}"


def _usd(x: float) -> str:
    return f"${x:,.2f}" if abs(x) >= 0.01 or x == 0 else f"${x:.2g}"


def _desc(v: Verdict, metric: str) -> str:
    return f"{metric} {_n(v.score)} (95% CI {_n(v.ci[0])}–{_n(v.ci[1])})"


def _bound_text(v: Verdict, target: float, hib: bool) -> str:
    lo, hi = v.ci
    if hib:
        return f"lower bound {_n(lo)} {'≥' if lo >= target else '<'} target {_n(target)}"
    return f"upper bound {_n(hi)} {'≤' if hi <= target else '>'} target {_n(target)}"


def _prob_text(v: Verdict, target: float, hib: bool) -> str:
    if v.probability is None:
        return ""
    side = "≥" if hib else "≤"
    p = v.probability
    shown = "> 0.99" if p > 0.99 else "< 0.01" if p < 0.01 else f"= {p:.2f}"
    return f"P(true {side} {_n(target)}) {shown}"


def _more_items(v: Verdict) -> str:
    return (f"label about {v.items_to_confirm:,} more eval items ({v.n_to_confirm:,} in all): if the score holds, "
            f"its lower bound then clears the target")


def _rank(name: str) -> int:
    """Workflow order (simplest first); names outside it after."""
    return catalogue.rank(name)


# ---------------------------------------------------------------------------------- comparisons


def _compare(a: PipelineOutcome, b: PipelineOutcome, alpha: float) -> PairedComparison | None:
    """Paired test of b against a (diff = b - a); None without aligned item-level data."""
    try:
        if a.score_fn is not None and b.score_fn is not None and a.n_items and a.n_items == b.n_items:
            return paired_metric_compare(a.score_fn, b.score_fn, a.n_items, names=(a.name, b.name), alpha=alpha)
        if a.score_fn is None and b.score_fn is None and a.per_example and b.per_example:
            return paired_compare(a.per_example, b.per_example, names=(a.name, b.name), alpha=alpha)
    except ValueError:
        return None
    return None


def _noninferior_bound(cheap: PipelineOutcome, top: PipelineOutcome, alpha: float, hib: bool) -> float | None:
    """One-sided lower bound of (cheap - top), oriented so that higher is better."""
    try:
        if cheap.score_fn is not None and top.score_fn is not None and cheap.n_items == top.n_items:
            b = noninferiority_bound(alpha=alpha, fa=top.score_fn, fb=cheap.score_fn, n=cheap.n_items)
        elif cheap.per_example and top.per_example and cheap.score_fn is None and top.score_fn is None:
            a, c = top.per_example, cheap.per_example
            b = noninferiority_bound(a, c, alpha=alpha) if hib else noninferiority_bound(c, a, alpha=alpha)
        else:
            return None
    except ValueError:
        return None
    return b


# ---------------------------------------------------------------------------------- cost


def _costs_known(*outcomes) -> bool:
    """A per-request cost of 0 means "not costed" (no hardware or usage): no cost claims then."""
    return all(o.usd_per_1k > 0 for o in outcomes)


def _total(o, inp: DecisionInput) -> float | None:
    if not _costs_known(o) or not inp.requests_per_month:
        return None
    return o.setup_usd + o.usd_per_1k / 1000 * inp.requests_per_month * inp.horizon_months


def _break_even(alt, ft) -> float | None:
    """Requests after which ``ft`` is cheaper overall than ``alt`` (None: never)."""
    ft_per, alt_per = ft.usd_per_1k / 1000, alt.usd_per_1k / 1000
    if ft.setup_usd <= alt.setup_usd:
        return 0.0 if ft_per <= alt_per else None
    return cost.break_even_requests(alt.setup_usd, alt_per, ft.setup_usd, ft_per)


def like_for_like(a: PipelineOutcome, b: PipelineOutcome) -> tuple[Price, Price] | None:
    """Both pipelines priced on one device (b's own first), or None when they share none.

    A CPU-priced baseline against a GPU-priced RAG is no comparison: on the GPU the baseline
    would be cheaper still. Unknown devices ("") and hosted endpoints (a bill, not a device)
    compare as they are.
    """
    own_a, own_b = Price(a.device, a.setup_usd, a.usd_per_1k), Price(b.device, b.setup_usd, b.usd_per_1k)
    if a.device in ("", "endpoint") or b.device in ("", "endpoint") or a.device == b.device:
        return own_a, own_b
    on_a = {p.device: p for p in (own_a, *a.prices_elsewhere)}
    on_b = {p.device: p for p in (own_b, *b.prices_elsewhere)}
    for dev in (b.device, a.device, *on_b):
        if dev in on_a and dev in on_b:
            return on_a[dev], on_b[dev]
    return None


def _devices_text(choice: PipelineOutcome, pc: Price) -> str:
    """Which device the comparison priced both on, and where the choice itself is priced."""
    if not pc.device or pc.device == "endpoint":
        return ""
    text = f", both priced on {pc.device}"
    if choice.device and choice.device != pc.device:
        text += (f" ({choice.shown} is priced on {choice.device} elsewhere in this report: "
                 f"{_usd(choice.usd_per_1k)} per 1,000 requests)")
    return text


def _own_text(choice: PipelineOutcome, other: PipelineOutcome, pc: Price, po: Price, be: float | None,
              inp: DecisionInput) -> str | None:
    """A dearer-to-build pipeline that is cheaper to own over the horizon, said plainly, with
    both priced on the same device (``pc``/``po``: the choice's and the other's price there)."""
    h, rpm = inp.horizon_months, inp.requests_per_month
    if not rpm:
        return None
    total_c = pc.setup_usd + pc.usd_per_1k / 1000 * rpm * h
    total_o = po.setup_usd + po.usd_per_1k / 1000 * rpm * h
    if total_o >= total_c:
        return None
    text = (f"{other.shown} costs more to set up ({_usd(po.setup_usd)} vs {_usd(pc.setup_usd)}) but less to own: "
            f"{_usd(total_o)} vs {_usd(total_c)} over {h} months at {rpm:,} requests/month"
            + _devices_text(choice, pc))
    if be:
        text += f"; it pays back the extra setup after {be:,.0f} requests ({_payback_time(be / rpm)})"
    return text


def _payback_time(months: float) -> str:
    """A payback period a reader can picture: months, else days, else "within the first day"
    (a few requests at 500,000 a month once printed as "about 0.0 months")."""
    if months >= 1:
        return f"about {months:.1f} months"
    days = months * 365.25 / 12
    return f"about {days:.0f} days" if days >= 1 else "within the first day"


def _running_text(v: Verdict, inp: DecisionInput) -> str:
    if v.usd_per_1k <= 0:
        return ""  # cost unknown: say nothing rather than "$0.00"
    text = f"it costs {_usd(v.usd_per_1k)} per 1,000 requests" + (f" on {v.device}" if v.device else "")
    if inp.requests_per_month:
        text += f", {_usd(v.usd_per_1k * inp.requests_per_month / 1000)} per month at {inp.requests_per_month:,}"
        if v.total_usd is not None:
            text += f"; {_usd(v.total_usd)} over {inp.horizon_months} months with its {_usd(v.setup_usd)} setup"
    return text


# ---------------------------------------------------------------------------------- the decision


def decide(inp: DecisionInput) -> Decision:
    """Judge every pipeline, choose, and say why; pure function of the measured outcomes."""
    hib, t, metric, alpha = inp.higher_is_better, inp.target, inp.metric, inp.alpha
    outs = {n: _screen(o) for n, o in inp.outcomes.items()}
    names = sorted(outs, key=_rank)
    ok = [outs[n] for n in names if _usable(outs[n])]

    verdicts: dict[str, Verdict] = {}
    for o in ok:
        v, ci, prob, need, how = judge(o, t, hib)
        verdicts[o.name] = Verdict(o.name, float(o.score), ci, v, prob, _n_of(o), need, how,
                                   o.setup_usd, o.usd_per_1k, _total(o, inp), o.device, o.shown)

    # Every pair, simplest first; Holm across the family decides "significant".
    comps: dict[tuple[str, str], PairedComparison] = {}
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            c = _compare(a, b, alpha)
            if c is not None:
                comps[(a.name, b.name)] = c
    if comps:
        keys = list(comps)
        for k, p in zip(keys, holm([comps[k].p_value for k in keys])):
            comps[k] = replace(comps[k], p_holm=p, significant=bool(p < alpha))

    def better(a: str, b: str) -> PairedComparison | None:
        """The comparison when b is significantly better than a (Holm), else None."""
        c = comps.get((a, b)) or comps.get((b, a))
        if c is None or not c.significant:
            return None
        d = c.diff if (c.a_name, c.b_name) == (a, b) else -c.diff
        return c if (d > 0) == hib and d != 0 else None

    def over_budget(v: Verdict) -> bool:
        return inp.budget_setup_usd is not None and v.setup_usd > inp.budget_setup_usd

    eligible = [verdicts[o.name] for o in ok if not over_budget(verdicts[o.name])]
    meeting = [v for v in eligible if v.verdict == "meets"]
    likely = [v for v in eligible if v.verdict == "likely"]

    def top_of(vs: list[Verdict]) -> Verdict:
        best = vs[0]
        for v in vs[1:]:
            if (v.score > best.score) if hib else (v.score < best.score):
                best = v
        return best

    nonin: dict[str, float | None] = {}  # one-sided bound of (cheaper - top) for names considered

    def as_good_as(v: Verdict, top: Verdict) -> bool:
        if v is top:
            return True
        b = _noninferior_bound(outs[v.name], outs[top.name], alpha, hib)
        nonin[v.name] = b
        return b is not None and b > -inp.margin

    choice: Verdict | None = None
    status = "none"
    if meeting:
        choice, status = meeting[0], "confirmed"
    elif likely:
        top = top_of(likely)
        choice = next(v for v in likely if as_good_as(v, top))
        status = "provisional"

    # Best: the choice; with none, the best by score -- a simpler pipeline is named instead
    # only when it is non-inferior to the top within the margin.
    best: Verdict | None = choice
    top_all = top_of(list(verdicts.values())) if verdicts else None
    if best is None and top_all is not None:
        best = next(v for v in verdicts.values() if as_good_as(v, top_all))

    reasons: list[str] = []
    steps: list[str] = []
    why_not: dict[str, str] = {}
    headline = ""
    break_even: float | None = None

    if choice is not None:
        c = choice
        if status == "confirmed":
            headline = f"{c.title} meets the target: {_desc(c, metric)}; {_bound_text(c, t, hib)}"
        else:
            headline = (f"{c.title} likely meets the target (provisional): {_desc(c, metric)}; "
                        f"{_bound_text(c, t, hib)}" + (f", {_prob_text(c, t, hib)}" if c.probability is not None else ""))
        reasons.append(headline)
        if status == "provisional" and c.name in nonin and nonin[c.name] is not None:
            top = top_of(likely)
            reasons.append(f"{c.title} is as good as {top.title} ({_n(top.score)}) within the margin {inp.margin:g}: "
                           f"one-sided 95% lower bound of the difference {nonin[c.name]:+.3f}; it is simpler to run")
        running = _running_text(c, inp)
        if running:
            reasons.append(running)
        # dearer-to-build pipelines at least as sure as the choice that are cheaper to own
        level = ("meets",) if status == "confirmed" else ("meets", "likely")
        for v in eligible:
            if v is c or v.verdict not in level:
                continue
            prices = like_for_like(outs[c.name], outs[v.name]) if _costs_known(c, v) else None
            if prices is not None and prices[1].setup_usd > prices[0].setup_usd:
                be = _break_even(*prices)
                text = _own_text(outs[c.name], outs[v.name], *prices, be, inp)
                if text:
                    reasons.append(text)
                if v.name == "finetune" or break_even is None:
                    break_even = be
        ft_prices = (like_for_like(outs[c.name], outs["finetune"])
                     if c.name != "finetune" and "finetune" in verdicts and _costs_known(c, verdicts["finetune"])
                     else None)
        if ft_prices is not None and break_even is None:
            break_even = _break_even(*ft_prices)
        if status == "confirmed":
            steps.append("ship the classical baseline (embeddings + classifier); no LLM or GPU is needed"
                         if c.name == "baseline" else f"ship {c.title}")
        else:
            steps.append(f"to confirm {c.title}: {_more_items(c)}" if c.n_to_confirm else
                         f"to confirm {c.title}: label more eval items")
    else:
        if not ok:
            headline = "no pipeline produced a score, so nothing can be recommended"
        elif best is not None:
            headline = (f"no pipeline is even likely to meet the target {_n(t)}; the best is {best.title}: "
                        f"{_desc(best, metric)}")
            if best is not top_all and best.name in nonin:
                headline += (f" (as good as {top_all.title} at {_n(top_all.score)} within the margin {inp.margin:g}, "
                             "and simpler)")
        over = [v for v in verdicts.values() if over_budget(v) and v.verdict != "misses"]
        if over:
            headline = (f"nothing within the setup budget of {_usd(inp.budget_setup_usd)} is even likely to meet the "
                        f"target; {over[0].title} {over[0].verdict} it ({_desc(over[0], metric)}) but costs "
                        f"{_usd(over[0].setup_usd)} to set up")
        reasons.append(headline)

    # Why not each other pipeline: one line each, never a repeat of the reasons above.
    chosen = choice.name if choice else None
    chosen_t = choice.title if choice else None  # what the sentences call it
    # `constrained` exists only for tasks that declare a format: absent, it needs no "why not"
    # a pipeline that only some tasks have (constrained: a declared format) needs no "why not" when absent
    for name in names + [n for n in catalogue.names() if n not in outs and _expected(n)]:
        if name == chosen:
            continue
        o = outs.get(name)
        if o is None:
            why_not[name] = _not_run(name, inp)
            continue
        if o.status == "skipped":
            why_not[name] = f"skipped: {o.reason or 'no reason given'}"
            continue
        if not _usable(o):
            why_not[name] = f"failed: {o.reason or 'no score produced'}"
            continue
        v = verdicts[name]
        desc = _desc(v, metric)
        if over_budget(v):
            why_not[name] = (f"{v.verdict} the target ({desc}) but its setup {_usd(v.setup_usd)} is over the budget "
                             f"of {_usd(inp.budget_setup_usd)}")
        elif v.verdict == "misses":
            prob = _prob_text(v, t, hib)
            shown = "the best, but misses the target" if choice is None and best is v else f"misses the target: {desc}"
            why_not[name] = shown + (f"; {prob}" if prob else "")  # the headline already gave the best's score
        elif choice is not None and status == "confirmed" and _rank(name) > _rank(chosen):
            why_not[name] = f"not needed: {chosen_t} is simpler and meets the target ({v.title}: {desc}, {v.verdict})"
        elif choice is not None and v.verdict == "likely" and status == "confirmed":
            why_not[name] = f"only likely meets the target ({desc}; {_bound_text(v, t, hib)}), while {chosen_t} meets it"
        elif choice is not None and status == "provisional" and _rank(name) > _rank(chosen):
            why_not[name] = (f"also likely meets the target ({desc}), but {chosen_t} is as good within the margin "
                             f"{inp.margin:g} and simpler")
        elif choice is not None and status == "provisional":
            b = nonin.get(name)
            why_not[name] = (f"likely meets the target ({desc}) but may be worse than {top_of(likely).title} by more "
                             f"than the margin {inp.margin:g}" + (f" (one-sided lower bound {b:+.3f})" if b is not None else ""))
        else:  # only reachable for names outside the workflow
            why_not[name] = f"{v.verdict} the target ({desc})"
        sig = better(chosen, name) if chosen else None
        if sig is not None:
            p = sig.p_holm if sig.p_holm is not None else sig.p_value
            d = sig.diff if sig.b_name == name else -sig.diff
            why_not[name] += f"; it scores significantly higher than {chosen_t} ({d:+.3f}, Holm p={p:.3g})"
        e = catalogue.entry(name)
        if e is not None and e.gated and chosen != name:  # a fine-tune step: what it beat, paired
            wins = []
            for other in catalogue.names()[1: catalogue.rank(name)]:  # the LLM pipelines before it
                if other == chosen:
                    continue
                s = better(other, name)
                if s is not None:
                    d = s.diff if s.b_name == name else -s.diff
                    wins.append(f"{verdicts[other].title} ({d:+.3f}, Holm p={s.p_holm:.3g})")
            if wins:
                why_not[name] += f"; it is significantly better than {' and '.join(wins)}"

    # Eval-set size: the MDD at this n, and what would separate the choice from a better-scoring rival.
    ref = outs[best.name] if best is not None else None
    mdd = mdd_for(ref.per_example) if ref is not None and ref.per_example and ref.score_fn is None else None
    if choice is not None:
        rivals = [v for v in eligible if v is not choice and v.verdict != "misses"
                  and ((v.score > choice.score) if hib else (v.score < choice.score))]
        if rivals:
            r = top_of(rivals)
            c = comps.get((choice.name, r.name)) or comps.get((r.name, choice.name))
            if c is not None and not c.significant and outs[choice.name].per_example and outs[r.name].per_example \
                    and outs[choice.name].score_fn is None:
                try:
                    need = items_needed_for_pair(outs[choice.name].per_example, outs[r.name].per_example)
                    steps.append(f"to separate {choice.title} from {r.title} ({_n(choice.score)} vs {_n(r.score)}): "
                                 f"about {need:,} eval items (80% power, from the observed paired differences)")
                except ValueError:
                    pass
    else:
        steps += _next_steps(inp, outs, verdicts, best, mdd)
        gap = _unproven_gain(best, verdicts, outs, comps, hib)
        if gap:
            steps.append(gap)
    for name, o in outs.items():
        if o.status == "failed":
            steps.insert(0, f"fix the {o.shown} failure ({o.reason or 'no reason given'}) and re-run")

    return Decision(
        choice=chosen or "none",
        best=best.name if best is not None else None,
        meets_target=status == "confirmed",
        reasons=reasons,
        why_not=why_not,
        next_steps=steps,
        comparisons=[c.to_dict() for _, c in sorted(comps.items(), key=lambda kv: (_rank(kv[0][0]), _rank(kv[0][1])))],
        mdd=mdd,
        break_even_requests=break_even,
        verdict=status,
        probability=choice.probability if choice else None,
        items_to_confirm=choice.items_to_confirm if choice and status == "provisional" else None,
        headline=headline,
        verdicts={n: {**asdict(v), "ci": [v.ci[0], v.ci[1]], "items_to_confirm": v.items_to_confirm}
                  for n, v in verdicts.items()},
        margin=inp.margin,
        horizon_months=inp.horizon_months,
    )


def _unproven_gain(best: Verdict | None, verdicts: dict[str, Verdict], outs: dict[str, PipelineOutcome],
                   comps: dict[tuple[str, str], PairedComparison], hib: bool) -> str | None:
    """With nothing meeting the target, the best may still be a dearer step that is not
    significantly better than a simpler one (RAG + fine-tune over RAG): say how many eval items
    would tell them apart, from the observed paired differences, before anyone pays for it."""
    if best is None:
        return None
    simpler = [v for n, v in verdicts.items() if _rank(n) < _rank(best.name)
               and ((v.score < best.score) if hib else (v.score > best.score))]
    if not simpler:
        return None
    r = max(simpler, key=lambda v: v.score if hib else -v.score)
    c = comps.get((r.name, best.name)) or comps.get((best.name, r.name))
    a, b = outs[r.name], outs[best.name]
    if c is None or c.significant or not a.per_example or not b.per_example or a.score_fn or b.score_fn:
        return None
    try:
        need = items_needed_for_pair(a.per_example, b.per_example)
    except ValueError:
        return None
    p = c.p_holm if c.p_holm is not None else c.p_value
    return (f"to tell {best.title} from the simpler {r.title} ({_n(best.score)} vs {_n(r.score)}, Holm p={p:.2g} "
            f"at n={len(b.per_example)}): about {need:,} eval items (80% power, from the observed paired differences)")


def _expected(name: str) -> bool:
    """Pipelines every task has a row for (a missing one gets a 'not run' line)."""
    e = catalogue.entry(name)
    return e is not None and e.always_listed


def _not_run(name: str, inp: DecisionInput) -> str:
    e = catalogue.entry(name)
    missing = e.missing_data(inp.has_train, inp.has_corpus) if e else None
    return f"not run: {missing}" if missing else "not run"


def _next_steps(inp: DecisionInput, outs: dict[str, PipelineOutcome], verdicts: dict[str, Verdict],
                best: Verdict | None, mdd: float | None) -> list[str]:
    """Concrete things to try when nothing is even likely to meet the target."""
    steps: list[str] = []
    if best is not None:
        model = f" than {inp.base_model}" if inp.base_model else ""
        steps.append(f"try a bigger base model{model}")
    ft, rf = outs.get("finetune"), outs.get("rag_finetune")
    rag, prompting = verdicts.get("rag"), verdicts.get("prompting")
    rag_helped = rag is not None and (prompting is None or (rag.score > prompting.score) == inp.higher_is_better)
    # RAG + fine-tune is worth asking for when retrieval helped (retrieval that hurt prompting is no
    # reason to train on its prompts); once it has run, its verdict is in the lines above
    rf_untried = rag_helped and (rf is None or rf.status == "skipped")
    if ft is None or ft.status == "skipped":
        both = " and RAG + fine-tune, a LoRA trained on the RAG prompts" if rf_untried else ""
        steps.append(f"run the fine-tune{both} (--finetune always)" if inp.has_train else
                     "collect a labelled train set: it enables the classical baseline, few-shot prompting and a fine-tune")
    else:
        if "finetune" in verdicts and verdicts["finetune"].verdict == "misses":
            steps.append("add more training data (or epochs) for the fine-tune")
        if rf_untried and inp.has_train:
            steps.append("run RAG + fine-tune, a LoRA trained on the RAG prompts (--finetune always)")
    if "finetune" in verdicts and inp.budget_setup_usd is not None and verdicts["finetune"].setup_usd > inp.budget_setup_usd:
        steps.append(f"raise budget.setup_usd to at least {_usd(verdicts['finetune'].setup_usd)} or train on cheaper hardware")
    if not inp.has_corpus and rag is None:
        steps.append("add a document corpus (or use rag mode 'examples') to try RAG")
    o = outs.get(best.name) if best is not None else None
    if o is not None and o.per_example and o.score_fn is None and mdd is not None and mdd > LARGE_MDD:
        gap = LARGE_MDD / 2
        p = best.score if 0.0 <= best.score <= 1.0 else 0.5
        steps.append(
            f"enlarge the eval set: at n={len(o.per_example)} the minimum detectable difference is "
            f"{_n(mdd)}; about {items_needed(gap, baseline=p):,} items detect a {gap:.2f} gap "
            "(assuming independent errors; fewer when pipelines agree on most items)"
        )
    return steps


def choose_base_model(table: list[dict], higher_is_better: bool = True, alpha: float = ALPHA) -> dict:
    """The smallest candidate not significantly worse than the best (paired test on the same
    held-out items); rows gain ci, p_vs_best and chosen. A bigger model must earn its cost."""
    from advisor.stats import score_ci

    rows = [dict(r) for r in table]
    scored = [r for r in rows if r.get("score") is not None]
    if not scored:
        for i, r in enumerate(rows):
            r["chosen"] = i == 0
        return {"chosen": rows[0]["model"], "table": rows}

    def size(r: dict) -> float:
        return float(r["params"]) if r.get("params") else math.inf

    sign = 1 if higher_is_better else -1
    best = max(scored, key=lambda r: (sign * r["score"], -size(r)))
    keep = []
    for r in scored:
        pe, bpe = r.get("per_example"), best.get("per_example")
        if pe:
            r["ci"] = list(score_ci(pe))
        if r is best:
            keep.append(r)
            continue
        worse = (sign * (r["score"] - best["score"])) < 0
        if pe and bpe and len(pe) == len(bpe):
            c = paired_compare(bpe, pe, alpha=alpha)
            r["p_vs_best"] = c.p_value
            worse = c.significant and sign * c.diff < 0
        if not worse:
            keep.append(r)
    chosen = min(keep, key=lambda r: (size(r), -sign * r["score"]))
    for r in rows:
        r["chosen"] = r is chosen
        r.pop("per_example", None)
        if r is chosen and r is not best:
            r["note"] = f"not significantly worse than {best['model']} and smaller"
    return {"chosen": chosen["model"], "table": rows}


def should_run_finetune(
    mode: str, outcomes: dict[str, PipelineOutcome], target: float, higher_is_better: bool = True,
    cheaper: Sequence[str] | None = None,
) -> tuple[bool, str]:
    """--finetune auto|always|never: auto trains only when no cheaper pipeline meets the target
    (``cheaper``: the catalogue's non-gated pipelines unless given)."""
    m = str(mode).strip().lower()
    if m not in FINETUNE_MODES:
        raise ValueError(f"finetune mode must be one of {FINETUNE_MODES}, got {mode!r}")
    if m == "never":
        return False, "fine-tune disabled (finetune mode 'never')"
    if m == "always":
        return True, "fine-tune forced (finetune mode 'always')"
    for name in catalogue.cheaper_than_gated() if cheaper is None else cheaper:
        o = outcomes.get(name)
        if o is not None and meets(_screen(o), target, higher_is_better):
            (lo, hi), _, _, _ = _interval(o, target, higher_is_better)
            return False, (  # the report adds the "skipped: " status itself
                f"{o.shown} already meets the target ({_n(o.score)}, 95% CI "
                f"{_n(lo)}–{_n(hi)} vs target {_n(target)})"
            )
    return True, "no cheaper pipeline meets the target, so the fine-tune is worth trying"


def choose_method(val_losses: dict[str, float | None], order: list[str]) -> tuple[str | None, str]:
    """(the fine-tune family's representative, the rule as said in the report), on train data only.

    The lowest final validation loss wins: the answer tokens' cross-entropy on the held-out slice
    of the *train* set that every method's training already sets aside (same seed, same items),
    so the eval items that give the final CIs never choose among the methods. Methods without a
    validation loss (a train set too small to spare a slice) fall back to the first that ran, in
    the task's order. ``val_losses``: method -> loss, only for methods that ran (status ok)."""
    ran = [m for m in order if m in val_losses]
    if not ran:
        return None, "no method ran"
    scored = [m for m in ran if val_losses[m] is not None and math.isfinite(val_losses[m])]
    if not scored:
        return ran[0], f"no validation slice (train set too small): the first listed method that ran, {ran[0]}"
    best = min(scored, key=lambda m: (val_losses[m], ran.index(m)))
    return best, (f"lowest validation loss on the held-out train slice ({val_losses[best]:.4f}); "
                  "the eval items are not used to choose")
