"""Cost model: FLOPs, memory, GPU-hours and dollars for each pipeline.

Why: "is a fine-tune worth the GPU spend" needs the spend beside the score, before any
GPU is rented (``advisor estimate``) and after a real run (estimated vs measured).
Every number here is a documented rule of thumb; every price is overridable.

Sources and assumptions
-----------------------
* Peak dense (no sparsity) tensor FLOP/s from NVIDIA datasheets, bf16 unless noted:
  H100 SXM 989 T; H200 989 T (the H100 die with 141 GB HBM3e); A100 80GB 312 T; L40S 362 T; L4 121 T;
  A10G 70 T (AWS's variant of the A10, which has no NVIDIA datasheet: public A10 vs A10G
  comparisons, e.g. Baseten's "NVIDIA A10 vs A10G for ML model inference", list ~70 T bf16
  tensor for the A10G against the A10's 125 T, with the same 24 GB and 600 GB/s); T4 65 T
  (fp16 -- Turing has no bf16). Memory bandwidth from the same sheets: 3350, 4800, 2039, 864, 300,
  600, 320 GB/s.
* "CPU" is a stand-in for a generic 2-core cloud VM: peak 1.92e11 FLOP/s fp32 (2 cores x
  3 GHz x 32 FLOP/cycle: two 256-bit FMA units), 20 GB/s, 8 GB RAM, $0.10/h. Training MFU
  0.55 is calibrated, not a datasheet value: two LoRA runs (q,v, 34 steps, sentiment_mr) on
  a 2-core AMD EPYC reached 0.50 (other tests running beside it) and 0.60 (alone) of that
  peak; under load (other processes on the cores) it drops in proportion, so CPU timings
  measured on a busy machine read slow.
  Inference MFU 0.15 (≈ 2.9e10 FLOP/s) is a rough figure for small-batch fp32 prefill.
* $/hour are rough single-GPU on-demand list prices of 2024-25 clouds (they vary 2-3x
  between providers); override them in task.yaml ``hardware.usd_per_hour``.
* Training FLOPs: 6·N·D for full fine-tuning (Kaplan et al. 2020; Hoffmann et al. 2022
  "Chinchilla": 2·N·D forward + 4·N·D backward). LoRA ≈ 4·N·D is a FLOP count, not a
  measured speed-up. It assumes: the forward pass is unchanged (2·N·D); the backward pass
  still propagates activation gradients through every frozen layer (2·N·D) but computes
  no weight gradients for them (the other 2·N·D of a full backward); the adapters' own
  FLOPs and optimizer step are negligible (r << hidden). Hu et al. 2021 measured a ~25 %
  training speed-up on GPT-3 175B, less than 6/4 would suggest: memory traffic, the
  unchanged forward and fixed per-step overheads do not shrink with the FLOPs.
* Time = FLOPs / (peak × MFU). Training MFU 0.35 is the default for a well-fed single-GPU
  bf16 run of a ~7B model; inference MFU 0.4 for the compute-bound prefill. A small model
  cannot reach that: its matrix multiplications (hidden 576 for a 135M model) fill a
  fraction of the tensor cores and per-step overheads (kernel launches, optimizer, data)
  do not shrink with it. On GPUs the training MFU is therefore scaled by
  min(1, (N / 7e9) ** 0.3), floored at 0.3x: a 135M model gets ~0.31x (0.11 on an H100),
  1B 0.56x, 7B and up 1x. That curve is our assumption, not a measurement (no GPU was
  available to this project when it was set; Megatron-LM's Narayanan et al. 2021, Table 1,
  shows MFU still rising with size even from 1.7B up); the CPU stand-in's 0.55 was
  measured on the 135M model itself and is not scaled. After a real run, ``measured_mfu``
  replaces the estimate (benchmarks/gpu_check.sh prints it).
* Inference ≈ 2·N FLOPs per token. Prefill is compute-bound; each decode step reads all
  weights once, so it is the slower of compute and memory bandwidth (a roofline) for a
  server batching ``batch`` requests (default 16, a modestly loaded server).
* Memory (decimal GB, 1e9 bytes). On the CPU stand-in training and serving run in fp32:
  4 bytes per weight and per activation value, not 2. On GPUs: full fine-tune ≈ 16 bytes/param (bf16 weights 2 +
  bf16 grads 2 + fp32 master 4 + Adam m, v 8; Rajbhandari et al. 2020 "ZeRO");
  LoRA = 2 bytes/param frozen bf16 + 16 bytes/trainable param; QLoRA = ~0.55 bytes/param
  (4-bit NF4 0.5 + quantisation constants + layers kept in bf16; Dettmers et al. 2023)
  + 16 bytes/trainable param. Activations follow Korthikanti et al. 2022: ≈ 34·s·b·h bytes
  per layer in 16-bit without the attention-score term (flash attention), or ≈ 2·s·b·h
  per layer with full activation checkpointing.

Pure: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

GB = 1e9
SECONDS_PER_HOUR = 3600.0
FULL_FT_BYTES_PER_PARAM = 16.0
ADAM_BYTES_PER_TRAINABLE = 16.0
QLORA_BYTES_PER_PARAM = 0.55
# A run alone on the machine keeps its load average near one per core; above this, other
# processes were competing for the cores while a CPU training time was measured.
CONTENDED_LOAD_PER_CORE = 1.5
# every parameter-efficient method (LoRA, IA³, prompt tuning) skips the frozen weights' gradients
TRAIN_FLOPS_PER_PARAM_TOKEN = {"full": 6.0, "lora": 4.0, "qlora": 4.0, "ia3": 4.0, "prompt_tuning": 4.0}
# Training MFU against model size on GPUs (see the module docstring): the card's MFU holds from
# MFU_FULL_SIZE_PARAMS up and scales as (N / that) ** MFU_SIZE_EXPONENT below, floored.
MFU_FULL_SIZE_PARAMS = 7e9
MFU_SIZE_EXPONENT = 0.3
MFU_SIZE_FLOOR = 0.3
CPU_BYTES_PER_VALUE = 4.0  # the CPU stand-in trains and serves in fp32


@dataclass(frozen=True)
class Hardware:
    """One accelerator (or CPU stand-in) with its price and expected utilisation."""

    name: str
    peak_flops: float  # dense FLOP/s at the training/inference precision
    memory_gb: float
    usd_per_hour: float
    train_mfu: float = 0.35
    infer_mfu: float = 0.4
    mem_bw_gbs: float | None = None  # GB/s; None: decode treated as compute-bound

    @property
    def usd_per_second(self) -> float:
        return self.usd_per_hour / SECONDS_PER_HOUR


HARDWARE: dict[str, Hardware] = {
    h.name: h
    for h in (
        Hardware("H100", 989e12, 80, 3.00, 0.35, 0.4, 3350),
        Hardware("H200", 989e12, 141, 3.80, 0.35, 0.4, 4800),
        Hardware("A100-80GB", 312e12, 80, 2.00, 0.35, 0.4, 2039),
        Hardware("L40S", 362e12, 48, 1.50, 0.35, 0.4, 864),
        Hardware("L4", 121e12, 24, 0.80, 0.35, 0.4, 300),
        Hardware("A10G", 70e12, 24, 1.00, 0.35, 0.4, 600),
        Hardware("T4", 65e12, 16, 0.53, 0.30, 0.35, 320),
        Hardware("CPU", 1.92e11, 8, 0.10, 0.55, 0.15, 20),
    )
}


# What CUDA calls a card (torch.cuda.get_device_name) -> its row above. Longest pattern first:
# "GH200" contains "H200" and "L40S" contains "L4". GH200 pairs a Grace CPU with an H100-class
# GPU at the same dense bf16 peak; an A10 (125 TFLOP/s) is not an A10G (~70) and stays unknown.
DEVICE_PATTERNS: tuple[tuple[str, str], ...] = (
    ("GH200", "H100"), ("H200", "H200"), ("H100", "H100"), ("A100", "A100-80GB"), ("L40S", "L40S"),
    ("A10G", "A10G"), ("L4", "L4"), ("T4", "T4"),
)


def hardware_for_device(device_name: str) -> str | None:
    """The cost table's name for a CUDA device name (None: a card the table does not price)."""
    upper = str(device_name).upper()
    return next((row for pattern, row in DEVICE_PATTERNS if pattern in upper), None)


