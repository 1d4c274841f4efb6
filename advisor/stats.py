"""Confidence intervals, paired tests and detectable differences for pipeline scores.

Why this module exists: a recommendation that rests on point scores cannot be defended.
Every score gets a 95 % interval, every comparison of two pipelines is *paired* (they are
scored on the same eval items, which removes item difficulty from the noise), and when
the eval set is too small to tell two pipelines apart we say how small a difference it
could have seen (minimum detectable difference) and how many items a real answer needs.

Choices, each the textbook one for its case:

* 0/1 per-example scores (accuracy, exact match): Agresti-Coull interval -- unlike the
  Wald interval it keeps its coverage near 0 and 1, and unlike Wilson's (same centre,
  narrower) its coverage stays >= 0.93 at n = 40-200 (Wilson's dips to 0.92).
* continuous per-example scores (token F1): BCa bootstrap (``scipy.stats.bootstrap``)
  with a fixed seed so that reports are reproducible.
* paired 0/1 scores: exact McNemar test (two-sided binomial test on discordant pairs),
  with Newcombe's square-and-add interval for the difference (his method 10, 1998):
  unconditional, so it keeps its coverage when few items are discordant. (An exact
  interval *conditional* on the discordant count collapses to a point when no item is
  discordant; its coverage at n = 60 was 0.54-0.76.)
* paired continuous scores: a two-sided *sign-flip permutation* p-value (under H0 each
  item's difference is as likely to be +d as -d; exact enumeration when 2**n is small, Monte
  Carlo otherwise) and the interval from inverting that same test, so that the interval
  excludes 0 exactly when p < alpha. (A bootstrap interval beside the permutation p printed
  "CI +0.006..+0.300, p = 0.068" for one comparison on the bundled example, and covered less.)
* corpus-level metrics (macro-F1: not a mean of per-item scores): BCa bootstrap over
  items of the metric itself, its level widened by Hesterberg's small-sample expansion,
  and a paired bootstrap (same resampled items for both pipelines) for comparisons.
* many comparisons at once: Holm's step-down adjustment (controls the family-wise error).
* "as good as": non-inferiority, the one-sided (1 - alpha) lower bound of the difference
  above -margin -- "not significantly different" is not evidence of equivalence.
* "how sure": the probability that the true score is at or above the target -- the
  Jeffreys Beta(s + 1/2, n - s + 1/2) posterior for 0/1 scores, the bootstrap distribution
  otherwise.

Per-item scores that are NaN or infinite are an error (ValueError naming how many), never
silently compared: numpy's NaN propagation once reported "tied within the noise (p=0.0002)".

Pure: numpy and scipy only.
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats as _st

__all__ = [
    "PairedComparison",
    "agresti_coull_ci",
    "bootstrap_ci",
    "bootstrap_metric",
    "check_finite",
    "expanded_alpha",
    "holm",
    "items_to_clear",
    "newcombe_paired_ci",
    "metric_ci",
    "noninferiority_bound",
    "paired_metric_compare",
    "prob_at_least",
    "is_binary",
    "items_needed",
    "items_needed_for_pair",
    "mcnemar_exact",
    "mdd_for",
    "min_detectable_difference",
    "paired_compare",
    "paired_sign_flip",
    "score_ci",
    "wilson_ci",
]

ALPHA = 0.05
# scipy >= 1.15 takes ``rng``; older versions only ``random_state``.
_RNG_KW = "rng" if "rng" in inspect.signature(_st.bootstrap).parameters else "random_state"


def _z(conf: float) -> float:
    if not 0.0 < conf < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {conf}")
    return float(_st.norm.ppf(0.5 + conf / 2.0))


def _as_array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)


def check_finite(values: Sequence[float], what: str = "per-item scores") -> np.ndarray:
    """The values as floats; ValueError naming how many are NaN/infinite, if any are."""
    x = _as_array(values)
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise ValueError(f"{bad} of {x.size} {what} are NaN or infinite; fix the scorer or drop those items")
    return x


def wilson_ci(successes: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (0, 1) when n == 0 (we know nothing)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(conf)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # Exact ends: with 0 (or n) successes the bound is exactly 0 (or 1), not 1e-17.
    if successes == 0:
        lo = 0.0
    if successes == n:
        hi = 1.0
    return (lo, hi)


def agresti_coull_ci(successes: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Agresti-Coull interval for a proportion (1998): add z^2/2 successes and failures, then Wald.

    The score interval a report prints for 0/1 items. Wilson's has the same centre but a
    narrower half-width, and its coverage oscillates below 0.93 for some true rates at the
    eval sizes this tool is for (0.928 at n = 40, p = 0.8; 0.922 at its worst for p in
    0.5-0.98), while Agresti-Coull's stays >= 0.933 there (benchmarks/bench_decisions.py; Brown,
    Cai & DasGupta 2001 recommend it from n = 40). Clipped to [0, 1]; (0, 1) when n == 0.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    z = _z(conf)
    n_t = n + z * z
    p_t = (successes + z * z / 2.0) / n_t
    half = z * math.sqrt(p_t * (1.0 - p_t) / n_t)
    return (max(0.0, p_t - half), min(1.0, p_t + half))


def bootstrap_ci(
    values: Sequence[float], conf: float = 0.95, seed: int = 0, n_resamples: int = 2000
) -> tuple[float, float]:
    """Bootstrap CI of the mean: BCa from 20 items up, percentile below (or if BCa fails).

    BCa corrects the skew of bounded scores (F1 near 1), but its bias and acceleration
    estimates are themselves noise on a handful of items, so tiny sets use the plain
    percentile interval. Fewer than two values, or all values equal, give (mean, mean): a resample cannot
    vary, and scipy would warn or return NaN. Empty input gives (nan, nan).
    """
    x = _as_array(values)
    if x.size == 0:
        return (math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2 or float(np.ptp(x)) == 0.0:
        return (m, m)
    methods = ("BCa", "percentile") if x.size >= 20 else ("percentile",)
    for method in methods:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _st.bootstrap(
                (x,),
                lambda s, axis: np.mean(s, axis=axis),
                vectorized=True,
                confidence_level=conf,
                n_resamples=n_resamples,
                method=method,
                batch=256,
                **{_RNG_KW: np.random.default_rng(seed)},
            )
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return (min(lo, m), max(hi, m))
    return (m, m)  # pragma: no cover - both methods degenerate only on constant data


def is_binary(values: Sequence[float]) -> bool:
    """True when every value is 0 or 1 (and there is at least one): Wilson/McNemar apply."""
    x = _as_array(values)
    return x.size > 0 and bool(np.all((x == 0.0) | (x == 1.0)))


def score_ci(values: Sequence[float], conf: float = 0.95) -> tuple[float, float]:
    """CI of a pipeline's mean score: Agresti-Coull for 0/1 scores, bootstrap otherwise."""
    x = check_finite(values)
    if is_binary(x):
        return agresti_coull_ci(int(x.sum()), int(x.size), conf)
    return bootstrap_ci(x, conf)


