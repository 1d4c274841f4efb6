#!/usr/bin/env bash
# One short check of the LoRA pipeline on a GPU: trains on the banking77 benchmark task and prints
# tokens/s, MFU (6·N·D and LoRA 4·N·D against the card's bf16 dense peak), peak memory and accuracy.
#
#   benchmarks/gpu_check.sh [task.yaml]        # default benchmarks/tasks/banking77.yaml
#
# Environment:
#   STEPS=N        optimizer steps (GPU default: the task's epochs; CPU default: 5)
#   EVAL_LIMIT=N   evaluate on the first N eval items (GPU default: all; CPU default: 20)
#   BATCH=N        finetune.batch_size override
#   ADVISOR_DATA   data folder (default: ../shared/data next to this repository)
#   JSON=path      also write the figures as JSON
#   PY             python to use (default .venv/bin/python)
# Without CUDA it runs a tiny CPU smoke test of the same path (not a GPU measurement).
# Several GPUs: accelerate launch --multi_gpu --num_processes N benchmarks/gpu_check.py [task.yaml]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ADVISOR_DATA=$(realpath "${ADVISOR_DATA:-../shared/data}")
export ADVISOR_DATA
TASK=${1:-benchmarks/tasks/banking77.yaml}

if "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
  STEPS=${STEPS:-5}
  EVAL_LIMIT=${EVAL_LIMIT:-20}
  echo "no CUDA device: CPU run of the same path, $STEPS steps, $EVAL_LIMIT eval items (not a GPU measurement)"
fi

args=("$TASK")
[[ -n "${STEPS:-}" ]] && args+=(--steps "$STEPS")
[[ -n "${EVAL_LIMIT:-}" ]] && args+=(--eval-limit "$EVAL_LIMIT")
[[ -n "${BATCH:-}" ]] && args+=(--batch "$BATCH")
[[ -n "${JSON:-}" ]] && args+=(--json "$JSON")
exec "$PY" benchmarks/gpu_check.py "${args[@]}"
