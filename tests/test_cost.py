"""cost.py against hand calculations (numbers worked out in the comments)."""

import json

import pytest

from advisor import cost
from advisor.cost import (
    HARDWARE,
    Hardware,
    activation_gb,
    break_even_requests,
    estimate_pipeline_cost,
    full_ft_memory_gb,
    get_hardware,
    inference_flops,
    inference_memory_gb,
    lora_memory_gb,
    measured_mfu,
    monthly_usd,
    qlora_memory_gb,
    request_seconds,
    train_flops,
    train_seconds,
    usd_per_1k,
    usd_per_request,
)

# A round-number card: 1 TFLOP/s peak, 50 % MFU -> 5e11 FLOP/s effective; $3.60/h = $0.001/s.
X = Hardware("X", peak_flops=1e12, memory_gb=10, usd_per_hour=3.6, train_mfu=0.5, infer_mfu=0.5)
X_BW = Hardware("XBW", 1e12, 10, 3.6, 0.5, 0.5, mem_bw_gbs=100)
# A 1B model cannot reach a 7B model's training MFU: the cost model scales it by (1e9 / 7e9) ** 0.3
# (docstring of advisor.cost). By hand: 0.142857 ** 0.3 = exp(0.3 * ln 0.142857) = exp(-0.58377) = 0.5578.
S1B = 0.5578


# --- hardware table -------------------------------------------------------------------------


def test_table_has_the_documented_cards_and_datasheet_peaks():
    assert set(HARDWARE) == {"H100", "H200", "A100-80GB", "L40S", "L4", "A10G", "T4", "CPU"}
    peaks = {k: v.peak_flops / 1e12 for k, v in HARDWARE.items()}
    # A10G: ~70 TFLOPS bf16 tensor in public A10 vs A10G comparisons (Baseten, "NVIDIA A10 vs
    # A10G for ML model inference"); 125 is the A10's datasheet figure (issue 12)
    assert peaks == {"H100": 989, "H200": 989, "A100-80GB": 312, "L40S": 362, "L4": 121, "A10G": 70,
                     "T4": 65, "CPU": 0.192}
    assert HARDWARE["H100"].memory_gb == 80 and HARDWARE["T4"].memory_gb == 16
    assert HARDWARE["CPU"].usd_per_hour == 0.10
    for hw in HARDWARE.values():
        assert 0 < hw.train_mfu < 1 and 0 < hw.infer_mfu < 1 and hw.usd_per_hour > 0


def test_get_hardware_is_case_insensitive_and_overridable():
    assert get_hardware("h100") is HARDWARE["H100"]
    assert get_hardware(" a100-80gb ").name == "A100-80GB"
    cheap = get_hardware("L4", usd_per_hour=0.5)
    assert cheap.usd_per_hour == 0.5 and cheap.peak_flops == 121e12
    assert HARDWARE["L4"].usd_per_hour == 0.80  # the table is not mutated


def test_get_hardware_unknown_lists_known_names():
    with pytest.raises(ValueError, match="H100.*T4"):
        get_hardware("TPUv5")
    with pytest.raises(ValueError):
        get_hardware("H100", usd_per_hour=-1)


# --- training -------------------------------------------------------------------------------


def test_train_flops_6nd_and_4nd():
    assert train_flops(1e9, 1e6, "full") == 6e15
    assert train_flops(1e9, 1e6, "lora") == 4e15
    assert train_flops(1e9, 1e6, "qlora") == 4e15
    assert train_flops(1e9, 1e6, "lora") / train_flops(1e9, 1e6, "full") == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        train_flops(1e9, 1e6, "adapter")


def test_train_seconds_uses_card_mfu_unless_given():
    # 4e15 / (989e12 * 0.35) = 11.556 s
    assert train_seconds(4e15, HARDWARE["H100"]) == pytest.approx(11.5558, rel=1e-4)
    assert train_seconds(4e15, HARDWARE["H100"], mfu=0.5) == pytest.approx(4e15 / 494.5e12)
    assert train_seconds(4e15, X) == 8000.0
    with pytest.raises(ValueError):
        train_seconds(1.0, X, mfu=0)


