"""The `advisor` command line. The only place that prints to the user or exits.

Heavy libraries are imported inside commands, so `advisor --help` is instant. Every
`AdvisorError` becomes one line on stderr and exit code 2; SIGINT/SIGTERM exit 130/143 after
the finished stages have been saved.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from . import __version__
from .errors import AdvisorError, Interrupted

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Is prompting enough, does RAG fix it, or is a LoRA fine-tune worth the GPU spend?",
)
err_console = Console(stderr=True)


def _fail(err: AdvisorError) -> None:
    from rich.markup import escape

    from .environment import redact, strip_control

    # escape: a label such as '[/INST]' in a message is text, not rich markup; strip_control: an
    # ESC sequence in a label or path must not reach the terminal
    err_console.print(f"[bold red]error:[/] {escape(strip_control(redact(str(err))))}", highlight=False,
                      soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def _signals():
    """SIGTERM behaves like Ctrl-C: unwind (stages already saved), then exit 143."""

    def on_term(signum, frame):
        raise Interrupted(signum)

    old = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted:[/] finished stages are saved; run the same command to resume.")
        raise typer.Exit(130)
    except Interrupted as e:
        err_console.print("[yellow]terminated:[/] finished stages are saved; run the same command to resume.")
        raise typer.Exit(128 + e.signum)
    finally:
        signal.signal(signal.SIGTERM, old)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"advisor {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """advisor: measure prompting, RAG and LoRA on your task, with costs, and recommend one."""


class _RichProgress:
    """Renders pipeline progress callbacks as rich progress bars (one line per task).

    Off a terminal (CI logs, nightly cron mail) live bars render only at exit, so a 20-minute
    run would look hung: there it prints one plain line when each task finishes instead.
    """

    def __init__(self, console: Console, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.console = console
        self.enabled = enabled
        self.plain = enabled and not console.is_terminal
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=False, disable=not enabled or self.plain,
        )
        self.tasks: dict[str, int] = {}
        self.started: dict[str, float] = {}
        self.finished: set[str] = set()

    def __call__(self, desc: str, done: int, total: int | None) -> None:
        if desc not in self.tasks:
            self.tasks[desc] = self.progress.add_task(desc, total=total)
            self.started[desc] = time.monotonic()
        self.progress.update(self.tasks[desc], completed=done, total=total)
        if self.plain and total is not None and done >= total and desc not in self.finished:
            self.finished.add(desc)
            secs = time.monotonic() - self.started[desc]
            from .environment import strip_control

            self.console.print(strip_control(f"{desc}: {done}/{total} in {secs:.1f} s"), markup=False, highlight=False)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


def _with_methods(ft, methods: str):
    """finetune with --methods' list, checked like the task file's field (one line naming the option)."""
    from pydantic import ValidationError

    from .spec import METHOD_NAMES

    names = [m.strip() for m in methods.split(",") if m.strip()]
    try:
        return type(ft).model_validate({**ft.model_dump(), "methods": names})
    except ValidationError as err:
        why = err.errors()[0].get("msg", "invalid").removeprefix("Value error, ")
        raise AdvisorError(f"{methods!r}: {why}", where="--methods",
                           fix=f"list methods from {', '.join(METHOD_NAMES)}, separated by commas") from None


@app.command()
def assess(
    task: Path = typer.Argument(..., help="The task file (task.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<task>-<time>)."),
    finetune: Optional[str] = typer.Option(
        None, "--finetune", help="auto (only if cheaper pipelines miss the target) | always | never."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore cached stages from earlier runs."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N eval items."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout (progress goes to stderr)."),
    gpus: Optional[int] = typer.Option(
        None, "--gpus", min=1, max=64, help="Train the fine-tune on N processes (accelerate, DDP); sets finetune.devices."
    ),
    methods: Optional[str] = typer.Option(
        None, "--methods", help="Fine-tuning methods side by side, e.g. lora,full,prompt_tuning,ia3; sets finetune.methods."
    ),
) -> None:
    """Run the pipelines on TASK (baseline, prompting, RAG; the fine-tune and RAG + fine-tune when needed); write and print the report."""
    from . import run_folder
    from . import spec as spec_mod
    from .engine import Assessment

    if finetune is not None and finetune not in ("auto", "always", "never"):
        _fail(AdvisorError(f"'{finetune}' is not a mode", where="--finetune", fix="use auto, always or never"))
    console = Console(stderr=as_json)
    try:
        spec = spec_mod.load(task)
        if limit:
            spec.data.eval_limit = limit
        if gpus:
            spec.finetune.devices = gpus
        if methods is not None:
            spec.finetune = _with_methods(spec.finetune, methods)
        # without --out: a new, unique runs/<task>-<time> folder, made only once the input is valid
        a = Assessment(spec, out, finetune_mode=finetune, fresh=fresh, runs_root=out.parent if out else Path("runs"))
        a.validate()
        out_dir = a.out_dir
    except AdvisorError as e:
        _fail(e)
    with _signals(), _RichProgress(Console(stderr=True), enabled=sys.stderr.isatty() or not as_json) as bar:
        a.progress = bar
        try:
            report = a.run()
            run_folder.write_outputs(out_dir, report, a.predictions())
        except AdvisorError as e:
            bar.progress.stop()
            _fail(e)
    if as_json:
        from .report.files import to_json

        sys.stdout.write(to_json(report))
        return
    from .report import terminal

    terminal.render(report, console)
    console.print(f"\nRun folder: [bold]{out_dir}[/] (report.json, report.md, report.html, predictions/)")


@app.command()
def estimate(
    task: Path = typer.Argument(..., help="The task file (task.yaml)."),
    as_json: bool = typer.Option(False, "--json", help="Print the estimate as JSON."),
) -> None:
    """Dry run: setup, per-request and monthly cost and memory of every pipeline, in seconds."""
    from . import spec as spec_mod
    from .data import load_task_data
    from .estimate import estimate as run_estimate

    try:
        spec = spec_mod.load(task)
        result = run_estimate(spec, load_task_data(spec))
    except AdvisorError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
        return
    from .report.terminal import estimate_table

    console = Console()
    console.print(estimate_table(result, console.width))


TEMPLATE = """\
# advisor task file: see README.md. Paths are relative to this file.
name: {name}
type: {type}                  # classification | qa | generation
instructions: Describe the task for the model in one or two sentences.
{labels}data:
  eval: eval.jsonl              # one JSON object per line
  train: train.jsonl            # optional: few-shot pool, retrieved examples, fine-tuning set
  # corpus: docs/               # optional: documents for RAG (.md/.txt folder or .jsonl)
  fields: {{input: {input}, expected: {expected}}}
