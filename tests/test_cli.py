"""CLI surface: instant help (no heavy imports), version, init, estimate, models."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from advisor import __version__
from advisor.cli import app

runner = CliRunner()


def test_help_does_not_import_heavy_libraries():
    code = (
        "import sys\n"
        "from advisor import cli\n"
        "try:\n    cli.app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'chromadb', 'langchain_core', 'peft', 'sklearn') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "assess" in out.stdout
    assert "HEAVY []" in out.stdout


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"advisor {__version__}"


def test_init_writes_a_loadable_task(tmp_path):
    from advisor import spec

    target = tmp_path / "my task" / "task.yaml"
    target.parent.mkdir()
    res = runner.invoke(app, ["init", str(target), "--type", "qa"])
    assert res.exit_code == 0, res.output
    s = spec.load(target)
    assert s.type == "qa" and s.target.metric == "token_f1" and s.name == "my-task"
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_estimate_json_prices_every_pipeline(tmp_path):
    rows = [json.dumps({"text": f"item {i} is {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}) + "\n"
            for i in range(40)]
    (tmp_path / "eval.jsonl").write_text("".join(rows[:20]))
    (tmp_path / "train.jsonl").write_text("".join(rows[20:]))
    (tmp_path / "task.yaml").write_text(
        "name: est\ntype: classification\ndata: {eval: eval.jsonl, train: train.jsonl}\n"
        "target: {metric: accuracy, min: 0.9}\nbudget: {requests_per_month: 1000}\nhardware: {gpu: L4}\nrag: {k: 8}\n"
    )
    res = runner.invoke(app, ["estimate", str(tmp_path / "task.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    est = json.loads(res.stdout)
    assert set(est["pipelines"]) == {"baseline", "prompting", "rag", "finetune", "full_finetune", "rag_finetune"}
    base = est["pipelines"]["baseline"]
    assert base["device"] == "CPU" and base["setup_gpu_hours"] == 0 and base["output_tokens"] == 0
    assert 0 < base["usd_per_1k_requests"]
    ft, full = est["pipelines"]["finetune"], est["pipelines"]["full_finetune"]
    # LoRA is 4·N·D and full fine-tuning 6·N·D on the same tokens
    assert full["train_flops"] == ft["train_flops"] * 1.5
    assert full["memory_gb"] > ft["memory_gb"]
    # 8 retrieved examples make longer prompts than the 4 fixed shots
    assert est["pipelines"]["rag"]["prompt_tokens"] > est["pipelines"]["prompting"]["prompt_tokens"]
    # RAG + fine-tune: trained on those longer prompts, served like RAG
    rf, rag = est["pipelines"]["rag_finetune"], est["pipelines"]["rag"]
    assert rf["train_flops"] > ft["train_flops"] and rf["setup_usd"] > ft["setup_usd"] + rag["setup_usd"]
    assert (rf["prompt_tokens"], rf["usd_per_1k_requests"]) == (rag["prompt_tokens"], rag["usd_per_1k_requests"])
    assert est["hardware"]["name"] == "L4"


def test_estimate_prices_the_first_listed_method_and_prints_whole_cells_by_title(tmp_path):
    """finetune.methods: [full, lora]: the dry run prices the full fine-tune as "the fine-tune"
    (6·N·D, every weight's gradients and Adam states), so no second full row is added as the
    contrast; at any terminal width the table shows titles and whole cells, dropping columns."""
    from rich.console import Console

    from advisor.report.terminal import estimate_table

    rows = [json.dumps({"text": f"item {i} is {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}) + "\n"
            for i in range(40)]
    (tmp_path / "eval.jsonl").write_text("".join(rows[:20]))
    (tmp_path / "train.jsonl").write_text("".join(rows[20:]))
    task = ("name: est\ntype: classification\ndata: {eval: eval.jsonl, train: train.jsonl}\n"
            "target: {metric: accuracy, min: 0.9}\nbudget: {requests_per_month: 1000}\nhardware: {gpu: L4}\n")
    (tmp_path / "task.yaml").write_text(task + "finetune: {methods: [full, lora]}\n")
    (tmp_path / "lora.yaml").write_text(task)
    full = json.loads(runner.invoke(app, ["estimate", str(tmp_path / "task.yaml"), "--json"]).stdout)
    lora = json.loads(runner.invoke(app, ["estimate", str(tmp_path / "lora.yaml"), "--json"]).stdout)
    ft = full["pipelines"]["finetune"]
    assert "full_finetune" not in full["pipelines"] and ft["title"] == "Full fine-tune" and ft["method"] == "full"
    assert ft["train_flops"] == lora["pipelines"]["full_finetune"]["train_flops"]  # 6·N·D on the same tokens
    assert ft["memory_gb"] == lora["pipelines"]["full_finetune"]["memory_gb"]
    assert lora["pipelines"]["full_finetune"]["title"] == "Full fine-tune (contrast)"
    # prompt tuning: its 20 virtual tokens run with each of the 20 train pairs in each of the 2
    # epochs (20 × 20 × 2 = 800 more training tokens) and with every request
    (tmp_path / "pt.yaml").write_text(task + "finetune: {methods: [prompt_tuning, lora]}\n")
    pt = json.loads(runner.invoke(app, ["estimate", str(tmp_path / "pt.yaml"), "--json"]).stdout)["pipelines"]
    lft = lora["pipelines"]["finetune"]
    assert pt["finetune"]["title"] == "Prompt tuning"
    assert pt["finetune"]["train_tokens"] == pytest.approx(lft["train_tokens"] + 800)
    assert pt["finetune"]["prompt_tokens"] == pytest.approx(lft["prompt_tokens"] + 20)
    assert pt["full_finetune"]["train_tokens"] == pytest.approx(lft["train_tokens"])  # the contrast has no virtual tokens
    for width in (200, 118, 90, 80, 60):
        console = Console(width=width, record=True)
        console.print(estimate_table(lora, width))
        text = console.export_text()
        table = text.split("params")[1].split("size from")[0]
        assert "…" not in table, (width, text)
        for shown in ("Classical baseline", "RAG + fine-tune", "LoRA fine-tune", "Full fine-tune (contrast)",
                      "setup $", "$ / 1k req"):
            assert shown in table, (width, shown, text)
        if width in (200, 80):  # every column has room at 200; at 80 the first dropped is gone
            assert ("GPU-h / 1k req" in table) == (width == 200), (width, table)
        assert "this LoRA fine-tune costs" in " ".join(text.split()), width


def test_models_lists_bundled():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0
    assert "bundled:smollm2-135m-instruct" in res.stdout and "bundled:all-minilm-l6-v2" in res.stdout


def test_progress_off_a_terminal_prints_one_line_per_finished_task():
    """CI logs and cron mail get plain lines as tasks finish, not live bars rendered at exit."""
    import io

    from rich.console import Console

    from advisor.cli import _RichProgress

    buf = io.StringIO()
    with _RichProgress(Console(file=buf, force_terminal=False, width=100), enabled=True) as bar:
        bar("loading model", 0, None)
        for i in range(4):
            bar("prompting: eval", i, 3 if i < 3 else 3)
        bar("prompting: eval", 3, 3)  # a repeated final update prints nothing more
    lines = [x for x in buf.getvalue().splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("prompting: eval: 3/3 in ")