def test_measured_mfu_round_trips_with_train_seconds():
    # 4e15 / (20 s * 989e12) = 0.2022
    u = measured_mfu(1e9, 1e6, 20.0, 989e12, "lora")
    assert u == pytest.approx(0.20222, rel=1e-4)
    assert train_seconds(train_flops(1e9, 1e6), HARDWARE["H100"], mfu=u) == pytest.approx(20.0)
    with pytest.raises(ValueError):
        measured_mfu(1e9, 1e6, 0.0, 989e12)


# --- memory ---------------------------------------------------------------------------------


def test_memory_rules_of_thumb_for_a_7b_model():
    assert full_ft_memory_gb(7e9) == pytest.approx(112.0)  # 16 bytes/param
    assert full_ft_memory_gb(7e9, activations_gb=5) == pytest.approx(117.0)
    assert lora_memory_gb(7e9, 20e6) == pytest.approx(14.32)  # 14 + 0.32
    assert qlora_memory_gb(7e9, 20e6) == pytest.approx(4.17)  # 3.85 + 0.32
    assert qlora_memory_gb(7e9, 0, bytes_per_param=0.5) == pytest.approx(3.5)
    assert inference_memory_gb(7e9) == pytest.approx(14.0)
    assert inference_memory_gb(7e9, 4) == pytest.approx(28.0)


def test_activation_rule_of_thumb():
    # 24 layers * 1024 * 512 * 8 * 34 bytes = 3,422,552,064 bytes
    assert activation_gb(24, 1024, 512, 8) == pytest.approx(3.422552064)
    assert activation_gb(24, 1024, 512, 8, checkpointing=True) == pytest.approx(3.422552064 * 2 / 34)
    assert activation_gb(24, 1024, 512, 8, bytes=4) == pytest.approx(2 * 3.422552064)


# --- inference ------------------------------------------------------------------------------


def test_inference_flops():
    assert inference_flops(1e9, 100, 20) == 2.4e11


def test_request_seconds_compute_bound():
    # prefill 2e9*100/5e11 = 0.4 s; decode step 2e9/5e11 = 0.004 s * 10 tokens = 0.04 s
    assert request_seconds(1e9, 100, 10, X, batch=1) == pytest.approx(0.44)
    # batching does not change a compute-bound cost per request
    assert request_seconds(1e9, 100, 10, X, batch=16) == pytest.approx(0.44)


def test_request_seconds_memory_bound_decode_roofline():
    # weights 2e9 bytes / 100 GB/s = 0.02 s per step
    assert request_seconds(1e9, 100, 10, X_BW, batch=1) == pytest.approx(0.4 + 10 * 0.02)
    # batch 4: compute 0.016 < memory 0.02 -> 10 * 0.02 / 4
    assert request_seconds(1e9, 100, 10, X_BW, batch=4) == pytest.approx(0.4 + 0.05)
    # batch 16: compute 0.064 > memory 0.02 -> 10 * 0.064 / 16
    assert request_seconds(1e9, 100, 10, X_BW, batch=16) == pytest.approx(0.44)
    with pytest.raises(ValueError):
        request_seconds(1e9, 1, 1, X, batch=0)


def test_dollars_per_request_per_1k_and_month():
    per = usd_per_request(1e9, 100, 10, X, batch=1)
    assert per == pytest.approx(0.00044)  # 0.44 s * $0.001/s
    assert usd_per_1k(per) == pytest.approx(0.44)
    assert monthly_usd(per, 100_000) == pytest.approx(44.0)


# --- break-even -----------------------------------------------------------------------------


def test_break_even_hand_value_and_symmetry():
    # $100 more setup, $0.005 cheaper per request -> 20,000 requests
    assert break_even_requests(0, 0.01, 100, 0.005) == pytest.approx(20_000)
    assert break_even_requests(100, 0.005, 0, 0.01) == pytest.approx(20_000)
    assert break_even_requests(10, 0.01, 30, 0.006) == pytest.approx(5_000)


