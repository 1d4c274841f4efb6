"""Cost-model accuracy: predicted vs measured LoRA training time on this machine.

1. Calibrate: one short measured LoRA run (our loop, sentiment_mr) gives the CPU stand-in's
   effective utilisation, advisor.cost.measured_mfu(N, D, seconds, CPU peak) with D its real
   train tokens and the cost model's 4·N·D LoRA FLOPs.
2. Predict a run of a different length (3x the steps) with advisor.cost.train_seconds at that
   calibrated MFU. Its D is what is known before training: steps x batch x the mean pair length
   of the train split (the way `advisor estimate` counts), not the tokens the run later reports.
3. Measure that run and compare: target within +-25 %.
Both runs come from the same process and model, one right after the other (the machine's load
changes slowly compared with that).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .common import llm, load_task, within

TOLERANCE = 0.25


def _train(spec, data, m, steps: int) -> dict:
    from pipelines.base import RunContext
    from pipelines.finetune import FinetunePipeline

    ft = spec.finetune
    ft.max_steps = ft.cpu_max_steps = steps
    ft.val_fraction = 0.0  # no validation passes: only training is timed anyway
    pipe = FinetunePipeline()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        pipe.prepare(RunContext(spec, data, m, None, run_dir=Path(tmp)))
    return pipe.usage


def _real_tokens(usage: dict) -> int:
    """Real tokens of the pairs trained on, known before training; the loop may compute fewer
    (packing the shared prompt prefix once per micro-batch): that is in the calibrated rate."""
    return usage.get("train_tokens_unpacked", usage["train_tokens_total"])


def run(quick: bool) -> dict:
    from advisor import cost
    from pipelines.prompts import build_messages
    from pipelines.training import encode_pairs

    short, long = (3, 9) if quick else (6, 18)
    m = llm()
    spec, data = load_task("sentiment_mr")
    ft = spec.finetune
    cpu = cost.HARDWARE["CPU"]
    n_params = m.n_params

    cal = _train(spec, data, m, short)
    cal_tokens = _real_tokens(cal)
    mfu = cost.measured_mfu(n_params, cal_tokens, cal["train_seconds"], cpu.peak_flops, "lora")

    train_ex = data.train.examples
    enc = encode_pairs(m.tokenizer, [build_messages(spec, data.labels, e.input) for e in train_ex],
                       [e.expected[0] for e in train_ex], ft.max_length)
    mean_len = sum(len(e) for e in enc) / len(enc)
    planned_tokens = long * ft.batch_size * ft.grad_accum * mean_len
    predicted = cost.train_seconds(cost.train_flops(n_params, planned_tokens, "lora"), cpu, mfu=mfu)

    meas = _train(spec, data, m, long)
    measured = meas["train_seconds"]
    meas_tokens = _real_tokens(meas)
    return {
        "comparisons": {
            "cost_lora_train_seconds": within(
                predicted, measured, "s", TOLERANCE,
                what=f"LoRA {long} steps predicted from a {short}-step calibration (4·N·D at measured MFU)",
                reference_name="measured",
            ),
        },
        "details": {
            "n_params": n_params, "tokens_counted": "real tokens of the train pairs (train_tokens_unpacked)",
            "calibration": {"steps": short, "tokens": cal_tokens, "computed_tokens": cal["train_tokens_total"],
                            "seconds": cal["train_seconds"]},
            "calibrated_mfu_of_cpu_standin": round(mfu, 4),
            "calibrated_effective_gflops": round(mfu * cpu.peak_flops / 1e9, 2),
            "cpu_standin_peak_gflops": cpu.peak_flops / 1e9, "cpu_standin_default_mfu": cpu.train_mfu,
            "uncalibrated_prediction_seconds": round(
                cost.train_seconds(cost.train_flops(n_params, planned_tokens, "lora"), cpu), 2),
            "prediction": {"steps": long, "planned_tokens": round(planned_tokens), "seconds": round(predicted, 2)},
            "measured": {"steps": long, "tokens": meas_tokens, "computed_tokens": meas["train_tokens_total"],
                         "seconds": measured},
            "token_count_error_pct": round(100 * (planned_tokens - meas_tokens) / meas_tokens, 2),
            "prediction_with_measured_tokens_seconds": round(
                cost.train_seconds(cost.train_flops(n_params, meas_tokens, "lora"), cpu, mfu=mfu), 2),
        },
        "notes": [f"the CPU stand-in's assumed peak ({cpu.peak_flops:.3g} FLOP/s) x MFU is calibrated by one short run"],
    }
