"""Are the printed intervals honest, and how often does each answer come out? (issue 12)

1. Coverage of every interval the report prints, at n = 40, 60, 200 and several true rates:
   * a pipeline's score, 0/1 items (Agresti-Coull; beside it Wilson, which it replaced): exact,
     by enumerating the binomial;
   * a paired difference of 0/1 items (Newcombe's square-and-add): exact by enumerating the
     multinomial of (both, a only, b only, neither) at n = 40 and 60, Monte Carlo at 200;
     beside it the interval it replaced (exact, conditional on the discordant count);
   * a pipeline's score for continuous items (token F1 -- BCa bootstrap), a paired difference
     of them (the sign-flip test inverted; beside it the paired bootstrap it replaced, on
     shifted and on skewed differences) and a corpus-level metric (macro-F1 -- BCa bootstrap
     over items at Hesterberg's expanded level; beside it plain BCa): Monte Carlo, with the
     true value known from the simulation.
2. Operating characteristics of the decision on simulated pipelines, before (the decide.py
   and stats.py of commit BEFORE, read from git) and after: how often each answer comes out,
   and how often a pipeline whose true score *equals* the target is confirmed (<= 5 %).

Pure numpy/scipy: no model is loaded. Exact figures do not depend on the machine; Monte
Carlo figures carry their repetitions (a coverage of 0.95 from 1,000 draws is +-0.014).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import stats as st

from .common import ROOT, comparison, limit

BEFORE = "16b319b"  # the commit issue 12 was filed against
FLOOR = 0.93  # "all intervals the report prints have coverage >= 0.93 at n = 60"
RATES = (0.5, 0.7, 0.8, 0.9, 0.95)
SIZES = (40, 60, 200)


# ------------------------------------------------------------------------------ coverage


def binomial_coverage(n: int, p: float, method) -> float:
    """Exact coverage of a proportion interval ``method(successes, n)`` at true rate p."""
    k = np.arange(n + 1)
    pmf = st.binom.pmf(k, n, p)
    hit = [lo <= p <= hi for lo, hi in (method(int(x), n) for x in k)]
    return float(pmf[hit].sum())


def _cells(p_a: float, p_b: float, rho: float) -> np.ndarray:
    cov = rho * math.sqrt(p_a * (1 - p_a) * p_b * (1 - p_b))
    p11 = p_a * p_b + cov
    return np.array([p11, p_a - p11, p_b - p11, 1 - p_a - p_b + p11])


def _conditional_ci(n11: int, n10: int, n01: int, n00: int) -> tuple[float, float]:
    """The interval issue 12 replaced: exact CP on the discordant split, scaled (for b - a)."""
    return _conditional_cached(n10, n01, n11 + n10 + n01 + n00)


@functools.lru_cache(maxsize=None)
def _conditional_cached(n10: int, n01: int, n: int) -> tuple[float, float]:
    nd = n10 + n01
    if nd == 0:
        return (0.0, 0.0)
    ci = st.binomtest(n01, nd, 0.5).proportion_ci(confidence_level=0.95, method="exact")
    return (nd / n * (2 * ci.low - 1), nd / n * (2 * ci.high - 1))


def _newcombe_b_minus_a(n11: int, n10: int, n01: int, n00: int) -> tuple[float, float]:
    from advisor.stats import newcombe_paired_ci

    lo, hi = newcombe_paired_ci([[n11, n10], [n01, n00]])
    return (-hi, -lo)


def paired_coverage(n: int, p_a: float, p_b: float, rho: float, method, mc: int = 0, seed: int = 0) -> float:
    """Coverage of a paired-difference interval for b - a; exact unless ``mc`` draws are asked."""
    probs = _cells(p_a, p_b, rho)
    true = p_b - p_a
    if mc:
        tables = np.random.default_rng(seed).multinomial(n, probs, size=mc)
        hits = sum(lo - 1e-12 <= true <= hi + 1e-12 for lo, hi in (method(*map(int, t)) for t in tables))
        return hits / mc
    total = 0.0
    for n11 in range(n + 1):
        for n10 in range(n - n11 + 1):
            n01s = np.arange(n - n11 - n10 + 1)
            pr = st.multinomial.pmf(np.stack([np.full_like(n01s, n11), np.full_like(n01s, n10), n01s,
                                              n - n11 - n10 - n01s], axis=1), n, probs)
            for n01, q in zip(n01s, pr):
                if q < 1e-13:
                    continue
                lo, hi = method(n11, n10, int(n01), n - n11 - n10 - int(n01))
                if lo - 1e-12 <= true <= hi + 1e-12:
                    total += q
    return float(total)


def _f1_items(rng, n: int, mean: float) -> np.ndarray:
    """Token-F1-like items: a mass at 0, a mass at 1, the rest in between (true mean = mean)."""
    kind = rng.random(n)
    mid = rng.beta(2, 2, n)
    hi_share = max(0.0, min(1.0, (mean - 0.3 * 0.5) / 1.0))  # share of exact answers
    lo_share = max(0.0, 0.7 - hi_share)
    return np.where(kind < hi_share, 1.0, np.where(kind < hi_share + lo_share, 0.0, mid))


def _f1_true_mean(mean: float) -> float:
    hi_share = max(0.0, min(1.0, (mean - 0.3 * 0.5) / 1.0))
    lo_share = max(0.0, 0.7 - hi_share)
    return hi_share + (1 - hi_share - lo_share) * 0.5


def continuous_coverage(n: int, mean: float, reps: int, seed: int = 0) -> float:
    from advisor.stats import bootstrap_ci

    rng = np.random.default_rng(seed)
    true = _f1_true_mean(mean)
    hits = 0
    for r in range(reps):
        lo, hi = bootstrap_ci(_f1_items(rng, n, mean), seed=r)
        hits += lo <= true <= hi
    return hits / reps


def _paired_f1_items(rng, m: int, mean: float, shift: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Two pipelines' token-F1-like items on the same m questions. "shift": b = a + N(shift, 0.2),
    clipped; "skewed": most items unchanged, 22 % gain 0.5-1, 8 % lose 0.5-1 (clipped) — the shape
    of RAG + fine-tune against RAG on the bundled example."""
    a = _f1_items(rng, m, mean)
    if kind == "shift":
        return a, np.clip(a + rng.normal(shift, 0.2, m), 0, 1)
    u = rng.random(m)
    gain, loss = np.clip(a + rng.uniform(0.5, 1.0, m), 0, 1), np.clip(a - rng.uniform(0.5, 1.0, m), 0, 1)
    return a, np.where(u < 0.22, gain, np.where(u < 0.30, loss, a))