target: {{metric: {metric}, min: 0.8}}   # what would you ship? set it before you look at scores
budget: {{setup_usd: 50, requests_per_month: 100000}}
hardware: {{gpu: H100}}
"""


@app.command()
def init(
    path: Path = typer.Argument(Path("task.yaml"), help="Where to write the task file."),
    task_type: str = typer.Option("classification", "--type", help="classification | qa | generation."),
) -> None:
    """Write a commented task.yaml to start from."""
    if task_type not in ("classification", "qa", "generation"):
        _fail(AdvisorError(f"'{task_type}' is not a task type", where="--type", fix="use classification, qa or generation"))
    if path.exists():
        _fail(AdvisorError("already exists", where=str(path), fix="choose another path or delete it"))
    cls = task_type == "classification"
    text = TEMPLATE.format(
        name=re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().parent.name).strip("-.") or "my-task", type=task_type,
        labels="labels: [negative, positive]    # or labels.json, or omit to infer\n" if cls else "",
        input="text" if cls else "question", expected="label" if cls else "answers",
        metric="accuracy" if cls else "token_f1",
    )
    path.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {path}; edit it, then: advisor estimate {path} && advisor assess {path}")


@app.command()
def models() -> None:
    """List the bundled models and whether they are installed and converted."""
    from rich.table import Table

    from .models import advisor_home, list_models

    table = Table(title=f"Bundled models (cache: {advisor_home()})")
    for col in ("name", "kind", "params", "installed", "cached", "description"):
        table.add_column(col, no_wrap=col != "description")
    for m in list_models():
        table.add_row(m["name"], m["kind"], f"{m['params'] / 1e6:.1f} M", "yes" if m["installed"] else "no",
                      "yes" if m["cached"] else "no (converted on first use)", m["description"])
    Console().print(table)
    Console().print("Other models: a Hugging Face id already in the local cache, or a local folder path.")


# ---------------------------------------------------------------------------------------------
# report, bench, history (issue 6)

REPORT_FORMATS = ("html", "md", "json", "terminal")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="A run folder (it holds report.json)."),
    fmt: str = typer.Option("html", "--format", "-f", help="html | md | json | terminal."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of RUN_DIR/report.<ext>."),
) -> None:
    """Re-render a run's report from its report.json (html and md are written, json and terminal printed)."""
    from .environment import redact
    from .atomic import atomic_write_text
    from .report import files

    if fmt not in REPORT_FORMATS:
        _fail(AdvisorError(f"'{fmt}' is not a format", where="--format", fix="use html, md, json or terminal"))
    path = run_dir / "report.json" if run_dir.is_dir() or not run_dir.name.endswith(".json") else run_dir
    folder = path.parent
    try:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise AdvisorError("no report.json", where=str(folder), fix="pass a run folder written by `advisor assess`")
        except (OSError, UnicodeDecodeError) as e:
            raise AdvisorError(f"cannot read ({e})", where=str(path)) from None
        except ValueError as e:
            raise AdvisorError(f"not valid JSON ({e})", where=str(path), fix="re-run the assessment") from None
        if not isinstance(data, dict) or not isinstance(data.get("task"), dict) or "pipelines" not in data:
            raise AdvisorError("not an advisor report (no task/pipelines)", where=str(path))
        if fmt == "json":
            sys.stdout.write(files.to_json(data))
            return
        if fmt == "terminal":
            from .report import terminal

            terminal.render(data, Console())
            return
        if fmt == "md":
            text = files.to_markdown(data)
        else:
            from .report import html

            text = redact(html.render(data, run_dir=folder))
        target = out or folder / f"report.{fmt}"
        try:
            atomic_write_text(target, text)
        except OSError as e:
            raise AdvisorError(f"cannot write ({e.strerror})", where=str(target)) from None
    except AdvisorError as e:
        _fail(e)
    Console().print(f"wrote [bold]{target}[/]")


