"""The `advisor` command line. The only place that prints to the user or exits.

Heavy libraries are imported inside commands, so `advisor --help` is instant. Every
`AdvisorError` becomes one line on stderr and exit code 2; SIGINT/SIGTERM exit 130/143 after
the finished stages have been saved.
"""

from __future__ import annotations

import json
import signal
import sys
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
    from .environment import redact

    err_console.print(f"[bold red]error:[/] {redact(str(err))}", highlight=False, soft_wrap=True)
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
    """Renders pipeline progress callbacks as rich progress bars (one line per task)."""

    def __init__(self, console: Console, enabled: bool):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.enabled = enabled
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=False, disable=not enabled,
        )
        self.tasks: dict[str, int] = {}

    def __call__(self, desc: str, done: int, total: int | None) -> None:
        if desc not in self.tasks:
            self.tasks[desc] = self.progress.add_task(desc, total=total)
        self.progress.update(self.tasks[desc], completed=done, total=total)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)


@app.command()
def assess(
    task: Path = typer.Argument(..., help="The task file (task.yaml)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run folder [default: runs/<task>-<time>]."),
    finetune: Optional[str] = typer.Option(
        None, "--finetune", help="auto (only if cheaper pipelines miss the target) | always | never."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore cached stages from earlier runs."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Score only the first N eval items."),
    as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout (progress goes to stderr)."),
) -> None:
    """Run baseline, prompting, RAG and (when needed) LoRA on TASK; write and print the report."""
    from . import spec as spec_mod
    from .engine import Assessment, default_out_dir

    if finetune is not None and finetune not in ("auto", "always", "never"):
        _fail(AdvisorError(f"'{finetune}' is not a mode", where="--finetune", fix="use auto, always or never"))
    console = Console(stderr=as_json)
    try:
        spec = spec_mod.load(task)
        if limit:
            spec.data.eval_limit = limit
        runs_root = Path("runs")
        out_dir = out or default_out_dir(spec, runs_root)
        a = Assessment(spec, out_dir, finetune_mode=finetune, fresh=fresh, runs_root=out_dir.parent)
        a.validate()
    except AdvisorError as e:
        _fail(e)
    with _signals(), _RichProgress(Console(stderr=True), enabled=sys.stderr.isatty() or not as_json) as bar:
        a.progress = bar
        try:
            report = a.run()
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
def models() -> None:
    """List the bundled models and whether they are installed and converted."""
    from rich.table import Table

    from .models import advisor_home, list_models

    table = Table(title=f"Bundled models (cache: {advisor_home()})")
    for col in ("name", "kind", "params", "installed", "cached", "description"):
        table.add_column(col)
    for m in list_models():
        table.add_row(m["name"], m["kind"], f"{m['params'] / 1e6:.1f} M", "yes" if m["installed"] else "no",
                      "yes" if m["cached"] else "no (converted on first use)", m["description"])
    Console().print(table)
    Console().print("Other models: a Hugging Face id already in the local cache, or a local folder path.")


def main() -> None:
    try:
        app()
    except AdvisorError as e:  # pragma: no cover - commands catch their own
        err_console.print(f"error: {e}")
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    main()