def test_break_even_never_or_immediately():
    assert break_even_requests(0, 0.01, 100, 0.01) is None  # same per request: never
    assert break_even_requests(0, 0.01, 100, 0.02) is None  # dearer per request: never
    assert break_even_requests(5, 0.01, 5, 0.02) == 0.0  # same setup: cheaper wins at once
    assert break_even_requests(5, 0.01, 5, 0.01) is None


# --- estimate_pipeline_cost -----------------------------------------------------------------

COMMON = dict(n_params=1e9, prompt_tokens=100, output_tokens=10, requests_per_month=1000, hw=X, batch=1)
KEYS = {"setup_gpu_hours", "setup_usd", "usd_per_1k_requests", "monthly_usd", "memory_gb",
        "prompt_tokens", "output_tokens", "assumptions"}


def test_prompting_estimate():
    r = estimate_pipeline_cost(kind="prompting", **COMMON)
    assert KEYS <= set(r)
    assert r["setup_usd"] == 0 and r["setup_gpu_hours"] == 0
    assert r["usd_per_1k_requests"] == pytest.approx(0.44)
    assert r["monthly_usd"] == pytest.approx(0.44)  # 1000 requests
    assert r["memory_gb"] == pytest.approx(2.0) and r["fits_memory"] is True
    assert (r["prompt_tokens"], r["output_tokens"], r["device"]) == (100, 10, "X")
    assert all(isinstance(a, str) for a in r["assumptions"]) and r["assumptions"]
    json.dumps(r)


def test_rag_estimate_pays_query_embedding_and_index():
    # query embedding: 2 * 1e8 * 50 / 5e11 = 0.02 s -> $0.00002 per request
    r = estimate_pipeline_cost(kind="rag", embed_params=1e8, query_tokens=50, index_seconds=100, **COMMON)
    assert r["usd_per_1k_requests"] == pytest.approx(0.44 + 0.02)
    assert r["setup_usd"] == pytest.approx(0.1)
    assert r["setup_gpu_hours"] == pytest.approx(100 / 3600)
    # no measured index time: 2 * 1e8 * 1e6 corpus tokens / 5e11 = 400 s
    r = estimate_pipeline_cost(kind="rag", embed_params=1e8, query_tokens=50, corpus_tokens=1e6, **COMMON)
    assert r["setup_seconds"] == pytest.approx(400.0) and r["setup_usd"] == pytest.approx(0.4)
    # query length unknown: priced at the prompt length and said so
    r = estimate_pipeline_cost(kind="rag", embed_params=1e8, **COMMON)
    assert r["usd_per_1k_requests"] == pytest.approx(0.44 + 0.04)
    assert any("upper bound" in a for a in r["assumptions"])


def test_finetune_estimate_without_measurement():
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e6, trainable_params=1e7, **COMMON)
    assert r["train_flops"] == 4e15
    assert r["train_seconds_estimated"] == pytest.approx(8000.0 / S1B, rel=1e-4)  # 4e15 / (1e12 * 0.5 * S1B)
    assert r["setup_gpu_hours"] == pytest.approx(8000 / S1B / 3600, rel=1e-4)
    assert r["setup_usd"] == pytest.approx(8.0 / S1B, rel=1e-4)
    assert r["train_mfu"] == pytest.approx(0.5 * S1B, rel=1e-4)
    assert r["memory_gb"] == pytest.approx(2.16)  # 2 GB frozen + 1e7 * 16 bytes
    assert r["qlora_memory_gb"] == pytest.approx(0.55 + 0.16)
    assert r["serving_memory_gb"] == pytest.approx(2.0)
    assert r["usd_per_1k_requests"] == pytest.approx(0.44)
    assert "train_seconds_measured" not in r
    assert any("4·N·D" in a for a in r["assumptions"])


