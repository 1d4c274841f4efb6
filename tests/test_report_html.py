"""report.html: self-contained, escaped, every plot a run supports, and readable in a real browser."""

from __future__ import annotations

import base64
import json
import random
import re
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advisor.cli import app
from advisor.report import files, html

CHROMIUM = Path("/usr/bin/chromium")
LABELS = ["billing", "refund", "technical"]
RECOMMENDATION = "RAG meets the target at the lowest cost per request"


def _pipeline(rng: random.Random, name: str, acc: float, ids: list[str], gold: list[str], usd: float) -> tuple[dict, list]:
    rows, per = [], []
    for i, g in zip(ids, gold):
        right = rng.random() < acc
        out = g if right else rng.choice([lab for lab in LABELS if lab != g])
        per.append(1.0 if right else 0.0)
        rows.append({"id": i, "input": f"message {i}", "expected": [g], "output": out, "score": per[-1]})
    score = sum(per) / len(per)
    pipe = {
        "status": "ok", "score": score, "ci": [max(0.0, score - 0.15), min(1.0, score + 0.12)], "n": len(ids),
        "metrics": {"accuracy": score}, "per_example": per, "timings": {"total": 12.5},
        "usage": {"prompt_tokens_mean": 120.0}, "details": {}, "notes": [], "reused": name == "baseline",
        "cost": {"setup_usd": 0.0 if name != "finetune" else 0.42, "usd_per_1k_requests": usd, "monthly_usd": usd * 100},
    }
    return pipe, rows


def full_report(n: int = 30, seed: int = 1) -> tuple[dict, dict[str, list[dict]]]:
    """A complete classification report with all four pipelines, a loss curve and recall@k."""
    rng = random.Random(seed)
    ids = [f"eval-{i}" for i in range(1, n + 1)]
    gold = [LABELS[i % 3] for i in range(n)]
    pipes, preds = {}, {}
    for name, acc, usd in (("baseline", 0.6, 0.001), ("prompting", 0.7, 0.02), ("rag", 0.9, 0.05),
                           ("finetune", 0.93, 0.015)):
        pipes[name], preds[name] = _pipeline(rng, name, acc, ids, gold, usd)
    pipes["rag"]["details"] = {"mode": "examples", "k": 4,
                               "retrieval": {"recall_at_k": {"1": 0.55, "2": 0.7, "4": 0.82, "8": 0.9}, "k": 4,
                                             "what": "a train example with the gold label among the top k"}}
    pipes["finetune"]["details"] = {"loss_curve": {
        "train": [[s, 2.5 * 0.93 ** s + 0.3] for s in range(1, 41)],
        "val": [[s, 2.4 * 0.94 ** s + 0.42] for s in (10, 20, 30, 40)],
    }}
    report = {
        "schema_version": 1, "advisor_version": "0.1.0", "created": "2026-01-02T03:04:05+00:00",
        "task": {"name": "support-intents", "type": "classification", "metric": "accuracy", "decoding": "choices",
                 "target": 0.8, "higher_is_better": True, "source": "task.yaml", "n_eval": n, "n_train": 120,
                 "n_corpus_docs": 0, "labels": LABELS, "hashes": {"eval": "e1", "train": "t1"},
                 "eval_ids": ids, "finetune_mode": "auto"},
        "base_model": "bundled:smollm2-135m-instruct",
        "base_model_selection": [{"model": "bundled:smollm2-135m-instruct", "score": 0.7, "ci": [0.5, 0.8],
                                  "params": 134_515_008, "chosen": True},
                                 {"model": "other/model", "score": 0.6, "ci": [0.4, 0.7], "params": 360_000_000,
                                  "chosen": False}],
        "pipelines": pipes,
        "costs": {"hardware": {"name": "H100", "usd_per_hour": 3.0},
                  "full_finetune_estimate": {"setup_gpu_hours": 0.00012, "setup_usd": 0.00036, "memory_gb": 3.3}},
        "comparisons": [{"a_name": "prompting", "b_name": "rag", "n": n, "diff": 0.2, "ci": [0.05, 0.35],
                         "p_value": 0.012, "test": "mcnemar-exact", "significant": True}],
        "recommendation": {"choice": "rag", "meets_target": True, "best": "rag",
                           "reasons": [RECOMMENDATION, "the fine-tune is not significantly better than RAG"],
                           "why_not": {"finetune": "not significantly better than rag (p=0.6)"},
                           "next_steps": ["grow the eval set to 300 items"]},
        "stages": {"baseline": "reused", "prompting": "computed", "rag": "computed", "finetune": "computed"},
        "environment": {"device": "cpu", "git_commit": "abc123", "python": "3.11.7", "packages": {"torch": "2.4"}},
        "wall_seconds": 81.2,
    }
    return report, preds


