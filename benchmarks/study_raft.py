"""Does a RAFT share of distractor-only training prompts help RAG + fine-tune? Measured on the
*train* set only, never on eval items: a seeded slice of the train set is held out, each share
trains its own adapter on the rest (same seed, steps and prompts otherwise), and the held-out
questions are answered through RAG's chain on each adapter; the shares are compared item by item
(paired bootstrap, advisor.stats.paired_compare). Its result is what should set
pipelines/rag_finetune.DEFAULT_DISTRACTOR_SHARE (keep 0 unless a share is better beyond noise).

    PYTHONPATH=. python -m benchmarks.study_raft benchmarks/tasks/squad_rag.yaml --shares 0 0.2

Writes benchmarks/results/study_raft-<task>.json (scores, per-item scores, timings, load).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from . import common


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task")
    ap.add_argument("--shares", type=float, nargs="+", default=[0.0, 0.2])
    ap.add_argument("--holdout", type=int, default=40, help="train items held out to score on")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: the task's CPU cap)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    from advisor import metrics, stats
    from advisor.data import Dataset, content_hash, load_task_data
    from advisor.models import advisor_home, load_llm
    from advisor.spec import load
    from pipelines.base import RunContext
    from pipelines.generation import Generator
    from pipelines.rag_finetune import RagFinetunePipeline

    spec = load(Path(args.task))
    if args.steps:
        spec.finetune.cpu_max_steps = args.steps
        spec.finetune.max_steps = args.steps
    data = load_task_data(spec)
    items = list(data.train.examples)
    random.Random(spec.seed + 1).shuffle(items)  # another seed than the validation and dev slices
    held, rest = items[: args.holdout], items[args.holdout:]
    data.train = Dataset(rest, data.train.path, content_hash([e.id for e in rest]))
    llm = load_llm(spec.models.candidates[0])
    gen = Generator(llm)
    rows, per_item = {}, {}
    load_before = common.load_average()
    for share in args.shares:
        t0 = time.perf_counter()
        pipe = RagFinetunePipeline(distractor_share=share)
        run_dir = Path(tempfile.mkdtemp(prefix=f"study-raft-{share}-"))
        pipe.prepare(RunContext(spec, data, llm, gen, run_dir=run_dir, cache_dir=advisor_home()))
        out = pipe.predict(held)
        s = metrics.score(spec.type, [p.output for p in out.predictions], [e.expected for e in held], data.labels)
        name = f"share={share:g}"
        per_item[name] = s.per_example[spec.metric]
        rows[name] = {"score": round(s.metrics[spec.metric], 4), "ci": [round(x, 4) for x in stats.score_ci(per_item[name])],
                      "train_prompts": out.details["train_prompts"], "extractor": out.details["extractor"],
                      "train_seconds": out.usage.train_seconds, "steps": out.usage.extra.get("steps"),
                      "cpu_load_per_core": out.usage.cpu_load_per_core, "wall_seconds": round(time.perf_counter() - t0, 1)}
        print(name, rows[name], flush=True)
    names = list(rows)
    comparisons = []
    for other in names[1:]:
        c = stats.paired_compare(per_item[names[0]], per_item[other], names=(names[0], other))
        comparisons.append({"a": names[0], "b": other, "diff_b_minus_a": round(c.diff, 4),
                            "ci": [round(x, 4) for x in c.ci], "p": round(c.p_value, 4), "test": c.test})
        print(comparisons[-1], flush=True)
    result = {"task": spec.name, "metric": spec.metric, "n_heldout_train": len(held), "n_train": len(rest),
              "rows": rows, "comparisons": comparisons, "per_item": per_item,
              "load_average_before": load_before, "load_average_after": common.load_average(),
              "machine": common.machine()}
    out_path = args.out or common.RESULTS / f"study_raft-{spec.name}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out_path}")
    return result


if __name__ == "__main__":
    main()
