"""Benchmark suites: run several task files, store them in the history, gate on regressions.

A suite file is YAML. Either a bare list of task files, or a mapping:

    k: 5                      # compare with the previous 5 runs of each task (default 5)
    alpha: 0.05               # significance level of the regression tests
    defaults: {finetune: auto, limit: null}
    tasks:
      - tasks/sentiment_mr.yaml               # relative to the suite file
      - task: tasks/banking77.yaml
        finetune: never                       # per-task overrides: finetune, limit, fresh
        limit: 100

Every task file is loaded and validated before any work starts, so a typo fails in a second
(exit 2) rather than after an hour. Bench runs compute every stage afresh by default: a
nightly that reused last night's cached results could not see a regression in the code or
its dependencies. `reuse=True` (per task: `fresh: false`) resumes from cached stages instead.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


from . import history, regression, run_folder
from .errors import AdvisorError

TASK_KEYS = ("task", "finetune", "limit", "fresh")
SUITE_KEYS = ("name", "k", "alpha", "defaults", "tasks")
FINETUNE_MODES = ("auto", "always", "never")


@dataclass
class SuiteTask:
    path: Path
    entry: str  # "tasks[1] (tasks/banking77.yaml)": how messages name it
    finetune: str | None = None
    limit: int | None = None
    fresh: bool | None = None


@dataclass
class Suite:
    path: Path
    name: str
    tasks: list[SuiteTask]
    k: int = regression.DEFAULT_K
    alpha: float = regression.ALPHA


def _err(suite: Path, where: str, msg: str, fix: str | None = None) -> AdvisorError:
    return AdvisorError(msg, where=f"{suite}: {where}" if where else str(suite), fix=fix)


def _options(suite: Path, where: str, raw: dict, allowed: tuple[str, ...]) -> dict:
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise _err(suite, where, f"unknown key '{unknown[0]}'", f"allowed keys: {', '.join(allowed)}")
    out: dict[str, Any] = {}
    if raw.get("finetune") is not None:
        if raw["finetune"] not in FINETUNE_MODES:
            raise _err(suite, f"{where}.finetune", f"'{raw['finetune']}' is not a mode", "use auto, always or never")
        out["finetune"] = raw["finetune"]
    if raw.get("limit") is not None:
        v = raw["limit"]
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _err(suite, f"{where}.limit", f"{v!r} is not a positive whole number", "write e.g. limit: 100")
        out["limit"] = v
    if raw.get("fresh") is not None:
        if not isinstance(raw["fresh"], bool):
            raise _err(suite, f"{where}.fresh", f"{raw['fresh']!r} is not true or false")
        out["fresh"] = raw["fresh"]
    return out


def load_suite(path: str | Path) -> Suite:
    """Parse and check a suite file; every task file must exist. Errors name the file and entry."""
    from .spec_loading import MAX_YAML_BYTES, NotARegularFile, TooLarge, parse_yaml, read_bounded_text

    path = Path(path)
    try:
        if path.exists() and not path.is_file() and not path.is_dir():
            raise NotARegularFile(path)
        text = read_bounded_text(path, MAX_YAML_BYTES)
    except FileNotFoundError:
        raise AdvisorError("no such suite file", where=str(path), fix="check the path (see benchmarks/suite.yaml)") from None
    except IsADirectoryError:
        raise AdvisorError("is a folder, not a suite file", where=str(path)) from None
    except (NotARegularFile, TooLarge) as e:
        raise AdvisorError(f"is {e.strerror}", where=str(path), fix="name a suite .yaml file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AdvisorError(f"cannot read ({e})", where=str(path)) from None
    # the same safe loader as task files: no Python objects, and an alias bomb in `limit` or
    # `tasks` is refused before anything expands it
    raw = parse_yaml(text, str(path))
    if isinstance(raw, list):
        raw = {"tasks": raw}
    if not isinstance(raw, dict):
        raise _err(path, "", "a suite is a list of task files or a mapping with 'tasks:'",
                   "see benchmarks/suite.yaml")
    unknown = [k for k in raw if k not in SUITE_KEYS]
    if unknown:
        raise _err(path, "", f"unknown key '{unknown[0]}'", f"allowed keys: {', '.join(SUITE_KEYS)}")
    entries = raw.get("tasks")
    if not isinstance(entries, list) or not entries:
        raise _err(path, "tasks", "needs a non-empty list of task files")
    k = raw.get("k", regression.DEFAULT_K)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise _err(path, "k", f"{k!r} is not a positive whole number")
    alpha = raw.get("alpha", regression.ALPHA)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 1:
        raise _err(path, "alpha", f"{alpha!r} is not a number between 0 and 1")
    defaults_raw = raw.get("defaults") or {}
    if not isinstance(defaults_raw, dict):
        raise _err(path, "defaults", "must be a mapping such as {finetune: never}")
    defaults = _options(path, "defaults", defaults_raw, ("finetune", "limit", "fresh"))
    base = path.resolve().parent
    tasks: list[SuiteTask] = []
    for i, entry in enumerate(entries):
        where = f"tasks[{i}]"
        if isinstance(entry, str):
            entry = {"task": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("task"), str) or not entry["task"].strip():
            raise _err(path, where, "each entry is a task file path or a mapping with 'task: <path>'")
        opts = {**defaults, **_options(path, where, entry, TASK_KEYS)}
        rel = entry["task"]
        task_path = Path(os.path.expanduser(os.path.expandvars(rel)))
        task_path = task_path if task_path.is_absolute() else base / task_path
        label = f"{where} ({rel})"
        if not task_path.is_file():
            raise _err(path, label, f"task file not found: {task_path}",
                       "paths are relative to the suite file; fix or remove the entry")
        tasks.append(SuiteTask(task_path, label, **opts))
    return Suite(path=path, name=str(raw.get("name") or path.stem), tasks=tasks, k=k, alpha=float(alpha))


# ---------------------------------------------------------------------------------------------
# running


Assess = Callable[..., dict]


@dataclass
class Prepared:
    task: SuiteTask
    spec: Any
    out_dir: Path
    assessment: Any = None


def _prepare(suite: Suite, runs_root: Path, reuse: bool) -> list[Prepared]:
    """Load and validate every task before any work: bad input costs seconds, not an hour."""
    from . import spec as spec_mod
    from .engine import Assessment

    out: list[Prepared] = []
    names: dict[str, str] = {}
    for t in suite.tasks:
        try:
            spec = spec_mod.load(t.path)
        except AdvisorError as e:
            raise AdvisorError(f"{t.entry}: {e}", where=str(suite.path)) from None
        if spec.name in names:
            raise _err(suite.path, t.entry, f"task name '{spec.name}' is already used by {names[spec.name]}",
                       "give each task in a suite its own name (the history is keyed by it)")
        names[spec.name] = t.entry
        if t.limit:
            spec.data.eval_limit = t.limit
        fresh = (not reuse) if t.fresh is None else t.fresh
        # out_dir None: validate() makes a unique runs/<task>-<time> folder (two benches started in
        # the same second never share one)
        a = Assessment(spec, None, finetune_mode=t.finetune, fresh=fresh, runs_root=runs_root)
        try:
            a.validate()
        except AdvisorError as e:
            for p in out:  # the folders made for the tasks before this one: still empty, not runs
                shutil.rmtree(p.out_dir, ignore_errors=True)
            raise AdvisorError(f"{t.entry}: {e}", where=str(suite.path)) from None
        out.append(Prepared(t, spec, a.out_dir, a))
    return out


def run_suite(
    suite: Suite,
    db: str | Path,
    *,
    k: int | None = None,
    runs_root: str | Path | None = None,
    reuse: bool = False,
    progress: Callable[[str, int, int | None], None] | None = None,
    log: Callable[[str], None] = lambda msg: None,
    assess: Assess | None = None,
) -> dict:
    """Run every task, record the run in the history, and compare it with the previous k runs.

    `assess(prepared) -> report dict` replaces the real assessment (tests use crafted reports).
    Returns {"suite", "run_id", "history", "tasks": [...], "comparison": {...}, "exit_code"}.
    """
    k = k or suite.k
    if k < 1:
        raise AdvisorError(f"k must be at least 1 (got {k})", where="--k")
    db = Path(db)
    runs_root = Path(runs_root) if runs_root else db.resolve().parent / "runs"
    history.connect(db).close()  # a wrong --history fails before any work
    prepared = _prepare(suite, runs_root, reuse)
    reports, dirs, summary = [], [], []
    for i, p in enumerate(prepared, 1):
        log(f"[{i}/{len(prepared)}] {p.task.entry}")
        if assess is None:
            if progress:
                p.assessment.progress = progress
            report = p.assessment.run()
            run_folder.write_outputs(p.out_dir, report, p.assessment.predictions())
        else:
            report = assess(p)
        reports.append(report)
        dirs.append(str(p.out_dir))
        rec = report.get("recommendation") or {}
        summary.append({
            "task": report["task"]["name"], "run_dir": str(p.out_dir), "recommendation": rec.get("choice"),
            "meets_target": rec.get("meets_target"), "metric": report["task"].get("metric"),
            "scores": {n: q.get("score") for n, q in (report.get("pipelines") or {}).items()},
            "statuses": {n: q.get("status") for n, q in (report.get("pipelines") or {}).items()},
            "wall_seconds": report.get("wall_seconds"),
        })
    from .environment import environment

    env = environment(next((r.get("environment", {}).get("device") for r in reports
                            if r.get("environment", {}).get("device")), None))
    run_id = history.record_run(db, reports, suite=str(suite.path), environment=env, run_dirs=dirs)
    comparison = regression.compare(db, run_id, k=k, alpha=suite.alpha)
    return {"suite": str(suite.path), "history": str(db), "run_id": run_id, "k": k, "tasks": summary,
            "comparison": comparison, "exit_code": comparison["exit_code"]}
