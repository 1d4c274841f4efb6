"""Regression gating: did this bench run get worse than the runs before it?

Each pipeline of a task is compared with a *baseline* made of the previous K runs of that task,
not just the last one: per eval item, the baseline score is the mean of that item's scores over
the K runs (items aligned by id), which averages away run-to-run noise. The comparison is the
paired test of `advisor.stats.paired_compare` (exact McNemar when both sides are 0/1, i.e. K = 1
on accuracy; paired bootstrap CI and a sign-flip permutation p otherwise). Because a suite makes
many comparisons a night, p-values are Holm-adjusted across the run's comparisons before they
gate. A run regresses (exit 1) when a pipeline's score drops significantly, a pipeline that
worked now fails, or a task's recommendation differs from its previous run's.

A corpus-level metric (macro-F1) is not a mean of per-item scores: it is recomputed from each
run's stored per-item labels and compared by a paired bootstrap of the metric itself
(`stats.paired_metric_compare`), the baseline being its mean over the K runs.

Kept apart from `history` (which stores and reads runs) so that the statistics can change
without touching the file format, and the reverse.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Sequence

from .errors import AdvisorError
from .history import TaskRun, opened, task_runs

DEFAULT_K = 5
ALPHA = 0.05


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone), in the input order."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def _compare_pipeline(conn, current: TaskRun, previous: list[TaskRun], name: str, alpha: float) -> dict:
    from . import stats

    cur = current.pipelines[name]
    entry: dict[str, Any] = {"pipeline": name, "status": cur["status"], "current": cur.get("score"),
                             "regressed": False, "verdict": "no baseline"}
    last = next((tr for tr in previous if name in tr.pipelines), None)
    if cur["status"] != "ok":
        if last is not None and last.pipelines[name]["status"] == "ok":
            entry.update(regressed=True, verdict="now fails",
                         reason=f"{name} was ok in run {last.bench_run_id} and is now {cur['status']}: "
                                f"{cur.get('reason') or 'no reason recorded'}")
        else:
            entry["verdict"] = cur["status"]
        return entry
    base_runs = [tr for tr in previous if tr.pipelines.get(name, {}).get("status") == "ok"]
    if _corpus_level(current.metric):
        return _compare_corpus_metric(conn, current, base_runs, name, alpha, entry)
    if not base_runs:
        return entry
    now = current.scores(conn, name)
    sums: dict[str, list[float]] = {}
    for tr in base_runs:
        for item, s in tr.scores(conn, name).items():
            sums.setdefault(item, []).append(s)
    items = [i for i in now if i in sums]
    entry.update(baseline_runs=[tr.bench_run_id for tr in base_runs], n=len(items))
    if any(tr.eval_hash and current.eval_hash and tr.eval_hash != current.eval_hash for tr in base_runs):
        entry["note"] = "the eval set differs from some baseline runs; compared on the item ids they share"
    if not items:
        entry["verdict"] = "no shared items"
        return entry
    ref = [sum(sums[i]) / len(sums[i]) for i in items]
    new = [now[i] for i in items]
    c = stats.paired_compare(ref, new, names=("baseline", "current"), alpha=alpha)
    entry.update(
        baseline=sum(ref) / len(ref), current_on_shared=sum(new) / len(new), diff=c.diff,
        ci=[float(c.ci[0]), float(c.ci[1])], p_value=c.p_value, test=c.test,
        worse=(c.diff < 0) if current.higher_is_better else (c.diff > 0),
        verdict="pending",
    )
    return entry


def _corpus_level(metric: str | None) -> bool:
    from .metrics import METRICS

    return metric in METRICS and METRICS[metric].corpus_level


def _compare_corpus_metric(conn, current: TaskRun, base_runs: list[TaskRun], name: str, alpha: float,
                           entry: dict) -> dict:
    """A corpus-level metric (macro-F1) judged on itself: a paired bootstrap over the shared items
    of the metric recomputed from the stored labels; the baseline is its mean over the runs.
    (Per-item accuracy, what `per_example` holds for such a task, can stay put while macro-F1 falls.)"""
    from . import stats
    from .metrics import subset_scorer

    now = current.predictions(conn, name)
    if not now:
        entry.update(verdict="no predictions stored",
                     note=f"{current.metric} is computed over the whole eval set; this run stored no per-item labels")
        return entry
    base = [(tr, tr.predictions(conn, name)) for tr in base_runs]
    base = [(tr, p) for tr, p in base if p]  # runs recorded before labels were stored cannot be recomputed
    if not base:
        if base_runs:
            entry["note"] = f"the previous runs stored no per-item labels, so their {current.metric} cannot be recomputed"
        return entry
    items = [i for i in now if all(i in p for _, p in base)]
    entry.update(baseline_runs=[tr.bench_run_id for tr, _ in base], n=len(items))
    if not items:
        entry["verdict"] = "no shared items"
        return entry
    labels = current.labels or sorted({now[i][1] for i in items})

    def scorer(preds: dict) -> stats.SubsetScore:
        return subset_scorer(current.metric, [preds[i][0] for i in items], [preds[i][1] for i in items], labels)

    fb = scorer(now)
    olds = [scorer(p) for _, p in base]

    def fa(idx):
        return sum(f(idx) for f in olds) / len(olds)

    if all(getattr(f, "batch", None) for f in olds):
        fa.batch = lambda rows: sum(f.batch(rows) for f in olds) / len(olds)
    c = stats.paired_metric_compare(fa, fb, len(items), names=("baseline", "current"), alpha=alpha)
    everything = list(range(len(items)))
    entry.update(
        baseline=fa(everything), current_on_shared=fb(everything), diff=c.diff,
        ci=[float(c.ci[0]), float(c.ci[1])], p_value=c.p_value, test=f"{c.test} of {current.metric}",
        worse=(c.diff < 0) if current.higher_is_better else (c.diff > 0), verdict="pending",
    )
    return entry


def compare(
    db: str | Path | sqlite3.Connection,
    run_id: int | None = None,
    *,
    k: int = DEFAULT_K,
    alpha: float = ALPHA,
    correction: str = "holm",
) -> dict:
    """Compare a bench run (default: the latest) with the previous `k` runs of each of its tasks.

    Returns {"run_id", "k", "alpha", "correction", "regression": bool, "exit_code": 0|1,
    "tasks": [{"task", "baseline_runs", "recommendation": {...}, "pipelines": [...], "reasons"}],
    "reasons": [...]}.
    """
    if k < 1:
        raise AdvisorError(f"k must be at least 1 (got {k})", where="--k")
    if correction not in ("holm", "none"):
        raise ValueError(f"unknown correction {correction!r}")
    with opened(db) as conn:
        if run_id is None:
            row = conn.execute("SELECT max(id) FROM bench_runs").fetchone()
            if row[0] is None:
                raise AdvisorError("the history has no runs", where=str(db), fix="run `advisor bench` first")
            run_id = int(row[0])
        currents = list(reversed(task_runs(conn, "t.bench_run_id = ?", (run_id,))))
        if not currents:
            raise AdvisorError(f"no bench run {run_id} with tasks", where=str(db))
        out_tasks = []
        for cur in currents:
            previous = task_runs(conn, "t.task = ? AND t.bench_run_id < ?", (cur.task, run_id), limit=k)
            last = previous[0] if previous else None
            rec = {"current": cur.recommendation, "previous": last.recommendation if last else None,
                   "previous_run": last.bench_run_id if last else None}
            rec["changed"] = bool(last) and last.recommendation != cur.recommendation
            out_tasks.append({
                "task": cur.task, "metric": cur.metric, "baseline_runs": [tr.bench_run_id for tr in previous],
                "recommendation": rec,
                "pipelines": [_compare_pipeline(conn, cur, previous, p, alpha) for p in cur.pipelines],
            })
    tested = [e for t in out_tasks for e in t["pipelines"] if "p_value" in e]
    raw = [e["p_value"] for e in tested]
    adjusted = holm(raw) if correction == "holm" else raw
    for e, p in zip(tested, adjusted):
        e["p_adjusted"] = p
        e["significant"] = p < alpha
        e["regressed"] = e["significant"] and e["worse"]
        e["verdict"] = ("drop" if e["worse"] else "gain") if e["significant"] else "no significant change"
    reasons = []
    for t in out_tasks:
        t["reasons"] = []
        for e in t["pipelines"]:
            if e["verdict"] == "drop":
                t["reasons"].append(
                    f"{t['task']}/{e['pipeline']}: {t['metric']} fell from {e['baseline']:.3f} (mean of "
                    f"{len(e['baseline_runs'])} previous runs) to {e['current_on_shared']:.3f} on {e['n']} items "
                    f"(diff {e['diff']:+.3f}, {e['test']} p={e['p_adjusted']:.3g} {correction}-adjusted)"
                )
            elif e["verdict"] == "now fails":
                t["reasons"].append(f"{t['task']}/{e['reason']}")
        r = t["recommendation"]
        if r["changed"]:
            t["reasons"].append(
                f"{t['task']}: the recommendation changed from {r['previous']} (run {r['previous_run']}) "
                f"to {r['current']}"
            )
        t["regression"] = bool(t["reasons"])
        reasons += t["reasons"]
    return {"run_id": run_id, "k": k, "alpha": alpha, "correction": correction, "regression": bool(reasons),
            "exit_code": 1 if reasons else 0, "tasks": out_tasks, "reasons": reasons}
