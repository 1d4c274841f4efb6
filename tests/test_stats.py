"""stats.py against published and hand-computed values."""

import json
import math

import numpy as np
import pytest
from scipy import stats as st

from advisor.stats import (
    _RNG_KW,
    PairedComparison,
    agresti_coull_ci,
    bootstrap_ci,
    bootstrap_metric,
    expanded_alpha,
    holm,
    is_binary,
    items_to_clear,
    newcombe_paired_ci,
    paired_metric_compare,
    percentile_ci,
    prob_at_least,
    items_needed,
    items_needed_for_pair,
    mcnemar_exact,
    metric_ci,
    mdd_for,
    min_detectable_difference,
    paired_compare,
    paired_sign_flip,
    score_ci,
    wilson_ci,
)

Z = 1.959963984540054  # z_{0.975}
Z_POWER = 0.8416212335729143  # z_{0.80}


# --- Wilson ---------------------------------------------------------------------------------


def test_wilson_8_of_10():
    lo, hi = wilson_ci(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)


@pytest.mark.parametrize(
    "s,n,lo,hi",
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (Wilson score).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_matches_newcombe_table(s, n, lo, hi):
    got = wilson_ci(s, n)
    assert got[0] == pytest.approx(lo, abs=1e-4)
    assert got[1] == pytest.approx(hi, abs=1e-4)


def test_wilson_extremes_are_exact_and_symmetric():
    # 0 successes: upper bound z^2 / (n + z^2).
    assert wilson_ci(0, 10) == (0.0, pytest.approx(Z**2 / (10 + Z**2)))
    lo, hi = wilson_ci(10, 10)
    assert hi == 1.0
    assert lo == pytest.approx(1 - Z**2 / (10 + Z**2))
    a, b = wilson_ci(3, 17)
    c, d = wilson_ci(14, 17)
    assert a == pytest.approx(1 - d) and b == pytest.approx(1 - c)


def test_wilson_no_data_and_bad_input():
    assert wilson_ci(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_ci(5, 4)
    with pytest.raises(ValueError):
        wilson_ci(-1, 4)
    with pytest.raises(ValueError):
        wilson_ci(1, 4, conf=1.0)


def test_wilson_wider_at_higher_confidence():
    lo95, hi95 = wilson_ci(40, 100, 0.95)
    lo99, hi99 = wilson_ci(40, 100, 0.99)
    assert lo99 < lo95 < 0.4 < hi95 < hi99


# --- bootstrap ------------------------------------------------------------------------------


def test_bootstrap_degenerate_inputs_do_not_crash():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    assert bootstrap_ci([0.3] * 50) == (pytest.approx(0.3), pytest.approx(0.3))
    lo, hi = bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)


def test_bootstrap_matches_normal_theory_on_a_large_sample():
    x = np.random.default_rng(42).normal(0.5, 0.2, 400)
    lo, hi = bootstrap_ci(x)
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert lo == pytest.approx(x.mean() - Z * se, abs=0.004)
    assert hi == pytest.approx(x.mean() + Z * se, abs=0.004)


def test_bootstrap_is_reproducible_and_contains_the_mean():
    x = [0.1, 0.9, 0.4, 0.55, 1.0, 0.0, 0.3]
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    lo, hi = bootstrap_ci(x)
    assert 0.0 <= lo <= np.mean(x) <= hi <= 1.0


def test_bootstrap_small_sample_uses_percentile_bounds():
    # n < 20: percentile interval, whose bounds are attainable resample means of 1..5.
    lo, hi = bootstrap_ci([1, 2, 3, 4, 5])
    assert lo == pytest.approx(1.8) and hi == pytest.approx(4.2)


# --- is_binary / score_ci -------------------------------------------------------------------


@pytest.mark.parametrize(
    "values,expected",
    [([0, 1, 1], True), ([1.0, 0.0], True), ([True, False], True), ([0, 0.5], False), ([], False), ([2], False)],
)
def test_is_binary(values, expected):
    assert is_binary(values) is expected


def test_agresti_coull_matches_statsmodels():
    from statsmodels.stats.proportion import proportion_confint

    for s, n in [(0, 40), (1, 40), (32, 40), (40, 40), (54, 60), (58, 60), (50, 60), (170, 200), (8, 10)]:
        assert agresti_coull_ci(s, n) == pytest.approx(proportion_confint(s, n, 0.05, method="agresti_coull"), abs=1e-12)
    assert agresti_coull_ci(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        agresti_coull_ci(5, 4)


@pytest.mark.parametrize("n", [40, 60, 200])
def test_the_printed_score_interval_covers_93_percent_where_wilson_does_not(n):
    """Exact binomial coverage over true rates 0.50-0.98: Agresti-Coull >= 0.93 at every one; Wilson's
    dips below (0.928 at n = 40, p = 0.8) -- why the report prints Agresti-Coull."""
    k = np.arange(n + 1)
    grid = np.linspace(0.5, 0.98, 97)

    def worst(ci):
        bounds = np.array([ci(int(x), n) for x in k])
        return min(float(st.binom.pmf(k, n, p)[(bounds[:, 0] <= p) & (p <= bounds[:, 1])].sum()) for p in grid)

    assert worst(agresti_coull_ci) >= 0.93
    if n == 40:
        assert worst(wilson_ci) < 0.93


def test_score_ci_picks_agresti_coull_for_binary_and_bootstrap_otherwise():
    assert score_ci([1] * 8 + [0] * 2) == agresti_coull_ci(8, 10)
    cont = [0.2, 0.5, 0.9, 1.0, 0.0, 0.6]
    assert score_ci(cont) == bootstrap_ci(cont)


# --- McNemar --------------------------------------------------------------------------------


def _discordant(b: int, c: int, both: int = 0, neither: int = 0):
    """a right & b wrong `b` times, a wrong & b right `c` times, plus concordant items."""
    a = [1] * b + [0] * c + [1] * both + [0] * neither
    bb = [0] * b + [1] * c + [1] * both + [0] * neither
    return a, bb


def test_mcnemar_1_vs_9():
    a, b = _discordant(1, 9)
    assert mcnemar_exact(a, b) == pytest.approx(22 / 1024)  # 2 * (1 + 10) / 2**10 = 0.0215


def test_mcnemar_equal_discordant_counts_and_none():
    assert mcnemar_exact(*_discordant(5, 5)) == 1.0
    assert mcnemar_exact(*_discordant(0, 0, both=7, neither=3)) == 1.0
    assert mcnemar_exact([], []) == 1.0


def test_mcnemar_0_vs_6_and_concordant_items_do_not_matter():
    assert mcnemar_exact(*_discordant(0, 6)) == pytest.approx(2 / 64)
    assert mcnemar_exact(*_discordant(0, 6, both=50, neither=50)) == pytest.approx(2 / 64)


def test_mcnemar_textbook_case_agrees_with_binomial_test():
    # Agresti (2002) presidential approval: 150 vs 86 discordant pairs.
    a, b = _discordant(150, 86, both=794, neither=570)
    p = mcnemar_exact(a, b)
    assert p == pytest.approx(st.binomtest(86, 236, 0.5).pvalue, rel=1e-9)
    assert p == pytest.approx(3.716e-5, rel=1e-3)
    assert mcnemar_exact(b, a) == pytest.approx(p)


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError):
        mcnemar_exact([1, 0], [1])
    with pytest.raises(ValueError):
        mcnemar_exact([0.5, 1], [1, 0])


# --- paired sign-flip permutation: p and its inverted interval ---------------------------------------------------------


def test_paired_sign_flip_exact_small_n():
    # d = [1,1,1,1]: only the all-plus and all-minus flips reach |mean| = 1 -> p = 2/16.
    diff, ci, p = paired_sign_flip([0, 0, 0, 0], [1, 1, 1, 1])
    assert diff == 1.0 and ci == (1.0, 1.0) and p == pytest.approx(2 / 16)
    # d = [0.1, 0.4, 0.1]: only the two uniform sign assignments reach |sum| = 0.6 -> 2/8.
    diff, ci, p = paired_sign_flip([0.1, 0.5, 0.3], [0.2, 0.9, 0.4])
    assert diff == pytest.approx(0.2) and p == pytest.approx(0.25)
    assert ci[0] <= 0.2 <= ci[1]


def test_paired_sign_flip_zero_difference_gives_p_one():
    diff, ci, p = paired_sign_flip([0.3, 0.7] * 30, [0.3, 0.7] * 30)
    assert diff == 0.0 and ci == (0.0, 0.0) and p == 1.0
    # symmetric differences with mean exactly 0
    diff, _, p = paired_sign_flip([0.0] * 40, [1.0, -1.0] * 20)
    assert diff == 0.0 and p == 1.0


def test_paired_sign_flip_monte_carlo_matches_scipy_permutation_test():
    rng = np.random.default_rng(7)
    a = rng.random(60)
    b = a + rng.normal(0.08, 0.3, 60)
    diff, ci, p = paired_sign_flip(a, b, n_resamples=20000)
    ref = st.permutation_test(
        (b - a,), lambda d, axis: np.mean(d, axis=axis), permutation_type="samples",
        n_resamples=20000, alternative="two-sided", **{_RNG_KW: np.random.default_rng(1)}
    ).pvalue
    assert diff == pytest.approx(float(np.mean(b - a)))
    assert p == pytest.approx(ref, abs=0.01)
    assert ci[0] < diff < ci[1]


def test_paired_sign_flip_clear_shift_has_small_but_nonzero_p():
    a = np.zeros(200)
    b = np.full(200, 0.1)
    b[::2] = 0.2
    _, (lo, hi), p = paired_sign_flip(a, b, n_resamples=999)
    assert p == pytest.approx(1 / 1000)  # (0 + 1) / (999 + 1)
    assert 0.1 <= lo < hi <= 0.2


def test_the_sign_flip_interval_is_the_test_inverted_checked_with_scipy():
    """Each bound is where scipy's own sign-flip permutation test of a shifted mean crosses 0.05:
    just inside, p >= 0.05; just outside, p < 0.05 (exact enumeration at n = 12, so both sides
    compute the same distribution)."""
    rng = np.random.default_rng(11)
    a = rng.random(12)
    b = np.clip(a + rng.normal(0.15, 0.25, 12), 0, 1)
    diff, (lo, hi), p = paired_sign_flip(a, b)
    d = b - a

    def scipy_p(delta):
        return st.permutation_test((d - delta,), lambda x, axis: np.mean(x, axis=axis), permutation_type="samples",
                                   n_resamples=np.inf, alternative="two-sided").pvalue

    eps = 1e-6
    assert lo < diff < hi
    assert scipy_p(lo + eps) >= 0.05 > scipy_p(lo - eps)
    assert scipy_p(hi - eps) >= 0.05 > scipy_p(hi + eps)
    assert p == pytest.approx(scipy_p(0.0))


def test_the_sign_flip_interval_excludes_0_exactly_when_p_is_below_alpha():
    """A bootstrap interval beside a permutation p disagreed on the bundled example (CI
    +0.006..+0.300 with p = 0.068); one test inverted cannot."""
    rng = np.random.default_rng(5)
    disagreements, significant = 0, 0
    for r in range(300):
        n = int(rng.integers(8, 90))
        a = rng.random(n) * (rng.random(n) < 0.6)
        b = np.clip(a + rng.normal(rng.uniform(-0.1, 0.2), 0.3, n) * (rng.random(n) < 0.5), 0, 1)
        _, (lo, hi), p = paired_sign_flip(a, b, seed=r, n_resamples=2000)
        significant += p < 0.05
        disagreements += (p < 0.05) != (lo > 0 or hi < 0)
    assert disagreements == 0 and 30 < significant < 270  # both outcomes occur


def test_paired_sign_flip_rejects_misaligned_or_empty():
    with pytest.raises(ValueError):
        paired_sign_flip([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        paired_sign_flip([], [])


# --- paired_compare -------------------------------------------------------------------------


def test_paired_compare_binary_uses_mcnemar():
    a, b = _discordant(1, 9, both=10)
    c = paired_compare(a, b, names=("prompting", "rag"))
    assert isinstance(c, PairedComparison)
    assert (c.a_name, c.b_name, c.n, c.test) == ("prompting", "rag", 20, "mcnemar-exact")
    assert c.diff == pytest.approx(np.mean(b) - np.mean(a)) == pytest.approx(0.4)  # (9 - 1) / 20
    assert c.p_value == pytest.approx(22 / 1024) and c.significant
    # the interval is Newcombe's for the table [[both, a only], [b only, neither]], sign flipped
    lo, hi = newcombe_paired_ci([[10, 1], [9, 0]])
    assert c.ci == (pytest.approx(-hi), pytest.approx(-lo))


def test_newcombe_matches_the_published_value():
    # Cavo et al. 2012 complete response before/after consolidation, [[59, 6], [16, 80]]:
    # Newcombe square-and-add estimate -0.0621, 95% CI -0.1186 to -0.0046 (Fagerland, Lydersen &
    # Laake 2017, "Statistical Analysis of Contingency Tables", ch. 8; the book's R package
    # contingencytables pins the same numbers in tests/testthat/test-ch8.R).
    lo, hi = newcombe_paired_ci([[59, 6], [16, 80]])
    assert (round(lo, 4), round(hi, 4)) == (-0.1186, -0.0046)
    # the same table as two pipelines' items: b - a has the mirrored interval
    a = [1] * 59 + [1] * 6 + [0] * 16 + [0] * 80
    b = [1] * 59 + [0] * 6 + [1] * 16 + [0] * 80
    c = paired_compare(a, b)
    assert c.diff == pytest.approx(10 / 161)
    assert (round(c.ci[0], 4), round(c.ci[1], 4)) == (0.0046, 0.1186)


def test_paired_interval_is_not_conditional_on_the_discordant_count():
    # issue 12: identical pipelines gave ci == (0, 0), a certainty 60 items cannot give
    c = paired_compare([1] * 60, [1] * 60)
    assert c.ci[0] < 0 < c.ci[1] and c.ci[1] - c.ci[0] > 0.05
    # 6 items fixed, none broken: the old upper bound equalled the point estimate 0.1
    c = paired_compare([0] * 6 + [1] * 54, [1] * 60)
    assert c.diff == pytest.approx(0.1) and c.ci[0] < 0.1 < c.ci[1]


def _paired_coverage(n: int, p_a: float, p_b: float, rho: float) -> float:
    """Exact coverage of the paired interval: enumerate every (both, a only, b only, neither)
    table of n items under a multinomial with the given margins and correlation."""
    cov = rho * math.sqrt(p_a * (1 - p_a) * p_b * (1 - p_b))
    p11 = p_a * p_b + cov
    probs = np.array([p11, p_a - p11, p_b - p11, 1 - p_a - p_b + p11])
    assert np.all(probs >= 0)
    true = p_b - p_a
    total = 0.0
    for n11 in range(n + 1):
        for n10 in range(n - n11 + 1):
            for n01 in range(n - n11 - n10 + 1):
                n00 = n - n11 - n10 - n01
                pr = st.multinomial.pmf([n11, n10, n01, n00], n, probs)
                if pr < 1e-12:
                    continue
                lo, hi = newcombe_paired_ci([[n11, n10], [n01, n00]])
                if -hi <= true <= -lo:
                    total += pr
    return total


@pytest.mark.parametrize("p_a, p_b, rho", [(0.8, 0.85, 0.6), (0.9, 0.9, 0.8), (0.7, 0.8, 0.3)])
def test_paired_interval_covers_at_n_40_by_exact_enumeration(p_a, p_b, rho):
    # the conditional interval's exact coverage at n = 60 was 0.54-0.76 (issue 12)
    assert _paired_coverage(40, p_a, p_b, rho) >= 0.93


def test_nan_scores_are_an_error_not_a_significant_tie():
    a = [1.0] * 30 + [float("nan")] * 30
    with pytest.raises(ValueError, match="30 of 60 per-item scores are NaN"):
        paired_compare(a, [1.0] * 60)
    with pytest.raises(ValueError, match="NaN"):
        score_ci([0.5, float("nan")])
    with pytest.raises(ValueError, match="NaN"):
        paired_sign_flip([0.2, 0.4], [0.1, float("inf")])


def test_holm_matches_statsmodels():
    from statsmodels.stats.multitest import multipletests

    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.0301]
    expected = multipletests(p, method="holm")[1]
    assert holm(p) == pytest.approx(list(expected))
    assert holm([]) == [] and holm([0.3]) == [0.3]


def test_probability_at_the_target_is_the_jeffreys_posterior():
    # 50 of 60 right, target 0.80: Beta(50.5, 10.5) upper tail (Brown, Cai & DasGupta 2001)
    x = [1.0] * 50 + [0.0] * 10
    assert prob_at_least(0.8, x) == pytest.approx(st.beta(50.5, 10.5).sf(0.8))
    assert prob_at_least(0.2, [0.0] * 55 + [1.0] * 5, higher_is_better=False) == pytest.approx(
        st.beta(5.5, 55.5).cdf(0.2))
    # continuous scores: the share of bootstrap means at or above the target
    rng = np.random.default_rng(3)
    f1 = rng.uniform(0.4, 1.0, 200)
    p = prob_at_least(float(f1.mean()), f1)
    assert 0.4 < p < 0.6


def test_items_to_clear_is_where_the_printed_bound_reaches_the_target():
    from statsmodels.stats.proportion import proportion_confint

    n_all = items_to_clear(0.8, 50 / 60, 60, binary=True)
    # at the observed rate 0.8333, statsmodels' Agresti-Coull lower bound crosses 0.80 between n-1 and n
    lo = proportion_confint(n_all * 50 / 60, n_all, alpha=0.05, method="agresti_coull")[0]
    lo_before = proportion_confint((n_all - 1) * 50 / 60, n_all - 1, alpha=0.05, method="agresti_coull")[0]
    assert lo >= 0.8 > lo_before
    assert 500 < n_all < 700
    assert items_to_clear(0.8, 0.79, 60, binary=True) is None  # point score short: nothing confirms it
    # continuous: se shrinks as 1/sqrt(n); gap 0.05, se 0.04 at n=100 -> 100 * (1.96*0.04/0.05)^2 = 246
    assert items_to_clear(0.5, 0.55, 100, binary=False, se=0.04) == math.ceil(100 * (Z * 0.04 / 0.05) ** 2)


def test_macro_f1_subset_scorer_matches_scikit_learn():
    from sklearn.metrics import f1_score

    from advisor.metrics import subset_scorer

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c", "d"]
    gold = list(rng.choice(labels, 80))
    pred = [None if rng.random() < 0.1 else str(rng.choice(labels)) for _ in range(80)]
    fn = subset_scorer("macro_f1", pred, gold, labels)
    for idx in [np.arange(80), rng.integers(0, 80, 80), rng.integers(0, 80, 80)]:
        ref = f1_score([gold[i] for i in idx], [pred[i] or "__none__" for i in idx], labels=labels,
                       average="macro", zero_division=0)
        assert fn(idx) == pytest.approx(ref)
        assert fn.batch(idx[None, :])[0] == pytest.approx(ref)  # the vectorised path a bootstrap uses
    rows = rng.integers(0, 80, (7, 80))
    assert fn.batch(rows) == pytest.approx([fn(r) for r in rows])


def test_hesterberg_expanded_alpha_from_t_and_normal_tables():
    # Hesterberg (2015, sec. 4.2): alpha' = 2 Phi(-sqrt(n/(n-1)) t_{alpha/2, n-1}).
    # n = 60: t_{0.975, 59} = 2.0010 (t table), sqrt(60/59) = 1.00844 -> 2.0179;
    # Phi(-2.0179) = 0.02180 (normal table) -> alpha' = 0.0436.
    assert expanded_alpha(0.05, 60) == pytest.approx(0.0436, abs=2e-4)
    # n = 40: t_{0.975, 39} = 2.0227, sqrt(40/39) = 1.01274 -> 2.0485; Phi(-2.0485) = 0.02026
    assert expanded_alpha(0.05, 40) == pytest.approx(0.0405, abs=2e-4)
    # n = 10: t_{0.975, 9} = 2.2622, sqrt(10/9) = 1.05409 -> 2.3846; Phi(-2.3846) = 0.00855
    assert expanded_alpha(0.05, 10) == pytest.approx(0.0171, abs=2e-4)
    assert expanded_alpha(0.05, 100_000) == pytest.approx(0.05, abs=1e-4)  # vanishes as n grows


def test_macro_f1_interval_is_scipys_bca_at_the_expanded_level():
    """Independent reference: scipy.stats.bootstrap (BCa, items resampled in pairs) of a
    macro-F1 written here from its definition, at confidence 1 - alpha'(n)."""
    from advisor.metrics import subset_scorer

    rng = np.random.default_rng(3)
    n, k = 60, 4
    gold = rng.choice(k, n, p=[0.4, 0.3, 0.2, 0.1])
    pred = np.where(rng.random(n) < 0.6, gold, (gold + rng.integers(1, k, n)) % k)

    def macro_f1(p, g):
        f1 = []
        for c in range(k):
            tp, fp, fn_ = np.sum((p == c) & (g == c)), np.sum((p == c) & (g != c)), np.sum((p != c) & (g == c))
            f1.append(2 * tp / (2 * tp + fp + fn_) if tp + fp + fn_ else 0.0)
        return float(np.mean(f1))

    ref = st.bootstrap((pred, gold), macro_f1, paired=True, vectorized=False, method="BCa", n_resamples=6000,
                       confidence_level=1 - 0.0436, **{_RNG_KW: np.random.default_rng(0)}).confidence_interval
    fn = subset_scorer("macro_f1", [str(v) for v in pred], [str(v) for v in gold], [str(c) for c in range(k)])
    (lo, hi), reps = metric_ci(fn, n, n_resamples=6000)
    assert reps.size == 6000
    # scipy draws the same resamples from the same seed, so the ends agree to ~1e-5; the
    # expansion moves them by ~0.003, which this tolerance would catch
    assert lo == pytest.approx(ref.low, abs=0.0015) and hi == pytest.approx(ref.high, abs=0.0015)
    # and wider than the unexpanded 95 % BCa interval
    plain = st.bootstrap((pred, gold), macro_f1, paired=True, vectorized=False, method="BCa", n_resamples=6000,
                         confidence_level=0.95, **{_RNG_KW: np.random.default_rng(0)}).confidence_interval
    assert hi - lo > plain.high - plain.low


def test_corpus_metric_ci_and_paired_comparison():
    from advisor.metrics import subset_scorer

    labels = ["maj", "min"]
    gold = ["maj"] * 54 + ["min"] * 6  # 90/10
    always_major = subset_scorer("macro_f1", ["maj"] * 60, gold, labels)
    perfect = subset_scorer("macro_f1", gold, gold, labels)
    reps = bootstrap_metric(always_major, 60)
    lo, hi = percentile_ci(reps, always_major(np.arange(60)))
    assert always_major(np.arange(60)) == pytest.approx(54 / 57 / 2)  # F1 0.947 and 0 -> 0.474
    assert hi < 0.6  # nowhere near the accuracy interval (0.80-0.95) the report printed
    c = paired_metric_compare(always_major, perfect, 60, names=("maj", "perfect"))
    assert c.diff == pytest.approx(1 - 54 / 57 / 2) and c.significant and c.ci[0] > 0.3
    same = paired_metric_compare(always_major, always_major, 60)
    assert same.diff == 0 and same.p_value == 1.0 and not same.significant


def test_paired_compare_direction_and_non_significance():
    a, b = _discordant(3, 2, both=20)
    c = paired_compare(a, b)
    assert c.diff == pytest.approx(-1 / 25)  # b is worse: diff = mean(b) - mean(a) < 0
    assert c.p_value == 1.0 and not c.significant


def test_paired_compare_continuous_uses_paired_sign_flip():
    a = [0.1, 0.5, 0.3]
    b = [0.2, 0.9, 0.4]
    c = paired_compare(a, b, names=("x", "y"))
    assert c.test == "sign-flip"
    assert c.diff == pytest.approx(0.2) and c.p_value == pytest.approx(0.25) and not c.significant


def test_paired_compare_to_dict_is_json_ready():
    d = paired_compare(*_discordant(0, 6), names=("a", "b")).to_dict()
    assert set(d) == {"a_name", "b_name", "n", "diff", "ci", "p_value", "test", "significant", "p_holm"}
    assert isinstance(d["ci"], list) and len(d["ci"]) == 2
    assert json.loads(json.dumps(d))["p_value"] == pytest.approx(2 / 64)


def test_paired_compare_length_mismatch():
    with pytest.raises(ValueError, match="aligned"):
        paired_compare([1, 0, 1], [1, 0])


# --- power ----------------------------------------------------------------------------------


def test_mdd_for_proportions_hand_value():
    # (1.96 + 0.8416) * sqrt(2 * 0.5 * 0.5 / 100) = 0.1981
    assert min_detectable_difference(100) == pytest.approx((Z + Z_POWER) * math.sqrt(0.5 / 100))
    assert min_detectable_difference(100) == pytest.approx(0.1981, abs=1e-4)


def test_mdd_with_paired_sd_and_edges():
    assert min_detectable_difference(400, paired_sd=0.3) == pytest.approx((Z + Z_POWER) * 0.3 / 20)
    assert min_detectable_difference(0) == math.inf
    # A perfect baseline is clipped to 0.95 rather than claiming a zero MDD.
    assert min_detectable_difference(100, baseline=1.0) == pytest.approx(min_detectable_difference(100, baseline=0.95))
    assert min_detectable_difference(100, baseline=0.9) < min_detectable_difference(100, baseline=0.5)
    with pytest.raises(ValueError):
        min_detectable_difference(100, paired_sd=-1)


def test_items_needed_hand_value_and_inverse():
    # ((1.96 + 0.8416) * sqrt(0.5) / 0.1)^2 = 392.4 -> 393
    assert items_needed(0.1) == 393
    assert items_needed(-0.1) == 393
    for d in (0.02, 0.05, 0.1, 0.2):
        n = items_needed(d, baseline=0.8)
        assert min_detectable_difference(n, baseline=0.8) <= d < min_detectable_difference(n - 1, baseline=0.8)
    assert items_needed(0.05, paired_sd=0.2) == math.ceil(((Z + Z_POWER) * 0.2 / 0.05) ** 2)
    with pytest.raises(ValueError):
        items_needed(0.0)


def test_mdd_for_a_score_list():
    # 0/1 scores at 0.76: 2.8016 * sqrt(2 * 0.76 * 0.24 / 100) = 0.1692
    assert mdd_for([1] * 76 + [0] * 24) == pytest.approx((Z + Z_POWER) * math.sqrt(2 * 0.76 * 0.24 / 100))
    cont = [0.2, 0.4, 0.6] * 10
    sd = float(np.std(cont, ddof=1)) * math.sqrt(2)
    assert mdd_for(cont) == pytest.approx((Z + Z_POWER) * sd / math.sqrt(30))
    assert mdd_for([]) is None


def test_items_needed_for_pair_uses_the_observed_paired_spread():
    # 4 of 100 items flip to right: d has mean 0.04, sd 0.19695 -> (2.8016 * 0.19695 / 0.04)^2 = 190.3
    a, b = [1] * 76 + [0] * 24, [1] * 80 + [0] * 20
    assert items_needed_for_pair(a, b) == 191
    # every item moves by +0.2: no spread, so the proportion rule at 0.1 is used -> 35.3
    assert items_needed_for_pair([0.1] * 5, [0.3] * 5) == 36
    with pytest.raises(ValueError):
        items_needed_for_pair([1, 0], [0, 1])
