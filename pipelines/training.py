"""Helpers of the LoRA pipeline that do not need a training loop: data, batches, counts, device.

Kept apart from finetune.py so they can be unit-tested on their own (masking, length grouping,
trainable %) and so the loop stays readable. torch is imported inside functions only.

Two ways to batch a micro-batch, both computing the loss on answer tokens only and asking the
model for logits only where a label is (``logits_to_keep``) — the prompt is most of each sequence
(banking77: ~165 prompt tokens for a ~6-token answer), so a vocabulary-sized projection of every
prompt token would be wasted:

* ``collate``: *left*-padded rows, like the shared generator's prompts; every answer then sits at
  the end of its row and the last ``keep`` positions hold all the logits needed.
* ``pack``: when every pair starts with the same tokens (the zero-shot prompt's system turn:
  instructions and label list, ~150 of banking77's ~170 tokens), one row holds that prefix once
  followed by each pair's remainder, with a block attention mask (each remainder sees the prefix
  and itself, causally) and per-pair position ids. The same loss, gradients included, up to float
  rounding (tests/test_finetune.py checks it), for ~4x fewer tokens on banking77; no padding.
  Needs a model that accepts a custom 4D mask (sdpa or eager attention in transformers).
"""

from __future__ import annotations

import math
import random
import resource
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

IGNORE = -100  # label of positions that carry no loss (prompt, padding)
MIN_VAL = 4  # validation examples, when the train set allows
MEGA_BATCH = 50  # batches per length-sorted mega-batch (the Hugging Face LengthGroupedSampler's)


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite; the pipeline is recorded as failed."""


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Encoded:
    """One train pair: prompt + answer token ids, labels IGNORE on the prompt."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False

    @property
    def n_prompt(self) -> int:
        return next((i for i, x in enumerate(self.labels) if x != IGNORE), len(self.labels))

    @property
    def answer_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_pairs(
    tokenizer: Any, prompts: Sequence[list[dict]], answers: Sequence[str], max_length: int
) -> list[Encoded]:
    """Prompt rendered with the chat template (generation prompt added) and the answer + end
    of turn, tokenised separately so the boundary is exact. Over-long pairs keep the answer and
    the *end* of the prompt (the question), as the generator does at inference."""
    texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in prompts]
    prompt_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = []
    for p, a in zip(prompt_ids, answer_ids):
        a = (list(a) + [eos])[: max_length - 1]
        room = max_length - len(a)
        cut = len(p) > room
        p = list(p[-room:]) if cut else list(p)
        out.append(Encoded(p + a, [IGNORE] * len(p) + a, cut))
    return out


def split_val(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train indices, validation indices): a seeded slice of `val_fraction`, at least MIN_VAL
    examples when that leaves three times as many for training; none when val_fraction is 0."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    if val_fraction <= 0 or n < 4 * MIN_VAL:
        return order, []
    k = min(max(MIN_VAL, round(n * val_fraction)), n // 4)
    return order[k:], order[:k]


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, seed: int, mega: int = MEGA_BATCH
) -> list[list[int]]:
    """One epoch of batches: shuffle, sort by length (longest first) within mega-batches of
    `mega` batches, cut into batches, shuffle the batch order. Similar lengths share a batch,
    so padding to the longest in the batch wastes little; the order still varies by seed."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * mega
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start: start + span], key=lambda i: -lengths[i])
        batches.extend(chunk[j: j + batch_size] for j in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def batch_stream(lengths: Sequence[int], batch_size: int, seed: int) -> Iterator[list[int]]:
    """Batches epoch after epoch (epoch e uses seed + e), forever."""
    epoch = 0
    while True:
        yield from length_grouped_batches(lengths, batch_size, seed + epoch)
        epoch += 1


@dataclass
class Batch:
    input_ids: "torch.Tensor"
    attention_mask: "torch.Tensor"  # [B, T] padding mask, or [1, 1, T, T] block mask when packed
    position_ids: "torch.Tensor"
    labels: "torch.Tensor"  # [B, T] with IGNORE; packed: [N] targets of the kept logits
    keep: "int | torch.Tensor"  # padded: logits for the last `keep` positions; packed: their indices
    tokens: int  # non-pad tokens run through the model
    answer_tokens: int
    packed: bool = False

    def to(self, device: Any) -> "Batch":
        keep = self.keep.to(device) if self.packed else self.keep
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                     self.labels.to(device), keep, self.tokens, self.answer_tokens, self.packed)


def collate(items: Sequence[Encoded], pad_id: int) -> Batch:
    """Left-pad to the longest item; labels IGNORE on padding and prompt."""
    import torch

    width = max(len(e) for e in items)
    ids = [[pad_id] * (width - len(e)) + e.input_ids for e in items]
    labels = [[IGNORE] * (width - len(e)) + e.labels for e in items]
    mask = [[0] * (width - len(e)) + [1] * len(e) for e in items]
    mask_t = torch.tensor(mask, dtype=torch.long)
    keep = max(e.answer_tokens for e in items) + 1
    return Batch(
        torch.tensor(ids, dtype=torch.long), mask_t, (mask_t.cumsum(-1) - 1).clamp(min=0),
        torch.tensor(labels, dtype=torch.long), min(keep, width),
        sum(len(e) for e in items), sum(e.answer_tokens for e in items),
    )


def shared_prefix(items: Sequence[Encoded]) -> int:
    """How many leading tokens every pair shares, within every prompt (never into an answer)."""
    import os.path

    if not items:
        return 0
    common = os.path.commonprefix([e.input_ids for e in items])  # works on lists of ints
    return min(len(common), min(e.n_prompt for e in items))


def pack(items: Sequence[Encoded], prefix: int, mask_dtype: Any = None) -> Batch:
    """One row: the shared `prefix` once, then each pair's remainder, with a block mask.

    `mask_dtype` None gives a boolean mask (sdpa: True = attend); a float dtype gives an additive
    mask (eager attention: 0 or the dtype's minimum)."""
    import torch

    ids = list(items[0].input_ids[:prefix])
    seg = [-1] * prefix
    pos = list(range(prefix))
    keep: list[int] = []
    targets: list[int] = []
    for i, e in enumerate(items):
        start = len(ids)  # packed index of e.input_ids[prefix]
        rest = e.input_ids[prefix:]
        ids += rest
        seg += [i] * len(rest)
        pos += range(prefix, len(e))
        for t in range(e.n_prompt, len(e)):  # answer tokens; the logit predicting t sits at t - 1
            if e.labels[t] != IGNORE:
                keep.append(t - 1 if t - 1 < prefix else start + t - 1 - prefix)
                targets.append(e.labels[t])
    n = len(ids)
    s = torch.tensor(seg)
    idx = torch.arange(n)
    allowed = (idx[None, :] <= idx[:, None]) & ((s[None, :] == s[:, None]) | (s[None, :] == -1))
    mask = allowed if mask_dtype is None else torch.zeros((n, n), dtype=mask_dtype).masked_fill(
        ~allowed, torch.finfo(mask_dtype).min)
    return Batch(torch.tensor([ids]), mask[None, None], torch.tensor([pos]), torch.tensor(targets),
                 torch.tensor(keep), n, len(targets), packed=True)


def answer_loss_sum(model: Any, batch: Batch) -> "torch.Tensor":
    """Summed cross-entropy over the answer tokens, with logits only where a label is."""
    import torch.nn.functional as F

    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
                use_cache=False, logits_to_keep=batch.keep)
    if batch.packed:
        return F.cross_entropy(out.logits[0].float(), batch.labels, reduction="sum")
    logits = out.logits[:, :-1, :].float()
    target = batch.labels[:, -(batch.keep - 1):]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                           ignore_index=IGNORE, reduction="sum")


