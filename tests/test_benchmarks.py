"""The benchmark harness: comparison objects and the results-file format (no timings asserted)."""

from __future__ import annotations

import importlib
import json
import sys
import types

from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
from benchmarks import common, run as bench_run  # noqa: E402


def test_comparison_orients_ratio_so_higher_is_better():
    rate = common.comparison(200.0, 50.0, "tokens/s", 4.0)
    assert rate["ratio"] == 4.0 and rate["met"] is True
    time_ = common.comparison(10.0, 25.0, "ms", 1.0, higher_is_better=False)
    assert time_["ratio"] == 2.5 and time_["met"] is True
    slower = common.comparison(30.0, 25.0, "ms", 1.0, higher_is_better=False)
    assert slower["ratio"] < 1 and slower["met"] is False
    for c in (rate, time_, slower):
        assert set(common.COMPARISON_KEYS) <= set(c)


def test_limit_and_within():
    ok = common.limit(20.0, 30.0, "s", what="10k chunks")
    assert ok["reference"] == 30.0 and ok["met"] and ok["ratio"] == 1.5
    assert not common.limit(40.0, 30.0, "s", what="10k chunks")["met"]
    close = common.within(110.0, 100.0, "s", 0.25, what="cost model")
    assert close["met"] and close["error_pct"] == 10.0 and close["target"] == 0.75
    far = common.within(70.0, 100.0, "s", 0.25, what="cost model")
    assert not far["met"] and far["error_pct"] == -30.0


def test_non_finite_values_become_null_in_json():
    c = common.comparison(1.0, 0.0, "accuracy", 1.0)  # reference 0: ratio undefined
    assert c["ratio"] is None and c["met"] is True
    json.dumps(c, allow_nan=False)


def test_percentiles():
    xs = [0.001 * i for i in range(1, 101)]
    s = common.summary_ms(xs)
    assert s["n"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p95_ms"] == pytest.approx(95.05)


@pytest.fixture
def fake_bench(monkeypatch):
    """A benchmark module benchmarks.bench_fake whose run() returns what the test sets."""
    mod = types.ModuleType("benchmarks.bench_fake")
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", mod)
    return mod


def test_run_one_writes_a_well_formed_results_file(fake_bench, tmp_path):
    fake_bench.run = lambda quick: {
        "comparisons": {"speed": common.comparison(8.0, 2.0, "items/s", 4.0, what="fake")},
        "details": {"quick": quick},
    }
    result = bench_run.run_one("fake", quick=True, out_dir=tmp_path)
    path = tmp_path / "fake-quick.json"
    assert result["path"] == str(path)
    on_disk = json.loads(path.read_text())
    assert common.validate_result(on_disk) == []
    assert on_disk["status"] == "ok" and on_disk["quick"] is True
    assert on_disk["machine"]["cpu_count"] >= 1 and on_disk["machine"]["platform"]
    assert "torch" in on_disk["packages"]
    c = on_disk["comparisons"]["speed"]
    assert (c["ours"], c["reference"], c["unit"], c["ratio"], c["target"], c["met"]) == (8.0, 2.0, "items/s", 4.0, 4.0, True)
    bench_run.print_table([result])  # renders without error


def test_a_failing_benchmark_is_recorded_not_raised(fake_bench, tmp_path):
    def boom(quick):
        raise RuntimeError("no model")

    fake_bench.run = boom
    result = bench_run.run_one("fake", quick=False, out_dir=tmp_path)
    on_disk = json.loads((tmp_path / "fake.json").read_text())
    assert on_disk["status"] == "failed" and "no model" in on_disk["error"]
    assert common.validate_result(on_disk) == []
    bench_run.print_table([result])


def test_validate_result_finds_problems():
    bad = {"benchmark": "x", "schema_version": 1, "status": "ok", "machine": {}, "packages": {},
           "comparisons": {"a": {"ours": 1, "reference": 2, "unit": "s", "ratio": 2.0, "target": 1.0, "met": False}}}
    problems = common.validate_result(bad)
    assert any("cpu_count" in p for p in problems)
    assert any("met disagrees" in p for p in problems)


@pytest.mark.parametrize("name", bench_run.BENCHMARKS)
def test_every_benchmark_module_exposes_run(name):
    mod = importlib.import_module(f"benchmarks.bench_{name}")
    assert callable(mod.run)