def _paired(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = check_finite(a), check_finite(b)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(
            f"paired scores must be aligned on the same items: got {x.size} and {y.size} values"
        )
    return x, y


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact McNemar p: binomial(0.5) test on the discordant pairs.

    Items both pipelines get right (or wrong) carry no information about which is
    better, so only the b (a right, b wrong) and c (a wrong, b right) counts matter.
    """
    x, y = _paired(a, b)
    if not (is_binary(x) or x.size == 0) or not (is_binary(y) or y.size == 0):
        raise ValueError("mcnemar_exact needs 0/1 scores")
    n10 = int(np.sum((x == 1) & (y == 0)))
    n01 = int(np.sum((x == 0) & (y == 1)))
    n = n10 + n01
    if n == 0:
        return 1.0
    p = 2.0 * float(_st.binom.cdf(min(n10, n01), n, 0.5))
    return min(1.0, p)


def _flip_sums(d: np.ndarray, seed: int, n_resamples: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """(S·d, S·1, exact) over the sign-flip assignments S: every one of the 2**n for small n, else
    ``n_resamples`` random ones (drawn 1,000 rows at a time). S·(d − δ) = S·d − δ·S·1, so one pass
    tests every shift δ — what makes inverting the test into an interval cheap."""
    n = d.size
    if n <= 20 and 2**n <= max(n_resamples, 1024):
        signs = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1) * 2 - 1  # the identity is among them
        return signs @ d, signs.sum(axis=1).astype(float), True
    rng = np.random.default_rng(seed)
    u, v = [], []
    done = 0
    while done < n_resamples:
        k = min(1000, n_resamples - done)
        signs = rng.integers(0, 2, size=(k, n)) * 2 - 1
        u.append(signs @ d)
        v.append(signs.sum(axis=1).astype(float))
        done += k
    return np.concatenate(u), np.concatenate(v), False


def _flip_p(u: np.ndarray, v: np.ndarray, exact: bool, n: int, mean: float, delta: float) -> float:
    """Two-sided sign-flip p that the mean paired difference is ``delta``."""
    obs = abs(mean - delta)
    if obs == 0.0:
        return 1.0
    tol = 1e-12 * max(1.0, obs)
    hits = int(np.sum(np.abs(u - delta * v) / n >= obs - tol))
    # Monte Carlo: +1 / +1, the observed assignment counts as one permutation, so p is never 0.
    return hits / u.size if exact else (hits + 1) / (u.size + 1)


def paired_sign_flip(
    a: Sequence[float],
    b: Sequence[float],
    seed: int = 0,
    n_resamples: int = 5000,
    conf: float = 0.95,
) -> tuple[float, tuple[float, float], float]:
    """Mean of b - a, its interval and p, both from one sign-flip permutation test.

    The p tests a mean difference of 0 (exact for small n, no normality assumed); the interval
    is every shift δ that test does not reject at 1 - conf (the test inverted, on the same sign
    assignments), so 0 lies outside it exactly when p < 1 - conf: the report can never print
    "CI excludes 0, not significant". Measured coverage on token-F1-like items beats the
    bootstrap it replaced (benchmarks/bench_decisions.py). Below 6 items no sign assignment can
    reach p < 0.05, the inverted interval is unbounded, and the bootstrap's is given instead.
    """
    x, y = _paired(a, b)
    if x.size == 0:
        raise ValueError("no paired items to compare")
    d = y - x
    n, m = d.size, float(d.mean())
    alpha = 1.0 - conf
    if n < 2 or float(np.ptp(d)) == 0.0:
        return m, (m, m), (1.0 if m == 0.0 else _flip_p(*_flip_sums(d, seed, n_resamples), n, m, 0.0))
    u, v, exact = _flip_sums(d, seed, n_resamples)
    p0 = _flip_p(u, v, exact, n, m, 0.0)
    floor = (np.sum(np.abs(v) == n) / u.size) if exact else 1.0 / (u.size + 1)
    if floor >= alpha:
        return m, bootstrap_ci(d, conf=conf, seed=seed, n_resamples=min(n_resamples, 2000)), p0

    def inside(delta: float) -> bool:
        return _flip_p(u, v, exact, n, m, delta) >= alpha

    spread = float(np.max(np.abs(d - m))) + 1e-12

    def bound(side: int) -> float:
        near = m  # inside; `far` is outside
        if (0.0 - m) * side > 0:  # 0 lies on this side: it settles its own question first
            if inside(0.0):
                near = 0.0
            else:
                far = 0.0
                return _bisect(near, far, inside)
        far = near + side * spread
        for _ in range(64):  # p falls to its floor (< alpha) as the shift grows: a few doublings
            if not inside(far):
                break
            far = near + 2 * (far - near)
        return _bisect(near, far, inside)

    return m, (bound(-1), bound(1)), p0


def _bisect(near: float, far: float, inside: Callable[[float], bool], steps: int = 50) -> float:
    """The edge between an inside point and an outside one, kept on the inside."""
    for _ in range(steps):
        mid = (near + far) / 2
        if inside(mid):
            near = mid
        else:
            far = mid
    return near


def newcombe_paired_ci(table: Sequence[Sequence[int]], conf: float = 0.95) -> tuple[float, float]:
    """Newcombe's square-and-add CI (method 10, 1998) for p1+ - p+1 of a paired 2x2 table.

    ``table = [[both, row only], [column only, neither]]``: p1+ is the row variable's rate,
    p+1 the column variable's. Wilson intervals of the two margins, combined with the
    (corrected) phi correlation of the pairs, as Newcombe wrote it and Fagerland, Lydersen
    & Laake (2017, ch. 8) implement it.
    """
    (a, b), (c, d) = ((int(v) for v in row) for row in table)
    n = a + b + c + d
    if n <= 0:
        return (-1.0, 1.0)
    r1, r2, c1, c2 = a + b, c + d, a + c, b + d
    p1, p2 = r1 / n, c1 / n
    l1, u1 = wilson_ci(r1, n, conf)
    l2, u2 = wilson_ci(c1, n, conf)
    psi = 0.0
    if min(r1, r2, c1, c2) > 0:
        det = a * d - b * c
        corrected = det - n / 2 if det > n / 2 else (0.0 if det >= 0 else det)
        psi = corrected / math.sqrt(r1 * r2 * c1 * c2)
    est = p1 - p2
    lo = est - math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * psi * (p1 - l1) * (u2 - p2)))
    hi = est + math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * psi * (p2 - l2) * (u1 - p1)))
    return (max(-1.0, lo), min(1.0, hi))


def _mcnemar_ci(x: np.ndarray, y: np.ndarray, conf: float) -> tuple[float, tuple[float, float]]:
    """mean(y) - mean(x) and Newcombe's unconditional interval for it."""
    both = int(np.sum((x == 1) & (y == 1)))
    n10 = int(np.sum((x == 1) & (y == 0)))
    n01 = int(np.sum((x == 0) & (y == 1)))
    neither = x.size - both - n10 - n01
    lo, hi = newcombe_paired_ci([[both, n10], [n01, neither]], conf)  # for mean(x) - mean(y)
    return (n01 - n10) / x.size, (-hi, -lo)


@dataclass(frozen=True)
class PairedComparison:
    """Pipeline b against pipeline a on the same items. diff = mean(b) - mean(a)."""

    a_name: str
    b_name: str
    n: int
    diff: float
    ci: tuple[float, float]
    p_value: float
    test: str  # "mcnemar-exact" | "sign-flip" (| "paired-bootstrap" for a corpus-level metric)
    significant: bool  # p (Holm-adjusted when part of a family) < alpha
    p_holm: float | None = None  # Holm-adjusted p across the reported family of comparisons

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = [float(self.ci[0]), float(self.ci[1])]
        return d


def paired_compare(
    a: Sequence[float],
    b: Sequence[float],
    names: tuple[str, str] = ("a", "b"),
    alpha: float = ALPHA,
    seed: int = 0,
) -> PairedComparison:
    """Compare two pipelines item by item; diff = mean(b) - mean(a).

    0/1 scores: exact McNemar p and Newcombe's unconditional interval (the two can
    disagree at the margin: the p-value is exact, the interval has its nominal coverage).
    Continuous scores: a sign-flip permutation p and the interval from inverting that test
    (they agree on 0 by construction). Raises ValueError on misaligned
    input or NaN scores.
    """
    x, y = _paired(a, b)
    if x.size == 0:
        raise ValueError("no paired items to compare")
    if is_binary(x) and is_binary(y):
        diff, ci = _mcnemar_ci(x, y, 1 - alpha)
        p, test = mcnemar_exact(x, y), "mcnemar-exact"
    else:
        diff, ci, p = paired_sign_flip(x, y, seed=seed, conf=1 - alpha)
        test = "sign-flip"
    return PairedComparison(
        a_name=names[0],
        b_name=names[1],
        n=int(x.size),
        diff=diff,
        ci=ci,
        p_value=float(p),
        test=test,
        significant=bool(p < alpha),
    )


def _sd_of_difference(baseline: float, paired_sd: float | None) -> float:
    if paired_sd is not None:
        if paired_sd < 0:
            raise ValueError("paired_sd must be >= 0")
        return float(paired_sd)
    # Clip so that a perfect (or zero) score does not claim every difference is detectable.
    p = min(max(baseline, 0.05), 0.95)
    return math.sqrt(2.0 * p * (1.0 - p))


def min_detectable_difference(
    n: int,
    baseline: float = 0.5,
    alpha: float = ALPHA,
    power: float = 0.8,
    paired_sd: float | None = None,
) -> float:
    """Smallest true difference a two-sided test at this n detects with the given power.

    MDD = (z_{1-alpha/2} + z_{power}) * sd / sqrt(n), where sd is the standard deviation of
    one item's score difference. Given ``paired_sd`` (measured from the per-item
    differences) it is used as is. Otherwise, for proportions near ``baseline`` we assume
    the two pipelines' errors are independent: sd = sqrt(2 p (1 - p)), with p clipped to
    [0.05, 0.95]. Real pipelines agree on most items, so this is conservative (it
    overstates the MDD); it is the right default before any paired data exists.
    """
    if n <= 0:
        return math.inf
    z = _z(1 - alpha) + float(_st.norm.ppf(power))
    return z * _sd_of_difference(baseline, paired_sd) / math.sqrt(n)


def items_needed(
    diff: float,
    baseline: float = 0.5,
    alpha: float = ALPHA,
    power: float = 0.8,
    paired_sd: float | None = None,
) -> int:
    """Eval items needed to detect ``diff`` (the inverse of min_detectable_difference)."""
    diff = abs(diff)
    if diff == 0.0:
        raise ValueError("cannot size an eval set to detect a zero difference")
    z = _z(1 - alpha) + float(_st.norm.ppf(power))
    return max(1, math.ceil((z * _sd_of_difference(baseline, paired_sd) / diff) ** 2))


def mdd_for(values: Sequence[float], alpha: float = ALPHA, power: float = 0.8) -> float | None:
    """MDD at the size of this per-example score list, before any paired data exists.

    0/1 scores: the proportion rule at the observed mean. Continuous scores: paired_sd =
    sqrt(2) * the per-item sd (the same independence assumption). None when empty.
    """
    x = _as_array(values)
    if x.size == 0:
        return None
    if is_binary(x):
        return min_detectable_difference(x.size, float(x.mean()), alpha, power)
    sd = float(np.std(x, ddof=1)) * math.sqrt(2.0) if x.size > 1 else 0.0
    return min_detectable_difference(x.size, alpha=alpha, power=power, paired_sd=sd)


def items_needed_for_pair(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA, power: float = 0.8) -> int:
    """Items needed to detect the observed mean(b) - mean(a), using the observed paired sd.

    Pipelines agree on most items, so the measured spread of per-item differences is a
    far better guide than the independence assumption. Raises ValueError on a zero gap.
    """
    x, y = _paired(a, b)
    d = y - x
    sd = float(np.std(d, ddof=1)) if d.size > 1 else 0.0
    if sd == 0.0:  # every item moved by the same amount: fall back to the proportion rule
        return items_needed(float(d.mean()), baseline=float(x.mean()), alpha=alpha, power=power)
    return items_needed(float(d.mean()), alpha=alpha, power=power, paired_sd=sd)


# ------------------------------------------------------------------------------------------
# corpus-level metrics, multiplicity, non-inferiority, confidence in a verdict

SubsetScore = Callable[[np.ndarray], float]  # the metric on the items at these indices


def _resample_indices(n: int, seed: int, n_resamples: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_metric(fn: SubsetScore, n: int, seed: int = 0, n_resamples: int = 2000) -> np.ndarray:
    """The metric recomputed on ``n_resamples`` resamples of the n items (with replacement)."""
    if n <= 0:
        raise ValueError("no items to resample")
    idx = _resample_indices(n, seed, n_resamples)
    return check_finite(_evaluate(fn, idx), "bootstrap replicates of the metric")


def _evaluate(fn: SubsetScore, rows: np.ndarray) -> np.ndarray:
    """fn on each row of item indices; through ``fn.batch`` (rows at once) when it has one."""
    many = getattr(fn, "batch", None)
    if many is None:
        return np.array([fn(row) for row in rows], dtype=float)
    return np.concatenate([np.asarray(many(rows[i:i + 500]), dtype=float) for i in range(0, len(rows), 500)])


def expanded_alpha(alpha: float, n: int) -> float:
    """Hesterberg's small-sample expansion of a bootstrap interval's level (2015, sec. 4.2).

    Bootstrap intervals are too narrow by about sqrt((n-1)/n) and miss the t correction a
    normal-theory interval would get; using 2 * Phi(-sqrt(n/(n-1)) * t_{alpha/2, n-1}) in
    place of alpha fixes both. At n = 60 and alpha = 0.05 it is 0.0436; it tends to alpha.
    """
    if n < 3:
        return alpha
    return float(2.0 * _st.norm.cdf(-math.sqrt(n / (n - 1.0)) * _st.t.ppf(1.0 - alpha / 2.0, n - 1)))


def percentile_ci(replicates: np.ndarray, estimate: float, conf: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, widened to contain the estimate."""
    a = (1.0 - conf) / 2.0
    lo, hi = np.quantile(replicates, [a, 1.0 - a])
    return (min(float(lo), estimate), max(float(hi), estimate))


def metric_ci(
    fn: SubsetScore, n: int, conf: float = 0.95, seed: int = 0, n_resamples: int = 2000
) -> tuple[tuple[float, float], np.ndarray]:
    """Expanded BCa bootstrap interval of a corpus-level metric over items, and its replicates.

    Percentile intervals of macro-F1 covered only 0.83-0.93 at n = 60 in
    benchmarks/bench_decisions.py: a rare label's F1 is skewed and biased on a few items.
    BCa (Efron 1987) corrects both, with the bias from the replicates and the acceleration
    from the jackknife (n leave-one-out evaluations of the metric). BCa alone still covered
    only ~0.925 at n = 40 for a weak classifier (3,000 simulated sets), so its level is
    widened by Hesterberg's small-sample expansion (``expanded_alpha``): >= 0.935 at
    n = 40-200. A percentile interval with the same expansion stayed at ~0.91.
    """
    reps = bootstrap_metric(fn, n, seed=seed, n_resamples=n_resamples)
    everything = np.arange(n)
    est = float(fn(everything))
    if float(np.ptp(reps)) == 0.0 or n < 3:
        return (est, est) if float(np.ptp(reps)) == 0.0 else percentile_ci(reps, est, conf), reps
    b = reps.size
    below = (np.sum(reps < est) + 0.5 * np.sum(reps == est)) / b
    z0 = float(_st.norm.ppf(min(max(below, 1.0 / (b + 1)), b / (b + 1.0))))
    jack = _evaluate(fn, np.array([np.delete(everything, i) for i in range(n)]))
    dev = jack.mean() - jack
    denom = 6.0 * float(np.sum(dev**2)) ** 1.5
    acc = float(np.sum(dev**3)) / denom if denom > 0 else 0.0
    alpha = expanded_alpha(1.0 - conf, n)
    levels = []
    for q in (alpha / 2.0, 1.0 - alpha / 2.0):
        z = z0 + float(_st.norm.ppf(q))
        levels.append(float(_st.norm.cdf(z0 + z / (1.0 - acc * z))))
    lo, hi = np.quantile(reps, levels)
    return (min(float(lo), est), max(float(hi), est)), reps


def paired_metric_compare(
    fa: SubsetScore,
    fb: SubsetScore,
    n: int,
    names: tuple[str, str] = ("a", "b"),
    alpha: float = ALPHA,
    seed: int = 0,
    n_resamples: int = 2000,
) -> PairedComparison:
    """Paired bootstrap of a corpus-level metric: diff = fb - fa on the same resampled items.

    CI: expanded BCa (metric_ci) of the difference. p: the bootstrap test of Efron & Tibshirani (1993,
    16.4) -- the share of resampled differences, centred on the observed one, at least as far
    from 0 as it.
    """
    everything = np.arange(n)
    diff = float(fb(everything) - fa(everything))
    def diff_on(idx):
        return fb(idx) - fa(idx)

    if getattr(fa, "batch", None) is not None and getattr(fb, "batch", None) is not None:
        diff_on.batch = lambda rows: np.asarray(fb.batch(rows)) - np.asarray(fa.batch(rows))
    ci, d = metric_ci(diff_on, n, 1.0 - alpha, seed, n_resamples)
    if diff == 0.0 and float(np.ptp(d)) == 0.0:
        p = 1.0
    else:
        p = (int(np.sum(np.abs(d - diff) >= abs(diff) - 1e-12)) + 1) / (n_resamples + 1)
    return PairedComparison(names[0], names[1], n, diff, ci, float(min(1.0, p)), "paired-bootstrap", bool(p < alpha))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979), in the input order."""
    p = _as_array(p_values)
    m = p.size
    order = np.argsort(p, kind="stable")
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p[i])))
        adj[i] = running
    return [float(v) for v in adj]