def get_hardware(name: str, usd_per_hour: float | None = None) -> Hardware:
    """Look up a card by name (case-insensitive), optionally overriding its price."""
    key = {k.lower(): k for k in HARDWARE}.get(str(name).strip().lower())
    if key is None:
        raise ValueError(f"unknown hardware {name!r}; known: {', '.join(HARDWARE)}")
    hw = HARDWARE[key]
    if usd_per_hour is not None:
        if usd_per_hour < 0:
            raise ValueError("usd_per_hour must be >= 0")
        hw = replace(hw, usd_per_hour=float(usd_per_hour))
    return hw


def baseline_hardware(device: str, task_hw: Hardware) -> Hardware:
    """The classical baseline's device (``baseline.device``): the task's card itself, with its
    price override, when it names that card; else the table's entry."""
    return task_hw if device.strip().lower() == task_hw.name.lower() else get_hardware(device)


def _known_hw(device: Hardware | str | None, default: Hardware) -> Hardware | None:
    """The device a measurement ran on: None means ``default``; an unknown name gives None."""
    if device is None:
        return default
    if isinstance(device, Hardware):
        return device
    try:
        return get_hardware(device)
    except ValueError:
        return None


# --- training ---------------------------------------------------------------------------


def train_flops(n_params: float, tokens: float, method: str = "lora") -> float:
    """6·N·D for full fine-tuning, 4·N·D for LoRA/QLoRA/IA³/prompt tuning (no frozen-weight gradients)."""
    try:
        k = TRAIN_FLOPS_PER_PARAM_TOKEN[method]
    except KeyError:
        raise ValueError(f"method must be one of {sorted(TRAIN_FLOPS_PER_PARAM_TOKEN)}") from None
    return k * float(n_params) * float(tokens)