def _print_comparison(result: dict, console: Console) -> None:
    from rich.table import Table
    from rich.text import Text

    from rich.markup import escape

    from .environment import shown

    # task names and reasons come from files: no secrets, no terminal escapes, no rich markup
    result = shown(result, escape=escape)
    cmp = result["comparison"]
    if not console.is_terminal:  # nightly logs: wide enough for the whole table
        console.width = max(console.width, 150)
    table = Table(title=f"Run {result['run_id']} against the previous {cmp['k']} runs of each task "
                        f"(paired tests, {cmp['correction']}-adjusted, alpha {cmp['alpha']})")
    for col in ("task", "pipeline", "baseline", "now", "diff", "95% CI", "p (adj.)", "test", "verdict"):
        table.add_column(col, justify="right" if col in ("baseline", "now", "diff", "p (adj.)") else "left",
                         no_wrap=col != "verdict")
    colour = {"drop": "bold red", "now fails": "bold red", "gain": "green", "no significant change": "dim"}
    for t in cmp["tasks"]:
        for e in t["pipelines"]:
            has = "p_value" in e
            nb = len(e.get("baseline_runs") or [])
            runs = f" ({nb} run{'' if nb == 1 else 's'})" if nb else ""
            table.add_row(
                t["task"], e["pipeline"], f"{e['baseline']:.3f}{runs}" if has else "—",
                f"{e['current_on_shared']:.3f}" if has else (f"{e['current']:.3f}" if e.get("current") is not None else "—"),
                f"{e['diff']:+.3f}" if has else "—",
                f"[{e['ci'][0]:+.3f}, {e['ci'][1]:+.3f}]" if has else "—",
                f"{e['p_adjusted']:.3g}" if has else "—", e.get("test", ""),
                Text(e["verdict"], style=colour.get(e["verdict"], "")),
            )
    console.print(table)
    dirs = {t["task"]: t.get("run_dir") for t in result.get("tasks", [])}
    for t in cmp["tasks"]:
        r = t["recommendation"]
        if r["previous"] is None:
            console.print(f"{t['task']}: recommendation [bold]{r['current']}[/] (first run of this task)")
        else:
            verb = "[bold red]changed[/]" if r["changed"] else "unchanged"
            console.print(f"{t['task']}: recommendation {r['previous']} → [bold]{r['current']}[/] ({verb})")
        if dirs.get(t["task"]):
            console.print(f"  report: {Path(dirs[t['task']]) / 'report.html'}", highlight=False)  # escaped above
    if cmp["regression"]:
        console.print("[bold red]REGRESSION[/]")
        for reason in cmp["reasons"]:
            console.print(f"  • {reason}", highlight=False)  # escaped above
    else:
        console.print("[green]no regression[/]")


