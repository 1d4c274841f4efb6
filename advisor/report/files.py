"""report.json (the contract), report.md and report.html, all rendered from the report dict.

Everything written goes through `redact`, so a secret that leaked into an error message or a
model output never reaches a file a team shares.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .. import catalogue
from ..environment import redact, shown
from ..atomic import atomic_write_text



def title(name: str | None, pipelines: dict | None = None) -> str | None:
    """A pipeline's title: the one report.json gives it (a family names its chosen member), else
    the catalogue's (the name itself for a pipeline it does not know)."""
    if not name:
        return name
    return ((pipelines or {}).get(name) or {}).get("title") or catalogue.title(name)


def order(pipelines: dict) -> list[str]:
    """Pipelines of a report in workflow order: the catalogue's, then any it does not know."""
    known = catalogue.names()
    return [n for n in known if n in pipelines] + [n for n in pipelines if n not in known]


def recommendation_title(rec: dict, pipelines: dict | None = None) -> str:
    """The panel's headline: the choice and its verdict; the sentence under it says why (and
    carries the numbers), so nothing here repeats it."""
    choice, verdict = rec.get("choice", "none"), rec.get("verdict")
    if choice == "none":
        best = rec.get("best")
        return "none: no pipeline is even likely to meet the target" + (
            f" (best: {title(best, pipelines)})" if best else "")
    name = title(choice, pipelines)
    return f"{name} — {verdict}" if verdict in ("confirmed", "provisional") else name


def fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def fmt_sig(x: float | None, digits: int = 3) -> str:
    """Significant digits, for quantities spanning many orders of magnitude (GPU-hours):
    0.0000139 reads as 1.39e-05, not 0.0000."""
    if x is None:
        return "—"
    return "0" if x == 0 else f"{x:.{digits}g}"


def finetune_phrase(report: dict) -> str:
    """The fine-tune as a sentence names it: "LoRA fine-tune", "full fine-tune", "IA³ fine-tune"."""
    name = title("finetune", report.get("pipelines")) or "LoRA fine-tune"
    first = name.split()[0]
    return name[0].lower() + name[1:] if first[1:].islower() else name  # "Full" -> "full"; "LoRA", "IA³" stay


def pretraining_line(pre: dict | None, what: str = "LoRA") -> str | None:
    """'Pretraining 8.0B on 15T tokens: 7.2e23 FLOPs ... this LoRA costs 1/10^6.1 of it'; `what`
    names the fine-tune (the chosen method of the family in an assess report)."""
    if not pre:
        return None
    line = (f"Pretraining the base model: 6·N·D = 6 × {pre['n_params'] / 1e9:.2f}B × {pre['tokens'] / 1e12:g}T tokens "
            f"= {pre['flops']:.2e} FLOPs = {pre['gpu_hours']:,.0f} {pre['device']}-hours at {pre['mfu']:.0%} MFU "
            f"≈ ${pre['usd']:,.0f}")
    if pre.get("ratio"):
        line += f"; this {what} costs {pre['ratio']['text']} (÷{pre['ratio']['times_cheaper']:,.0f})"
    return line


def training_time_line(report: dict) -> str | None:
    """The LoRA run's estimated vs measured training time, where the cost model could compare
    them (the issue's "estimated vs measured"), with the contention warning when there was one."""
    costs = report.get("costs") or {}
    c = (costs.get("pipelines") or {}).get("finetune") or {}
    if c.get("estimate_error_pct") is None:
        return None
    dev = c.get("measured_device", "?")
    line = (f"{title('finetune', report.get('pipelines'))} training time on {dev}: "
            f"estimated {c['train_seconds_estimated_on_measured_device']:.1f} s, "
            f"measured {c['train_seconds_measured']:.1f} s ({c['estimate_error_pct']:+.1f} %)")
    hw = (costs.get("hardware") or {}).get("name")
    if hw and hw != dev:
        line += f"; on {hw} estimated {fmt_sig(c.get('train_seconds_estimated'))} s ≈ {fmt_usd(c.get('setup_usd'))}"
    busy = [a for a in c.get("assumptions", []) if "contention" in a]
    return line + (f" — {busy[0]}" if busy else "")