def train_mfu_for(hw: Hardware, n_params: float | None) -> float:
    """The training MFU a model of ``n_params`` can expect on ``hw``: the card's (a ~7B
    model's) scaled down for small models on GPUs; the CPU stand-in's is measured as is."""
    if not n_params or hw.name == "CPU":
        return hw.train_mfu
    scale = min(1.0, max(MFU_SIZE_FLOOR, (float(n_params) / MFU_FULL_SIZE_PARAMS) ** MFU_SIZE_EXPONENT))
    return hw.train_mfu * scale


def train_seconds(flops: float, hw: Hardware, mfu: float | None = None, n_params: float | None = None) -> float:
    """Wall time = FLOPs / (peak × MFU); MFU defaults to the card's training MFU, scaled to
    the model's size when ``n_params`` is given (train_mfu_for)."""
    u = train_mfu_for(hw, n_params) if mfu is None else mfu
    if u <= 0 or hw.peak_flops <= 0:
        raise ValueError("MFU and peak FLOP/s must be > 0")
    return float(flops) / (hw.peak_flops * u)


def measured_mfu(
    n_params: float, tokens: float, seconds: float, peak_flops: float, method: str = "lora"
) -> float:
    """The utilisation a real run achieved: model FLOPs / (seconds × peak)."""
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError("seconds and peak_flops must be > 0")
    return train_flops(n_params, tokens, method) / (seconds * peak_flops)


# --- memory -------------------------------------------------------------------------------