# ------------------------------------------------------------------------------------ LoRA


def lora_targets(targets: str | list[str]) -> str | list[str]:
    """finetune.targets -> peft target_modules: "q,v" -> q_proj, v_proj; "all-linear" stays."""
    if isinstance(targets, list):
        return list(targets)
    t = targets.strip()
    if t == "all-linear":
        return t
    short = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj",
             "gate": "gate_proj", "up": "up_proj", "down": "down_proj"}
    return [short.get(x.strip(), x.strip()) for x in t.split(",") if x.strip()]


def trainable_counts(model: Any) -> tuple[int, int, float]:
    """(trainable params, all params, trainable % of all) — adapters included in 'all'."""
    trainable = total = 0
    for p in model.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total, (100.0 * trainable / total if total else 0.0)


def plan_steps(n_train: int, batch_size: int, grad_accum: int, processes: int, epochs: float,
               max_steps: int | None) -> int:
    """Optimizer steps: max_steps, else epochs over the train set (at least one step)."""
    if max_steps:
        return max_steps
    per_step = batch_size * grad_accum * processes
    return max(1, math.ceil(epochs * n_train / per_step))


def linear_warmup_decay(warmup: int, total: int):
    """LR multiplier: linear from ~0 to 1 over `warmup` steps, then linear to 0 at `total`."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


# ------------------------------------------------------------------------------------ device

# substrings of torch.cuda.get_device_name() -> advisor.cost.HARDWARE names
def hardware_name(device: str) -> tuple[str | None, str]:
    """(cost-table name or None when unknown, the device's own name)."""
    if not str(device).startswith("cuda"):
        return "CPU", "CPU"
    import torch

    from advisor.cost import hardware_for_device

    name = torch.cuda.get_device_name(torch.device(device))
    return hardware_for_device(name), name


def reset_peak_memory(device: str) -> None:
    """Start a new peak: CUDA's counter, or on Linux the process's peak RSS (clear_refs 5 resets
    VmHWM), so that methods trained one after another in one process each get their own peak."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:  # not Linux, or not allowed: the peak since the process started is reported
        pass


def _vm_hwm_gb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            line = next((x for x in f if x.startswith("VmHWM:")), None)
    except OSError:
        return None
    return int(line.split()[1]) * 1024 / 1e9 if line else None


def peak_memory(device: str) -> tuple[float, str]:
    """(GB, what was measured): CUDA max allocated, or the process's peak RSS on CPU (since the last
    reset_peak_memory where Linux allows it: the whole process holds the base model and whatever
    earlier stages loaded, so it is the training's footprint plus that)."""
    if str(device).startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 1e9, "cuda_max_allocated"
    hwm = _vm_hwm_gb()
    if hwm is not None:
        return hwm, "process_peak_rss"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss * (1 if sys.platform == "darwin" else 1024) / 1e9, "process_peak_rss"