def fmt_usd(x: float | None) -> str:
    if x is None:
        return "—"
    if x == 0:
        return "$0"
    if abs(x) < 0.01:
        return f"${x:.2g}"
    return f"${x:,.2f}"


def to_json(report: dict) -> str:
    return redact(json.dumps(report, indent=2, ensure_ascii=False, default=str)) + "\n"


def _md_text(text: str) -> str:
    """Report data as Markdown text: raw HTML (a path such as `<img onerror=...>`) is escaped, and
    `|` cannot end a table cell."""
    return html.escape(text, quote=False).replace("|", "\\|")


def to_markdown(report: dict) -> str:
    report = shown(report, escape=_md_text)  # redacted first, then escaped
    t, rec, pipes = report["task"], report["recommendation"], report.get("pipelines")
    lines = [
        f"# advisor report: {t['name']}",
        "",
        f"- task type: **{t['type']}**, metric **{t['metric']}**, target ≥ **{t['target']}** "
        f"({t['n_eval']} eval items, {t['n_train']} train, {t['n_corpus_docs']} corpus documents)",
        f"- base model: **{report['base_model']}**; decoding: {t['decoding']}",
        *(["- **trust_remote_code: true** — the task allowed the model's own Python code to run"]
          if t.get("trust_remote_code") else []),
        f"- created {report['created']}, advisor {report['advisor_version']}, "
        f"{report['wall_seconds']} s on {report['environment'].get('device') or 'cpu'}",
        "",
        f"## Recommendation: **{rec['choice']}** ({rec.get('verdict', '—')})",
        "",
        f"**{recommendation_title(rec, pipes)}**",
        "",
    ]
    lines += [f"- {r}" for r in rec.get("reasons", [])]
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- **warning**: {w}" for w in report["warnings"]]
    if rec.get("why_not"):
        lines += ["", "Why not the others:", ""]
        lines += [f"- **{title(k, pipes)}**: {v}" for k, v in rec["why_not"].items()]
    if rec.get("next_steps"):
        lines += ["", "Next steps:", ""] + [f"- {s}" for s in rec["next_steps"]]
    lines += [
        "",
        "## Pipelines",
        "",
        f"| pipeline | status | {t['metric']} | 95% CI | n | setup $ | $ / 1k requests | monthly $ | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, p in report["pipelines"].items():
        c = p.get("cost") or {}
        ci = p.get("ci")
        ci_txt = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "—"
        note = p.get("reason", "") if p["status"] != "ok" else ("reused" if p.get("reused") else "")
        if p["status"] == "ok" and p.get("method"):  # the fine-tune family's chosen method
            note = (note + f" method {p['method']}").strip()
        lines.append(
            f"| {title(name, pipes)} | {p['status']} | {fmt(p.get('score'))} | {ci_txt} | {p.get('n', '—')} | "
            f"{fmt_usd(c.get('setup_usd'))} | {fmt_usd(c.get('usd_per_1k_requests'))} | "
            f"{fmt_usd(c.get('monthly_usd'))} | {note} |"
        )
    cols, rows = quality_rows(report)
    if rows:
        lines += ["", "## Format compliance and judge", "", "| " + " | ".join(cols) + " |",
                  "|" + "---|" * len(cols)] + ["| " + " | ".join(r) + " |" for r in rows]
        if judge_cost_line(report):
            lines += ["", f"- {judge_cost_line(report)}"]
    if t.get("type") == "classification" and t.get("decoding") == "choices":
        lines += ["", f"- Note: {CHOICES_NOTE}."]
    if report.get("comparisons"):
        lines += ["", "## Paired comparisons (Holm-adjusted across the table)", "", f"{COMPARISONS_NOTE}.", "",
                  "| a | b | diff (b − a) | 95% CI | p | Holm p | significant | test |", "|---|---|---|---|---|---|---|---|"]
        for c in report["comparisons"]:
            ci = c.get("ci") or [None, None]
            lines.append(
                f"| {title(c['a_name'], pipes)} | {title(c['b_name'], pipes)} | {fmt(c['diff'])} | [{fmt(ci[0])}, {fmt(ci[1])}] | "
                f"{fmt(c['p_value'], 4)} | {fmt(c.get('p_holm'), 4)} | {'yes' if c.get('significant') else 'no'} | "
                f"{c['test']} |"
            )
    sel = report.get("base_model_selection") or []
    if sel:
        lines += ["", "## Base-model selection", "", "| model | zero-shot score | 95% CI | $ / 1k req | chosen |",
                  "|---|---|---|---|---|"]
        for r in sel:
            ci = r.get("ci")
            name = r["model"] + (" (endpoint)" if r.get("endpoint") else "")
            lines.append(f"| {name} | {fmt(r.get('score'))} | {f'[{fmt(ci[0])}, {fmt(ci[1])}]' if ci else ''} | "
                         f"{fmt_usd(r.get('usd_per_1k_requests'))} | {'yes' if r.get('chosen') else ''} |")
    full = (report.get("costs") or {}).get("full_finetune_estimate")
    if full:
        lines += [
            "",
            "## Full fine-tune (estimate only, never run)",
            "",
            f"- setup {fmt_sig(full.get('setup_gpu_hours'))} GPU-hours ≈ {fmt_usd(full.get('setup_usd'))}, "
            f"memory ≈ {fmt(full.get('memory_gb'), 2)} GB",
        ]
    pre = (report.get("costs") or {}).get("pretraining")
    if pre:
        lines += ["", "## Pretraining vs fine-tuning", "", f"- {pretraining_line(pre, finetune_phrase(report))}"]
    timing = training_time_line(report)
    if timing:
        lines += ["", "## Training time: estimated vs measured", "", f"- {timing}"]
    heading, cols, rows, note = method_rows(report)
    if rows:
        lines += ["", f"## {heading}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", f"- {note}"]
    lines.append("")
    return redact("\n".join(lines))


METHODS_NOTE = ("val loss: answer-token cross-entropy on the held-out train slice, the same items for every "
                "method, which chooses the fine-tune (the eval items do not); peak GB: the process's peak resident "
                "memory while the method trained (base model included) on a CPU, CUDA's peak allocation on a GPU")
# said under every comparisons table: the CI column and the "significant" column answer different questions
COMPARISONS_NOTE = ("95% CIs are per pair, not adjusted; \"significant\" uses the Holm-adjusted p, so a pair "
                    "whose CI excludes 0 may still not be significant once the table's other pairs are counted")
CHOICES_NOTE = ("classification with choices decoding scores each label's likelihood: the output is "
                "already constrained to the labels, the same kind of workflow constraint as constrained decoding")


def quality_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Secondary quality per pipeline: format compliance, the judge with its calibration, groundedness.

    Empty when the task declares no format and no judge."""
    checks = report["task"].get("format_checks") or []
    pipes = {n: p for n, p in report["pipelines"].items() if p.get("status") == "ok"}
    judged = any(p.get("judge") for p in pipes.values())
    grounded = any(p.get("groundedness") for p in pipes.values())
    if not (checks or judged):
        return [], []
    # the content beside the format: what a valid reply says (of format.answer_field, if set)
    content = [c for c in ("exact_match", "token_f1") if c != report["task"].get("metric")
               and any(c in (p.get("metrics") or {}) for p in pipes.values())][:1] if checks else []
    checks = [*checks, *content]
    cols = ["pipeline", *checks]
    if judged:
        cols += ["judge", "judge 95% CI", "agrees with", "flips (up/down)"]
    if grounded:
        cols.append("grounded")
    rows = []
    for name, p in pipes.items():
        m, j = p.get("metrics") or {}, p.get("judge") or {}
        row = [title(name, pipes), *(fmt(m.get(c)) for c in checks)]
        if judged:
            ci = j.get("ci")
            row += [fmt(j.get("score")), f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "—",
                    f"{j['reference']} {fmt(j.get('agreement'))}" if j else "—",
                    f"{j['flips_up']}/{j['flips_down']}" if j else "—"]
        if grounded:
            row.append(fmt((p.get("groundedness") or {}).get("score")))
        rows.append(row)
    return cols, rows


METHOD_COLS = ("method", "trainable", "{metric}", "95% CI", "val loss", "train tok/s", "train s", "est. train s",
               "est. error", "wall s", "peak GB", "load/core", "setup $", "chosen")
# the terminal's column sets, widest first (with real figures about 170, 130, 90 and 80 columns):
# the terminal table takes the first whose cells fit whole
METHOD_TIERS = (METHOD_COLS,
                ("method", "trainable", "{metric}", "95% CI", "val loss", "train s", "est. train s", "est. error",
                 "peak GB", "chosen"),
                ("method", "trainable", "{metric}", "95% CI", "val loss", "train s", "chosen"),
                ("method", "trainable", "{metric}", "95% CI", "val loss", "chosen"))


def method_rows(report: dict) -> tuple[str, list[str], list[list[str]], str]:
    """The fine-tune family's table (finetune.methods, issue 14): (title, columns, rows, note); no
    rows when at most one method ran. Measured training time beside the cost model's estimate for
    the same device and method (6·N·D full, 4·N·D the others): its error; setup $ on the task's card."""
    ft = (report.get("pipelines") or {}).get("finetune") or {}
    methods = ft.get("methods") or []
    if len(methods) < 2:
        return "", [], [], ""
    metric = report["task"]["metric"]
    cols = [c.format(metric=metric) for c in METHOD_COLS]
    rows = []
    for r in methods:
        if r.get("status") != "ok":
            rows.append([r.get("title") or r["method"], r.get("status", "?"), *([""] * (len(cols) - 3)),
                         str(r.get("reason", ""))[:80]])
            continue
        ci = r.get("ci")
        est, err = r.get("train_seconds_estimated"), r.get("estimate_error_pct")
        rows.append([
            r.get("title") or r["method"],
            f"{r['trainable_pct']:.3g} % ({r['trainable_params']:,})" if r.get("trainable_pct") is not None else "—",
            fmt(r.get("score")), f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "—",
            fmt(r.get("final_val_loss"), 4), fmt(r.get("train_tokens_per_second"), 0),
            fmt(r.get("train_seconds"), 1), fmt(est, 1), f"{err:+.0f} %" if err is not None else "—",
            fmt(r.get("wall_seconds"), 1), fmt(r.get("peak_memory_gb"), 2), fmt(r.get("cpu_load_per_core"), 2),
            fmt_usd(r.get("setup_usd")), "✓" if r.get("chosen") else "",
        ])
    ok = [r for r in methods if r.get("status") == "ok"]
    chosen = next((r.get("title") or r["method"] for r in methods if r.get("chosen")), None)
    heading = "Fine-tuning methods side by side"
    if chosen:
        heading += f" — {chosen} chosen: {ft.get('method_choice') or 'the chosen method'}"
    devices = sorted({str(r.get("device")) for r in ok if r.get("device")})
    loads = [r["cpu_load_per_core"] for r in ok if r.get("cpu_load_per_core") is not None]
    hw = ((report.get("costs") or {}).get("hardware") or {}).get("name")
    note = (f"est. train s: the cost model for {', '.join(devices) or 'the device it ran on'} (6·N·D full, 4·N·D "
            f"the others) against the measured train s"
            + (f"; load per core while training {min(loads):.2f}–{max(loads):.2f}" if loads else "")
            + (f"; setup $ on {hw}" if hw else "") + ". " + METHODS_NOTE)
    return heading, cols, rows, note


def judge_cost_line(report: dict) -> str | None:
    j = (report.get("evaluation_cost") or {}).get("judge")
    if not j:
        return None
    usd = "—" if j.get("usd") is None else fmt_usd(j["usd"])
    return (f"Judge ({j['model']}): {j['calls']} calls, {j['cached']} from cache, {fmt(j['seconds'], 1)} s, "
            f"{usd} — evaluation cost, not in any pipeline's cost")


def write_all(report: dict, out_dir: Path) -> None:
    atomic_write_text(out_dir / "report.json", to_json(report))
    atomic_write_text(out_dir / "report.md", to_markdown(report))
    try:
        from . import html
    except ImportError:  # pragma: no cover - html rendering lands with the reports issue
        return
    atomic_write_text(out_dir / "report.html", redact(html.render(report, run_dir=out_dir)))
