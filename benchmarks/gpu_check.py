"""Train the LoRA pipeline on one task and print what the device did.

tokens/s, MFU (model FLOPs 6·N·D and the LoRA 4·N·D of advisor.cost, against the card's bf16 dense
peak from advisor.cost.HARDWARE), peak memory, the loss curve and the eval accuracy. D is the
tokens actually run through the model (with prefix packing, the shared prompt prefix counts once
per micro-batch), so the MFU is the hardware's real utilisation.

    benchmarks/gpu_check.sh                      # the wrapper: banking77, GPU if there is one
    python benchmarks/gpu_check.py TASK.yaml [--steps N] [--eval-limit N] [--json OUT.json]
    accelerate launch --multi_gpu --num_processes 4 benchmarks/gpu_check.py TASK.yaml   # DDP

Under DDP every rank trains; rank 0 evaluates and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("task", nargs="?", default=str(ROOT / "benchmarks" / "tasks" / "banking77.yaml"))
    ap.add_argument("--steps", type=int, help="optimizer steps (default: the task's epochs / max_steps)")
    ap.add_argument("--eval-limit", type=int, help="evaluate on the first N eval items")
    ap.add_argument("--batch", type=int, help="finetune.batch_size override")
    ap.add_argument("--no-pack", action="store_true", help="pad rows instead of packing around the shared prefix")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    from accelerate import PartialState

    from advisor import cost, metrics
    from advisor import spec as S
    from advisor.data import load_task_data
    from advisor.models import load_llm
    from pipelines.base import RunContext
    from pipelines.finetune import FinetunePipeline

    import torch

    state = PartialState(cpu=not torch.cuda.is_available())  # cpu=True: several CPU processes use gloo
    spec = S.load(args.task)
    ft = spec.finetune
    if args.steps:
        ft.max_steps = ft.cpu_max_steps = args.steps
    if args.batch:
        ft.batch_size = args.batch
    if args.eval_limit:
        spec.data.eval_limit = args.eval_limit
    data = load_task_data(spec)
    device = str(state.device) if state.device.type == "cuda" else "cpu"
    t0 = time.perf_counter()
    llm = load_llm(spec.models.candidates[0], device=device)
    load_s = time.perf_counter() - t0
    run_dir = Path(os.environ.get("OUT", "/tmp/advisor-gpu-check")) / f"rank{state.process_index}"
    pipe = FinetunePipeline(share_prefix=not args.no_pack)
    pipe.prepare(RunContext(spec, data, llm, None, run_dir=run_dir))
    if not state.is_main_process:
        return 0
    examples = data.eval.examples
    out = pipe.predict(examples)
    scored = metrics.score(spec.type, [p.output for p in out.predictions], [e.expected for e in examples],
                           data.labels, constrained=spec.decoding == "choices")
    u, d = out.usage, out.details
    hw = cost.get_hardware(u["device_hardware"]) if u["device_hardware"] else None
    n, tokens, secs, procs = llm.n_params, u["train_tokens_total"], u["train_seconds"], u["processes"]
    peak = hw.peak_flops * procs if hw else None
    mfu6 = cost.train_flops(n, tokens, "full") / (secs * peak) if peak and secs else None
    mfu4 = cost.train_flops(n, tokens, "lora") / (secs * peak) if peak and secs else None
    curve = d["loss_curve"]
    figures = {
        "device": u["device_name"], "cost_table_entry": u["device_hardware"], "processes": procs,
        "peak_flops_per_device": hw.peak_flops if hw else None, "model": llm.name, "n_params": n,
        "trainable_params": u["trainable_params"], "trainable_pct": u["trainable_pct"],
        "steps": u["steps"], "batch_size": u["batch_size"], "micro_batch": u["micro_batch"],
        "batching": d["batching"], "train_tokens": tokens, "train_tokens_unpacked": u["train_tokens_unpacked"],
        "train_seconds": secs, "tokens_per_second": u["tokens_per_second"],
        "unpacked_tokens_per_second": round(u["train_tokens_unpacked"] / secs, 1) if secs else None,
        "mfu_6ND": mfu6, "mfu_4ND_lora": mfu4, "peak_memory_gb": u["peak_memory_gb"],
        "peak_memory_kind": u["peak_memory_kind"], "loss_curve": curve, "metric": spec.metric,
        "score": scored.metrics[spec.metric], "n_eval": len(examples), "eval_seconds": out.timings["predict"],
        "model_load_seconds": round(load_s, 2), "notes": out.notes,
    }
    pct = lambda x: "n/a" if x is None else f"{100 * x:.2f} %"  # noqa: E731
    peak_txt = f"{hw.name}, bf16 dense peak {hw.peak_flops / 1e12:.0f} TFLOP/s" if hw else "not in the cost table"
    if hw and hw.name == "CPU":
        peak_txt = f"CPU stand-in peak {hw.peak_flops / 1e12:.2f} TFLOP/s (not a datasheet value)"
    tr, va = curve["train"], curve["val"]
    print(f"device      {u['device_name']} x{procs} ({peak_txt})")
    print(f"model       {llm.name}: {n / 1e6:.1f} M params; LoRA r={u['r']} {u['targets']}: "
          f"{u['trainable_params']:,} trainable ({u['trainable_pct']:.2f} %)")
    print(f"train       {u['steps']} steps, batch {u['batch_size']} (micro {u['micro_batch']}), {d['batching']}: "
          f"{tokens:,} tokens ({u['train_tokens_unpacked']:,} unpacked) in {secs:.1f} s")
    print(f"throughput  {u['tokens_per_second']:,.0f} tokens/s ({figures['unpacked_tokens_per_second']:,.0f} "
          f"unpacked tokens/s)")
    print(f"MFU         6·N·D {pct(mfu6)}   4·N·D (LoRA) {pct(mfu4)}")
    print(f"peak memory {u['peak_memory_gb']:.2f} GB ({u['peak_memory_kind']})")
    if tr:
        print(f"loss        train {tr[0][1]:.3f} -> {tr[-1][1]:.3f}"
              + (f", validation {va[0][1]:.3f} -> {va[-1][1]:.3f}" if va else ""))
    print(f"{spec.metric:<11} {figures['score']:.4f} on {len(examples)} eval items ({out.timings['predict']:.1f} s)")
    for note in out.notes:
        print(f"note        {note}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