def continuous_paired_coverage(n: int, mean: float, shift: float, reps: int, seed: int = 0, kind: str = "shift",
                               method: str = "sign-flip") -> float:
    """Coverage of the paired interval for b - a (the true difference estimated from 400k items):
    the sign-flip test inverted (printed), or the paired bootstrap it replaced."""
    from advisor.stats import bootstrap_ci, paired_sign_flip

    rng = np.random.default_rng(seed)
    big_a, big_b = _paired_f1_items(rng, 400_000, mean, shift, kind)
    true = float((big_b - big_a).mean())
    hits = 0
    for r in range(reps):
        a, b = _paired_f1_items(rng, n, mean, shift, kind)
        if method == "sign-flip":
            _, (lo, hi), _ = paired_sign_flip(a, b, seed=r, n_resamples=2000)
        else:
            lo, hi = bootstrap_ci(b - a, seed=r, n_resamples=1000)
        hits += lo <= true <= hi
    return hits / reps


def _macro_f1_population(conf: np.ndarray) -> float:
    """Macro-F1 of an infinite eval set with joint (gold, predicted) probabilities ``conf``."""
    tp = np.diag(conf)
    denom = conf.sum(0) + conf.sum(1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))


def _classifier(k: int, acc: float, prior: np.ndarray) -> np.ndarray:
    """Joint (gold, predicted) probabilities: right with prob ``acc``, else a uniform other label."""
    m = np.full((k, k), (1 - acc) / (k - 1))
    np.fill_diagonal(m, acc)
    return prior[:, None] * m


