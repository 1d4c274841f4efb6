"""The rich terminal report: recommendation first, then the evidence behind it."""

from __future__ import annotations

import math
from typing import Iterable

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..environment import shown
from .files import NAMES, fmt, fmt_sig, fmt_usd, recommendation_title, training_time_line

STYLE = {"ok": "green", "skipped": "yellow", "failed": "red"}


def _ci(ci) -> str:
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "—"


def recommendation_panel(report: dict) -> Panel:
    rec = report["recommendation"]
    t = report["task"]
    choice = rec["choice"]
    colour = "green" if rec.get("meets_target") else "yellow" if choice != "none" else "red"
    body: list = [Text(recommendation_title(rec), style=f"bold {colour}"), Text("")]
    body += [Text(f"• {r}") for r in rec.get("reasons", [])]
    if rec.get("why_not"):
        body.append(Text("\nWhy not the others", style="bold"))
        body += [Text(f"• {NAMES.get(k, k)}: {v}") for k, v in rec["why_not"].items()]
    if rec.get("next_steps"):
        body.append(Text("\nNext steps", style="bold"))
        body += [Text(f"• {s}") for s in rec["next_steps"]]
    return Panel(Group(*body), title=f"Recommendation for {t['name']} ({t['metric']} ≥ {t['target']})",
                 border_style=colour)


# Below this many columns the full pipelines table wraps every cell into "Clas…" stubs (CI logs
# and pipes get 80): drop the columns a reader can find in report.md and use short names.
WIDE = 118


def pipelines_table(report: dict, width: int = WIDE) -> Table:
    t = report["task"]
    narrow = width < WIDE
    table = Table(title=f"Pipelines on {t['n_eval']} eval items (base model {escape(str(report['base_model']))})")
    cols = ("pipeline", "status", t["metric"], "95% CI", "prompt tok", "seconds", "setup $", "$ / 1k req",
            "monthly $", "note")
    keep = {"pipeline", "status", t["metric"], "95% CI", "setup $", "$ / 1k req"} if narrow else set(cols)
    for col in cols:
        if col in keep:
            table.add_column(col, justify="right" if col not in ("pipeline", "status", "note") else "left",
                             no_wrap=col != "note")
    for name, p in report["pipelines"].items():
        c, u = p.get("cost") or {}, p.get("usage") or {}
        note = p.get("reason", "") if p["status"] != "ok" else ("reused" if p.get("reused") else "")
        if p["status"] == "ok" and p.get("details", {}).get("variant"):
            note = (note + " " + p["details"]["variant"]).strip()
        mark = p.get("score")
        score_txt = fmt(mark)
        if mark is not None and mark >= t["target"]:
            score_txt = f"[bold]{score_txt}[/bold]"
        cells = dict(zip(cols, (
            name if narrow else NAMES.get(name, name), f"[{STYLE.get(p['status'], '')}]{p['status']}[/]",
            score_txt, _ci(p.get("ci")),
            fmt(u.get("prompt_tokens_mean"), 0) if u.get("prompt_tokens_mean") else "—",
            fmt((p.get("timings") or {}).get("total"), 1) if p.get("timings") else "—",
            fmt_usd(c.get("setup_usd")), fmt_usd(c.get("usd_per_1k_requests")), fmt_usd(c.get("monthly_usd")),
            escape(note),  # data, not rich markup ('[/INST]' in a reason)
        )))
        table.add_row(*(v for k, v in cells.items() if k in keep))
    return table


def comparisons_table(report: dict, width: int = WIDE) -> Table | None:
    comps = report.get("comparisons") or []
    if not comps:
        return None
    narrow = width < WIDE
    table = Table(title="Paired comparisons (same eval items; significance Holm-adjusted across the table)")
    cols = ("a", "b", "b − a", "95% CI", "p", "Holm p", "significant") + (() if narrow else ("test",))
    for col in cols:
        table.add_column(col, no_wrap=True, justify="right" if col in ("b − a", "p") else "left")
    for c in comps:
        row = [c["a_name"], c["b_name"], f"{c['diff']:+.3f}", _ci(c.get("ci")), fmt(c["p_value"], 4),
               fmt(c.get("p_holm"), 4), "yes" if c.get("significant") else "no"]
        table.add_row(*row, *(() if narrow else (c["test"],)))
    return table


def selection_table(report: dict) -> Table | None:
    rows = report.get("base_model_selection") or []
    if len(rows) < 2:
        return None
    table = Table(title="Base-model selection (zero-shot, held-out train items)")
    for col in ("model", "score", "95% CI", "params", "chosen"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(str(r["model"])), fmt(r.get("score")), _ci(r.get("ci")), f"{r.get('params', 0) / 1e6:.0f} M",
                      "✓" if r.get("chosen") else "")
    return table


def render(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    report = shown(report)  # secrets redacted and terminal escapes removed from everything shown
    if report["task"].get("trust_remote_code"):
        console.print("[bold yellow]trust_remote_code: true[/] — the task allowed the model's own Python code to run")
    for part in (selection_table(report), pipelines_table(report, console.width), comparisons_table(report, console.width)):
        if part is not None:
            console.print(part)
    full = (report.get("costs") or {}).get("full_finetune_estimate")
    if full:
        console.print(
            f"Full fine-tune (estimate, never run): {fmt_sig(full.get('setup_gpu_hours'))} GPU-h ≈ "
            f"{fmt_usd(full.get('setup_usd'))}, ~{fmt(full.get('memory_gb'), 2)} GB "
            f"on {report['costs']['hardware']['name']}"
        )
    timing = training_time_line(report)
    if timing:
        console.print(timing, markup=False, highlight=False)
    for w in report.get("warnings") or []:
        console.print(Text(f"warning: {w}", style="yellow"))
    console.print(recommendation_panel(report))


def estimate_table(est: dict, width: int = WIDE) -> Table:
    est = shown(est)
    hw = est["hardware"]
    narrow = width < 100
    table = Table(title=f"Estimate for {escape(str(est['task']))} on {hw['name']} (${hw['usd_per_hour']:.2f}/h), "
                        f"{est['requests_per_month']:,} requests/month — {est['note']}")
    cols = (("pipeline", "tok", "GPU-h", "setup $", "$/1k", "$/month", "GB") if narrow else
            ("pipeline", "prompt tok", "setup GPU-h", "setup $", "$ / 1k req", "monthly $", "memory GB"))
    for col in cols:
        table.add_column(col, justify="left" if col == "pipeline" else "right", no_wrap=True)
    names = {} if narrow else {**NAMES, "full_finetune": "Full fine-tune"}
    for name, c in est["pipelines"].items():
        table.add_row(names.get(name, name), fmt(c.get("prompt_tokens"), 0), f"{c.get('setup_gpu_hours') or 0:.2g}",
                      fmt_usd(c.get("setup_usd")), fmt_usd(c.get("usd_per_1k_requests")),
                      fmt_usd(c.get("monthly_usd")), fmt(c.get("memory_gb"), 2))
    return table


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
