"""The rich terminal report: recommendation first, then the evidence behind it."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .. import catalogue
from ..environment import shown
from .files import (COMPARISONS_NOTE, METHOD_COLS, METHOD_TIERS, finetune_phrase, fmt, fmt_sig, fmt_usd,
                    judge_cost_line, method_rows, pretraining_line, quality_rows, recommendation_title, title,
                    training_time_line)

STYLE = {"ok": "green", "skipped": "yellow", "failed": "red"}


def _ci(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "—"


def recommendation_panel(report: dict) -> Panel:
    rec = report["recommendation"]
    t = report["task"]
    choice = rec["choice"]
    colour = "green" if rec.get("meets_target") else "yellow" if choice != "none" else "red"
    body: list = [Text(recommendation_title(rec, report.get("pipelines")), style=f"bold {colour}"), Text("")]
    body += [Text(f"• {r}") for r in rec.get("reasons", [])]
    if rec.get("why_not"):
        body.append(Text("\nWhy not the others", style="bold"))
        body += [Text(f"• {title(k, report.get('pipelines'))}: {v}") for k, v in rec["why_not"].items()]
    if rec.get("next_steps"):
        body.append(Text("\nNext steps", style="bold"))
        body += [Text(f"• {s}") for s in rec["next_steps"]]
    return Panel(Group(*body), title=f"Recommendation for {t['name']} ({t['metric']} ≥ {t['target']})",
                 border_style=colour)


WIDE = 118  # the width a report is laid out for when no console says otherwise


def _cell_len(cell: str) -> int:
    return Text.from_markup(cell).cell_len


Tier = "tuple[tuple[str, ...], tuple[str, ...]]"  # (columns shown, those of them that may wrap)


def width_needed(cols: "Sequence[str]", rows: list[list[str]], idx: list[int], wraps: tuple[str, ...] = (),
                 folds: tuple[str, ...] = ()) -> int:
    """Terminal columns a table of these columns needs to show every cell whole: each column as
    wide as its header and cells (rich markup left out), a wrapping column as its longest word, a
    folding one (its text may break anywhere) as its header; plus rich's borders and padding."""
    def need(i: int) -> int:
        if cols[i] in folds:
            return len(cols[i])
        if cols[i] in wraps:
            return max([len(cols[i])] + [len(w) for r in rows for w in Text.from_markup(r[i]).plain.split()])
        return max([len(cols[i])] + [_cell_len(r[i]) for r in rows])

    return sum(need(i) for i in idx) + 3 * len(idx) + 1


def first_fit(tiers: "Iterable[Tier]", cols: tuple[str, ...], rows: list[list[str]], width: int
              ) -> "tuple[list[int], tuple[str, ...]]":
    """(indices, wrapping columns) of the first tier, best first, whose cells fit `width`
    (width_needed); else the last tier. CI logs and pipes get 80 columns: dropping a column, or a
    title on two lines, beats printing every cell as "Clas…"."""
    idx: list[int] = []
    wraps: tuple[str, ...] = ()
    for columns, wraps in tiers:
        idx = [i for i, c in enumerate(cols) if c in columns]
        if width_needed(cols, rows, idx, wraps) <= width:
            break
    return idx, wraps


def pipelines_table(report: dict, width: int = WIDE) -> Table:
    t = report["task"]
    pipes = report.get("pipelines")
    table = Table(title=f"Pipelines on {t['n_eval']} eval items (base model {escape(str(report['base_model']))})")
    metric = t["metric"]
    cols = ("pipeline", "status", metric, "95% CI", "prompt tok", "seconds", "setup $", "$ / 1k req", "monthly $",
            "note")
    rows = []
    for name, p in report["pipelines"].items():
        c, u = p.get("cost") or {}, p.get("usage") or {}
        note = p.get("reason", "") if p["status"] != "ok" else ("reused" if p.get("reused") else "")
        if p["status"] == "ok" and p.get("details", {}).get("variant"):
            note = (note + " " + p["details"]["variant"]).strip()
        if p["status"] == "ok" and p.get("method"):  # the fine-tune family's chosen method
            note = (note + f" method {p['method']}").strip()
        mark = p.get("score")
        score_txt = fmt(mark)
        if mark is not None and mark >= t["target"]:
            score_txt = f"[bold]{score_txt}[/bold]"
        rows.append([
            escape(title(name, pipes)), f"[{STYLE.get(p['status'], '')}]{p['status']}[/]", score_txt, _ci(p.get("ci")),
            fmt(u.get("prompt_tokens_mean"), 0) if u.get("prompt_tokens_mean") else "—",
            fmt((p.get("timings") or {}).get("total"), 1) if p.get("timings") else "—",
            fmt_usd(c.get("setup_usd")), fmt_usd(c.get("usd_per_1k_requests")), fmt_usd(c.get("monthly_usd")),
            escape(note),  # data, not rich markup ('[/INST]' in a reason)
        ])
    core = ("pipeline", "status", metric, "95% CI", "setup $", "$ / 1k req")
    tiers = [(shown_cols, ("note",)) for shown_cols in (cols, tuple(c for c in cols if c != "seconds"),
                                                        core + ("monthly $", "note"), core + ("note",), core)]
    # then long titles ("Constrained decoding") on two lines, then the setup cost left to report.md
    tiers += [(core, ("pipeline",)), (tuple(c for c in core if c != "setup $"), ("pipeline",))]
    keep, wraps = first_fit(tiers, cols, rows, width)
    for i in keep:
        col = cols[i]
        table.add_column(col, justify="right" if col not in ("pipeline", "status", "note") else "left",
                         no_wrap=col not in wraps)
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    return table