def corpus_coverage(n: int, acc: float, reps: int, seed: int = 0, paired_with: float | None = None,
                    expanded: bool = True) -> float:
    """Bootstrap-over-items interval of macro-F1 (or of a paired difference with a second classifier).
    ``expanded=False``: plain BCa, without Hesterberg's small-sample expansion (the interval before)."""
    from unittest import mock

    from advisor import stats
    from advisor.metrics import subset_scorer
    from advisor.stats import metric_ci, paired_metric_compare

    if not expanded:
        with mock.patch.object(stats, "expanded_alpha", lambda alpha, n: alpha):
            return corpus_coverage(n, acc, reps, seed, paired_with)

    k = 4
    labels = [f"l{i}" for i in range(k)]
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    rng = np.random.default_rng(seed)
    true_a = _macro_f1_population(_classifier(k, acc, prior))
    true_b = _macro_f1_population(_classifier(k, paired_with, prior)) if paired_with is not None else None
    hits = 0
    for r in range(reps):
        gold = rng.choice(k, size=n, p=prior)

        def predict(a):
            wrong = rng.random(n) > a
            other = (gold + rng.integers(1, k, n)) % k
            return np.where(wrong, other, gold)

        fa = subset_scorer("macro_f1", [labels[i] for i in predict(acc)], [labels[i] for i in gold], labels)
        if paired_with is None:
            (lo, hi), _ = metric_ci(fa, n, seed=r, n_resamples=1000)
            hits += lo <= true_a <= hi
        else:
            fb = subset_scorer("macro_f1", [labels[i] for i in predict(paired_with)], [labels[i] for i in gold], labels)
            c = paired_metric_compare(fa, fb, n, seed=r, n_resamples=1000)
            hits += c.ci[0] <= true_b - true_a <= c.ci[1]
    return hits / reps


# ------------------------------------------------------------------------------ operating characteristics


