"""Shared pieces of the benchmark suite: comparison records, result files, machine facts, data.

A results file (benchmarks/results/<name>.json) holds, at the top, the machine and the package
versions, then `comparisons`: each an object

    {ours, reference, unit, ratio, target, met, ...}

with `ratio` oriented so that higher is better (ours/reference for a rate, reference/ours for a
time) and `met` = ratio >= target. Absolute targets ("10k chunks indexed in <= 30 s") are
comparisons whose reference is the limit itself (`reference_name: "limit"`). Nothing here is a
timed assertion: the suite records and prints; nightly runs read the files and track them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import threading
import time
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCHEMA_VERSION = 1
LLM_NAME = "bundled:smollm2-135m-instruct"
EMBEDDER_NAME = "bundled:all-minilm-l6-v2"

COMPARISON_KEYS = ("ours", "reference", "unit", "ratio", "target", "met")


# ------------------------------------------------------------------------------ comparisons


def comparison(
    ours: float,
    reference: float,
    unit: str,
    target: float,
    *,
    higher_is_better: bool = True,
    ratio: float | None = None,
    **extra: Any,
) -> dict:
    """One comparison object. `ratio` defaults to ours/reference for a rate (higher is better)
    and reference/ours for a time or a size (lower is better); `met` is ratio >= target."""
    if ratio is None:
        if higher_is_better:
            ratio = ours / reference if reference else math.inf
        else:
            ratio = reference / ours if ours else math.inf
    out = {
        "ours": _num(ours), "reference": _num(reference), "unit": unit, "ratio": _num(ratio, 4),
        "target": target, "met": bool(ratio >= target), "higher_is_better": higher_is_better,
    }
    out.update(extra)
    return out


def limit(value: float, limit_value: float, unit: str, *, what: str, **extra: Any) -> dict:
    """An absolute target ("<= limit"): the reference is the limit, ratio = limit / value (>= 1 met)."""
    return comparison(value, limit_value, unit, 1.0, higher_is_better=False, reference_name="limit",
                      what=what, **extra)


def within(predicted: float, measured: float, unit: str, tolerance: float, *, what: str, **extra: Any) -> dict:
    """|predicted - measured| / measured <= tolerance: ratio = 1 - relative error, target 1 - tolerance."""
    err = abs(predicted - measured) / measured if measured else math.inf
    return comparison(predicted, measured, unit, round(1.0 - tolerance, 6), ratio=1.0 - err, what=what,
                      error_pct=_num(100.0 * (predicted - measured) / measured if measured else math.inf, 2),
                      **extra)


def _num(x: float, digits: int = 6) -> float | None:
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None  # JSON has no inf/nan
    return round(x, digits) if abs(x) < 1e6 else round(x, 1)


def validate_result(obj: dict) -> list[str]:
    """Problems with a results object (empty list: well-formed). Used by the smoke test."""
    problems = []
    for key in ("benchmark", "schema_version", "machine", "packages", "comparisons", "status"):
        if key not in obj:
            problems.append(f"missing top-level key '{key}'")
    m = obj.get("machine", {})
    for key in ("cpu_count", "platform"):
        if key not in m:
            problems.append(f"machine lacks '{key}'")
    comps = obj.get("comparisons", {})
    if not isinstance(comps, dict):
        return problems + ["comparisons is not an object"]
    for name, c in comps.items():
        for key in COMPARISON_KEYS:
            if key not in c:
                problems.append(f"comparison '{name}' lacks '{key}'")
        if all(k in c for k in COMPARISON_KEYS):
            if not isinstance(c["unit"], str):
                problems.append(f"comparison '{name}': unit is not text")
            if not isinstance(c["met"], bool):
                problems.append(f"comparison '{name}': met is not true/false")
            if c["ratio"] is not None and c["target"] is not None and c["met"] != (c["ratio"] >= c["target"]):
                problems.append(f"comparison '{name}': met disagrees with ratio >= target")
    return problems


# ------------------------------------------------------------------------------ machine


def machine() -> dict:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
    }
    try:
        info["cpus_available"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        pass
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 1e9, 1)
    except Exception:  # noqa: BLE001 - facts are best-effort
        pass
    if "torch" in __import__("sys").modules:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.is_available()
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def package_versions() -> dict[str, str | None]:
    """The advisor's own version list plus the few packages only the benchmarks use."""
    from advisor import __version__
    from advisor.environment import versions

    extra = {"langchain-huggingface", "langchain-text-splitters", "psutil"}
    out: dict[str, str | None] = {"advisor": __version__, **versions()}
    for p in sorted(extra - out.keys()):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_commit() -> str | None:
    from advisor.environment import git_commit as commit

    return commit(ROOT)


def write_result(name: str, body: dict, *, quick: bool, out_dir: Path | None = None) -> Path:
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (f"{name}-quick.json" if quick else f"{name}.json")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------ data and models


def data_dir() -> Path:
    return Path(os.environ.get("ADVISOR_DATA") or ROOT.parent / "shared" / "data")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@lru_cache(maxsize=1)
def llm():
    """The bundled SmolLM2, loaded once per process (converted once per machine)."""
    from advisor.models import load_llm

    return load_llm(LLM_NAME)


@lru_cache(maxsize=1)
def embedder():
    from advisor.models import load_embedder

    return load_embedder(EMBEDDER_NAME)


def load_task(name: str):
    """A benchmark task spec + data (benchmarks/tasks/<name>.yaml, data under $ADVISOR_DATA)."""
    from advisor import spec as spec_mod
    from advisor.data import load_task_data

    os.environ.setdefault("ADVISOR_DATA", str(data_dir()))
    spec = spec_mod.load(ROOT / "benchmarks" / "tasks" / f"{name}.yaml")
    return spec, load_task_data(spec)


# ------------------------------------------------------------------------------ timing


@contextmanager
def timer() -> Iterator[dict]:
    box: dict = {}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - t0


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    xs = sorted(values)
    if not xs:
        return math.nan
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 3), "p95_ms": round(percentile(ms, 95), 3),
            "mean_ms": round(statistics.fmean(ms), 3) if ms else None}


class TreeRSS:
    """Peak summed RSS of a process and all its descendants, sampled every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
