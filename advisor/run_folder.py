"""The run folder: claimed before any work, written when the run is done.

`--out` writes only into a new or empty folder, or a run folder of the same task (its marker
says so); without it each run gets a unique runs/<task>-<time>. The engine returns the report;
the CLI writes it here (report files, predictions), and a reused folder keeps no output of an
earlier run beside the new report.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, catalogue
from .atomic import atomic_write_json, atomic_write_text
from .environment import redact
from .errors import AdvisorError
from .stages import RUN_MARKER, run_task


def default_out_dir(task_name: str, runs_root: Path) -> Path:
    """runs/<task>-<time>, created atomically and unique: two runs started in the same second get
    -2, -3, ... (mkdir fails on an existing name, so two processes can never share a folder)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    runs_root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        path = runs_root / (f"{task_name}-{stamp}" + ("" if i == 1 else f"-{i}"))
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise AdvisorError("no free run-folder name", where=str(runs_root), fix="clean up old runs or pass --out")


def check_out_dir(out_dir: Path, task_name: str) -> None:
    """`--out` writes only into a new or empty folder, or a run folder of the same task (its marker
    says so): anything else may be someone's files, and is refused before any work."""
    try:
        entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    except OSError:
        return  # unreadable: ensure_writable names the problem
    if not entries:
        return
    owner = run_task(out_dir)
    if owner == task_name:
        return
    shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    why = (f"is a run folder of another task ('{owner[:80]}')" if owner is not None
           else f"is not empty and not an advisor run folder (holds {shown})")
    raise AdvisorError(why, where=str(out_dir), fix="choose a new or empty folder for --out")


def claim_run_dir(out_dir: Path | None, task_name: str, runs_root: Path) -> Path:
    """The run folder, created (unique when no --out is given) and marked with the task's name."""
    if out_dir is None:
        ensure_writable(runs_root)
        out_dir = default_out_dir(task_name, runs_root)
    else:
        check_out_dir(out_dir, task_name)
        ensure_writable(out_dir)
    if run_task(out_dir) is None:
        atomic_write_json(out_dir / RUN_MARKER, {"task": task_name, "advisor": __version__,
                                                 "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return out_dir


def _probe_writable(folder: Path) -> None:
    """Create the folder and write (then remove) a file in it: permissions alone do not tell (root, ACLs)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test-{os.getpid()}"
    probe.write_text("ok")
    probe.unlink()


MIN_FREE_BYTES = 50_000_000  # reports, predictions and a LoRA adapter of a small model fit easily


def ensure_writable(out_dir: Path) -> None:
    """Fail before any work when the run folder cannot be written; on failure leave nothing behind."""
    if out_dir.exists() and not out_dir.is_dir():
        raise AdvisorError("is a file, not a run folder", where=str(out_dir), fix="choose another --out")
    created = [p for p in (out_dir, *out_dir.parents) if not p.exists()]
    try:
        free = shutil.disk_usage(next(p for p in (out_dir, *out_dir.parents) if p.exists())).free
    except (OSError, StopIteration):
        free = MIN_FREE_BYTES
    if free < MIN_FREE_BYTES:
        raise AdvisorError(
            f"only {free / 1e6:.0f} MB free on its disk (a run needs ~{MIN_FREE_BYTES / 1e6:.0f} MB)",
            where=str(out_dir), fix="free some space or choose another --out",
        )
    try:
        _probe_writable(out_dir)
    except OSError as e:
        for p in created:  # deepest first: only the folders this call made
            try:
                p.rmdir()
            except OSError:
                pass
        raise AdvisorError(
            f"cannot write the run folder ({e.strerror or e})", where=str(out_dir), fix="choose another --out"
        ) from None


def check_home(home: Path) -> None:
    """The advisor home holds converted models and the Chroma store that the LLM and RAG stages
    write: check it before the first stage, not as failed pipelines and a baseline-only verdict."""
    where, fix = f"ADVISOR_HOME ({home})", "set ADVISOR_HOME to a writable folder"
    if home.exists() and not home.is_dir():
        raise AdvisorError("is a file, not a folder", where=where, fix=fix)
    try:
        _probe_writable(home)
    except OSError as e:
        raise AdvisorError(f"cannot write ({e.strerror or e})", where=where, fix=fix) from None


def write_outputs(out_dir: Path, report: dict, predictions: dict[str, list[dict]]) -> None:
    """predictions/<pipeline>.jsonl, then report.json/md/html; stale outputs of an earlier run removed."""
    from .report import files

    for name, rows in predictions.items():
        lines = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in rows)
        atomic_write_text(out_dir / "predictions" / f"{name}.jsonl", redact(lines))
    statuses = {name: p.get("status") for name, p in report.get("pipelines", {}).items()}
    remove_stale_outputs(out_dir, statuses, set(predictions))
    files.write_all(report, out_dir)


def remove_stale_outputs(out_dir: Path, statuses: dict[str, str | None], with_predictions: set[str]) -> None:
    """A reused run folder keeps no output of an earlier run that this run did not produce
    (predictions, failure logs, an adapter): beside the new report they would read as its own.
    stages/ stays: it is the keyed cache resume relies on, never shown as a result."""
    for name in {*catalogue.names(), *statuses}:
        if name not in with_predictions:
            (out_dir / "predictions" / f"{name}.jsonl").unlink(missing_ok=True)
        if statuses.get(name) != "failed":
            (out_dir / "logs" / f"{name}.log").unlink(missing_ok=True)
    for e in catalogue.entries():
        if statuses.get(e.name) == "ok":
            continue
        for art in e.artifacts:
            if (out_dir / art).exists():
                shutil.rmtree(out_dir / art, ignore_errors=True)
                (out_dir / "stages" / f"{e.name}.json").unlink(missing_ok=True)  # its artifact is gone