def activation_gb(
    n_layers: int, hidden: int, seq_len: int, batch: int, bytes: float = 2, checkpointing: bool = False
) -> float:
    """Training activations: ≈ 17·bytes·s·b·h per layer (34·s·b·h at 16-bit, flash
    attention, Korthikanti et al. 2022); ≈ bytes·s·b·h per layer with full checkpointing."""
    per_unit = bytes if checkpointing else 17 * bytes
    return n_layers * hidden * seq_len * batch * per_unit / GB


def full_ft_memory_gb(n_params: float, activations_gb: float = 0.0) -> float:
    """Mixed-precision Adam: ~16 bytes/param (weights, grads, fp32 master, m, v)."""
    return n_params * FULL_FT_BYTES_PER_PARAM / GB + activations_gb


def lora_memory_gb(n_params: float, trainable: float, activations_gb: float = 0.0,
                   bytes_per_param: float = 2.0) -> float:
    """Frozen base (bf16: 2 bytes/param; fp32 on CPU: 4) + 16 bytes per trainable adapter param."""
    return (bytes_per_param * n_params + ADAM_BYTES_PER_TRAINABLE * trainable) / GB + activations_gb


def qlora_memory_gb(
    n_params: float,
    trainable: float,
    activations_gb: float = 0.0,
    bytes_per_param: float = QLORA_BYTES_PER_PARAM,
) -> float:
    """4-bit base (~0.55 bytes/param with constants) + 16 bytes per trainable param."""
    return (bytes_per_param * n_params + ADAM_BYTES_PER_TRAINABLE * trainable) / GB + activations_gb


def inference_memory_gb(n_params: float, bytes_per_param: float = 2) -> float:
    """Weights only (KV cache and runtime overhead not included)."""
    return n_params * bytes_per_param / GB


# --- inference ----------------------------------------------------------------------------


def inference_flops(n_params: float, prompt_tokens: float, output_tokens: float) -> float:
    """≈ 2·N FLOPs per processed token (prompt and generated alike)."""
    return 2.0 * n_params * (prompt_tokens + output_tokens)


def request_seconds(
    n_params: float,
    prompt_tokens: float,
    output_tokens: float,
    hw: Hardware,
    batch: int = 16,
    bytes_per_param: float = 2,
) -> float:
    """Device-seconds one request occupies on a server batching ``batch`` requests.

    Prefill: 2·N·p FLOPs at infer_mfu. Decode step for the whole batch: the slower of
    compute (2·N·batch FLOPs) and reading the weights once (N·bytes / bandwidth); each
    request pays 1/batch of every step.
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")
    rate = hw.peak_flops * hw.infer_mfu
    prefill = 2.0 * n_params * prompt_tokens / rate
    step = 2.0 * n_params * batch / rate
    if hw.mem_bw_gbs:
        step = max(step, n_params * bytes_per_param / (hw.mem_bw_gbs * GB))
    return prefill + output_tokens * step / batch


def usd_per_request(
    n_params: float,
    prompt_tokens: float,
    output_tokens: float,
    hw: Hardware,
    batch: int = 16,
    bytes_per_param: float = 2,
) -> float:
    """Dollars for one request: its device-seconds at the card's hourly price."""
    return request_seconds(n_params, prompt_tokens, output_tokens, hw, batch, bytes_per_param) * hw.usd_per_second


def usd_per_1k(per_request_usd: float) -> float:
    return 1000.0 * per_request_usd


def monthly_usd(per_request_usd: float, requests_per_month: float) -> float:
    return per_request_usd * requests_per_month


def break_even_requests(
    setup_usd_a: float, per_request_a: float, setup_usd_b: float, per_request_b: float
) -> float | None:
    """Requests after which the higher-setup, cheaper-per-request option is cheaper overall.

    0.0 when both setups are equal and one option is cheaper per request (it wins from the
    first request); None when the higher-setup option never catches up (its requests are
    not cheaper) or the two cost the same forever.
    """
    if setup_usd_a == setup_usd_b:
        return 0.0 if per_request_a != per_request_b else None
    if setup_usd_a > setup_usd_b:
        hi_setup, hi_per, lo_setup, lo_per = setup_usd_a, per_request_a, setup_usd_b, per_request_b
    else:
        hi_setup, hi_per, lo_setup, lo_per = setup_usd_b, per_request_b, setup_usd_a, per_request_a
    if hi_per >= lo_per:
        return None
    return (hi_setup - lo_setup) / (lo_per - hi_per)


