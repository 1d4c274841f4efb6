"""`advisor estimate` for models that are not downloaded: an 8B from the shipped table and a
local folder holding only an 8B-shaped config and a tokenizer. Figures against hand calculations."""

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.cli import app

runner = CliRunner()
N_8B = 8_030_261_248  # Llama-3.1-8B, counted by hand in test_model_facts


@pytest.fixture
def task(tmp_path, smollm):
    rows = [json.dumps({"text": f"item {i} is {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}) + "\n"
            for i in range(60)]
    (tmp_path / "eval.jsonl").write_text("".join(rows[:20]))
    (tmp_path / "train.jsonl").write_text("".join(rows[20:]))
    folder = tmp_path / "llama8b"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
        "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}))
    for f in Path(smollm.path).glob("tokenizer*"):  # a tokenizer, no weights
        shutil.copy(f, folder / f.name)
    (tmp_path / "task.yaml").write_text(
        "name: est8b\ntype: classification\ndata: {eval: eval.jsonl, train: train.jsonl}\n"
        "target: {metric: accuracy, min: 0.9}\nbudget: {requests_per_month: 100000}\nhardware: {gpu: H100}\n"
        "finetune: {epochs: 3}\n"
        "models:\n  candidates: [meta-llama/Llama-3.1-8B-Instruct, ./llama8b]\n")
    return tmp_path / "task.yaml"


def test_estimate_prices_an_8b_that_is_not_downloaded(task):
    res = runner.invoke(app, ["estimate", str(task), "--json"])
    assert res.exit_code == 0, res.output
    est = json.loads(res.stdout)
    hub, folder = est["candidates"]
    assert hub["n_params"] == folder["n_params"] == N_8B
    assert "approximation" in hub["tokenizer"] and "own tokenizer" in folder["tokenizer"]
    for cand in (hub, folder):
        rows = cand["pipelines"]
        assert set(rows) == {"baseline", "prompting", "rag", "finetune", "full_finetune", "rag_finetune"}
        for name, c in rows.items():
            assert c["usd_per_1k_requests"] > 0 and c["device_hours_per_1k"] > 0, name
        for name in ("finetune", "full_finetune"):
            assert rows[name]["setup_gpu_hours"] > 0 and rows[name]["setup_usd"] > 0
        # memory by method, by hand: bf16 weights 2 B/param; LoRA adds adapter+Adam and activations
        lora, full = rows["finetune"], rows["full_finetune"]
        assert lora["memory_gb"] >= 2 * N_8B / 1e9 >= 16
        assert full["memory_gb"] >= 16 * N_8B / 1e9  # ~16 bytes/param
        assert 0.5 * N_8B / 1e9 < lora["qlora_memory_gb"] < lora["memory_gb"] / 2  # ~4-bit weights

        # the LoRA's GPU-hours by hand: 4·N·D on the H100 (989 TFLOP/s) at the card's MFU
        D = lora["train_tokens"]
        mfu = est["hardware"]["train_mfu"]
        hours = 4 * N_8B * D / (989e12 * mfu) / 3600
        assert lora["setup_gpu_hours"] == pytest.approx(hours, rel=0.01)
        assert lora["setup_usd"] == pytest.approx(hours * 3.00, rel=0.01)
        assert full["setup_gpu_hours"] == pytest.approx(1.5 * hours, rel=0.01)


def test_the_pretraining_contrast_by_hand(task):
    """Llama-3.1-8B was pretrained on ~15T tokens: 6 × 8.03e9 × 15e12 = 7.227e23 FLOPs; at 35% of an
    H100's 989 TFLOP/s that is 7.227e23 / 3.4615e14 = 2.088e9 s = 579,970 H100-hours ≈ $1.74M at $3/h."""
    est = json.loads(runner.invoke(app, ["estimate", str(task), "--json"]).stdout)
    pre = est["candidates"][0]["pretraining"]
    mfu = est["hardware"]["train_mfu"]
    flops = 6 * N_8B * 15e12
    assert pre["flops"] == pytest.approx(7.227e23, rel=0.001)
    assert pre["gpu_hours"] == pytest.approx(flops / (989e12 * mfu) / 3600, rel=0.001)
    if mfu == 0.35:
        assert pre["gpu_hours"] == pytest.approx(579_970, rel=0.001)
        assert pre["usd"] == pytest.approx(1_739_909, rel=0.001)
    lora = est["candidates"][0]["pipelines"]["finetune"]
    ratio = pre["ratio"]
    # pretraining / LoRA = (6·D_pre) / (4·D_lora): the MFU and the card cancel
    assert ratio["times_cheaper"] == pytest.approx(6 * 15e12 / (4 * lora["train_tokens"]), rel=0.001)
    assert ratio["text"].startswith("1/10^")
    # the folder with only a config has no published token count: no contrast, and it says so
    assert est["candidates"][1]["pretraining"] is None


def test_estimate_prints_one_table_per_candidate_with_the_ratio(task):
    res = runner.invoke(app, ["estimate", str(task)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.output
    assert "meta-llama/Llama-3.1-8B-Instruct — 8.03B params" in out and "llama8b — 8.03B params" in out
    assert "of pretraining the base model" in out and "approximation" in out


def test_estimate_of_an_unknown_model_is_one_line(tmp_path):
    (tmp_path / "eval.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    (tmp_path / "task.yaml").write_text(
        "name: unk\ntype: classification\ndata: {eval: eval.jsonl}\ntarget: {metric: accuracy, min: 0.9}\n"
        "models: {candidates: [some-org/never-heard-of-it-7b]}\n")
    res = runner.invoke(app, ["estimate", str(tmp_path / "task.yaml")])
    assert res.exit_code == 2 and "params:" in res.output and "Traceback" not in res.output


def test_params_in_the_task_price_a_model_without_a_config(tmp_path):
    (tmp_path / "eval.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    (tmp_path / "task.yaml").write_text(
        "name: given\ntype: classification\ndata: {eval: eval.jsonl}\ntarget: {metric: accuracy, min: 0.9}\n"
        "models: {candidates: [{name: some-org/private-7b, params: 7.0e9, pretrain_tokens: 2.0e12}]}\n")
    res = runner.invoke(app, ["estimate", str(tmp_path / "task.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    c = json.loads(res.stdout)["candidates"][0]
    assert c["n_params"] == 7_000_000_000 and c["facts"]["source"] == "params: in the task"
    assert c["pipelines"]["prompting"]["usd_per_1k_requests"] > 0