def write_run(folder: Path, report: dict, preds: dict[str, list[dict]]) -> Path:
    (folder / "predictions").mkdir(parents=True, exist_ok=True)
    for name, rows in preds.items():
        (folder / "predictions" / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "report.json").write_text(json.dumps(report))
    return folder


def images(page: str) -> dict[str, bytes]:
    found = re.findall(r'<figure class="plot" id="plot-([a-z-]+)"><img alt="[^"]*" src="data:image/png;base64,([^"]+)"',
                       page)
    return {name: base64.b64decode(data) for name, data in found}


# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page() -> str:
    report, preds = full_report()
    return html.render(report, predictions=preds)


def test_full_report_has_every_plot_and_no_external_assets(page):
    imgs = images(page)
    assert set(imgs) == {"scores", "cost", "per-label", "confusion", "loss", "recall"}
    for name, png in imgs.items():
        assert png.startswith(b"\x89PNG\r\n\x1a\n"), name
        assert len(png) > 5000, f"{name} plot is suspiciously small"
    # self-contained: nothing is fetched from anywhere
    assert not re.search(r'(?:src|href)\s*=\s*"(?!data:|#)', page)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert "url(" not in page
    # the recommendation and the evidence are in the text
    assert 'data-choice="rag"' in page and RECOMMENDATION in page
    assert "support-intents" in page
    assert "reused" in page and "mcnemar-exact" in page and "other/model" in page
    assert "0.00012 GPU-hours" in page


def test_run_dir_predictions_are_read_from_disk(tmp_path):
    report, preds = full_report()
    run = write_run(tmp_path / "run", report, preds)
    assert {"per-label", "confusion"} <= set(images(html.render(report, run_dir=run)))


def test_many_labels_get_full_width_plots():
    report, preds = full_report()
    many = [f"intent_{i}" for i in range(20)]
    report["task"]["labels"] = many
    for rows in preds.values():
        for i, row in enumerate(rows):
            row["expected"] = [many[i % 20]]
            row["output"] = many[i % 20] if row["score"] else many[(i + 1) % 20]
    page = html.render(report, predictions={"rag": preds["rag"]})
    assert '<figure class="plot wide" id="plot-per-label">' in page
    assert '<figure class="plot wide" id="plot-confusion">' in page
    assert '<figure class="plot" id="plot-scores">' in page


def test_per_label_counts_and_recall_shapes():
    rows = [{"expected": ["a"], "output": "a", "score": 1.0}, {"expected": ["a"], "output": "b", "score": 0.0},
            {"expected": ["b"], "extracted": "b", "output": "The answer is b", "score": 1.0}]
    assert html.per_label_counts(rows, ["a", "b", "c"]) == {"a": (1, 2), "b": (1, 1)}
    expected = [(1, 0.5), (4, 0.8)]
    for shape in ({"recall_at_k": {"1": 0.5, "4": 0.8}}, {"recall@1": 0.5, "recall@4": 0.8},
                  [{"k": 1, "recall": 0.5}, {"k": 4, "recall": 0.8}], {"k": [1, 4], "recall": [0.5, 0.8]},
                  [[1, 0.5], [4, 0.8]], {"n": 8, "k": 4, "recall@1": 0.5, "recall@4": 0.8, "mrr": 0.6}):
        assert sorted(html.recall_points(shape)) == expected, shape
    assert html.recall_points({"recall": 0.8, "k": 4}) == [(4, 0.8)]
    assert html.recall_points(None) == [] and html.recall_points({"hits": 3}) == []


