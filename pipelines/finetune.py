"""LoRA fine-tuning: peft adapters on the shared base model, trained on the task's train pairs.

What it does
* Train pairs become the *same* zero-shot chat prompt that prompting uses (build_messages), with
  the expected answer + end of turn as the assistant turn; the loss covers the answer tokens only.
  A seeded slice of the train set (finetune.val_fraction, at least 4 items) gives a validation loss.
* Batches are length-grouped (similar lengths together; FIELD-NOTES: padding to the longest in the
  batch is 2.7x faster than a fixed length on CPU). When every pair starts with the same prompt
  tokens (the system turn), each micro-batch is instead packed into one row that holds that prefix
  once (training.pack: same loss and gradients, ~4x fewer tokens on banking77); otherwise rows are
  padded to the longest. AdamW, linear warm-up then linear decay to 0, gradient clipping at 1.0.
* CUDA: bf16 autocast (the shared model is already bf16 there; peft keeps adapters in fp32) and
  TF32 matmuls. CPU: fp32 and at most finetune.cpu_max_steps steps, a small stand-in for the GPU
  run whose time and cost advisor.cost estimates; the report says so.
* NaN/inf loss stops training (TrainingDiverged); CUDA out-of-memory halves the micro-batch and
  doubles the accumulation, then retries the step; Ctrl-C saves the adapter trained so far to
  <run dir>/adapter and re-raises.
* Evaluation: the saved adapter is loaded onto the base model (PeftModel.from_pretrained) and the
  eval set goes through the shared generator with the task's decoding (label scoring for
  `choices`), exactly as prompting's does.

The shared model is borrowed, not kept: adapters are injected for training (prepare) and for
evaluation (predict) and unloaded in a `finally`, and requires_grad / train-mode flags restored, so
every other pipeline sees the untouched base model before and after.

Several GPUs (DDP)
The loop uses accelerate.Accelerator for device placement, backward and DDP gradient sync (no_sync
on all but the last micro-batch), so it runs unchanged under ``accelerate launch``. The engine
(``advisor assess``) is one process; ``finetune.devices: N`` (``advisor assess --gpus N``) makes
prepare() launch the training alone on N processes (pipelines/finetune_launch.py) and read the
adapter and measurements back; evaluation stays here. Without GPUs the N processes are CPU ranks
over gloo (tests/test_finetune_launch.py). The benchmark driver does the same for one task:

    accelerate launch --multi_gpu --num_processes 4 benchmarks/gpu_check.py benchmarks/tasks/banking77.yaml

Each rank trains on its share of every step's batches (batch_size x grad_accum per rank, so the
global batch is N times larger and the step count N times smaller); each rank normalises its loss
by its own answer tokens and DDP averages the gradients. Out-of-memory retries with a halved
micro-batch need a single process (DDP ranks must agree on every step's collectives); under DDP
an OOM stops with a message to lower finetune.batch_size.
"""

from __future__ import annotations

import gc
import json
import math
import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from advisor.metrics import demo_answer

from .base import PipelineOutput, RunContext, SkipPipeline, Usage
from .generation import Generator, answer
from .methods import (
    IA3_FEEDFORWARD,
    IA3_TARGETS,
    METHODS,
    artifact_dir,
    init_prompt,
    peft_config,
    soft_prompt,
    soft_prompted,
)
from .prompts import build_messages
from .training import (
    Encoded,
    TrainingDiverged,
    answer_loss_sum,
    batch_stream,
    collate,
    encode_pairs,
    hardware_name,
    linear_warmup_decay,
    lora_targets,
    peak_memory,
    pack,
    plan_steps,
    reset_peak_memory,
    shared_prefix,
    split_val,
    trainable_counts,
)

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Example

VAL_POINTS = 3  # validation losses during training (plus one before the first step)
CLIP_NORM = 1.0
MIN_SHARED_PREFIX = 8  # tokens; below this, packing saves too little to bother