# --- one pipeline, all numbers ---------------------------------------------------------------


def _value_bytes(hw: Hardware) -> float:
    return CPU_BYTES_PER_VALUE if hw.name == "CPU" else 2.0


def _baseline_price(embed_params: float, prompt_tokens: float, train_tokens: float, hw: Hardware) -> tuple[float, float]:
    """(dollars per request, setup seconds) of the classical baseline on ``hw``: one embedding
    of the request (prefill only, one at a time), and one of every train text as setup."""
    per_request = usd_per_request(embed_params, prompt_tokens, 0, hw, batch=1, bytes_per_param=_value_bytes(hw))
    return per_request, 2.0 * embed_params * train_tokens / (hw.peak_flops * hw.infer_mfu)


KINDS = ("baseline", "prompting", "constrained", "rag", "finetune", "full_finetune", "rag_finetune")
RETRIEVING = ("rag", "rag_finetune")  # pay an index (setup) and a query embedding per request
TRAINING = ("finetune", "full_finetune", "rag_finetune")  # pay a training run (setup)
LORA_KINDS = ("finetune", "rag_finetune")


def estimate_pipeline_cost(
    *,
    kind: str,
    n_params: float,
    prompt_tokens: float,
    output_tokens: float,
    requests_per_month: float | None,
    hw: Hardware,
    train_tokens: float = 0,
    trainable_params: float = 0,
    measured_train_seconds: float | None = None,
    measured_device: Hardware | str | None = None,
    measured_load_per_core: float | None = None,
    index_seconds: float = 0.0,
    corpus_tokens: float = 0,
    embed_params: float = 0,
    query_tokens: float = 0,
    n_layers: int | None = None,
    hidden: int | None = None,
    train_seq_len: int | None = None,
    train_batch: int = 8,
    batch: int = 16,
    memory_params: float | None = None,
    baseline_hw: Hardware | None = None,
    method: str = "lora",
) -> dict:
    """Setup, per-request, monthly cost and memory of one pipeline as a plain dict.

    baseline: embeddings + a scikit-learn classifier on ``baseline_hw`` (default the CPU
    stand-in: a team does run a kNN on a CPU); ``train_tokens`` are the train texts it embeds
    once (setup), ``prompt_tokens`` the text per request. Priced on another device than ``hw``,
    it is also priced on ``hw`` (``also_priced_on``), so that it can be compared with the GPU
    pipelines on like terms.
    prompting: no setup. rag: index build (measured ``index_seconds``, else estimated from
    ``corpus_tokens``) plus one query embedding per request (``query_tokens``, defaults to
    the prompt length: an upper bound). finetune (LoRA) / full_finetune: training on ``hw``
    from 4·N·D / 6·N·D; a measured run is compared with the estimate for the device it ran on,
    and flagged when ``measured_load_per_core`` says the machine was busy with other work.
    rag_finetune: both -- a LoRA trained on the RAG prompts (its ``train_tokens`` are those
    longer prompts) plus the index (setup), and RAG's serving cost per request.
    ``memory_params``: the parameters held in memory when they differ from the ones computing
    each token (a mixture of experts holds every expert, uses a few); default ``n_params``.
    ``method`` (finetune): the fine-tuning method that ran (lora | full | prompt_tuning | ia3):
    full is priced 6·N·D with every weight's gradients and Adam states, the others 4·N·D.
    """
    mem_n = memory_params or n_params
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    assumptions: list[str] = []
    out: dict = {"kind": kind}
    setup_seconds = 0.0
    setup_hw = hw
    serve_hw = hw
    serve_params = n_params
    extra_per_request = 0.0

    if kind == "baseline":
        serve_hw = setup_hw = baseline_hw or HARDWARE["CPU"]
        serve_params = embed_params or n_params
        per_request, setup_seconds = _baseline_price(serve_params, prompt_tokens, train_tokens, serve_hw)
        memory = inference_memory_gb(serve_params, _value_bytes(serve_hw))
        assumptions.append(
            "baseline: no LLM; a sentence embedder "
            + ("on a 2-core CPU (fp32)" if serve_hw.name == "CPU" else f"on {serve_hw.name}")
            + " plus a scikit-learn classifier whose cost is negligible next to the embedding"
        )
        out["prompt_tokens"], out["output_tokens"] = prompt_tokens, 0
        if serve_hw.name != hw.name:
            alt_request, alt_setup = _baseline_price(serve_params, prompt_tokens, train_tokens, hw)
            out["also_priced_on"] = [{"device": hw.name, "setup_usd": alt_setup * hw.usd_per_second,
                                      "usd_per_1k_requests": usd_per_1k(alt_request)}]
            assumptions.append(
                f"baseline: priced on {serve_hw.name} (baseline.device); on {hw.name}, where the other "
                f"pipelines are priced, it would cost ${usd_per_1k(alt_request):.2g} per 1,000 requests"
            )
    else:
        per_request = usd_per_request(n_params, prompt_tokens, output_tokens, hw, batch=batch)
        memory = inference_memory_gb(mem_n, _value_bytes(hw))
        out["prompt_tokens"], out["output_tokens"] = prompt_tokens, output_tokens
        assumptions.append(
            f"inference: 2·N FLOPs/token; prefill at {hw.infer_mfu:.0%} MFU, decode roofline "
            f"for a batch of {batch} on {hw.name} at ${hw.usd_per_hour:.2f}/h"
        )

    if kind in RETRIEVING:
        q = query_tokens or prompt_tokens
        if embed_params:
            embed_s = 2.0 * embed_params * q / (hw.peak_flops * hw.infer_mfu)
            extra_per_request = embed_s * hw.usd_per_second
            if not query_tokens:
                assumptions.append("rag: query embedding priced at the full prompt length (upper bound)")
        if index_seconds:
            setup_seconds = float(index_seconds)
            assumptions.append("rag: index build time measured, priced at the serving card's rate")
        elif corpus_tokens and embed_params:
            setup_seconds = 2.0 * embed_params * corpus_tokens / (hw.peak_flops * hw.infer_mfu)
            assumptions.append("rag: index build estimated as 2·N_embed FLOPs per corpus token")
        assumptions.append("rag: vector-store search time is small next to generation and not priced")
        per_request += extra_per_request

    if kind in TRAINING:
        method = "full" if kind == "full_finetune" else method  # rag_finetune trains a LoRA
        lora = method != "full"  # a parameter-efficient method: LoRA, IA³, prompt tuning
        index_seconds_priced = setup_seconds  # rag_finetune: the index is built once beside the training
        if method == "full":
            trainable_params = n_params
        if lora and not trainable_params:
            trainable_params = 0.01 * n_params
            assumptions.append("finetune: trainable adapter params unknown; assumed 1% of the base model")
        flops = train_flops(n_params, train_tokens, method)
        est = train_seconds(flops, hw, n_params=n_params)
        out["train_flops"] = flops
        out["train_seconds_estimated"] = est
        out["train_mfu"] = train_mfu_for(hw, n_params)
        assumptions.append(
            f"training: {'6' if method == 'full' else '4'}·N·D FLOPs at {out['train_mfu']:.0%} MFU of "
            f"{hw.peak_flops / 1e12:.0f} TFLOP/s ({hw.name}"
            + (f"; {hw.train_mfu:.0%} scaled for a {n_params / 1e9:.2g}B model)" if out["train_mfu"] != hw.train_mfu else ")")
        )
        train_s = est
        mdev = _known_hw(measured_device, hw)
        ran = kind != "full_finetune"  # a pipeline that trained (any method), not the contrast estimate
        if measured_train_seconds is not None and ran and mdev is None:
            out["train_seconds_measured"] = float(measured_train_seconds)
            out["measured_device"] = str(measured_device)
            assumptions.append(f"training: measured on {measured_device}, which has no hardware entry; not compared")
        elif measured_train_seconds is not None and ran:
            est_on_mdev = train_seconds(flops, mdev, n_params=n_params)
            out["train_seconds_measured"] = float(measured_train_seconds)
            out["measured_device"] = mdev.name
            out["train_seconds_estimated_on_measured_device"] = est_on_mdev
            out["estimate_error_pct"] = (
                100.0 * (est_on_mdev - measured_train_seconds) / measured_train_seconds
                if measured_train_seconds > 0
                else None
            )
            if measured_train_seconds > 0 and flops > 0:
                out["measured_mfu"] = flops / (measured_train_seconds * mdev.peak_flops)
                if out["measured_mfu"] > 1.0:
                    assumptions.append(
                        f"measured MFU {out['measured_mfu']:.2f} > 1: {mdev.name}'s peak FLOP/s "
                        "(or the token count) is understated; calibrate the hardware entry"
                    )
            # host load slows a CPU run, not a GPU's kernels
            if mdev.name == "CPU" and (measured_load_per_core or 0) > CONTENDED_LOAD_PER_CORE:
                assumptions.append(
                    f"training: measured while the machine ran {measured_load_per_core:.1f}x as many "
                    "runnable processes as it has cores; the measured time is inflated by that contention"
                )
            if mdev.name == hw.name:
                train_s = float(measured_train_seconds)
                assumptions.append(f"training: setup priced from the measured run on {hw.name}")
        setup_seconds = index_seconds_priced + train_s
        if index_seconds_priced:
            out["train_setup_seconds"], out["index_setup_seconds"] = train_s, index_seconds_priced
        act = 0.0
        value_bytes = _value_bytes(hw)
        if n_layers and hidden:
            seq = train_seq_len or int(prompt_tokens + output_tokens)
            act = activation_gb(n_layers, hidden, seq, train_batch, bytes=value_bytes)
            assumptions.append(
                f"activations: {17 * value_bytes:.0f}·s·b·h bytes/layer (s={seq}, b={train_batch}, flash attention)"
            )
        if hw.name == "CPU":
            assumptions.append("memory: fp32 on the CPU stand-in (4 bytes per weight and activation)")
        if lora:
            memory = lora_memory_gb(mem_n, trainable_params, act, bytes_per_param=value_bytes)
            out["qlora_memory_gb"] = qlora_memory_gb(mem_n, trainable_params, act)
        else:
            # 16 bytes/param either way: bf16 weights+grads, fp32 master, Adam m, v on a GPU;
            # fp32 weights 4 + grads 4 + Adam 8 on the CPU stand-in
            memory = full_ft_memory_gb(mem_n, act)
            if kind == "full_finetune":
                assumptions.append("full fine-tune: estimated only, never run")
        out["method"] = method
        out["serving_memory_gb"] = inference_memory_gb(mem_n, value_bytes)
    else:
        out["serving_memory_gb"] = memory

    on_gpu = kind != "baseline" or serve_hw.name != "CPU"
    out.update(
        device=serve_hw.name,
        setup_seconds=setup_seconds,
        setup_gpu_hours=setup_seconds / SECONDS_PER_HOUR if on_gpu else 0.0,
        setup_usd=setup_seconds * setup_hw.usd_per_second,
        usd_per_request=per_request,
        usd_per_1k_requests=usd_per_1k(per_request),
        # device-hours 1,000 requests occupy (serving), at the card's price: $/1k ÷ $/h
        device_hours_per_1k=usd_per_1k(per_request) / serve_hw.usd_per_hour if serve_hw.usd_per_hour else None,
        monthly_usd=monthly_usd(per_request, requests_per_month) if requests_per_month is not None else None,
        memory_gb=memory,
        fits_memory=memory <= serve_hw.memory_gb,
        assumptions=assumptions,
    )
    return out



