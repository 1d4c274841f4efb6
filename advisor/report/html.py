"""report.html: one self-contained file a team can mail around or attach to a ticket.

No external assets: the styles are inline and every plot is a matplotlib PNG embedded as a
base64 data URI, so the file renders the same offline, in a mail client or years later.
Everything taken from the report is HTML-escaped (task names, model outputs and reasons are
user data). Plots that need the per-item predictions (per-label accuracy, the confusion
matrix) read `predictions/<pipeline>.jsonl` from the run folder when one is given.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any, Iterable

from ..environment import shown
from .files import (COMPARISONS_NOTE, fmt, fmt_sig, fmt_usd, judge_cost_line, method_rows, order, quality_rows,
                    recommendation_title, title, training_time_line)

WIDE_LABELS = 8
STATUS_CLASS = {"ok": "ok", "skipped": "skip", "failed": "fail"}


def e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


# ---------------------------------------------------------------------------------------------
# data for the plots


def load_predictions(run_dir: Path | str | None) -> dict[str, list[dict]]:
    """predictions/<pipeline>.jsonl rows per pipeline; unreadable lines are skipped."""
    out: dict[str, list[dict]] = {}
    if not run_dir:
        return out
    folder = Path(run_dir) / "predictions"
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.jsonl")):
        rows = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        out[path.stem] = rows
    return out


def _gold(row: dict) -> str | None:
    exp = row.get("expected")
    if isinstance(exp, list):
        return str(exp[0]) if exp else None
    return None if exp is None else str(exp)


def _predicted(row: dict) -> str:
    value = row.get("extracted") if "extracted" in row else row.get("output")
    return "" if value is None else str(value).strip()


def per_label_counts(rows: list[dict], labels: list[str]) -> dict[str, tuple[int, int]]:
    """gold label -> (right, n), right judged by the row's score (1 = correct)."""
    counts: dict[str, list[int]] = {}
    for row in rows:
        gold = _gold(row)
        if gold is None:
            continue
        c = counts.setdefault(gold, [0, 0])
        score = row.get("score")
        right = (score >= 0.5) if isinstance(score, (int, float)) else (_predicted(row) == gold)
        c[0] += int(bool(right))
        c[1] += 1
    return {lab: (counts[lab][0], counts[lab][1]) for lab in labels if lab in counts}


def recall_points(retrieval: Any) -> list[tuple[int, float]]:
    """Accept the shapes a retriever might report recall@k in; return [(k, recall)]."""
    pts: list[tuple[int, float]] = []
    if isinstance(retrieval, list):
        for r in retrieval:
            if isinstance(r, dict) and "k" in r and ("recall" in r or "value" in r):
                pts.append((r["k"], r.get("recall", r.get("value"))))
            elif isinstance(r, (list, tuple)) and len(r) == 2:
                pts.append((r[0], r[1]))
    elif isinstance(retrieval, dict):
        for key in ("recall_at_k", "recall@k", "recall"):
            v = retrieval.get(key)
            if isinstance(v, dict):
                pts += [(k, r) for k, r in v.items()]
                break
            if isinstance(v, list) and isinstance(retrieval.get("k"), list):
                pts += list(zip(retrieval["k"], v))
                break
            if isinstance(v, (list,)):
                return recall_points(v)
        if not pts:
            for key, v in retrieval.items():
                m = re.fullmatch(r"recall(?:@|_at_|_at|_)(\d+)", str(key))
                if m:
                    pts.append((int(m.group(1)), v))
        if not pts and isinstance(retrieval.get("recall"), (int, float)) and isinstance(retrieval.get("k"), int):
            pts.append((retrieval["k"], retrieval["recall"]))
    clean = []
    for k, r in pts:
        try:
            clean.append((int(k), float(r)))
        except (TypeError, ValueError):
            continue
    return clean


# ---------------------------------------------------------------------------------------------
# rendering