@dataclass
class _ModelState:
    """What injecting adapters changes on the shared model, to put back afterwards."""

    requires_grad: dict[str, bool]
    training: bool

    @classmethod
    def capture(cls, model: Any) -> "_ModelState":
        return cls({n: p.requires_grad for n, p in model.named_parameters()}, model.training)

    def restore(self, peft_model: Any, base: Any) -> None:
        """Remove every adapter layer (the original modules come back, weights untouched). Prompt
        tuning adds no layer to the base model (its virtual tokens live on the wrapper): only the
        flags come back."""
        if not getattr(peft_model, "_is_prompt_learning", False):
            unloaded = peft_model.unload()
            if unloaded is not base:  # pragma: no cover - peft returns the wrapped model itself
                raise RuntimeError("peft unload returned another model; the shared model may be altered")
        for attr in ("peft_config", "_hf_peft_config_loaded"):
            if attr in base.__dict__:
                delattr(base, attr)
        for n, p in base.named_parameters():
            p.requires_grad_(self.requires_grad.get(n, p.requires_grad))
        base.train(self.training)


class FinetunePipeline:
    name = "finetune"
    adapter_folder: str | None = None  # in the run folder (the stage's artifact); None: the method's own

    def __init__(self, *, share_prefix: bool = True, method: str = "lora"):
        if method not in METHODS:
            raise ValueError(f"unknown fine-tuning method {method!r}; use one of {METHODS}")
        self.share_prefix = share_prefix  # pack micro-batches around a shared prompt prefix when possible
        self.method = method  # pipelines/methods.py: lora | full | prompt_tuning | ia3
        self.n_virtual = 0  # prompt tuning's virtual tokens, run through the model before every row
        self.trained: Any = None  # full: the trained copy of the base model, kept for evaluation

    # ------------------------------------------------------------------ prepare = train
    def prepare(self, ctx: RunContext) -> None:
        import torch
        from accelerate import Accelerator

        if ctx.llm is None:
            raise SkipPipeline("needs a language model")
        if not ctx.data.train:
            raise SkipPipeline("no train set")
        self.ctx = ctx
        spec, ft, llm = ctx.spec, ctx.spec.finetune, ctx.llm
        run_dir = ctx.run_dir or Path(tempfile.mkdtemp(prefix="advisor-finetune-"))
        self.adapter_dir = Path(run_dir) / (self.adapter_folder or artifact_dir(self.method))
        self.cuda = str(llm.device).startswith("cuda")
        if ft.devices > 1:
            from .finetune_launch import in_launched_process, launch_training

            if not in_launched_process():  # train on N processes, evaluate here
                out = launch_training(ctx, Path(run_dir), self.share_prefix)
                self.usage, self.details, self.timings, self.notes = (out[k] for k in ("usage", "details", "timings",
                                                                                       "notes"))
                return
        if self.cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.accel = Accelerator(mixed_precision="no", cpu=not self.cuda)
        t_setup = time.perf_counter()

        prompts, answers = self.train_pairs(ctx)
        encoded = encode_pairs(llm.tokenizer, prompts, answers, ft.max_length)
        tr_idx, val_idx = split_val(len(encoded), ft.val_fraction, ft.seed)
        train, val = [encoded[i] for i in tr_idx], [encoded[i] for i in val_idx]
        planned = plan_steps(len(train), ft.batch_size, ft.grad_accum, self.accel.num_processes, ft.epochs,
                             ft.max_steps)
        steps = planned if self.cuda else min(planned, ft.cpu_max_steps)

        model = llm.model
        attn = getattr(model.config, "_attn_implementation", None)
        self.prefix = shared_prefix(train + val) if self.share_prefix and attn in ("sdpa", "eager") else 0
        if self.prefix < MIN_SHARED_PREFIX:
            self.prefix = 0
        self.mask_dtype = None if attn == "sdpa" else next(model.parameters()).dtype
        state = _ModelState.capture(model)
        torch.manual_seed(ft.seed)
        reset_peak_memory(str(llm.device))  # this method's peak, not an earlier stage's
        peft_model, trained = self._trainable(model)
        self.step = 0
        try:
            trainable, total, pct = trainable_counts(trained)
            setup_s = time.perf_counter() - t_setup
            try:
                stats = self._train(trained, train, val, steps)
            except BaseException as e:
                from advisor.errors import Interrupted

                if isinstance(e, (KeyboardInterrupt, Interrupted)):
                    self._save(peft_model or trained, {"interrupted_at_step": self.step, "planned_steps": steps})
                raise
            t0 = time.perf_counter()
            self._save(peft_model or trained, {"steps": steps, **{k: v for k, v in stats.items() if k != "curve"}})
            save_s = time.perf_counter() - t0
        finally:
            if peft_model is not None:
                state.restore(peft_model, model)
            self.accel.free_memory()
            gc.collect()
        if self.method == "full":
            trained.eval()
            for p in trained.parameters():
                p.requires_grad_(False)
            self.trained = trained

        hw, device_name = hardware_name(llm.device)
        self.usage = {
            "trainable_params": trainable, "trainable_pct": round(pct, 4), "total_params": total,
            "train_tokens_total": stats["tokens"], "train_answer_tokens_total": stats["answer_tokens"],
            "train_tokens_unpacked": stats["unpacked_tokens"], "train_examples_seen": stats["examples"],
            "steps": steps, "planned_steps": planned, "train_seconds": round(stats["seconds"], 3),
            "tokens_per_second": round(stats["tokens"] / stats["seconds"], 1) if stats["seconds"] else None,
            "peak_memory_gb": round(stats["peak_gb"], 3), "peak_memory_kind": stats["peak_kind"],
            "cpu_load_per_core": stats["load_per_core"],
            "device": str(llm.device), "device_hardware": hw, "device_name": device_name,
            "processes": self.accel.num_processes, "seed": ft.seed, "lr": ft.lr_for(self.method), "r": ft.r,
            "alpha": ft.alpha, "method": self.method,
            "targets": ft.targets, "batch_size": ft.batch_size, "grad_accum": ft.grad_accum,
            "micro_batch": stats["micro_batch"],
            # tokens run through the model per train example (the shared prefix counted once per micro-batch)
            "train_seq_len": round(stats["tokens"] / max(1, stats["examples"]), 1),
            "train_pair_len_mean": round(sum(len(e) for e in train) / max(1, len(train)), 1),
            "n_train": len(train), "n_val": len(val),
            "model_shape": {"n_params": llm.n_params, "n_layers": llm.n_layers, "hidden": llm.hidden},
        }
        self.details = {
            "loss_curve": stats["curve"],
            "final_train_loss": stats["curve"]["train"][-1][1] if stats["curve"]["train"] else None,
            "final_val_loss": stats["curve"]["val"][-1][1] if stats["curve"]["val"] else None,
            "oom_retries": stats["oom"], "truncated_train_pairs": sum(e.truncated for e in encoded),
            "batching": "packed around a shared prefix" if self.prefix else "padded to the longest (left)",
            "shared_prefix_tokens": self.prefix,
            "method": self.method,
            **self._method_details(),
            "schedule": {"warmup_steps": stats["warmup"], "lr": ft.lr_for(self.method), "decay": "linear to 0"},
            "adapter_dir": str(self.adapter_dir),
        }
        self.timings = {"train_setup": round(setup_s, 3), "train": round(stats["seconds"], 3),
                        "validation": round(stats["val_seconds"], 3), "save_adapter": round(save_s, 3)}
        self.notes = []
        if hw is None:
            self.notes.append(f"GPU '{device_name}' is not in advisor.cost's hardware table (device_hardware is "
                              f"null): its measured training time is not calibrated against a known peak")
        rule = "6·N·D" if self.method == "full" else "4·N·D"
        if not self.cuda and steps < planned:
            self.notes.append(
                f"CPU run: {steps} of {planned} planned steps (finetune.cpu_max_steps {ft.cpu_max_steps}), fp32. "
                f"It is a small stand-in for the GPU run: that run's time and cost are estimated for "
                f"{spec.hardware.gpu} ({rule}), not measured, and the full run may score higher than this one."
            )
        elif not self.cuda:
            self.notes.append(
                f"CPU run of all {planned} planned steps, fp32: a stand-in for the GPU run with the same steps; "
                f"its time and cost are estimated for {spec.hardware.gpu} ({rule}), not measured."
            )

    def train_pairs(self, ctx: RunContext) -> tuple[list[list[dict]], list[str]]:
        """(chat prompts, target answers) of the train set: the zero-shot prompt prompting uses.
        A hook: RAG + fine-tune trains on the RAG prompts instead (pipelines/rag_finetune.py)."""
        spec, train_ex = ctx.spec, ctx.data.train.examples
        prompts = [build_messages(spec, ctx.data.labels, e.input) for e in train_ex]
        answers = [demo_answer(e.expected[0], spec.format_rules()) for e in train_ex]  # in the task's format
        return prompts, answers

    def _trainable(self, model: Any) -> tuple[Any, Any]:
        """(the peft wrapper to save and unload, or None; the module the loop trains).

        lora/ia3: adapter layers injected into the shared model (unloaded after training);
        prompt_tuning: peft's virtual-token embeddings in front of the frozen model; full: a
        copy of the model with every weight trainable (the shared one stays as it was)."""
        import copy

        from peft import get_peft_model

        ctx, ft = self.ctx, self.ctx.spec.finetune
        if self.method == "full":
            trained = copy.deepcopy(model)
            for p in trained.parameters():
                p.requires_grad_(True)
            return None, trained
        peft_model = get_peft_model(model, peft_config(self.method, ft))
        if self.method != "prompt_tuning":
            return peft_model, peft_model
        prompt = soft_prompt(peft_model)
        init_prompt(prompt, model.get_input_embeddings(), ctx.llm.tokenizer, ft.prompt_tuning_init,
                    ctx.spec.instructions, ft.seed)
        self.n_virtual = int(prompt.shape[0])
        return peft_model, soft_prompted(model, prompt)

    def _method_details(self) -> dict:
        ft = self.ctx.spec.finetune
        if self.method == "lora":
            return {"lora": {"r": ft.r, "alpha": ft.alpha, "dropout": ft.dropout,
                             "target_modules": lora_targets(ft.targets)}}
        if self.method == "ia3":
            return {"ia3": {"target_modules": IA3_TARGETS, "feedforward_modules": IA3_FEEDFORWARD}}
        if self.method == "prompt_tuning":
            return {"prompt_tuning": {"num_virtual_tokens": ft.prompt_tuning_tokens, "init": ft.prompt_tuning_init}}
        return {"full": {"trainable": "every base weight", "weights_dtype": str(next(self.trained.parameters()).dtype)
                         if self.trained is not None else None}}

    # ------------------------------------------------------------------ the loop
    def _autocast(self):
        import torch

        return torch.autocast("cuda", dtype=torch.bfloat16) if self.cuda else nullcontext()

    def _train(self, peft_model: Any, train: list[Encoded], val: list[Encoded], steps: int) -> dict:
        import torch
        from torch.optim.lr_scheduler import LambdaLR

        ft, accel, progress = self.ctx.spec.finetune, self.accel, self.ctx.progress
        device, pad = accel.device, self.ctx.llm.tokenizer.pad_token_id
        params = [p for p in peft_model.parameters() if p.requires_grad]
        lr = ft.lr_for(self.method)
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        warmup = math.ceil(ft.warmup_ratio * steps)
        sched = LambdaLR(opt, linear_warmup_decay(warmup, steps))
        model, opt = accel.prepare(peft_model, opt)
        rank, nproc = accel.process_index, accel.num_processes
        stream = batch_stream([len(e) for e in train], ft.batch_size, ft.seed)
        val_at = {round(steps * k / VAL_POINTS) for k in range(1, VAL_POINTS + 1)} if val else set()
        sync_every = 10 if self.cuda else 1
        micro, oom = ft.batch_size, []
        curve: dict[str, list] = {"train": [], "val": []}
        pending: list[tuple[int, Any]] = []
        tokens = answer_tokens = unpacked = examples = 0
        train_s = val_s = 0.0

        def flush() -> None:
            if not pending:
                return
            vals = accel.reduce(torch.stack([loss for _, loss in pending]).float(), "mean").tolist()
            for (s, _), v in zip(pending, vals):
                if not math.isfinite(v):
                    raise TrainingDiverged(
                        f"training diverged: the loss is {v} at step {s} of {steps} (lr {lr}); "
                        f"lower finetune.{'lr' if self.method == 'lora' else 'method_lr.' + self.method} "
                        f"or check the train data"
                    )
                curve["train"].append([s, round(v, 5)])
            pending.clear()

        def validate(at: int) -> None:
            nonlocal val_s
            t = time.perf_counter()
            curve["val"].append([at, round(self._val_loss(accel.unwrap_model(model), val, device, pad), 5)])
            val_s += time.perf_counter() - t

        loads: list[float | None] = []  # machine load during training: CPU timings need it beside them
        reset_peak_memory(device)
        if val:
            validate(0)
        progress("finetune: training", 0, steps)
        model.train()
        t0 = time.perf_counter()
        while self.step < steps:
            group = [next(stream) for _ in range(ft.grad_accum * nproc)][rank::nproc]
            items = [[train[i] for i in b] for b in group]
            while True:
                try:
                    loss, computed = self._accumulate(model, items, micro, device, pad)
                    break
                except torch.cuda.OutOfMemoryError as e:
                    opt.zero_grad(set_to_none=True)
                    if nproc > 1:  # the other ranks are already in this step's collectives
                        raise RuntimeError("CUDA out of memory under DDP: rerun with a smaller finetune.batch_size "
                                           "(micro-batch halving works in single-process runs only)") from e
                    if micro <= 1:
                        raise RuntimeError("CUDA out of memory with a micro-batch of 1; lower finetune.max_length "
                                           "or use a smaller base model") from e
                    micro //= 2
                    oom.append({"step": self.step + 1, "micro_batch": micro,
                                "grad_accum": ft.grad_accum * math.ceil(ft.batch_size / micro)})
                    if self.cuda:
                        torch.cuda.empty_cache()
            accel.clip_grad_norm_(params, CLIP_NORM)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            self.step += 1
            tokens += computed
            unpacked += sum(len(e) for b in items for e in b)
            examples += sum(len(b) for b in items)
            answer_tokens += sum(e.answer_tokens for b in items for e in b)
            pending.append((self.step, loss))
            if len(pending) >= sync_every or self.step in val_at or self.step == steps:
                flush()
            if self.step in val_at:
                train_s += time.perf_counter() - t0  # flush() synchronised the device
                loads.append(_load_per_core())
                validate(self.step)
                t0 = time.perf_counter()
            progress("finetune: training", self.step, steps)
        flush()
        if self.cuda:
            torch.cuda.synchronize()
        train_s += time.perf_counter() - t0
        loads.append(_load_per_core())
        peak_gb, peak_kind = peak_memory(device)
        model.eval()
        totals = accel.reduce(torch.tensor([tokens, answer_tokens, unpacked, examples], device=device), "sum")
        tokens, answer_tokens, unpacked, examples = (int(x) for x in totals.tolist())
        return {"tokens": tokens, "answer_tokens": answer_tokens, "unpacked_tokens": unpacked,
                "examples": examples, "seconds": train_s,
                "val_seconds": val_s, "curve": curve, "oom": oom, "micro_batch": micro, "warmup": warmup,
                "peak_gb": peak_gb, "peak_kind": peak_kind,
                "load_per_core": round(sum(loads) / len(loads), 2) if loads and None not in loads else None}

    def _accumulate(self, model: Any, items: list[list[Encoded]], micro: int, device: Any, pad: int):
        """Forward/backward over one optimizer step's batches in micro-batches of `micro`; the
        loss is the mean over the step's answer tokens. Returns it (a device tensor, no sync) and
        the tokens run through the model."""
        chunks = [b[j: j + micro] for b in items for j in range(0, len(b), micro)]
        n_answer = sum(e.answer_tokens for b in items for e in b)
        total, computed = None, 0
        for k, chunk in enumerate(chunks):
            batch = self._batch(chunk, pad).to(device)
            computed += batch.tokens + self.n_virtual * batch.input_ids.shape[0]  # virtual tokens run too
            sync = nullcontext() if k == len(chunks) - 1 else self.accel.no_sync(model)
            with sync:
                with self._autocast():
                    loss = answer_loss_sum(model, batch) / n_answer
                self.accel.backward(loss)
            total = loss.detach() if total is None else total + loss.detach()
        return total, computed

    def _batch(self, items: list[Encoded], pad: int):
        return pack(items, self.prefix, self.mask_dtype) if self.prefix else collate(items, pad)

    def _val_loss(self, model: Any, val: list[Encoded], device: Any, pad: int) -> float:
        import torch

        model.eval()
        order = sorted(range(len(val)), key=lambda i: -len(val[i]))
        size = self.ctx.spec.finetune.batch_size * 2
        total, n = None, 0
        with torch.inference_mode():
            for j in range(0, len(order), size):
                batch = self._batch([val[i] for i in order[j: j + size]], pad).to(device)
                with self._autocast():
                    s = answer_loss_sum(model, batch)
                total = s if total is None else total + s
                n += batch.answer_tokens
        model.train()
        return float(total) / n

    def _save(self, trained: Any, info: dict) -> None:
        """The peft adapter (lora, ia3, prompt_tuning), or the whole trained model (full:
        safetensors, the base model's size), with the training's settings beside it."""
        if not self.accel.is_main_process:
            return
        self.adapter_dir.mkdir(parents=True, exist_ok=True)
        trained.save_pretrained(str(self.adapter_dir))
        ft = self.ctx.spec.finetune.model_dump(mode="json")
        (self.adapter_dir / "advisor_training.json").write_text(
            json.dumps({"finetune": ft, "method": self.method, "base_model": self.ctx.llm.name, **info}, indent=1,
                       default=str)
        )

    # ------------------------------------------------------------------ predict = evaluate
    def predict(self, examples: list["Example"]) -> PipelineOutput:
        """The eval set through the shared generator's code with the trained method in place: the
        adapter layers inside the shared model (lora, ia3), the virtual tokens as the generator's
        soft prefix (prompt_tuning), or the trained copy (full)."""
        from dataclasses import replace

        ctx, spec = self.ctx, self.ctx.spec
        model = ctx.llm.model
        shared = ctx.generator or Generator(ctx.llm, progress=ctx.progress)

        def own(llm: Any, soft: Any = None) -> Generator:
            return Generator(llm, batch_size=shared.batch_size, max_batch_tokens=shared.max_batch_tokens,
                             progress=ctx.progress, soft_prefix=soft)

        state = _ModelState.capture(model)
        t0 = time.perf_counter()
        peft_model = None
        if self.method == "full":
            trained = self.trained if self.trained is not None else self._load_full()
            gen = own(replace(ctx.llm, model=trained))
        else:
            from peft import PeftModel

            peft_model = PeftModel.from_pretrained(model, str(self.adapter_dir))
            peft_model.eval()
            if self.method == "prompt_tuning":
                soft = soft_prompt(peft_model).detach().clone()
                state.restore(peft_model, model)
                peft_model = None
                gen = own(ctx.llm, soft)
            else:  # the adapter layers sit inside the shared model, so the shared generator runs them
                gen = shared
        load_s = time.perf_counter() - t0
        try:
            prompts = [build_messages(spec, ctx.data.labels, e.input) for e in examples]
            t0 = time.perf_counter()
            preds = answer(gen, prompts, [e.id for e in examples], decoding=spec.decoding, labels=ctx.data.labels,
                           max_new_tokens=spec.max_new_tokens, desc=f"finetune ({self.method}): evaluating")
            secs = time.perf_counter() - t0
        finally:
            if peft_model is not None:
                state.restore(peft_model, model)
            self.trained = None  # the full copy's memory goes back
            gc.collect()
        n = max(1, len(preds))
        usage = {**self.usage,
                 # a prompt-tuned model runs its virtual tokens before every request's prompt
                 "prompt_tokens_mean": sum(p.prompt_tokens for p in preds) / n + self.n_virtual,
                 "output_tokens_mean": sum(p.output_tokens for p in preds) / n}
        return PipelineOutput(preds, timings={**self.timings, "load_adapter": round(load_s, 3), "predict": round(secs, 3)},
                              usage=Usage.from_dict(usage), details=dict(self.details), notes=list(self.notes))

    def _load_full(self) -> Any:
        """The saved full fine-tune, on the base model's device and dtype."""
        from transformers import AutoModelForCausalLM

        llm = self.ctx.llm
        model = AutoModelForCausalLM.from_pretrained(str(self.adapter_dir), dtype=llm.model.dtype)
        return model.to(llm.device).eval()


def _load_per_core() -> float | None:
    """1-minute load average per core: ~1 when this run alone keeps every core busy, more when
    other processes compete (then a CPU training time reads slow)."""
    try:
        return os.getloadavg()[0] / max(1, os.cpu_count() or 1)
    except OSError:  # not available on this platform
        return None
