"""End to end: `advisor assess` on the bundled example (examples/acme-handbook/task.yaml).

Four runs of the real CLI, each a subprocess, in one fresh temporary ADVISOR_HOME and runs folder:
* cold   — empty advisor home: the bundled GGUF is converted to safetensors, the RAG index built;
* warm   — `--fresh`: every stage recomputed, with the converted model (and index) cached;
* rerun  — no flag, new run folder: every stage reused from the warm run.
* warm at the old price — `--fresh` with ADVISOR_CHOICE=full: the prompting variant and the RAG
  reader chosen as before issue 15 (every variant on every dev item, no choice cache), the same-run
  reference for the warm run (pipelines/choice.py).
* warm until the fine-tune — `--fresh --finetune never`: what a user waits for before the
  fine-tune steps (baseline, prompting, RAG and the decision). Since issue 14 the example's auto
  mode trains two adapters on the CPU (closed-book LoRA and RAG + fine-tune, because RAG misses
  the 0.60 target), which the 90 s goal (set when it trained one) did not include.
Wall time of each subprocess and the peak summed RSS of its process tree (sampled every 0.1 s),
and each run's stage breakdown (prepare / choice / predict per pipeline, from report.json).
Targets: warm <= 90 s (full auto run, and until the fine-tune), rerun <= 5 s, peak RSS <= 3 GB
(absolute, on this machine), and the warm run faster than its old-price reference (ratio).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT, TreeRSS, comparison, limit

TASK = ROOT / "examples" / "acme-handbook" / "task.yaml"
GB = 1e9


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("advisor")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "advisor.cli"]


def assess(home: Path, out: Path, extra: list[str], env_extra: dict | None = None) -> dict:
    import psutil

    env = {**os.environ, "ADVISOR_HOME": str(home), "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False",
           **(env_extra or {})}
    cmd = [*_cli(), "assess", str(TASK), "--out", str(out), "--json", *extra]
    with open(out.parent / f"{out.name}.stdout", "w") as so, open(out.parent / f"{out.name}.stderr", "w") as se:
        t0 = time.perf_counter()
        proc = psutil.Popen(cmd, stdout=so, stderr=se, env=env, cwd=ROOT)
        with TreeRSS(proc.pid) as rss:
            rc = proc.wait()
        secs = time.perf_counter() - t0
    res = {"seconds": round(secs, 2), "peak_rss_gb": round(rss.peak / GB, 3), "rc": rc, "args": extra}
    if rc != 0:
        tail = (out.parent / f"{out.name}.stderr").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"advisor assess {' '.join(extra)} exited {rc}:\n{tail}")
    try:
        rep = json.loads((out / "report.json").read_text())
        res["pipelines"] = {k: {"status": v.get("status"), "score": v.get("score"), "reused": v.get("reused"),
                                "timings": v.get("timings")} for k, v in rep["pipelines"].items()}
        res["stages"] = rep.get("stages")
        res["recommendation"] = rep.get("recommendation", {}).get("choice")
        res["engine_wall_seconds"] = rep.get("wall_seconds")
        res["breakdown"] = breakdown(rep)
    except (OSError, ValueError, KeyError) as e:
        res["report_error"] = repr(e)
    return res


def breakdown(rep: dict) -> dict:
    """{pipeline: {prepare, choice, predict, choice_generations}} seconds, from report.json."""
    out = {}
    for name, p in rep.get("pipelines", {}).items():
        t = p.get("timings") or {}
        if not t:  # skipped or failed
            continue
        d = p.get("details") or {}
        race = d.get("variant_race") or {}
        out[name] = {"prepare": t.get("prepare"), "choice": t.get("select_variant", t.get("select_reader")),
                     "predict": t.get("predict"), "train": t.get("train"),
                     "choice_generations": f"{race.get('generated')}/{race.get('full')}" if race else None,
                     "choice_reused": race.get("reused") if race else None}
    return out


def run(quick: bool) -> dict:
    extra = ["--limit", "8", "--finetune", "never"] if quick else []
    tmp = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    try:
        home, runs = tmp / "home", tmp / "runs"
        runs.mkdir(parents=True)
        cold = assess(home, runs / "acme-handbook-1-cold", extra)
        warm = assess(home, runs / "acme-handbook-2-warm", [*extra, "--fresh"])
        rerun = assess(home, runs / "acme-handbook-3-rerun", extra)
        no_ft = None if quick else assess(home, runs / "acme-handbook-5-warm-no-finetune",
                                          ["--fresh", "--finetune", "never"])
        old = assess(home, runs / "acme-handbook-4-old-price", [*extra, "--fresh"], {"ADVISOR_CHOICE": "full"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peak = max(cold["peak_rss_gb"], warm["peak_rss_gb"], rerun["peak_rss_gb"])
    fine_tunes = {p: round((b.get("train") or 0), 1) for p, b in warm.get("breakdown", {}).items() if b.get("train")}
    scope = "quick: --limit 8 --finetune never" if quick else "full example (40 eval items, finetune: auto)"
    return {
        "notes": [f"{k}: " + ", ".join(f"{p} " + "/".join(f"{x}" for x in (b['prepare'], b['choice'], b['predict']))
                                      for p, b in r.get("breakdown", {}).items()) + " s (prepare/choice/predict)"
                  for k, r in (("cold", cold), ("warm", warm), ("warm at the old choice price", old))],
        "comparisons": {
            "e2e_warm_seconds": limit(warm["seconds"], 90.0, "s", what=f"warm run (--fresh), {scope}"),
            "e2e_warm_vs_old_choice": comparison(
                warm["seconds"], old["seconds"], "s", 1.0, higher_is_better=False,
                what="warm run vs the same warm run with variant choice at the old price",
                reference_name="--fresh with ADVISOR_CHOICE=full (every variant on every dev item)",
            ),
            **({"e2e_warm_until_finetune_seconds": limit(
                no_ft["seconds"], 90.0, "s",
                what="warm run (--fresh) with --finetune never: everything before the fine-tune steps")}
               if no_ft else {}),
            "e2e_rerun_seconds": limit(rerun["seconds"], 5.0, "s", what="rerun, every stage reused"),
            "e2e_peak_rss_gb": limit(peak, 3.0, "GB", what="peak RSS of the process tree, any of the three runs"),
            "e2e_cold_seconds": limit(cold["seconds"], 90.0 + 45.0, "s",
                                      what="cold run (model conversion + index build); limit = warm's + 45 s"),
        },
        "details": {"cold": cold, "warm": warm, "rerun": rerun, "warm_old_choice": old, "warm_no_finetune": no_ft,
                    "warm_training_seconds": fine_tunes, "task": str(TASK.relative_to(ROOT)), "scope": scope},
    }