def comparisons_table(report: dict, width: int = WIDE) -> Table | None:
    comps = report.get("comparisons") or []
    if not comps:
        return None
    pipes = report.get("pipelines")
    table = Table(title="Paired comparisons (same eval items; significance Holm-adjusted across the table)",
                  caption=COMPARISONS_NOTE)
    # the Holm p decides significance: when space is short the raw p (in report.md) goes first
    cols = ("a", "b", "b − a", "95% CI", "p", "Holm p", "significant", "sig.", "test")
    rows = [[escape(title(c["a_name"], pipes)), escape(title(c["b_name"], pipes)), f"{c['diff']:+.3f}",
             _ci(c.get("ci")), fmt(c["p_value"], 4), fmt(c.get("p_holm"), 4),
             "yes" if c.get("significant") else "no", "yes" if c.get("significant") else "no", c["test"]]
            for c in comps]
    narrow = ("a", "b", "b − a", "95% CI", "Holm p", "sig.")
    # long titles ("Classical baseline") take two lines before the CI goes
    tiers = [(("a", "b", "b − a", "95% CI", "p", "Holm p", "significant", "test"), ()),
             (("a", "b", "b − a", "95% CI", "p", "Holm p", "significant"), ()),
             (narrow, ()), (narrow, ("a", "b")), (("a", "b", "b − a", "Holm p", "sig."), ("a", "b"))]
    keep, wraps = first_fit(tiers, cols, rows, width)
    for i in keep:
        table.add_column(cols[i], no_wrap=cols[i] not in wraps,
                         justify="right" if cols[i] in ("b − a", "p", "Holm p") else "left")
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    return table


def quality_table(report: dict) -> Table | None:
    cols, rows = quality_rows(report)
    if not rows:
        return None
    table = Table(title="Format compliance and judge (share of items; judge calibrated on the same items)")
    for col in cols:
        table.add_column(col, no_wrap=True, justify="left" if col == "pipeline" else "right")
    for r in rows:
        table.add_row(*r)
    return table


def methods_table(report: dict, width: int = WIDE) -> Table | None:
    """The fine-tune family side by side (when more than one method ran): the widest set of
    columns whose whole cells fit the terminal (METHOD_TIERS, then the trainable count dropped),
    measured on the cells themselves — real figures ("$4.6e-05", "100 % (134,515,008)") are wider
    than any fixed width guess."""
    heading, cols, rows, note = method_rows(report)
    if not rows:
        return None
    options = [(tier, full) for tier in METHOD_TIERS for full in (True, False)]
    for tier, full in options:
        idx = [i for i, c in enumerate(METHOD_COLS) if c in tier]
        cells = [[escape(c if full or i != 1 else c.split(" (")[0]) for i, c in enumerate(r)] for r in rows]
        # the last column (chosen mark, or a failed method's reason) folds, so it counts as its header only
        if width_needed(cols, cells, idx, folds=(cols[-1],)) <= width:
            break
    table = Table(title=escape(heading), caption=escape(note) if width >= 130 else None)
    for i in idx:
        last = i == len(METHOD_COLS) - 1  # "chosen", or a failed method's reason: that one may wrap
        table.add_column(cols[i], no_wrap=not last, justify="left" if i == 0 else "right", min_width=6 if last else None,
                         overflow="fold" if last else "ellipsis")
    for r in cells:
        table.add_row(*(r[i] for i in idx))
    return table


def selection_table(report: dict) -> Table | None:
    rows = report.get("base_model_selection") or []
    if len(rows) < 2:
        return None
    table = Table(title="Base-model selection (zero-shot, held-out train items)")
    for col in ("model", "score", "95% CI", "params", "$ / 1k req", "monthly $", "chosen"):
        table.add_column(col)
    for r in rows:
        params = f"{r['params'] / 1e6:,.0f} M" if r.get("params") else "?"
        name = r["model"] + (" (endpoint)" if r.get("endpoint") else "")
        table.add_row(escape(name), fmt(r.get("score")), _ci(r.get("ci")), params, fmt_usd(r.get("usd_per_1k_requests")),
                      fmt_usd(r.get("monthly_usd")), "✓" if r.get("chosen") else "")
    return table


