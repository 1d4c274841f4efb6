"""The fine-tune's training stage on several processes (`finetune.devices` / `advisor assess --gpus N`).

``advisor assess`` is one process; only training needs several. So the engine's process writes
what training needs (the task spec, the base model's name, the train pairs) to
``<run dir>/finetune-launch/launch.json`` and runs

    python -m accelerate.commands.launch --multi_gpu --num_processes N -m pipelines.finetune_launch DIR

(``--config_file finetune.accelerate_config`` instead of ``--multi_gpu`` when one is given, e.g. FSDP);
every rank loads the base model and runs ``FinetunePipeline.prepare``'s training loop (already
written for DDP: accelerate's Accelerator, no_sync on all but the last micro-batch, each rank its
share of every step's batches), rank 0 saves the adapter to ``<run dir>/adapter`` and the
measurements (tokens/s, peak memory, loss curve, ...) to ``DIR/result.json``. The engine's process
reads them back and evaluates the adapter itself, with the shared generator, like a one-process run.
Without GPUs the ranks are CPU processes over gloo (how the tests run it).

FSDP (weights + optimizer state that do not fit one card) is a config file for the same launch,
e.g. ``accelerate config`` answered with FSDP, FULL_SHARD, TRANSFORMER_BASED_WRAP and
``fsdp_use_orig_params: true`` (LoRA leaves most parameters frozen), named in
``finetune.accelerate_config``; README "Scaling" has one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .base import RunContext

RESULT_KEYS = ("usage", "details", "timings", "notes")


def in_launched_process() -> bool:
    """True inside a rank started by accelerate/torchrun (never launch again from there)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_command(devices: int, folder: Path, config: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(devices),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    if config:
        cmd += ["--config_file", str(config)]
    else:
        cmd += ["--multi_gpu"]
    if devices > 1:
        cmd += ["--main_process_port", str(_free_port())]
    return cmd + ["-m", "pipelines.finetune_launch", str(folder)]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_training(ctx: "RunContext", run_dir: Path, share_prefix: bool) -> dict:
    """Run the training stage on `finetune.devices` processes; {usage, details, timings, notes}."""
    from advisor.errors import AdvisorError

    spec = ctx.spec
    folder = Path(run_dir) / "finetune-launch"
    folder.mkdir(parents=True, exist_ok=True)
    train = ctx.data.train.examples
    (folder / "launch.json").write_text(json.dumps({
        "spec": spec.model_dump(mode="json"), "model": ctx.llm.name, "labels": ctx.data.labels,
        "train": [[e.id, e.input, list(e.expected)] for e in train], "run_dir": str(run_dir),
        "share_prefix": share_prefix,
    }))
    (folder / "result.json").unlink(missing_ok=True)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    cmd = launch_command(spec.finetune.devices, folder, spec.finetune.accelerate_config)
    ctx.progress("finetune: training (launched)", 0, None)
    t0 = time.perf_counter()
    with open(folder / "launch.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root).returncode
    wall = time.perf_counter() - t0
    result = folder / "result.json"
    if rc != 0 or not result.exists():
        tail = (folder / "launch.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise AdvisorError(f"the {spec.finetune.devices}-process training launch exited {rc}: {' | '.join(tail)}",
                           where="finetune.devices", fix=f"see {folder / 'launch.log'}, or set finetune.devices: 1")
    out = json.loads(result.read_text())
    out["timings"]["launch_wall"] = round(wall, 3)  # process start + model load per rank + training
    out["notes"].append(f"trained on {out['usage']['processes']} processes (accelerate launch, "
                        f"{out['details'].get('backend', '?')}); the adapter and measurements came back from rank 0")
    return out


def main(argv: list[str] | None = None) -> int:
    """One rank: load the base model, train, and (rank 0) write the measurements."""
    import torch
    from accelerate import PartialState

    from advisor.data import Dataset, Example, TaskData
    from advisor.models import load_llm
    from advisor.spec import TaskSpec

    from .base import RunContext
    from .finetune import FinetunePipeline

    folder = Path((argv or sys.argv[1:])[0])
    job = json.loads((folder / "launch.json").read_text())
    state = PartialState(cpu=not torch.cuda.is_available())
    spec = TaskSpec.model_validate(job["spec"])
    train = [Example(i, x, tuple(y)) for i, x, y in job["train"]]
    data = TaskData(eval=Dataset([], Path("-"), "-"), train=Dataset(train, Path("-"), "-"), labels=job["labels"],
                    corpus=None)
    device = str(state.device) if state.device.type == "cuda" else "cpu"
    llm = load_llm(job["model"], device=device)
    pipe = FinetunePipeline(share_prefix=job["share_prefix"])
    pipe.prepare(RunContext(spec, data, llm, None, run_dir=Path(job["run_dir"])))
    if state.is_main_process:
        details = {**pipe.details, "backend": str(getattr(state, "backend", None) or state.distributed_type)}
        out = {"usage": pipe.usage, "details": details, "timings": pipe.timings, "notes": pipe.notes}
        tmp = folder / "result.json.tmp"
        tmp.write_text(json.dumps(out, default=str))
        tmp.replace(folder / "result.json")
    state.wait_for_everyone()
    return 0


if __name__ == "__main__":
    sys.exit(main())