def test_finetune_measured_on_the_same_device_replaces_the_estimate():
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e6, trainable_params=1e7,
                               measured_train_seconds=10_000, **COMMON)
    assert r["train_seconds_measured"] == 10_000
    assert r["estimate_error_pct"] == pytest.approx(100 * (8000 / S1B - 10000) / 10000, rel=1e-3)
    assert r["measured_mfu"] == pytest.approx(0.4)  # 4e15 / (1e4 * 1e12)
    assert r["setup_usd"] == pytest.approx(10.0)  # priced from the measurement


def test_finetune_measured_elsewhere_keeps_the_target_estimate():
    slow = Hardware("SLOW", 1e11, 8, 0.1, 0.5, 0.5)
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e6, trainable_params=1e7,
                               measured_train_seconds=100_000, measured_device=slow, **COMMON)
    # estimate on SLOW: 4e15 / (1e11 * 0.5 * S1B) = 143,420 s vs 100,000 measured -> +43 %
    assert r["train_seconds_estimated_on_measured_device"] == pytest.approx(80_000 / S1B, rel=1e-4)
    assert r["estimate_error_pct"] == pytest.approx(100 * (80_000 / S1B - 100_000) / 100_000, rel=1e-3)
    assert r["measured_device"] == "SLOW"
    assert r["setup_usd"] == pytest.approx(8.0 / S1B, rel=1e-4)  # still X's estimate
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e6, measured_train_seconds=1.0,
                               measured_device="CPU", **COMMON)
    assert r["measured_mfu"] > 1 and any("calibrate" in a for a in r["assumptions"])


def test_cpu_training_time_measured_on_a_busy_machine_is_flagged():
    kw = dict(kind="finetune", train_tokens=1e4, trainable_params=1e5, measured_train_seconds=60.0,
              measured_device="CPU", **COMMON)
    quiet = estimate_pipeline_cost(measured_load_per_core=1.0, **kw)
    busy = estimate_pipeline_cost(measured_load_per_core=4.2, **kw)
    assert not any("contention" in a for a in quiet["assumptions"])
    assert any("4.2x as many runnable processes" in a for a in busy["assumptions"])
    assert busy["estimate_error_pct"] == quiet["estimate_error_pct"]  # flagged, not "corrected"
    gpu = estimate_pipeline_cost(measured_load_per_core=4.2, **{**kw, "measured_device": "H100"})
    assert not any("contention" in a for a in gpu["assumptions"])  # a busy host does not slow GPU kernels


def test_finetune_measured_on_an_unknown_device_is_reported_not_compared():
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e6, trainable_params=1e7,
                               measured_train_seconds=50.0, measured_device="cuda:7", **COMMON)
    assert r["train_seconds_measured"] == 50.0 and r["measured_device"] == "cuda:7"
    assert "estimate_error_pct" not in r
    assert r["setup_usd"] == pytest.approx(8.0 / S1B, rel=1e-4)  # X's estimate stands
    assert any("no hardware entry" in a for a in r["assumptions"])


def test_rag_finetune_pays_training_and_index_once_and_rag_serving_per_request():
    # serving is RAG's: 0.44 $/1k for 100 prompt + 10 output tokens on X (test_prompting_estimate)
    # plus the query embedding 2 * 1e8 * 50 / 5e11 = 0.02 s = $0.00002 -> +0.02 $/1k
    kw = dict(kind="rag_finetune", embed_params=1e8, query_tokens=50, train_tokens=1e6, trainable_params=1e7,
              **COMMON)
    r = estimate_pipeline_cost(measured_train_seconds=10_000, index_seconds=100, **kw)
    assert r["usd_per_1k_requests"] == pytest.approx(0.44 + 0.02)
    # setup: the measured 10,000 s of training on X + the 100 s index build = 10,100 s at $0.001/s
    assert r["setup_seconds"] == pytest.approx(10_100.0)
    assert r["setup_usd"] == pytest.approx(10.1)
    assert r["setup_gpu_hours"] == pytest.approx(10_100 / 3600)
    assert (r["train_setup_seconds"], r["index_setup_seconds"]) == (pytest.approx(10_000.0), pytest.approx(100.0))
    # training is a LoRA's: 4·N·D = 4 * 1e9 * 1e6 = 4e15 FLOPs, memory 2 GB frozen + 1e7 * 16 bytes
    assert r["train_flops"] == 4e15 and r["memory_gb"] == pytest.approx(2.16)
    assert r["measured_mfu"] == pytest.approx(0.4)  # 4e15 / (1e4 s * 1e12)
    # nothing measured: estimated training 4e15 / (1e12 * 0.5 * S1B) + index from 1e6 corpus tokens
    # (2 * 1e8 * 1e6 / 5e11 = 400 s)
    r = estimate_pipeline_cost(corpus_tokens=1e6, **kw)
    assert r["setup_seconds"] == pytest.approx(8000 / S1B + 400, rel=1e-4)
    assert r["setup_usd"] == pytest.approx(8.0 / S1B + 0.4, rel=1e-4)
    assert r["usd_per_1k_requests"] == pytest.approx(0.46)


