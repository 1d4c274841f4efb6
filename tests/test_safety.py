"""Safety (issue 8): plain YAML only, no remote code unless asked, secrets never printed or written,
a clean stop on SIGTERM with finished stages kept, and an unwritable run folder refused before work.

Two tests run the real bundled model (marked e2e); everything else is instant.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from advisor import environment, models, spec, spec_loading
from advisor.cli import app
from advisor.errors import AdvisorError
from helpers import ROWS, TINY_TASK, jsonl

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-Zq8xV3nL0pR7tY2wK9"
HF_SECRET = "hf_AbCdEfGhIjKlMnOpQrStUv"
TASK = TINY_TASK


# ---------------------------------------------------------------------------------------------
# YAML: data only


def test_python_tags_are_rejected_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    for tag in ("!!python/object/apply:os.system", "!!python/object/new:os.system", "!!python/name:os.system"):
        p = tmp_path / "task.yaml"
        p.write_text(TASK + f"instructions: {tag} ['touch {marker}']\n")
        with pytest.raises(AdvisorError, match=r"is not allowed \(advisor reads plain YAML data only, never Python "
                                               r"objects\); remove the tag\.$"):
            spec.load(p)
        assert not marker.exists()


def test_loader_is_a_safe_loader():
    assert issubclass(spec_loading.SafeLoader, yaml.SafeLoader)
    assert not issubclass(spec_loading.SafeLoader, (yaml.FullLoader, yaml.UnsafeLoader))


UNSAFE = re.compile(r"yaml\.(unsafe_load|full_load|load_all)\(|yaml\.(Full|Unsafe)?Loader\b(?!\w)|FullLoader|UnsafeLoader")


def test_no_unsafe_yaml_anywhere_in_the_code():
    """Every yaml.load in the product passes a SafeLoader; no full/unsafe loaders at all."""
    offenders = []
    for folder in ("advisor", "pipelines", "benchmarks"):
        for f in sorted((ROOT / folder).rglob("*.py")):
            text = f.read_text(encoding="utf-8")
            for m in re.finditer(r"yaml\.load\(([^)]*)\)", text):
                if "SafeLoader" not in m.group(1) and "_SafeLoader" not in m.group(1):
                    offenders.append(f"{f.relative_to(ROOT)}: {m.group(0)}")
            offenders += [f"{f.relative_to(ROOT)}: {m.group(0)}" for m in UNSAFE.finditer(text)]
    assert offenders == []


# ---------------------------------------------------------------------------------------------
# trust_remote_code


def test_trust_remote_code_is_off_by_default():
    import inspect

    assert spec.ModelsSpec().trust_remote_code is False
    assert inspect.signature(models.load_llm).parameters["trust_remote_code"].default is False
    code = "\n".join(f.read_text() for d in ("advisor", "pipelines") for f in (ROOT / d).rglob("*.py"))
    assert "trust_remote_code=True" not in code


@pytest.mark.parametrize("setting, expected", [("", False), ("models: {trust_remote_code: false}\n", False),
                                                ("models: {trust_remote_code: true}\n", True)])
def test_trust_remote_code_reaches_the_loader_and_the_report(tmp_path, monkeypatch, setting, expected):
    from advisor.engine import Assessment
    from advisor.stages import StageStore

    (tmp_path / "eval.jsonl").write_text(jsonl(ROWS))
    (tmp_path / "task.yaml").write_text(TASK + setting)
    calls = []
    fake = type("FakeLLM", (), {"device": "cpu", "n_params": 1, "n_layers": 1, "hidden": 1})()
    monkeypatch.setattr(models, "load_llm", lambda name, **kw: calls.append(kw) or fake)
    monkeypatch.setattr("pipelines.generation.Generator", lambda llm, **kw: object())
    a = Assessment(spec.load(tmp_path / "task.yaml"), tmp_path / "run")
    a.validate()
    a.llm("bundled:smollm2-135m-instruct")
    assert calls and calls[0]["trust_remote_code"] is expected
    report = a.report({"chosen": "bundled:smollm2-135m-instruct", "table": []}, {"pipelines": {}},
                      {"choice": "none", "reasons": []}, StageStore(tmp_path / "run"), 0.0)
    assert report["task"]["trust_remote_code"] is expected


# ---------------------------------------------------------------------------------------------
# secrets


def test_redact(monkeypatch):
    monkeypatch.setenv("FOO_API_KEY", SECRET)
    monkeypatch.setenv("HF_TOKEN", HF_SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", 'gh"quote\\slash')
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value-42")
    monkeypatch.setenv("SHORT_TOKEN", "abc")  # too short to be a real secret: left alone
    monkeypatch.setenv("PLAIN_SETTING", "not-a-secret-value")
    text = (f"key={SECRET} hf={HF_SECRET} aws=aws-secret-value-42 abc plain=not-a-secret-value "
            + json.dumps({"gh": 'gh"quote\\slash'}))
    out = environment.redact(text)
    assert out == 'key=*** hf=*** aws=*** abc plain=not-a-secret-value {"gh": "***"}'


def test_secret_in_an_error_message_is_redacted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOO_API_KEY", SECRET)
    (tmp_path / "task.yaml").write_text(TASK.replace("eval: eval.jsonl", "eval: data-${FOO_API_KEY}.jsonl"))
    result = CliRunner().invoke(app, ["assess", "task.yaml"])
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path.resolve()}/data-***.jsonl (eval): no such file; check data.eval in task.yaml.\n"
    assert SECRET not in result.output


# ---------------------------------------------------------------------------------------------
# the run folder: refused before any work


@pytest.fixture
def no_work(monkeypatch):
    """Fails the test if a model or a pipeline is loaded."""
    import advisor.engine as engine

    def boom(*a, **k):
        raise AssertionError("work started before the run folder was known to be writable")

    monkeypatch.setattr(models, "load_llm", boom)
    monkeypatch.setattr(engine, "load_pipeline", boom)


def test_unwritable_out_is_refused_before_any_work(tmp_path, monkeypatch, no_work):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.jsonl").write_text(jsonl(ROWS))
    (tmp_path / "task.yaml").write_text(TASK)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    result = CliRunner().invoke(app, ["assess", "task.yaml", "--out", "blocker/sub/run"])
    assert result.exit_code == 2
    assert result.stderr == "error: blocker/sub/run: cannot write the run folder (Not a directory); choose another --out.\n"


def test_full_disk_is_refused_before_any_work(tmp_path, monkeypatch, no_work):
    import advisor.run_folder as run_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "eval.jsonl").write_text(jsonl(ROWS))
    (tmp_path / "task.yaml").write_text(TASK)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 3_000_000, 3_000_000))
    result = CliRunner().invoke(app, ["assess", "task.yaml", "--out", "runs/new"])
    assert result.exit_code == 2
    assert result.stderr == ("error: runs/new: only 3 MB free on its disk (a run needs ~50 MB); free some space or "
                             "choose another --out.\n")
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------
# real runs


@pytest.fixture(scope="module")
def converted_model(advisor_home):
    """The bundled model converted (once per machine) before a test times a subprocess around it."""
    return models.llm_path("bundled:smollm2-135m-instruct")


@pytest.fixture(scope="module")
def secret_run(tmp_path_factory, converted_model):
    """One real run (4 items, prompting only) with secrets in the environment, the data and the instructions,
    so that they would reach predictions and reports unless redacted; from_pretrained is spied on."""
    import transformers

    folder = tmp_path_factory.mktemp("secret-run")
    rows = [{"text": f"{r['text']} {SECRET if i % 2 else HF_SECRET}", "label": r["label"]} for i, r in enumerate(ROWS)]
    (folder / "eval.jsonl").write_text(jsonl(rows))
    (folder / "task.yaml").write_text(TASK + f"instructions: 'Label the review. Ref {SECRET}'\n")
    seen: list = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("FOO_API_KEY", SECRET)
        mp.setenv("HF_TOKEN", HF_SECRET)
        for cls in (transformers.AutoTokenizer, transformers.AutoModelForCausalLM):
            def spy(*args, _real=cls.from_pretrained, **kwargs):
                seen.append(kwargs.get("trust_remote_code"))
                return _real(*args, **kwargs)

            mp.setattr(cls, "from_pretrained", spy)
        result = CliRunner().invoke(app, ["assess", "task.yaml", "--out", "run", "--finetune", "never", "--limit",
                                          "4", "--json"])
    assert result.exit_code == 0, result.output[-2000:]
    return result, folder / "run", seen


@pytest.mark.e2e
def test_real_run_prints_no_secret_and_loads_no_remote_code(secret_run):
    result, run, seen = secret_run
    report = json.loads(result.stdout)
    assert report["task"]["trust_remote_code"] is False
    assert seen and all(v is False for v in seen)  # tokenizer and model, explicitly off
    assert SECRET not in result.output and HF_SECRET not in result.output


def _files_with_secrets(run: Path, stages: bool) -> list[str]:
    files = [f for f in run.rglob("*") if f.is_file() and (f.relative_to(run).parts[0] == "stages") == stages]
    assert files
    return [str(f.relative_to(run)) for f in files
            if SECRET.encode() in f.read_bytes() or HF_SECRET.encode() in f.read_bytes()]


@pytest.mark.e2e
def test_real_run_writes_no_secret_into_reports(secret_run):
    _, run, _ = secret_run
    assert {"report.json", "report.md", "report.html"} <= {f.name for f in run.iterdir()}
    assert _files_with_secrets(run, stages=False) == []
    assert "***" in (run / "predictions" / "prompting.jsonl").read_text()  # it was there, and was redacted


@pytest.mark.e2e
def test_real_run_writes_no_secret_into_stage_files(secret_run):
    _, run, _ = secret_run
    assert _files_with_secrets(run, stages=True) == []


@pytest.mark.e2e
def test_sigterm_stops_cleanly_and_keeps_finished_stages(tmp_path, converted_model):
    """SIGTERM during prompting: exit 143, one clean line, the finished baseline stage kept on disk."""
    words = ["good", "bad", "fine", "awful", "great", "poor", "nice", "dull"]
    rows = [{"text": f"review {i}: a {words[i % 8]} film, {words[(i * 3) % 8]} acting", "label":
             "positive" if words[i % 8] in ("good", "fine", "great", "nice") else "negative"} for i in range(40)]
    (tmp_path / "eval.jsonl").write_text(jsonl(rows))
    (tmp_path / "train.jsonl").write_text(jsonl(rows[::-1][:20]))
    (tmp_path / "task.yaml").write_text(
        TASK.replace("type: classification", "type: classification\ndecoding: generate").replace(
            "  eval: eval.jsonl\n", "  eval: eval.jsonl\n  train: train.jsonl\n")
        + "prompting: {shots: 2, max_new_tokens: 24}\n"
    )
    out = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(Path(sys.executable).with_name("advisor")), "assess", "task.yaml", "--out", str(out),
                             "--finetune", "never"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    baseline = out / "stages" / "baseline.json"
    deadline = time.monotonic() + 240
    while not baseline.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # prompting is now loading the model or generating
    assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read()[-2000:]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, f"exit {proc.returncode}: {stderr[-3000:]}"
    assert "Traceback" not in stderr
    assert stderr.rstrip().splitlines()[-1] == (
        "terminated: finished stages are saved; run the same command to resume."
    )
    kept = json.loads(baseline.read_text())
    assert kept["result"]["status"] == "ok" and kept["result"]["n"] == 40
    assert not (out / "report.json").exists()
    assert not list(out.rglob("*.tmp"))  # no half-written file left by the atomic writes