def noninferiority_bound(
    a: Sequence[float] | None = None,
    b: Sequence[float] | None = None,
    *,
    alpha: float = ALPHA,
    fa: SubsetScore | None = None,
    fb: SubsetScore | None = None,
    n: int | None = None,
    seed: int = 0,
) -> float:
    """One-sided (1 - alpha) lower bound of b - a: b is non-inferior to a when it is > -margin.

    It is the lower end of the two-sided (1 - 2 alpha) interval the same method gives
    (Newcombe for 0/1 scores, the sign-flip test inverted for other per-item scores, the
    paired bootstrap of a corpus-level metric).
    """
    if fa is not None and fb is not None and n is not None:
        return float(paired_metric_compare(fa, fb, n, alpha=2 * alpha, seed=seed).ci[0])
    return float(paired_compare(a, b, alpha=2 * alpha, seed=seed).ci[0])


def prob_at_least(
    target: float,
    values: Sequence[float] | None = None,
    *,
    replicates: np.ndarray | None = None,
    higher_is_better: bool = True,
) -> float:
    """P(true score is at or beyond the target): Jeffreys posterior for 0/1 scores, else the
    share of bootstrap replicates (of the mean, or of ``replicates`` given) on that side."""
    if replicates is None:
        x = check_finite(values)
        if x.size == 0:
            raise ValueError("no scores")
        if is_binary(x):
            s, n = float(x.sum()), x.size
            post = _st.beta(s + 0.5, n - s + 0.5)
            return float(post.sf(target) if higher_is_better else post.cdf(target))
        replicates = bootstrap_metric(lambda idx: float(x[idx].mean()), x.size)
    r = np.asarray(replicates, dtype=float)
    return float(np.mean(r >= target) if higher_is_better else np.mean(r <= target))