# --- hosted endpoints: $/M tokens ------------------------------------------------------------

# List prices (USD per million input / output tokens, standard tier, no caching or batch
# discount) as published on April 2026 pricing summaries (promptunit.ai "GPT-4o-mini pricing",
# pecollective.com "GPT-4o Mini pricing (April 2026)", losclouds.com GPT-4.1 mini). Prices
# change: override them per candidate in the task (price_in / price_out).
HOSTED_PRICES_DATE = "2026-04"
HOSTED_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
}


def hosted_price(model: str) -> tuple[float, float] | None:
    """(input, output) $/M tokens of a known hosted model (provider prefix ignored), else None."""
    key = model.strip().lower().split("/")[-1]
    return HOSTED_PRICES.get(key)


def token_usd_per_request(prompt_tokens: float, output_tokens: float, price_in: float, price_out: float) -> float:
    """Dollars for one request at per-million-token prices."""
    return (prompt_tokens * price_in + output_tokens * price_out) / 1e6


def endpoint_pipeline_cost(
    *, kind: str, prompt_tokens: float, output_tokens: float, price_in: float, price_out: float,
    requests_per_month: float | None, price_source: str, query_tokens: float = 0.0,
) -> dict:
    """Cost of prompting/RAG on a hosted or served endpoint: measured tokens x token prices.

    No setup (no GPU to rent, nothing trained); RAG's index build and query embedding run on
    the local embedder and are small next to generation (not priced here).
    """
    per_request = token_usd_per_request(prompt_tokens, output_tokens, price_in, price_out)
    return {
        "kind": kind, "device": "endpoint", "prompt_tokens": prompt_tokens, "output_tokens": output_tokens,
        "setup_seconds": 0.0, "setup_gpu_hours": 0.0, "setup_usd": 0.0,
        "usd_per_request": per_request, "usd_per_1k_requests": usd_per_1k(per_request),
        "monthly_usd": monthly_usd(per_request, requests_per_month) if requests_per_month is not None else None,
        "memory_gb": 0.0, "serving_memory_gb": 0.0, "fits_memory": True,
        "price_in_per_m": price_in, "price_out_per_m": price_out,
        "assumptions": [
            f"endpoint: ${price_in:g} / ${price_out:g} per million input / output tokens ({price_source}); "
            "tokens as measured from the endpoint's responses; no setup cost",
        ],
    }