def _img(png: bytes | None, alt: str, caption: str, plot_id: str, wide: bool = False) -> str:
    if not png:
        return ""
    data = base64.b64encode(png).decode("ascii")
    cls = "plot wide" if wide else "plot"
    return (f'<figure class="{cls}" id="plot-{plot_id}"><img alt="{e(alt)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _plots(report: dict, predictions: dict[str, list[dict]]) -> list[str]:
    from . import plots

    t = report.get("task", {})
    metric, target = t.get("metric", "score"), t.get("target")
    given = report.get("pipelines", {})
    pipes = {n: given[n] for n in order(given)}
    out = [
        _img(plots.score_with_ci(pipes, metric, target), f"{metric} with 95% CI per pipeline",
             f"<b>{e(metric)}</b> per pipeline with its 95% confidence interval; the dashed line is the target. "
             "A pipeline <i>meets</i> the target only when its whole interval is above it.", "scores"),
        _img(plots.quality_vs_cost(pipes, metric, target), "quality versus cost per request",
             "Quality against serving cost per 1,000 requests: the cheapest pipeline above the target line is the "
             "sensible choice.", "cost"),
    ]
    labels = t.get("labels") or []
    if t.get("type") == "classification" and labels and predictions:
        counts = {n: per_label_counts(predictions[n], labels) for n in pipes
                  if pipes[n].get("status") == "ok" and predictions.get(n)}
        wide = len(labels) > WIDE_LABELS  # many labels: full-width plots, or the text gets unreadable
        out.append(_img(plots.per_label_accuracy(labels, counts, wide=wide), "per-label accuracy",
                        "Accuracy per gold label and pipeline: where each one goes wrong.", "per-label", wide))
        choice = (report.get("recommendation") or {}).get("choice")
        best = choice if choice in counts else (report.get("recommendation") or {}).get("best")
        if best not in counts and counts:
            best = max(counts, key=lambda n: pipes[n].get("score") or 0)
        if best in counts:
            pairs = [(g, _predicted(r)) for r in predictions[best] if (g := _gold(r)) is not None]
            out.append(_img(plots.confusion_matrix(labels, pairs, f"{title(best, pipes)}: gold vs predicted"),
                            f"confusion matrix of {best}",
                            f"Confusion matrix of <b>{e(title(best, pipes))}</b> (rows: gold label, columns: "
                            "prediction).", "confusion", wide))
    ft = pipes.get("finetune") or {}
    curve = (ft.get("details") or {}).get("loss_curve")
    if curve:
        out.append(_img(plots.loss_curves(curve), "LoRA loss curves",
                        "LoRA fine-tuning loss by optimizer step (train, and validation on held-out train items).",
                        "loss"))
    rag = pipes.get("rag") or {}
    retrieval = (rag.get("details") or {}).get("retrieval")
    pts = recall_points(retrieval)
    if pts:
        what = retrieval.get("what") if isinstance(retrieval, dict) else None
        k_used = (retrieval.get("k") if isinstance(retrieval, dict) and isinstance(retrieval.get("k"), int)
                  else (rag.get("details") or {}).get("k"))
        mrr = retrieval.get("mrr") if isinstance(retrieval, dict) else None
        extra = f" MRR {mrr:.3f}" if isinstance(mrr, (int, float)) else ""
        if isinstance(retrieval, dict) and isinstance(retrieval.get("n"), int):
            extra += f" over {retrieval['n']} questions with a known source."
        out.append(_img(plots.retrieval_recall(pts, k_used, "recall@k"), "retrieval recall at k",
                        "Retrieval recall@k" + (f": {e(what)}" if what else
                                                " (share of questions whose evidence is among the top k)") + "."
                        + e(extra), "recall"))
    return [x for x in out if x]


def _p(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.1e}" if 0 < x < 1e-4 else f"{x:.4f}"


def _ci(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci and ci[0] is not None else "—"


def _pipeline_rows(report: dict) -> Iterable[str]:
    t = report["task"]
    target = t.get("target")
    choice = (report.get("recommendation") or {}).get("choice")
    for name, p in report.get("pipelines", {}).items():
        status = p.get("status", "?")
        c, u = p.get("cost") or {}, p.get("usage") or {}
        note = p.get("reason", "") if status != "ok" else ""
        variant = (p.get("details") or {}).get("variant") if status == "ok" else None
        if variant:
            note = f"{variant}"
        if status == "ok" and p.get("method"):  # the fine-tune family's chosen method
            note = (note + f" method {p['method']}").strip()
        score = p.get("score")
        above = score is not None and target is not None and score >= target
        tags = []
        if p.get("reused"):
            tags.append('<span class="tag">reused</span>')
        if name == choice:
            tags.append('<span class="tag pick">recommended</span>')
        secs = (p.get("timings") or {}).get("total")
        head = (f'<tr class="{"chosen" if name == choice else ""}"><th scope="row">'
                f'<span class="nm">{e(title(name, report.get("pipelines")))}</span> '
                f'{"".join(tags)}</th>'
                f'<td><span class="pill {STATUS_CLASS.get(status, "")}">{e(status)}</span></td>')
        if status != "ok":  # nothing to measure: the reason gets the whole row
            yield head + f'<td colspan="9" class="note reason">{e(note)}</td></tr>'
            continue
        yield (
            head
            + f'<td class="num{" above" if above else ""}">{e(fmt(score))}</td>'
            f'<td class="num">{e(_ci(p.get("ci")))}</td><td class="num">{e(p.get("n", "—"))}</td>'
            f'<td class="num">{e(fmt(u.get("prompt_tokens_mean"), 0)) if u.get("prompt_tokens_mean") else "—"}</td>'
            f'<td class="num">{e(fmt(secs, 1)) if secs is not None else "—"}</td>'
            f'<td class="num">{e(fmt_usd(c.get("setup_usd")))}</td>'
            f'<td class="num">{e(fmt_usd(c.get("usd_per_1k_requests")))}</td>'
            f'<td class="num">{e(fmt_usd(c.get("monthly_usd")))}</td>'
            f'<td class="note">{e(note)}</td></tr>'
        )


def _recommendation(report: dict) -> str:
    rec = report.get("recommendation") or {}
    t = report["task"]
    choice = rec.get("choice", "none")
    kind = "ok" if rec.get("meets_target") else ("short" if choice != "none" else "none")
    headline = recommendation_title(rec, report.get("pipelines"))
    parts = [
        f'<section id="recommendation" class="rec {kind}">',
        f'<div class="rec-head"><span class="eyebrow">Recommendation for {e(t["name"])} '
        f'({e(t.get("metric"))} ≥ {e(t.get("target"))})</span>',
        f'<h2 id="recommendation-choice" data-choice="{e(choice)}">{e(headline)}</h2></div>',
    ]
    if rec.get("reasons"):
        parts.append("<ul>" + "".join(f"<li>{e(r)}</li>" for r in rec["reasons"]) + "</ul>")
    if rec.get("why_not"):
        pipes = report.get("pipelines")
        parts.append("<h3>Why not the others</h3><ul>" + "".join(
            f"<li><b>{e(title(k, pipes))}</b>: {e(v)}</li>" for k, v in rec["why_not"].items()) + "</ul>")
    if rec.get("next_steps"):
        parts.append("<h3>Next steps</h3><ul>" + "".join(f"<li>{e(s)}</li>" for s in rec["next_steps"]) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def _warnings(report: dict) -> str:
    warnings = report.get("warnings") or []
    if not warnings:
        return ""
    return ("<section id='warnings'><h2>Warnings</h2><ul>"
            + "".join(f"<li>{e(w)}</li>" for w in warnings) + "</ul></section>")


def _table(head: list[str], rows: Iterable[str], cls: str = "", right: Iterable[int] = ()) -> str:
    right = set(right)
    cells = "".join(f'<th class="num">{h}</th>' if i in right else f"<th>{h}</th>" for i, h in enumerate(head))
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{cells}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def _comparisons(report: dict) -> str:
    comps = report.get("comparisons") or []
    if not comps:
        return ""
    rows = []
    for c in comps:
        rows.append(
            f"<tr><td>{e(title(c.get('a_name'), report.get('pipelines')))}</td>"
            f"<td>{e(title(c.get('b_name'), report.get('pipelines')))}</td>"
            f"<td class='num'>{c.get('diff', 0):+.3f}</td><td class='num'>{e(_ci(c.get('ci')))}</td>"
            f"<td class='num'>{e(_p(c.get('p_value')))}</td><td class='num'>{e(_p(c.get('p_holm')))}</td>"
            f"<td>{e(c.get('test'))}</td>"
            f"<td>{'yes' if c.get('significant') else 'no'}</td></tr>"
        )
    return ("<section><h2>Paired comparisons</h2><p class='muted'>Same eval items, so item difficulty cancels out; "
            f"diff is b − a. {e(COMPARISONS_NOTE)}.</p>"
            + _table(["a", "b", "diff", "95% CI", "p", "Holm p", "test", "significant"], rows, right=(2, 3, 4, 5)) + "</section>")


def _quality(report: dict) -> str:
    """Format compliance and the judge per pipeline (files.quality_rows is the one source)."""
    cols, rows = quality_rows(report)
    if not rows:
        return ""
    body = ["<tr>" + "".join(f"<td{' class=num' if i else ''}>{e(v)}</td>" for i, v in enumerate(r)) + "</tr>"
            for r in rows]
    cost = judge_cost_line(report)
    return ("<section><h2>Format compliance and judge</h2><p class='muted'>Share of items passing each check; "
            "the judge's verdicts are compared with an exact metric on the same items.</p>"
            + _table(cols, body, right=range(1, len(cols)))
            + (f"<p class='muted'>{e(cost)}</p>" if cost else "") + "</section>")


def _selection(report: dict) -> str:
    rows = report.get("base_model_selection") or []
    if len(rows) < 2:
        return ""
    body = []
    for r in rows:
        params = f"{r['params'] / 1e6:.0f} M" if r.get("params") else "—"
        body.append(
            f"<tr class='{'chosen' if r.get('chosen') else ''}'><td>{e(r.get('model'))}</td>"
            f"<td class='num'>{e(fmt(r.get('score')))}</td><td class='num'>{e(_ci(r.get('ci')))}</td>"
            f"<td class='num'>{e(params)}</td><td>{'✓' if r.get('chosen') else ''}</td></tr>"
        )
    return ("<section><h2>Base-model selection (zero-shot)</h2>"
            + _table(["model", "score", "95% CI", "params", "chosen"], body, right=(1, 2, 3)) + "</section>")


def _methods(report: dict) -> str:
    heading, cols, rows, note = method_rows(report)
    if not rows:
        return ""
    body = (f"<tr class='{'chosen' if r[-1] else ''}'><th scope='row'>{e(r[0])}</th>"
            + "".join(f"<td class='num'>{e(c)}</td>" for c in r[1:]) + "</tr>" for r in rows)
    return (f"<section><h2>{e(heading)}</h2>" + _table([e(c) for c in cols], body, right=range(1, len(cols)))
            + f"<p class='muted'>{e(note)}</p></section>")


def _costs(report: dict) -> str:
    costs = report.get("costs") or {}
    hw = costs.get("hardware") or {}
    full = costs.get("full_finetune_estimate")
    items = []
    if hw:
        items.append(f"<li>Hardware: <b>{e(hw.get('name'))}</b> at {e(fmt_usd(hw.get('usd_per_hour')))}/hour</li>")
    if full:
        items.append(
            f"<li>Full fine-tune (estimate only, never run): {e(fmt_sig(full.get('setup_gpu_hours')))} GPU-hours ≈ "
            f"{e(fmt_usd(full.get('setup_usd')))}, memory ≈ {e(fmt(full.get('memory_gb'), 2))} GB</li>"
        )
    timing = training_time_line(report)
    if timing:
        items.append(f"<li>{e(timing)}</li>")
    return f"<section><h2>Costs</h2><ul>{''.join(items)}</ul></section>" if items else ""


def _run_info(report: dict) -> str:
    env = report.get("environment") or {}
    stages = report.get("stages") or {}
    pk = env.get("packages") or {}
    t = report["task"]
    rows = [
        ("advisor", report.get("advisor_version") or env.get("advisor")),
        ("created", report.get("created")),
        ("wall time", f"{report.get('wall_seconds')} s" if report.get("wall_seconds") is not None else None),
        ("device", env.get("device") or "cpu"),
        ("git commit", env.get("git_commit")),
        ("python / platform", f"{env.get('python', '')} · {env.get('platform', '')}".strip(" ·") or None),
        ("stages", ", ".join(f"{k}: {v}" for k, v in stages.items()) or None),
        ("data hashes", ", ".join(f"{k}={v}" for k, v in (t.get("hashes") or {}).items() if v) or None),
        ("task file", t.get("source")),
        ("packages", ", ".join(f"{k} {v}" for k, v in pk.items() if v) or None),
    ]
    body = "".join(f"<tr><th scope='row'>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows if v)
    return f"<section><h2>Run</h2><div class='scroll'><table class='kv'><tbody>{body}</tbody></table></div></section>"


CSS = """
:root{--fg:#111827;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--ok:#15803d;--okbg:#f0fdf4;--warn:#b45309;
--warnbg:#fffbeb;--bad:#b91c1c;--badbg:#fef2f2;--accent:#2563eb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:28px 24px 48px}
header h1{font-size:26px;margin:0 0 4px}
header p{margin:0;color:var(--muted)}
.facts{display:flex;flex-wrap:wrap;gap:8px;margin:14px 0 22px;padding:0;list-style:none}
.facts li{background:#fff;border:1px solid var(--line);border-radius:999px;padding:3px 12px;font-size:13px}
section{background:#fff;border:1px solid var(--line);border-radius:12px;padding:18px 22px;margin:0 0 18px}
h2{font-size:19px;margin:0 0 10px}
h3{font-size:15px;margin:14px 0 4px}
.rec{border-left:6px solid var(--ok)}
.rec.ok{background:var(--okbg);border-color:#bbf7d0;border-left-color:var(--ok)}
.rec.short{background:var(--warnbg);border-color:#fde68a;border-left-color:var(--warn)}
.rec.none{background:var(--badbg);border-color:#fecaca;border-left-color:var(--bad)}
.rec h2{font-size:26px;margin:2px 0 8px}
.rec.ok h2{color:var(--ok)}.rec.short h2{color:var(--warn)}.rec.none h2{color:var(--bad)}
.eyebrow{text-transform:uppercase;letter-spacing:.06em;font-size:12px;color:var(--muted);font-weight:600}
ul{margin:6px 0;padding-left:22px}li{margin:3px 0}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:14px}
table.pipelines{font-size:13.5px}
table.pipelines thead th{white-space:normal;vertical-align:bottom}
table.pipelines th .nm{white-space:nowrap}
th,td{text-align:left;padding:7px 9px;border-bottom:1px solid var(--line);vertical-align:top}
thead th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.above{font-weight:700;color:var(--ok)}
td.note{color:var(--muted);font-size:13px;max-width:300px;overflow-wrap:anywhere}
td.reason{max-width:none}
thead th.num{text-align:right}
table.pipelines td.note:not(.reason){min-width:70px}
tr.chosen{background:#eff6ff}
.pill{display:inline-block;border-radius:999px;padding:1px 9px;font-size:12px;font-weight:600}
.pill.ok{background:#dcfce7;color:var(--ok)}.pill.skip{background:#fef3c7;color:var(--warn)}
.pill.fail{background:#fee2e2;color:var(--bad)}
.tag{display:inline-block;margin-left:6px;font-size:11px;padding:0 7px;border-radius:6px;background:#f3f4f6;
color:var(--muted);font-weight:500}
.tag.pick{background:#dbeafe;color:#1d4ed8}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px}
figure.plot.wide{grid-column:1/-1}
figure.plot.wide img{max-width:900px;margin:0 auto}
figure.plot{margin:0;border:1px solid var(--line);border-radius:10px;padding:10px;background:#fff}
figure.plot img{width:100%;height:auto;display:block}
figcaption{font-size:13px;color:var(--muted);margin-top:6px}
table.kv th{width:170px;color:var(--muted);font-weight:500}
table.kv td{word-break:break-word;font-size:13px}
.muted{color:var(--muted);font-size:13px;margin-top:0}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
@media print{body{background:#fff}section{break-inside:avoid}}
"""


def render(report: dict, run_dir: Path | str | None = None, predictions: dict[str, list[dict]] | None = None) -> str:
    """The whole HTML document for a report dict (the report.json contract).

    `predictions` (pipeline -> rows of predictions/<pipeline>.jsonl) feed the per-label plots;
    when omitted they are read from `run_dir` if given.
    """
    if predictions is None:
        predictions = load_predictions(run_dir)
    # redact before escaping (a secret with `&<>"'` is spelt differently once escaped), and drop
    # control characters, which also keeps them out of matplotlib's missing-glyph warnings
    report, predictions = shown(report), shown(predictions)
    t = report["task"]
    rec = report.get("recommendation") or {}
    facts = [
        f"{t.get('type')} · {t.get('metric')} ≥ {t.get('target')}",
        f"{t.get('n_eval')} eval items",
        f"{t.get('n_train', 0)} train",
    ]
    if t.get("n_corpus_docs"):
        facts.append(f"{t['n_corpus_docs']} corpus documents")
    facts.append(f"base model {report.get('base_model')}")
    if t.get("decoding"):
        facts.append(f"decoding: {t['decoding']}")
    if t.get("trust_remote_code"):
        facts.append("trust_remote_code: true (the model's own code ran)")
    plots = _plots(report, predictions)
    head = ["pipeline", "status", e(t.get("metric")), "95% CI", "n", "prompt tok", "seconds", "setup $",
            "$ / 1k req", "monthly $", "note"]
    title = f"advisor report: {t['name']} — {rec.get('choice', 'none')}"
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body><main>",
        f"<header><h1>advisor report: {e(t['name'])}</h1>",
        f"<p>Is prompting enough, does RAG fix it, or is a LoRA fine-tune worth it? Created {e(report.get('created'))}"
        f" with advisor {e(report.get('advisor_version'))}.</p>",
        "<ul class='facts'>" + "".join(f"<li>{e(f)}</li>" for f in facts) + "</ul></header>",
        _recommendation(report),
        _warnings(report),
        f"<section><h2>Pipelines on {e(t.get('n_eval'))} eval items</h2>"
        + _table(head, _pipeline_rows(report), "pipelines", right=range(2, 10)) + "</section>",
    ]
    if plots:
        body.append("<section><h2>Plots</h2><div class='plots'>" + "".join(plots) + "</div></section>")
    body += [_methods(report), _quality(report), _comparisons(report), _selection(report), _costs(report),
             _run_info(report)]
    body.append(f"<footer>Generated by advisor {e(report.get('advisor_version'))} from report.json "
                f"(schema {e(report.get('schema_version'))}). Self-contained: no external assets.</footer>")
    body.append("</main></body></html>\n")
    return "\n".join(b for b in body if b)