def test_user_text_is_escaped():
    report, _ = full_report()
    report["recommendation"]["reasons"] = ["<script>alert(1)</script> & <b>bold</b>"]
    report["pipelines"]["prompting"]["details"] = {"variant": '"><img src=x onerror=alert(1)>'}
    page = html.render(report, predictions={})
    assert "per-label" not in images(page) and "loss" in images(page)  # no predictions: no per-label plots
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;" in page
    assert "<img src=x" not in page


def test_minimal_report_without_scores_renders_without_plots():
    report, _ = full_report()
    report["pipelines"] = {
        "baseline": {"status": "skipped", "reason": "not a classification task"},
        "prompting": {"status": "failed", "reason": "CUDA out of memory"},
    }
    report["recommendation"] = {"choice": "none", "meets_target": False, "reasons": ["nothing ran"]}
    for key in ("comparisons", "costs", "base_model_selection", "environment", "stages"):
        report.pop(key)
    page = html.render(report)
    assert images(page) == {} and "Plots" not in page
    assert "no pipeline is even likely to meet the target" in page and "CUDA out of memory" in page
    assert 'class="pill fail"' in page and 'class="pill skip"' in page


def test_write_all_writes_html_beside_json_and_md(tmp_path):
    report, _ = full_report()
    files.write_all(report, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and RECOMMENDATION in page


# ---------------------------------------------------------------------------------------------
# advisor report RUN_DIR


def test_cli_report_rerenders_each_format(tmp_path):
    report, preds = full_report()
    run = write_run(tmp_path / "run", report, preds)
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(run)])
    assert res.exit_code == 0, res.output
    assert set(images((run / "report.html").read_text())) >= {"per-label", "confusion", "loss", "recall"}
    res = runner.invoke(app, ["report", str(run), "--format", "md"])
    assert res.exit_code == 0 and "## Recommendation: **rag**" in (run / "report.md").read_text()
    res = runner.invoke(app, ["report", str(run), "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["recommendation"]["choice"] == "rag"
    res = runner.invoke(app, ["report", str(run), "--format", "terminal"])
    assert res.exit_code == 0 and "Recommendation for support-intents" in res.stdout
    out = tmp_path / "elsewhere" / "r.html"
    res = runner.invoke(app, ["report", str(run), "--out", str(out)])
    assert res.exit_code == 0 and out.read_text().startswith("<!DOCTYPE html>")


def test_cli_report_bad_input_is_one_line_exit_2(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no report.json" in res.output and "Traceback" not in res.output
    (tmp_path / "report.json").write_text("{not json")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not valid JSON" in res.output
    (tmp_path / "report.json").write_text("[1, 2]")
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "not an advisor report" in res.output
    res = runner.invoke(app, ["report", str(tmp_path), "--format", "pdf"])
    assert res.exit_code == 2 and "'pdf' is not a format" in res.output


# ---------------------------------------------------------------------------------------------
# a real browser


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_report_renders_in_headless_chromium(tmp_path):
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium); `apt-get install chromium` to run it")
    from PIL import Image

    report, preds = full_report()
    run = write_run(tmp_path / "run", report, preds)
    (run / "report.html").write_text(html.render(report, run_dir=run))
    url = (run / "report.html").resolve().as_uri()
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, url, f"--screenshot={shot}", "--window-size=1200,2000")
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    img = Image.open(shot).convert("RGB")
    assert img.size == (1200, 2000)
    small = img.resize((300, 500))
    colours = small.getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 200, f"screenshot looks blank: {len(colours)} colours"
    white = sum(c for c, rgb in colours if min(rgb) > 245)
    assert white < 0.9 * 300 * 500, "screenshot is almost all white"
    # the recommendation banner is green: a meets-target recommendation shows its colour near the top
    top = img.crop((0, 0, 1200, 700)).resize((120, 70)).getcolors(maxcolors=1 << 14)
    assert any(g > r + 30 and g > b + 20 for _, (r, g, b) in top), "no green recommendation banner"

    dom = _chromium(tmp_path, url, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="recommendation"' in dom.stdout and RECOMMENDATION in dom.stdout
    assert dom.stdout.count('src="data:image/png;base64,') == 6


def test_training_time_estimated_vs_measured_in_every_format():
    report, preds = full_report()
    report["costs"]["pipelines"] = {"finetune": {
        "measured_device": "CPU", "train_seconds_estimated_on_measured_device": 54.75, "train_seconds_measured": 56.23,
        "estimate_error_pct": -2.63, "train_seconds_estimated": 0.0167, "setup_usd": 1.4e-05,
        "assumptions": ["training: measured while the machine ran 3.1x as many runnable processes as it has cores; "
                        "the measured time is inflated by that contention"]}}
    line = files.training_time_line(report)
    assert line.startswith("LoRA fine-tune training time on CPU: estimated 54.8 s, measured 56.2 s (-2.6 %); "
                           "on H100 estimated")
    assert "3.1x as many runnable processes" in line
    assert line in files.to_markdown(report)
    assert html.e(line) in html.render(report, predictions=preds)
    report["costs"]["pipelines"]["finetune"] = {"train_seconds_estimated": 0.0167}  # nothing measured to compare
    assert files.training_time_line(report) is None and "estimated vs measured" not in files.to_markdown(report)


def test_the_pipelines_table_shows_titles_and_whole_cells_at_every_width():
    """Titles, not keys, at any width: columns go (seconds, prompt tokens, monthly $, the note)
    and long titles take two lines before a figure is cut."""
    from rich.console import Console

    from advisor.report.terminal import pipelines_table

    report, _ = full_report()
    for width in (200, 118, 100, 80):
        console = Console(width=width, record=True)
        console.print(pipelines_table(report, width))
        text = console.export_text()
        body = text.split("┡")[1]
        assert "…" not in body, (width, text)
        for word in ("Classical", "baseline", "Prompting", "RAG", "fine-tune"):
            assert word in body, (width, word, text)
        assert "rag_finetune" not in body and "| finetune" not in body
        assert ("seconds" in text) == (width == 200), (width, text)
    md = files.to_markdown(report)  # report.md's comparisons name pipelines the same way
    assert "| Prompting | RAG | 0.200 |" in md and "| prompting |" not in md
    assert "95% CIs are per pair, not adjusted" in md and "per pair, not adjusted" in html.render(report)


def test_comparisons_at_80_columns_keep_every_difference_whole():
    """CI logs and pipes get 80 columns: the Holm-adjusted table must still show each difference
    and its Holm p in full (the raw p stays in report.md), not '+0.1…' stubs."""
    from rich.console import Console

    from advisor.report.terminal import comparisons_table

    comps = [{"a_name": "prompting", "b_name": "finetune", "diff": 0.18333, "ci": [0.042, 0.317], "p_value": 0.0192,
              "p_holm": 0.0961, "significant": False, "test": "mcnemar-exact"},
             {"a_name": "baseline", "b_name": "rag", "diff": -0.15, "ci": [-0.291, -0.0], "p_value": 0.0784,
              "p_holm": 0.3134, "significant": False, "test": "mcnemar-exact"}]
    console = Console(width=80, record=True)
    console.print(comparisons_table({"comparisons": comps}, 80))
    text = console.export_text()
    for cell in ("Prompting", "LoRA fine-tune", "+0.183", "-0.150", "[0.042, 0.317]", "0.0961", "0.3134"):
        assert cell in text, (cell, text)
    assert "Classical" in text and "baseline" in text  # a long title may take two lines, never "Clas…"
    # the CI column is per pair and the significance Holm's: said under the table, in every format
    assert "not adjusted" in " ".join(text.split())
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
