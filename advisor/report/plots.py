"""The report's plots, drawn by matplotlib (Agg, no display) and returned as PNG bytes.

matplotlib is imported lazily, inside `_figure`, so importing the report package stays cheap.
Figures are built with `matplotlib.figure.Figure` directly (not pyplot): no global state, no
GUI backend, safe to call from any thread. Every function returns None when it has nothing
to draw, so the HTML shows only the plots a run can support.
"""

from __future__ import annotations

import io
import math
from typing import Any, Sequence

from .. import catalogue
from .files import title

TARGET_COLOUR = "#dc2626"
DPI = 110


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def _style(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.grid(True, axis="both", color="#e5e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.tick_params(labelsize=9)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return buf.getvalue()


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def score_with_ci(pipelines: dict[str, dict], metric: str, target: float | None) -> bytes | None:
    """Each pipeline's score with its 95 % CI; the target as a line; skipped/failed ones named."""
    names = list(pipelines)
    if not any(_finite(pipelines[n].get("score")) for n in names):
        return None
    fig = _figure(6.4, 0.55 * len(names) + 1.3)
    ax = fig.add_subplot()
    _style(ax)
    ys = list(range(len(names)))[::-1]
    for y, name in zip(ys, names):
        p = pipelines[name]
        s = p.get("score")
        colour = catalogue.colour(name)
        if p.get("status") == "ok" and _finite(s):
            ci = p.get("ci")
            if ci and _finite(ci[0]) and _finite(ci[1]):
                ax.errorbar([s], [y], xerr=[[max(0.0, s - ci[0])], [max(0.0, ci[1] - s)]], fmt="o",
                            color=colour, ecolor=colour, elinewidth=2.2, capsize=5, markersize=8)
            else:
                ax.plot([s], [y], "o", color=colour, markersize=8)
            ax.annotate(f"{s:.3f}", (s, y), textcoords="offset points", xytext=(0, 9), ha="center",
                        fontsize=8.5, color="#111827")
        else:
            ax.text(0.01, y, f"{p.get('status', 'not run')}", va="center", fontsize=9, color="#9ca3af",
                    style="italic", transform=ax.get_yaxis_transform())
    if _finite(target):
        ax.axvline(target, color=TARGET_COLOUR, linestyle="--", linewidth=1.4)
        ax.text(target, 1.0, f" target {target:g}", color=TARGET_COLOUR, fontsize=8.5, va="bottom",
                transform=ax.get_xaxis_transform())
    ax.set_yticks(ys, [title(n, pipelines) for n in names])
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel(f"{metric} (95% CI)", fontsize=9)
    return _png(fig)


def quality_vs_cost(pipelines: dict[str, dict], metric: str, target: float | None) -> bytes | None:
    """Score (with CI) against $ per 1k requests: the cheapest pipeline above the line wins."""
    pts = []
    for name, p in pipelines.items():
        c = (p.get("cost") or {}).get("usd_per_1k_requests")
        if p.get("status") == "ok" and _finite(p.get("score")) and _finite(c):
            pts.append((name, float(c), float(p["score"]), p.get("ci")))
    if not pts:
        return None
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    costs = [c for _, c, _, _ in pts]
    positive = [c for c in costs if c > 0]
    log = bool(positive) and len(positive) == len(costs) and max(positive) / min(positive) > 20
    lo_c, hi_c = min(costs), max(costs)
    placed: list[tuple[float, float]] = []
    for name, c, s, ci in pts:
        colour = catalogue.colour(name)
        if ci and _finite(ci[0]) and _finite(ci[1]):
            ax.errorbar([c], [s], yerr=[[max(0.0, s - ci[0])], [max(0.0, ci[1] - s)]], fmt="o", color=colour,
                        capsize=4, markersize=8, elinewidth=1.8)
        else:
            ax.plot([c], [s], "o", color=colour, markersize=8)
        # where on the axes (0..1) the point sits, to keep neighbouring labels apart
        if log:
            fx = (math.log10(c) - math.log10(lo_c)) / (math.log10(hi_c) - math.log10(lo_c) or 1.0)
        else:
            fx = (c - lo_c) / ((hi_c - lo_c) or 1.0)
        crowded = sum(1 for px, py in placed if abs(px - fx) < 0.15 and abs(py - s) < 0.12)
        placed.append((fx, s))
        offset = [(8, 6), (8, -14), (-8, 6), (-8, -14)][crowded % 4]
        ax.annotate(title(name, pipelines), (c, s), textcoords="offset points", xytext=offset, fontsize=8.5,
                    color=colour, ha="left" if offset[0] > 0 else "right",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.85))
    if _finite(target):
        ax.axhline(target, color=TARGET_COLOUR, linestyle="--", linewidth=1.2)
        ax.text(0.995, target, f"target {target:g} ", color=TARGET_COLOUR, fontsize=8, ha="right", va="bottom",
                transform=ax.get_yaxis_transform())
    if log:
        ax.set_xscale("log")
        ax.set_xlim(min(costs) / 2, max(costs) * 3)
    else:
        span = max(costs) - min(costs) or max(max(costs), 1e-6)
        ax.set_xlim(max(0.0, min(costs) - 0.25 * span) if min(costs) > 0 else -0.05 * span, max(costs) + 0.45 * span)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("$ per 1,000 requests" + (" (log scale)" if log else ""), fontsize=9)
    ax.set_ylabel(metric, fontsize=9)
    return _png(fig)


def loss_curves(curve: dict) -> bytes | None:
    """LoRA training and validation loss by step."""
    series = {k: v for k, v in (curve or {}).items() if isinstance(v, list) and v}
    pts = {k: [(float(a), float(b)) for a, b in v if _finite(a) and _finite(b)] for k, v in series.items()}
    pts = {k: v for k, v in pts.items() if v}
    if not pts:
        return None
    fig = _figure(6.4, 3.4)
    ax = fig.add_subplot()
    _style(ax)
    styles = {"train": dict(color="#16a34a", linewidth=1.6), "val": dict(color="#7c3aed", linewidth=2, marker="o",
                                                                         markersize=4)}
    for k, v in pts.items():
        xs, ys = zip(*v)
        ax.plot(xs, ys, label={"train": "train loss", "val": "validation loss"}.get(k, k),
                **styles.get(k, dict(linewidth=1.5)))
    ax.set_xlabel("optimizer step", fontsize=9)
    ax.set_ylabel("loss", fontsize=9)
    ax.legend(fontsize=8.5, frameon=False)
    return _png(fig)


def per_label_accuracy(labels: Sequence[str], per_pipeline: dict[str, dict[str, tuple[int, int]]],
                       wide: bool = False) -> bytes | None:
    """Grouped bars: accuracy of each pipeline on each gold label (n per label shown).

    Few labels: horizontal bars in a half-width figure. Many (`wide`): vertical bars across a
    full-width figure, labels rotated, so that twenty intents stay readable."""
    pipes = [p for p in per_pipeline if per_pipeline[p]]
    labels = [lab for lab in labels if any(lab in per_pipeline[p] for p in pipes)]
    if not pipes or not labels:
        return None
    height = 0.8 / len(pipes)
    counts = {lab: max(per_pipeline[p].get(lab, (0, 0))[1] for p in pipes) for lab in labels}
    if wide:
        fig = _figure(11, 4.6)
        ax = fig.add_subplot()
        _style(ax)
        for j, p in enumerate(pipes):
            xs = [i + (j - (len(pipes) - 1) / 2) * height for i in range(len(labels))]
            accs = [(lambda r, n: r / n if n else 0.0)(*per_pipeline[p].get(lab, (0, 0))) for lab in labels]
            ax.bar(xs, accs, width=height * 0.92, color=catalogue.colour(p), label=title(p))
        ax.set_xticks(range(len(labels)), [f"{lab} ({counts[lab]})" for lab in labels], rotation=40, ha="right",
                      fontsize=8)
        ax.set_ylim(0, 1.0)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_ylabel("accuracy on items with this gold label (n)", fontsize=9)
        ax.legend(fontsize=8.5, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(pipes))
        return _png(fig)
    fig = _figure(6.4, max(2.4, 0.26 * len(labels) * max(1, len(pipes)) ** 0.6 + 1.2))
    ax = fig.add_subplot()
    _style(ax)
    for j, p in enumerate(pipes):
        accs, ys = [], []
        for i, lab in enumerate(labels):
            right, n = per_pipeline[p].get(lab, (0, 0))
            accs.append(right / n if n else 0.0)
            ys.append(len(labels) - 1 - i + (len(pipes) - 1 - j - (len(pipes) - 1) / 2) * height)
        ax.barh(ys, accs, height=height * 0.92, color=catalogue.colour(p), label=title(p))
    ax.set_yticks(range(len(labels))[::-1], [f"{lab} (n={counts[lab]})" for lab in labels], fontsize=8)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("accuracy on items with this gold label", fontsize=9)
    ax.legend(fontsize=8, frameon=False, loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(pipes))
    return _png(fig)


def confusion_matrix(labels: Sequence[str], pairs: Sequence[tuple[str, str]], title: str) -> bytes | None:
    """Counts of (gold, predicted); predictions outside the label set go to an 'other' column."""
    if not pairs or not labels or len(labels) > 40:
        return None
    import numpy as np

    cols = list(labels)
    if any(p not in labels for _, p in pairs):
        cols.append("(other)")
    m = np.zeros((len(labels), len(cols)), dtype=int)
    for gold, pred in pairs:
        if gold not in labels:
            continue
        m[labels.index(gold), cols.index(pred) if pred in cols else len(cols) - 1] += 1
    size = min(8.5, 2.4 + 0.32 * len(cols))
    fig = _figure(size + 1.6, size)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=max(1, int(m.max())))
    small = len(cols) <= 14
    if small:
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8.5,
                            color="white" if m[i, j] > m.max() * 0.55 else "#111827")
    fs = 8 if small else 7.5
    ax.set_xticks(range(len(cols)), cols, rotation=45 if len(cols) > 3 else 0, ha="right" if len(cols) > 3 else "center",
                  fontsize=fs)
    ax.set_yticks(range(len(labels)), labels, fontsize=fs)
    ax.set_xlabel("predicted", fontsize=9)
    ax.set_ylabel("gold", fontsize=9)
    ax.set_title(title, fontsize=9.5)
    fig.colorbar(im, ax=ax, shrink=0.75).ax.tick_params(labelsize=8)
    return _png(fig)


def retrieval_recall(points: Sequence[tuple[int, float]], k_used: int | None, label: str) -> bytes | None:
    """Recall@k of the retriever (does the gold passage or a same-label example come back?)."""
    pts = sorted((int(k), float(r)) for k, r in points if _finite(k) and _finite(r))
    if not pts:
        return None
    fig = _figure(6.4, 3.2)
    ax = fig.add_subplot()
    _style(ax)
    ks, rs = zip(*pts)
    ax.plot(ks, rs, marker="o", color=catalogue.colour("rag"), linewidth=2)
    for k, r in pts:
        ax.annotate(f"{r:.2f}", (k, r), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8.5)
    if k_used and k_used in ks:
        ax.axvline(k_used, color="#9ca3af", linestyle=":", linewidth=1.2)
        ax.text(k_used, 0.02, f" k used = {k_used}", fontsize=8, color="#6b7280")
    ax.set_xticks(ks)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("k (retrieved items)", fontsize=9)
    ax.set_ylabel(label, fontsize=9)
    return _png(fig)
