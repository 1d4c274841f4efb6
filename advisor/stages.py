"""Stage results on disk: atomic writes, keys that hash what a stage depends on, and reuse.

A stage (base-model selection, a pipeline, the decision) is stored as JSON in the run folder
under `stages/<name>.json` with its key. A later run reuses a stored result whose key matches,
from its own folder or from the latest runs of the same task, so a run killed at minute 20
resumes instead of starting again. Writes go to a temp file and are renamed into place: a kill
-9 mid-write leaves the old file or none, never half of one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_write_json, atomic_write_text
from .data import content_hash
from .environment import redact, versions


# Modules whose code decides a stage's scores. Reports, CLI and history are left out: editing
# them must not throw away hours of training. Of pipelines/, a stage depends on its own module
# and what that imports, found by reading the imports (so a new helper module is never missed).
# advisor/stats.py is not among them: CIs and tests are computed from the stored per-item
# scores when the report is made, so a change to the statistics reuses every stage.
_SHARED_SCORING_CODE = ("advisor/data.py", "advisor/metrics.py", "advisor/models.py")
_PIPELINES = "pipelines"


def _pipeline_imports(path: Path) -> set[str]:
    """Sibling modules of pipelines/ that ``path`` imports, at any depth of its code."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                found.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                found.update(a.name for a in node.names)
            elif node.level == 0 and node.module and node.module.split(".")[0] == _PIPELINES:
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith(_PIPELINES + "."))
    return found


def _pipeline_closure(pkg: Path, entry: str) -> list[Path]:
    seen: set[str] = set()
    todo = [entry, "__init__"]
    while todo:
        name = todo.pop()
        path = pkg / f"{name}.py"
        if name in seen or not path.is_file():
            continue
        seen.add(name)
        todo.extend(_pipeline_imports(path) - seen)
    return sorted(pkg / f"{n}.py" for n in seen)


@functools.lru_cache(maxsize=None)
def code_fingerprint(stage: str | None = None) -> str:
    """Hash of the code that scores ``stage`` (every pipeline module when the stage has none of
    its own), so a result computed by older code (same version number, e.g. a checkout in
    development) is never reused as if it were current."""
    root = Path(__file__).resolve().parent.parent
    pkg = root / _PIPELINES
    files = [root / rel for rel in _SHARED_SCORING_CODE]
    if stage is not None and (pkg / f"{stage}.py").is_file():
        files += _pipeline_closure(pkg, stage)
    else:
        files += sorted(pkg.rglob("*.py"))
    return content_hash(
        {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}
    )


def stage_key(name: str, **inputs: Any) -> str:
    """Hash of everything a stage's result depends on: advisor version, the stage's scoring code
    and ML package versions included.

    A new transformers or peft can change outputs, so a result cached under the old ones must
    not be reused as if nothing had changed.
    """
    return content_hash(
        {"stage": name, "advisor": __version__, "code": code_fingerprint(name), "packages": versions(), **inputs}
    )


class StageStore:
    def __init__(self, run_dir: Path, *, search: list[Path] = (), fresh: bool = False):
        self.run_dir = run_dir
        self.dir = run_dir / "stages"
        self.search = [p for p in search if p.resolve() != run_dir.resolve()]
        self.fresh = fresh
        self.status: dict[str, str] = {}  # stage -> computed | reused

    def _read(self, folder: Path, name: str, key: str) -> dict | None:
        path = folder / "stages" / f"{name}.json"
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(stored, dict) or stored.get("key") != key or not isinstance(stored.get("result"), dict):
            return None
        if stored["result"].get("status") == "failed":
            return None  # a failure is a fault of that run (read-only home, broken store), never a result
        return stored

    def get(self, name: str, key: str) -> dict | None:
        if self.fresh:
            return None
        for folder in [self.run_dir, *self.search]:
            stored = self._read(folder, name, key)
            if stored is None:
                continue
            if folder != self.run_dir:
                self._copy_artifacts(folder, stored.get("artifacts", []))
                atomic_write_json(self.dir / f"{name}.json", stored)
            self.status[name] = "reused"
            return stored["result"]
        return None

    def _copy_artifacts(self, folder: Path, artifacts: list[str]) -> None:
        for rel in artifacts:
            src, dst = folder / rel, self.run_dir / rel
            if src.is_dir() and not dst.exists():
                shutil.copytree(src, dst)
            elif src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)

    def put(self, name: str, key: str, result: dict, artifacts: list[str] = ()) -> None:
        if result.get("status") == "failed":
            # not stored: a rerun after the cause is fixed must compute it, not replay the failure
            self.status[name] = "computed"
            return
        # stage files hold predictions with their inputs: redact them like every report file
        record = {"key": key, "result": result, "artifacts": list(artifacts)}
        atomic_write_text(self.dir / f"{name}.json", redact(json.dumps(record, indent=2, ensure_ascii=False, default=str)) + "\n")
        self.status[name] = "computed"


RUN_MARKER = ".advisor-run.json"  # written by engine.claim_run_dir: {"task": name, ...}


def run_task(folder: Path) -> str | None:
    """The task a run folder belongs to, from its marker (None: no marker, e.g. an older run)."""
    try:
        marker = json.loads((folder / RUN_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(marker.get("task")) if isinstance(marker, dict) else None


def previous_runs(runs_root: Path, task_name: str, limit: int = 5) -> list[Path]:
    """Latest run folders of a task (newest first), for stage reuse. A marked folder of another
    task is never searched, even when its name starts alike ('tiny-...' vs 'tiny-cls-...')."""
    if not runs_root.is_dir():
        return []
    found = [p for p in runs_root.glob(f"{task_name}-*")
             if (p / "stages").is_dir() and run_task(p) in (None, task_name)]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:limit]