# --- pretraining, for the contrast with fine-tuning -----------------------------------------


def pretraining_cost(n_params: float, pretrain_tokens: float, hw: Hardware) -> dict:
    """Compute of pretraining the base model: 6·N·D FLOPs on ``hw`` at its training MFU.

    N is the parameters active per token (for a mixture of experts, the experts it uses), D the
    published pretraining token count. GPU-hours are single-card hours (a real run spreads them
    over thousands of cards); dollars at the card's hourly price.
    """
    flops = train_flops(n_params, pretrain_tokens, "full")
    seconds = train_seconds(flops, hw)
    return {
        "flops": flops, "gpu_hours": seconds / SECONDS_PER_HOUR, "usd": seconds * hw.usd_per_second,
        "tokens": float(pretrain_tokens), "n_params": float(n_params), "device": hw.name, "mfu": hw.train_mfu,
    }


def pretraining_ratio(finetune_usd: float, pretrain_usd: float) -> dict | None:
    """How many times cheaper the fine-tune is than pretraining, and the power of ten: 1/10^k."""
    import math

    if finetune_usd <= 0 or pretrain_usd <= 0:
        return None
    ratio = pretrain_usd / finetune_usd
    k = math.log10(ratio)
    return {"times_cheaper": ratio, "log10": k, "text": f"1/10^{k:.1f} of pretraining the base model"}