def items_to_clear(
    target: float,
    score: float,
    n: int,
    *,
    binary: bool,
    se: float | None = None,
    higher_is_better: bool = True,
    conf: float = 0.95,
    max_items: int = 1_000_000,
) -> int | None:
    """Eval items in all at which the pessimistic 95 % bound would clear the target, if the
    score stayed where it is observed; None when the point score itself does not clear it.

    0/1 scores: the smallest n whose Agresti-Coull bound at the observed rate clears the target.
    Otherwise: the standard error shrinks as 1/sqrt(n), so n' = n (z se / gap)^2.
    """
    gap = (score - target) if higher_is_better else (target - score)
    if gap <= 0:
        return None
    z = _z(conf)
    if binary:
        p = min(max(score, 0.0), 1.0)

        def clears(m: int) -> bool:
            m_t = m + z * z
            centre = (p * m + z * z / 2) / m_t
            half = z * math.sqrt(centre * (1 - centre) / m_t)
            return (centre - half >= target) if higher_is_better else (centre + half <= target)

        if not clears(max_items):
            return None
        lo, hi = 1, max_items
        while lo < hi:  # the bound moves monotonically towards p as m grows
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if clears(mid) else (mid + 1, hi)
        return lo
    if se is None or se <= 0:
        return n
    return min(max_items, max(n, math.ceil(n * (z * se / gap) ** 2)))
