"""`finetune.devices: 2` (`advisor assess --gpus 2`): the training stage launched on two CPU processes
(accelerate, DDP over gloo), the adapter and measurements read back, evaluation in this process.

Equivalence: two ranks with grad_accum 1 see, step by step, the same two batches as one process
with grad_accum 2 (training.batch_stream hands each rank every other batch). With every answer the
same number of tokens, each rank's per-token mean loss, averaged by DDP, is the one-process mean,
so the adapters must agree up to float rounding of the all-reduce.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e

COLOURS = ["red", "blue", "green", "black", "white", "brown"]
NOUNS = ("apple pear plum kiwi lime lemon mango melon grape peach cherry berry fig olive onion garlic pepper "
         "carrot potato tomato radish turnip celery leek").split()


def _task(write, devices: int, grad_accum: int):
    from advisor import spec as S
    from advisor.data import load_task_data

    rows = [{"text": f"What colour is the {w}?", "label": COLOURS[i % len(COLOURS)]} for i, w in enumerate(NOUNS)]
    write("train.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:20]))
    write("eval.jsonl", "".join(json.dumps(r) + "\n" for r in rows[20:]))
    path = write(f"task-{devices}.yaml", (
        "name: colours\ntype: generation\ninstructions: Name the colour.\n"
        "data: {eval: eval.jsonl, train: train.jsonl}\n"
        "target: {metric: exact_match, min: 0.5}\nprompting: {max_new_tokens: 4}\n"
        f"finetune: {{mode: always, dropout: 0.0, batch_size: 2, grad_accum: {grad_accum}, cpu_max_steps: 3, "
        f"devices: {devices}, lr: 0.002}}\n"
    ))
    spec = S.load(path)
    return spec, load_task_data(spec)


def _adapter(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


def test_two_process_training_matches_one_process_and_comes_back(smollm, generator, write, tmp_path):
    import torch

    from pipelines.base import RunContext
    from pipelines.finetune import FinetunePipeline

    tok = smollm.tokenizer
    assert len({len(tok(c, add_special_tokens=False)["input_ids"]) for c in COLOURS}) == 1  # the premise

    spec1, data1 = _task(write, devices=1, grad_accum=2)
    one = FinetunePipeline()
    one.prepare(RunContext(spec1, data1, smollm, generator, run_dir=tmp_path / "one"))

    spec2, data2 = _task(write, devices=2, grad_accum=1)
    two = FinetunePipeline()
    two.prepare(RunContext(spec2, data2, smollm, generator, run_dir=tmp_path / "two"))

    # what came back from rank 0
    u = two.usage
    assert u["processes"] == 2 and u["steps"] == 3 and u["tokens_per_second"] > 0
    assert u["train_examples_seen"] == one.usage["train_examples_seen"] == 3 * 4  # 3 steps x 2 ranks x 2
    assert two.details["backend"] == "gloo" and "launch_wall" in two.timings
    assert any("2 processes" in n for n in two.notes)
    assert (tmp_path / "two" / "finetune-launch" / "launch.log").exists()

    a, b = _adapter(tmp_path / "one"), _adapter(tmp_path / "two")
    assert set(a) == set(b) and a
    assert any(float(t.abs().max()) > 1e-4 for k, t in a.items() if "lora_B" in k)  # it trained
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-5, msg=k)
    # the same validation losses (the same data order, the same weights at each point)
    va = [v for _, v in one.details["loss_curve"]["val"]]
    vb = [v for _, v in two.details["loss_curve"]["val"]]
    assert vb == pytest.approx(va, rel=1e-4)

    # evaluation runs here, on the adapter the ranks saved
    out = two.predict(data2.eval.examples)
    assert len(out.predictions) == len(data2.eval.examples) and out.usage.extra["processes"] == 2


def test_failed_launch_is_one_clear_error(smollm, write, tmp_path, monkeypatch):
    from advisor.errors import AdvisorError
    from pipelines import finetune_launch
    from pipelines.base import RunContext
    from pipelines.finetune import FinetunePipeline

    spec, data = _task(write, devices=2, grad_accum=1)
    monkeypatch.setattr(finetune_launch, "launch_command", lambda *a, **k: ["false"])
    with pytest.raises(AdvisorError) as e:
        FinetunePipeline().prepare(RunContext(spec, data, smollm, None, run_dir=tmp_path))
    msg = str(e.value)
    assert msg.startswith("finetune.devices: the 2-process training launch exited 1") and "\n" not in msg
    assert "launch.log" in msg and not (tmp_path / "adapter").exists()


def test_gpus_flag_sets_finetune_devices(write, monkeypatch):
    """`advisor assess --gpus 2` reaches the spec the engine runs (finetune.devices), nothing else."""
    from helpers import ROWS, TINY_TASK, jsonl
    from typer.testing import CliRunner

    from advisor import engine
    from advisor.cli import app

    write("eval.jsonl", jsonl(ROWS))
    task = write("task.yaml", TINY_TASK)
    seen = {}

    class Stop(Exception):
        pass

    def fake(spec, *a, **k):
        seen["devices"] = spec.finetune.devices
        raise Stop

    monkeypatch.setattr(engine, "Assessment", fake)
    res = CliRunner().invoke(app, ["assess", str(task), "--gpus", "2"])
    assert isinstance(res.exception, Stop) and seen == {"devices": 2}
    bad = CliRunner().invoke(app, ["assess", str(task), "--gpus", "0"])
    assert bad.exit_code == 2