def render(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    report = shown(report)  # secrets redacted and terminal escapes removed from everything shown
    if report["task"].get("trust_remote_code"):
        console.print("[bold yellow]trust_remote_code: true[/] — the task allowed the model's own Python code to run")
    for part in (selection_table(report), pipelines_table(report, console.width),
                 methods_table(report, console.width), quality_table(report), comparisons_table(report, console.width)):
        if part is not None:
            console.print(part)
    if judge_cost_line(report):
        console.print(judge_cost_line(report), markup=False, highlight=False)
    full = (report.get("costs") or {}).get("full_finetune_estimate")
    if full:
        console.print(
            f"Full fine-tune (estimate, never run): {fmt_sig(full.get('setup_gpu_hours'))} GPU-h ≈ "
            f"{fmt_usd(full.get('setup_usd'))}, ~{fmt(full.get('memory_gb'), 2)} GB "
            f"on {report['costs']['hardware']['name']}"
        )
    pre = pretraining_line((report.get("costs") or {}).get("pretraining"), finetune_phrase(report))
    if pre:
        console.print(pre, markup=False, highlight=False)
    timing = training_time_line(report)
    if timing:
        console.print(timing, markup=False, highlight=False)
    for w in report.get("warnings") or []:
        console.print(Text(f"warning: {w}", style="yellow"))
    console.print(recommendation_panel(report))


ESTIMATE_COLS = ("pipeline", "prompt tok", "setup GPU-h", "setup $", "GPU-h / 1k req", "$ / 1k req", "monthly $",
                 "memory GB", "QLoRA GB")
# dropped first to last when the terminal is too narrow for whole cells: setup $ and $ / 1k req stay
ESTIMATE_DROP = ("GPU-h / 1k req", "QLoRA GB", "prompt tok", "setup GPU-h", "memory GB", "monthly $")


def _estimate_rows(title: str, pipelines: dict, width: int = WIDE) -> Table:
    """One candidate's priced pipelines, by title, with the columns whose whole cells fit."""
    names = catalogue.titles()
    rows = [[escape(c.get("title") or names.get(name, name)), fmt(c.get("prompt_tokens"), 0),
             f"{c.get('setup_gpu_hours') or 0:.3g}", fmt_usd(c.get("setup_usd")),
             f"{c['device_hours_per_1k']:.3g}" if c.get("device_hours_per_1k") is not None else "",
             fmt_usd(c.get("usd_per_1k_requests")), fmt_usd(c.get("monthly_usd")), fmt(c.get("memory_gb"), 2),
             fmt(c.get("qlora_memory_gb"), 2) if c.get("qlora_memory_gb") else ""] for name, c in pipelines.items()]
    present = tuple(col for i, col in enumerate(ESTIMATE_COLS) if col != "QLoRA GB" or any(r[i] for r in rows))
    tiers = [(tuple(c for c in present if c not in ESTIMATE_DROP[:k]), ()) for k in range(len(ESTIMATE_DROP) + 1)]
    keep, _ = first_fit(tiers, ESTIMATE_COLS, rows, width)
    table = Table(title=title)
    for i in keep:
        table.add_column(ESTIMATE_COLS[i], justify="left" if i == 0 else "right", no_wrap=True)
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    return table


def estimate_table(est: dict, width: int = WIDE):
    """One table per candidate (its size, tokenizer and the pretraining contrast beneath)."""
    est = shown(est)  # secrets redacted and terminal escapes removed from everything shown
    hw = est["hardware"]
    head = (f"Estimate for {est['task']} on {hw['name']} (${hw['usd_per_hour']:.2f}/h), "
            f"{est['requests_per_month']:,} requests/month — {est['note']}")
    cands = est.get("candidates") or [{"model": est.get("base_model"), "pipelines": est["pipelines"],
                                       "n_params": est.get("n_params"), "kind": "local"}]
    parts: list = [Text(head, style="bold")]
    for c in cands:
        size = ""
        if c.get("n_params"):
            size = f" — {c['n_params'] / 1e9:.2f}B params"
            if c.get("active_params") and c["active_params"] != c["n_params"]:
                size += f" ({c['active_params'] / 1e9:.2f}B active)"
        kind = " (endpoint)" if c.get("kind") == "endpoint" else ""
        parts.append(_estimate_rows(f"{escape(str(c['model']))}{kind}{size}", c["pipelines"], width))
        extra = []
        if c.get("facts"):
            extra.append(f"size from: {c['facts']['source']}")
        if c.get("tokenizer"):
            extra.append(f"tokens: {c['tokenizer']}")
        line = pretraining_line(c.get("pretraining"), finetune_phrase({"pipelines": c["pipelines"]}))
        if line:
            extra.append(line)
        elif c.get("kind") == "local" and c.get("facts"):
            extra.append("pretraining tokens not published/known for this model: no pretraining contrast")
        extra += c.get("notes", [])
        if extra:
            parts.append(Text("\n".join(extra), style="dim"))
    return Group(*parts)


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Iterable[float | None], min_span: float = 0.05) -> str:
    """One character per value; None shows as '·'. The scale is the values' own range, but at
    least `min_span` wide, so that noise in the third decimal does not look like a cliff."""
    vals = list(values)
    real = [v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not real:
        return "·" * len(vals)
    lo, hi = min(real), max(real)
    if hi - lo < min_span:
        mid = (hi + lo) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    out = []
    for v in vals:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append("·")
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int((v - lo) / (hi - lo) * len(SPARKS)))])
    return "".join(out)