def _load_before():
    """advisor.decide and advisor.stats as of BEFORE, as a separate package (None without git)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-decisions-"))
    pkg = tmp / "advisor_before"
    pkg.mkdir()
    try:
        for mod in ("stats", "decide", "cost"):
            src = subprocess.run(["git", "-C", str(ROOT), "show", f"{BEFORE}:advisor/{mod}.py"], check=True,
                                 capture_output=True, text=True).stdout
            src = src.replace("from advisor.stats import", "from advisor_before.stats import")
            src = src.replace("from advisor import cost", "from advisor_before import cost")
            (pkg / f"{mod}.py").write_text(src)
    except (OSError, subprocess.CalledProcessError):
        return None
    (pkg / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp))
    spec = importlib.util.spec_from_file_location("advisor_before", pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["advisor_before"] = module
    return importlib.import_module("advisor_before.decide")


def _simulate(dmod, pipes: dict[str, float], target: float, n: int, reps: int, rho: float = 0.5, seed: int = 0,
              costs: dict | None = None, **kw) -> dict:
    """Share of each answer over ``reps`` simulated eval sets. Items share a latent difficulty
    (correlation ``rho`` between pipelines' correctness), as real pipelines do."""
    rng = np.random.default_rng(seed)
    counts: Counter = Counter()
    verdicts: Counter = Counter()
    names = list(pipes)
    z_thresh = {k: st.norm.ppf(p) for k, p in pipes.items()}
    for _ in range(reps):
        shared = rng.standard_normal(n)
        outcomes = {}
        for k in names:
            latent = math.sqrt(rho) * shared + math.sqrt(1 - rho) * rng.standard_normal(n)
            pe = (latent < z_thresh[k]).astype(float).tolist()
            extra = (costs or {}).get(k, {})
            outcomes[k] = dmod.PipelineOutcome(k, "ok", float(np.mean(pe)), None, pe, **extra)
        d = dmod.decide(dmod.DecisionInput(metric="accuracy", target=target, outcomes=outcomes, **kw))
        counts[d.choice] += 1
        verdicts[f"{d.choice}:{getattr(d, 'verdict', 'confirmed' if d.meets_target else 'none')}"] += 1
    return {"choice": {k: round(v / reps, 4) for k, v in sorted(counts.items())},
            "choice_verdict": {k: round(v / reps, 4) for k, v in sorted(verdicts.items())}}


SCENARIOS = {
    # issue 12: true RAG 0.85, fine-tune 0.95, target 0.80, n = 60 (today: none 48 %, finetune 41 %)
    "rag0.85_ft0.95_t0.80_n60": dict(pipes={"rag": 0.85, "finetune": 0.95}, target=0.80, n=60),
    # sentiment_mr-like: baseline 0.73, prompting 0.65, LoRA 0.83 against 0.80
    "base0.73_prompt0.65_ft0.83_t0.80_n60": dict(pipes={"baseline": 0.73, "prompting": 0.65, "finetune": 0.83},
                                                 target=0.80, n=60),
    # both clearly good: the simpler one should win
    "prompt0.92_ft0.95_t0.80_n60": dict(pipes={"prompting": 0.92, "finetune": 0.95}, target=0.80, n=60),
}


def at_target_confirmed(dmod, n: int, reps: int, target: float = 0.8) -> dict:
    """A single pipeline whose true score equals the target: how often is it confirmed?"""
    r = _simulate(dmod, {"prompting": target}, target, n, reps, seed=n)
    cv = r["choice_verdict"]
    confirmed = cv.get("prompting:confirmed", 0.0)
    return {"confirmed": confirmed, "provisional": cv.get("prompting:provisional", 0.0),
            "none": r["choice"].get("none", 0.0)}


# ------------------------------------------------------------------------------ driver


def run(quick: bool) -> dict:
    from advisor import decide as after

    from advisor.stats import agresti_coull_ci, wilson_ci

    reps_mc = 150 if quick else 1000
    reps_boot = 60 if quick else 300
    reps_pair = 150 if quick else 1000  # the paired token-F1 intervals: cheap, and 0.93 needs +-0.008
    reps_corpus = 200 if quick else 2000  # macro-F1's bootstrap is vectorised: cheap, and 0.93 needs +-0.006
    reps_oc = 300 if quick else 2000
    sizes = (40, 60) if quick else SIZES
    details: dict = {"coverage": {}, "operating_characteristics": {}, "at_target": {}}
    comps: dict = {}
    cov = details["coverage"]

    cov["score_0_1_agresti_coull"] = {str(n): {str(p): round(binomial_coverage(n, p, agresti_coull_ci), 4)
                                               for p in RATES} for n in sizes}
    cov["score_0_1_wilson_before"] = {str(n): {str(p): round(binomial_coverage(n, p, wilson_ci), 4) for p in RATES}
                                      for n in sizes}
    pairs = [(0.8, 0.85, 0.6), (0.9, 0.9, 0.8), (0.7, 0.8, 0.3), (0.85, 0.95, 0.5), (0.5, 0.6, 0.5)]
    cov["paired_newcombe"], cov["paired_conditional_before"] = {}, {}
    for n in sizes:
        mc = 0 if n <= 60 else reps_mc
        cov["paired_newcombe"][str(n)] = {f"{a}/{b}/rho{r}": round(paired_coverage(n, a, b, r, _newcombe_b_minus_a, mc), 4)
                                          for a, b, r in pairs}
        cov["paired_conditional_before"][str(n)] = {
            f"{a}/{b}/rho{r}": round(paired_coverage(n, a, b, r, _conditional_ci, mc), 4) for a, b, r in pairs}
    cov["bootstrap_mean_token_f1"] = {str(n): {str(m): round(continuous_coverage(n, m, reps_boot, seed=n), 4)
                                               for m in (0.5, 0.7)} for n in sizes}
    for name, method in (("paired_sign_flip_token_f1", "sign-flip"), ("paired_bootstrap_token_f1_before", "bootstrap")):
        cov[name] = {str(n): {"shift0.05": round(continuous_paired_coverage(n, 0.6, 0.05, reps_pair, seed=n,
                                                                            method=method), 4),
                              "skewed": round(continuous_paired_coverage(n, 0.35, 0.0, reps_pair, seed=n, kind="skewed",
                                                                         method=method), 4)}
                     for n in sizes}
    accs = (0.5, 0.6, 0.85)
    cov["bootstrap_macro_f1"] = {str(n): {str(a): round(corpus_coverage(n, a, reps_corpus, seed=n), 4) for a in accs}
                                 for n in sizes}
    cov["bootstrap_macro_f1_bca_before"] = {
        str(n): {str(a): round(corpus_coverage(n, a, reps_corpus, seed=n, expanded=False), 4) for a in accs}
        for n in sizes}
    cov["paired_bootstrap_macro_f1"] = {str(n): {"0.7vs0.8": round(corpus_coverage(n, 0.7, reps_corpus, seed=n,
                                                                                   paired_with=0.8), 4)}
                                        for n in sizes}

    for name, table in cov.items():
        if name.endswith("_before"):
            continue
        worst = min(table["60"].values())
        comps[f"coverage_min_n60_{name}"] = comparison(
            worst, FLOOR, "coverage", 1.0, reference_name="floor",
            what=f"lowest coverage at n=60 over the simulated true rates: {name}")
        worst_all = min(v for by_n in table.values() for v in by_n.values())
        comps[f"coverage_min_{name}"] = comparison(
            worst_all, FLOOR, "coverage", 1.0, reference_name="floor",
            what=f"lowest coverage at n={', '.join(table)} over the simulated true rates: {name}")

    before = _load_before()
    oc = details["operating_characteristics"]
    for key, sc in SCENARIOS.items():
        oc[key] = {"after": _simulate(after, sc["pipes"], sc["target"], sc["n"], reps_oc)}
        if before is not None:
            oc[key]["before"] = _simulate(before, sc["pipes"], sc["target"], sc["n"], reps_oc)
    for n in sizes:
        details["at_target"][str(n)] = {"after": at_target_confirmed(after, n, reps_oc)}
        if before is not None:
            details["at_target"][str(n)]["before"] = at_target_confirmed(before, n, reps_oc)
    worst_at_target = max(v["after"]["confirmed"] for v in details["at_target"].values())
    comps["at_target_confirmed"] = limit(worst_at_target, 0.05, "share",
                                         what="a pipeline whose true score equals the target is confirmed "
                                              f"(worst of n={', '.join(map(str, sizes))})")
    main = oc["rag0.85_ft0.95_t0.80_n60"]["after"]["choice"]
    comps["rag_vs_ft_answers_finetune"] = comparison(
        main.get("finetune", 0.0), oc["rag0.85_ft0.95_t0.80_n60"].get("before", {}).get("choice", {}).get("finetune", 0.0)
        or 1e-9, "share", 1.0, reference_name="before",
        what="true RAG 0.85 / fine-tune 0.95 / target 0.80, n=60: share answering finetune, after vs before")
    notes = [f"before = advisor/decide.py and stats.py at {BEFORE}" + ("" if before else " (git unavailable: skipped)"),
             f"Monte Carlo repetitions: paired n=200 {reps_mc}, token-F1 bootstrap intervals {reps_boot}, "
             f"macro-F1 bootstrap intervals {reps_corpus}, decisions {reps_oc}",
             "*_before rows: the interval each printed interval replaced (Wilson for 0/1 scores; BCa without "
             "Hesterberg's expansion for macro-F1; the paired bootstrap for paired token F1)",
             f"paired token-F1 intervals: {reps_pair} repetitions; 'skewed' mimics RAG + fine-tune vs RAG on the "
             "bundled example (22 % of items gain 0.5-1, 8 % lose, the rest unchanged)",
             "pipelines' correctness shares a latent item difficulty (correlation 0.5) in the decision simulations"]
    return {"comparisons": comps, "details": details, "notes": notes}