def test_finetune_defaults_trainable_to_one_percent_and_adds_activations():
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e6, n_layers=24, hidden=1024, **COMMON)
    act = activation_gb(24, 1024, 110, 8)  # seq = prompt + output
    assert r["memory_gb"] == pytest.approx(lora_memory_gb(1e9, 1e7, act))
    assert any("1%" in a for a in r["assumptions"])


def test_full_finetune_is_6nd_and_may_not_fit():
    r = estimate_pipeline_cost(kind="full_finetune", train_tokens=1e6, **COMMON)
    assert r["train_seconds_estimated"] == pytest.approx(12_000.0 / S1B, rel=1e-4)  # 6e15 / (5e11 * S1B)
    assert r["setup_usd"] == pytest.approx(12.0 / S1B, rel=1e-4)
    assert r["memory_gb"] == pytest.approx(16.0) and r["fits_memory"] is False  # X has 10 GB


def test_a_measured_full_fine_tune_is_6nd_and_the_peft_methods_4nd():
    """Methods side by side (issue 14): full = 6·N·D with 16 bytes per weight, measured time
    compared; IA³ and prompt tuning 4·N·D like LoRA, memory from their own trainable count."""
    full = estimate_pipeline_cost(kind="finetune", method="full", train_tokens=1e6, trainable_params=123,
                                  measured_train_seconds=20_000, **COMMON)
    assert full["train_flops"] == 6e15 and full["method"] == "full"
    # estimate 6e15 / (1e12 * 0.5 * S1B) = 12,000 / S1B s against 20,000 measured
    assert full["estimate_error_pct"] == pytest.approx(100 * (12_000 / S1B - 20_000) / 20_000, rel=1e-3)
    assert full["measured_mfu"] == pytest.approx(0.3)  # 6e15 / (2e4 * 1e12)
    assert full["memory_gb"] == pytest.approx(16.0)  # 1e9 params x 16 bytes, whatever trainable says
    assert not any("never run" in a for a in full["assumptions"])
    assert any("6·N·D" in a for a in full["assumptions"])
    for method in ("ia3", "prompt_tuning"):
        r = estimate_pipeline_cost(kind="finetune", method=method, train_tokens=1e6, trainable_params=1e5, **COMMON)
        assert r["train_flops"] == 4e15 and r["method"] == method
        assert r["memory_gb"] == pytest.approx(2.0 + 1e5 * 16 / 1e9)
    with pytest.raises(ValueError):
        estimate_pipeline_cost(kind="finetune", method="adapter", train_tokens=1e6, **COMMON)


def test_baseline_runs_on_the_cpu_stand_in():
    r = estimate_pipeline_cost(kind="baseline", embed_params=2e7, train_tokens=1e5,
                               **{**COMMON, "prompt_tokens": 50, "hw": HARDWARE["H100"]})
    # CPU: 1.92e11 * 0.15 = 2.88e10 FLOP/s; per request 2 * 2e7 * 50 = 2e9 FLOPs at $0.10/h
    assert r["device"] == "CPU"
    assert r["usd_per_1k_requests"] == pytest.approx(1000 * (2e9 / 2.88e10) * 0.10 / 3600)
    # setup: embed 1e5 train tokens -> 2 * 2e7 * 1e5 / 2.88e10 = 138.9 s
    assert r["setup_seconds"] == pytest.approx(4e12 / 2.88e10, rel=1e-4)
    assert r["setup_gpu_hours"] == 0.0
    assert r["setup_usd"] == pytest.approx(4e12 / 2.88e10 * 0.10 / 3600, rel=1e-4)
    assert r["memory_gb"] == pytest.approx(0.08)  # fp32 embedder
    assert r["output_tokens"] == 0


