"""Run the performance benchmarks, print every comparison, write benchmarks/results/<name>.json.

    python -m benchmarks.run                  # everything (make bench; ~10-15 min on 2 cores)
    python -m benchmarks.run --quick          # small sizes: checks the harness in a few minutes
    python -m benchmarks.run --only lora --only cost

Each benchmark module exposes run(quick) -> {"comparisons": {...}, "details": {...}, "notes": [...]};
this driver adds the machine, the package versions, the load average before and after (other
work on the machine makes timings noisy: read them with it) and writes one file per benchmark
(`<name>-quick.json` for --quick runs, so a quick check never overwrites the full figures).
A benchmark that fails is recorded as failed and the others still run; the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

from . import common

BENCHMARKS = ("generation", "scoring", "lora", "rag", "e2e", "cost", "decisions")


def _cpu_seconds() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_one(name: str, quick: bool, out_dir: Path | None = None) -> dict:
    mod = importlib.import_module(f"benchmarks.bench_{name}")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load_before = common.load_average()
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    try:
        body = mod.run(quick)
        status, error = "ok", None
    except Exception as e:  # noqa: BLE001 - one failing benchmark must not hide the others
        body, status = {}, "failed"
        error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}"
    result = {
        "benchmark": name,
        "schema_version": common.SCHEMA_VERSION,
        "status": status,
        "quick": quick,
        "started": started,
        "seconds": round(time.perf_counter() - t0, 1),
        # CPU seconds of this process and its finished children (e2e's CLI runs): the work done,
        # which other load on the machine changes far less than the wall time
        "cpu_seconds": round(_cpu_seconds() - cpu0, 1),
        "machine": common.machine(),
        "load_average_before": load_before,
        "load_average_after": common.load_average(),
        "packages": common.package_versions(),
        "git_commit": common.git_commit(),
        "comparisons": body.get("comparisons", {}),
        "details": body.get("details", {}),
        "notes": body.get("notes", []),
    }
    if error:
        result["error"] = error
    result["path"] = str(common.write_result(name, result, quick=quick, out_dir=out_dir))
    return result


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x)
    x = float(x)
    if x == int(x) and abs(x) < 1e9:
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def print_table(results: list[dict], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    # logs and CI are not terminals: rich would wrap the table at 80 columns there
    console = console or (Console() if sys.stdout.isatty() else Console(width=150))
    table = Table(title="advisor benchmarks (ratio: higher is better; met: ratio >= target)")
    for col in ("benchmark", "comparison", "ours", "reference", "unit", "ratio", "target", "met"):
        table.add_column(col, justify="right" if col in ("ours", "reference", "ratio", "target") else "left",
                         no_wrap=col in ("benchmark", "comparison"))
    for r in results:
        if r["status"] != "ok":
            table.add_row(r["benchmark"], "[red]failed[/]", "", "", "", "", "", r["error"].splitlines()[0][:60])
            continue
        for key, c in r["comparisons"].items():
            met = "[green]yes[/]" if c["met"] else "[red]no[/]"
            table.add_row(r["benchmark"], key, _fmt(c["ours"]), _fmt(c["reference"]), c["unit"],
                          _fmt(c["ratio"]), _fmt(c["target"]), met)
    console.print(table)
    for r in results:
        for note in r.get("notes", []):
            console.print(f"[dim]{r['benchmark']}: {note}[/]")
    loads = [r["load_average_before"] for r in results if r.get("load_average_before")]
    m = results[0]["machine"] if results else {}
    console.print(f"[dim]machine: {m.get('cpu_count')} CPUs ({m.get('cpu_model', '?')}), torch threads "
                  f"{m.get('torch_threads', '?')}; 1-min load average before each benchmark: "
                  f"{', '.join(str(x[0]) for x in loads)}[/]")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: checks the harness quickly")
    ap.add_argument("--only", action="append", choices=BENCHMARKS, metavar="NAME",
                    help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's own choice, the core count)")
    ap.add_argument("--out", type=Path, default=None, help="results folder [benchmarks/results]")
    args = ap.parse_args(argv)

    if args.threads:
        import os

        import torch

        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the e2e benchmark's subprocesses too
        torch.set_num_threads(args.threads)
    names = [n for n in BENCHMARKS if not args.only or n in args.only]
    results = []
    t0 = time.perf_counter()
    for name in names:
        print(f"[benchmarks] {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        r = run_one(name, args.quick, args.out)
        print(f"[benchmarks] {name}: {r['status']} in {r['seconds']} s ({r['cpu_seconds']} CPU-s) -> {r['path']}",
              file=sys.stderr, flush=True)
        if r["status"] != "ok":
            print(r["error"], file=sys.stderr)
        results.append(r)
    print_table(results)
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