@app.command()
def bench(
    suite: Path = typer.Argument(..., help="The suite file (YAML list of task files)."),
    history_db: Path = typer.Option(..., "--history", help="SQLite history file (created if missing)."),
    k: Optional[int] = typer.Option(None, "--k", help="Compare with the previous K runs (default: the suite's k, or 5)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON to stdout (progress to stderr)."),
    runs: Optional[Path] = typer.Option(None, "--runs", help="Where run folders go (default: beside the history)."),
    reuse: bool = typer.Option(False, "--reuse", help="Reuse cached stages (resume a killed bench); default: fresh."),
) -> None:
    """Run a benchmark suite, store it in the history, and exit 1 on a regression against it."""
    from . import bench as bench_mod

    console = Console(stderr=as_json)
    try:
        s = bench_mod.load_suite(suite)
        if k is not None and k < 1:
            raise AdvisorError(f"k must be at least 1 (got {k})", where="--k")
        with _signals(), _RichProgress(Console(stderr=True), enabled=sys.stderr.isatty() or not as_json) as bar:
            result = bench_mod.run_suite(s, history_db, k=k, runs_root=runs, reuse=reuse, progress=bar,
                                         log=lambda msg: bar.progress.console.print(msg, highlight=False, markup=False))
    except AdvisorError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    else:
        _print_comparison(result, console)
    raise typer.Exit(result["exit_code"])


@app.command("history")
def history_cmd(
    db: Path = typer.Argument(..., help="The SQLite history written by `advisor bench`."),
    task: Optional[str] = typer.Option(None, "--task", "-t", help="Only this task."),
    last: int = typer.Option(20, "--last", min=2, help="How many runs the sparklines span."),
) -> None:
    """Trend table: per task and pipeline, a sparkline of scores over the last runs."""
    from rich.table import Table

    from rich.markup import escape

    from . import history as hist
    from .environment import shown
    from .report.terminal import sparkline

    try:
        if not db.exists():
            raise AdvisorError("no such history file", where=str(db), fix="run `advisor bench --history` first")
        trends = shown(hist.trend(db, task=task, last=last), escape=escape)  # data, not terminal escapes or markup
    except AdvisorError as e:
        _fail(e)
    console = Console()
    if not trends:
        console.print(f"{db}: no runs yet")
        return
    for t in trends:
        n = len(t["runs"])
        first, latest = t["runs"][0], t["runs"][-1]
        table = Table(title=f"{t['task']} ({t['metric']}): {n} runs, {first['created']} → {latest['created']}")
        for col in ("pipeline", "trend", "first", "latest", "Δ vs previous", "min", "max", "latest status"):
            table.add_column(col, justify="left" if col in ("pipeline", "trend", "latest status") else "right")
        for name, points in t["pipelines"].items():
            scores = [p.get("score") if p.get("status") == "ok" else None for p in points]
            real = [s for s in scores if s is not None]
            prev = next((s for s in reversed(scores[:-1]) if s is not None), None)
            delta = "—" if scores[-1] is None or prev is None else f"{scores[-1] - prev:+.3f}"
            table.add_row(
                name, sparkline(scores), f"{real[0]:.3f}" if real else "—",
                f"{scores[-1]:.3f}" if scores[-1] is not None else "—", delta,
                f"{min(real):.3f}" if real else "—", f"{max(real):.3f}" if real else "—",
                points[-1].get("status", "—"),
            )
        recs = [r["recommendation"] or "—" for r in t["runs"]]
        table.caption = "recommendation: " + " → ".join(
            r for i, r in enumerate(recs) if i == 0 or r != recs[i - 1]) + f" (latest: {recs[-1]})"
        console.print(table)


def main() -> None:
    try:
        app()
    except AdvisorError as e:  # pragma: no cover - commands catch their own
        err_console.print(f"error: {e}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