def test_a_cpu_baseline_is_also_priced_on_the_tasks_gpu():
    r = estimate_pipeline_cost(kind="baseline", embed_params=2e7, train_tokens=1e5,
                               **{**COMMON, "prompt_tokens": 50, "hw": HARDWARE["H100"]})
    # H100: 989e12 * 0.4 = 3.956e14 FLOP/s at $3.00/h; per request 2e9 FLOPs -> 5.0556e-6 s
    (alt,) = r["also_priced_on"]
    assert alt["device"] == "H100"
    assert alt["usd_per_1k_requests"] == pytest.approx(1000 * 2e9 / 3.956e14 * 3.00 / 3600)  # $4.2e-6
    assert alt["setup_usd"] == pytest.approx(4e12 / 3.956e14 * 3.00 / 3600)  # 0.0101 s of H100
    assert any("baseline.device" in a and "H100" in a for a in r["assumptions"])


def test_a_baseline_on_a_gpu_is_priced_there():
    r = estimate_pipeline_cost(kind="baseline", embed_params=2e7, train_tokens=1e5, baseline_hw=HARDWARE["L4"],
                               **{**COMMON, "prompt_tokens": 50, "hw": HARDWARE["H100"]})
    # L4: 121e12 * 0.4 = 4.84e13 FLOP/s at $0.80/h
    assert r["device"] == "L4"
    assert r["usd_per_1k_requests"] == pytest.approx(1000 * 2e9 / 4.84e13 * 0.80 / 3600)
    assert r["setup_usd"] == pytest.approx(4e12 / 4.84e13 * 0.80 / 3600)
    assert r["setup_gpu_hours"] == pytest.approx(4e12 / 4.84e13 / 3600)
    assert r["memory_gb"] == pytest.approx(0.04)  # 2e7 params x 2 bytes (bf16 on a GPU)
    assert r["also_priced_on"] == [{"device": "H100", "setup_usd": pytest.approx(4e12 / 3.956e14 * 3.00 / 3600),
                                    "usd_per_1k_requests": pytest.approx(1000 * 2e9 / 3.956e14 * 3.00 / 3600)}]
    same = estimate_pipeline_cost(kind="baseline", embed_params=2e7, baseline_hw=HARDWARE["H100"],
                                  **{**COMMON, "prompt_tokens": 50, "hw": HARDWARE["H100"]})
    assert "also_priced_on" not in same


def test_estimate_rejects_unknown_kind_and_handles_no_volume():
    with pytest.raises(ValueError):
        estimate_pipeline_cost(kind="distill", **COMMON)
    r = estimate_pipeline_cost(kind="prompting", **{**COMMON, "requests_per_month": None})
    assert r["monthly_usd"] is None


def test_cost_module_has_a_documented_model():
    doc = cost.__doc__
    for needle in ("6·N·D", "4·N·D", "Hu et al. 2021", "datasheet", "MFU", "overridable"):
        assert needle in doc


def test_training_mfu_depends_on_model_size_on_gpus():
    h100 = HARDWARE["H100"]
    # 135M (SmolLM2): (1.35e8 / 7e9) ** 0.3 = exp(0.3 * ln 0.019286) = exp(-1.18461) = 0.3059
    assert cost.train_mfu_for(h100, 1.35e8) == pytest.approx(0.35 * 0.3059, rel=1e-3)
    assert cost.train_mfu_for(h100, 7e9) == cost.train_mfu_for(h100, 70e9) == 0.35
    assert cost.train_mfu_for(h100, 1e6) == pytest.approx(0.35 * 0.3)  # floor
    # the CPU stand-in's MFU was measured on the 135M model itself: not scaled
    assert cost.train_mfu_for(HARDWARE["CPU"], 1.35e8) == 0.55
    # so a 135M LoRA on an H100 takes 1 / 0.3059 = 3.27x longer than the old flat-MFU estimate
    flops = train_flops(1.35e8, 1e6)
    assert train_seconds(flops, h100, n_params=1.35e8) == pytest.approx(flops / (989e12 * 0.35 * 0.3059), rel=1e-3)


def test_cpu_memory_is_fp32():
    # issue 12: CPU training is fp32, but memory was counted at 2 bytes/param.
    # 1e9 params x 4 bytes = 4 GB frozen + 1e7 trainable x 16 bytes = 0.16 GB
    cpu = HARDWARE["CPU"]
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e4, trainable_params=1e7,
                               **{**COMMON, "hw": cpu})
    assert r["memory_gb"] == pytest.approx(4.16)
    assert r["serving_memory_gb"] == pytest.approx(4.0)
    # activations at 4 bytes: 17 * 4 * s * b * h per layer; 2 layers, h 64, s 110, b 8
    r = estimate_pipeline_cost(kind="finetune", train_tokens=1e4, trainable_params=1e7, n_layers=2, hidden=64,
                               **{**COMMON, "hw": cpu})
    assert r["memory_gb"] == pytest.approx(4.16 + 2 * 64 * 110 * 8 * 68 / 1e9)
    assert estimate_pipeline_cost(kind="prompting", **{**COMMON, "hw": cpu})["memory_gb"] == pytest.approx(4.0)


def test_lora_flops_wording_says_what_4nd_assumes():
    doc = cost.__doc__
    assert "2/3 of full fine-tuning cost" not in doc  # Hu et al. report a ~25 % speed-up, not 2/3
    assert "~25 %" in doc and "activation gradients" in doc and "no weight gradients" in doc


@pytest.mark.parametrize("cuda_name, row", [
    ("NVIDIA H200", "H200"),  # was priced as an H100 (the training module kept its own card list)
    ("NVIDIA GH200 480GB", "H100"),  # Grace Hopper: an H100-class GPU, not an H200
    ("NVIDIA H100 80GB HBM3", "H100"),
    ("NVIDIA A100-SXM4-80GB", "A100-80GB"),
    ("NVIDIA L40S", "L40S"),
    ("NVIDIA L4", "L4"),
    ("NVIDIA A10G", "A10G"),
    ("NVIDIA A10", None),  # 125 TFLOP/s bf16: not an A10G (~70); unknown rather than mispriced
    ("Tesla T4", "T4"),
    ("NVIDIA GeForce RTX 4090", None),
])
def test_a_cuda_device_name_maps_to_its_own_row_of_the_one_gpu_table(cuda_name, row):
    assert cost.hardware_for_device(cuda_name) == row
    if row is not None:
        assert row in cost.HARDWARE


def test_usage_record_round_trips_report_json_keys():
    from advisor.usage import Usage

    stored = {"prompt_tokens_mean": 12.5, "output_tokens_mean": 3.0, "train_tokens_total": 900,
              "trainable_params": 4096, "steps": 7, "lr": 3e-4}
    u = Usage.from_dict(stored)
    assert (u.train_tokens_total, u.trainable_params, u.extra) == (900, 4096, {"steps": 7, "lr": 3e-4})
    assert u.to_dict() == stored  # report.json keeps the same keys, nothing added or renamed


def test_baseline_device_keeps_the_tasks_price_override_for_its_own_card():
    task_hw = cost.get_hardware("H100", 2.50)  # hardware: {gpu: H100, usd_per_hour: 2.50}
    assert cost.baseline_hardware("h100", task_hw).usd_per_hour == 2.50
    assert cost.baseline_hardware("CPU", task_hw) == HARDWARE["CPU"] and HARDWARE["CPU"].usd_per_hour == 0.10
    assert cost.baseline_hardware("L4", task_hw).usd_per_hour == 0.80
