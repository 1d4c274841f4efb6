"""The fine-tuning methods the seed names, one place each: what is trainable and how it is saved.

* lora: peft LoraConfig (finetune.r, alpha, dropout, targets): low-rank A·B beside each targeted
  matrix; r·(d_in + d_out) parameters per matrix.
* ia3: peft IA3Config: a learned vector that rescales the keys, the values and the input of the
  feed-forward down-projection (Liu et al. 2022, "(IA)³"; peft's defaults for Llama): one value
  per output feature of k_proj and v_proj, one per input feature of down_proj.
* prompt_tuning: peft PromptTuningConfig: `prompt_tuning_tokens` learned embeddings placed before
  the prompt (Lester et al. 2021), started from the task's instructions (or random vocabulary
  tokens). The base model is untouched; the virtual tokens enter as input embeddings
  (``SoftPrompted`` in training, ``Generator(soft_prefix=...)`` in evaluation, both with the
  virtual tokens at positions 0..V-1 and the prompt after them).
* full: no peft wrapper: a copy of the base model with every weight trainable (fp32 on CPU:
  weights 4 + grads 4 + Adam 8 bytes per parameter), so the shared model stays untouched.

Everything here imports torch/peft inside functions: the spec reads METHODS without loading them.
Their titles live with the fine-tune's catalogue entry (advisor/catalogue.py, method_titles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from advisor.spec import METHOD_NAMES

if TYPE_CHECKING:  # pragma: no cover
    import torch

METHODS = METHOD_NAMES  # the task file's names: lora, full, prompt_tuning, ia3
# IA³ on Llama-style blocks: keys, values and the feed-forward output projection, whose *input*
# is scaled (peft's TRANSFORMERS_MODELS_TO_IA3_* tables for llama/mistral, written out here so a
# change of peft's defaults cannot change what is measured without a code change)
IA3_TARGETS = ["k_proj", "v_proj", "down_proj"]
IA3_FEEDFORWARD = ["down_proj"]
PROMPT_INIT_FALLBACK = "Answer the question."


def artifact_dir(method: str) -> str:
    """Run-folder path of a method's trained result: LoRA keeps today's `adapter`; the others get
    `adapter-<method>` (full's holds the whole model, the base model's size)."""
    return "adapter" if method == "lora" else f"adapter-{method}"


def peft_config(method: str, ft: Any):
    """peft's config for a peft method (None for full). ``ft`` is the task's FinetuneSpec."""
    from peft import IA3Config, LoraConfig, PromptTuningConfig, PromptTuningInit

    from .training import lora_targets

    if method == "lora":
        return LoraConfig(r=ft.r, lora_alpha=ft.alpha, lora_dropout=ft.dropout, bias="none",
                          target_modules=lora_targets(ft.targets), task_type="CAUSAL_LM")
    if method == "ia3":
        return IA3Config(target_modules=IA3_TARGETS, feedforward_modules=IA3_FEEDFORWARD, task_type="CAUSAL_LM")
    if method == "prompt_tuning":
        # RANDOM here; the embeddings are set from the loaded tokenizer by init_prompt() (peft's
        # TEXT init would load the tokenizer again from a hub name or path)
        return PromptTuningConfig(num_virtual_tokens=ft.prompt_tuning_tokens, task_type="CAUSAL_LM",
                                  prompt_tuning_init=PromptTuningInit.RANDOM)
    if method == "full":
        return None
    raise ValueError(f"unknown fine-tuning method {method!r}; use one of {METHODS}")


def init_prompt(weight: "torch.Tensor", embeddings: Any, tokenizer: Any, how: str, text: str, seed: int) -> None:
    """Start the virtual tokens as real token embeddings: the instructions' tokens repeated to fill
    them (peft's TEXT init), or tokens drawn from the vocabulary (peft's SAMPLE_VOCAB)."""
    import torch

    n = weight.shape[0]
    if how == "text":
        ids = tokenizer(text.strip() or PROMPT_INIT_FALLBACK, add_special_tokens=False)["input_ids"]
        ids = (ids * (n // max(1, len(ids)) + 1))[:n]
    else:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, embeddings.num_embeddings, (n,), generator=g).tolist()
    with torch.no_grad():
        src = embeddings(torch.tensor(ids, device=embeddings.weight.device))
        weight.copy_(src.to(weight.dtype))


def soft_prompt(peft_model: Any) -> "torch.Tensor":
    """The learned virtual-token embeddings [V, hidden] of a prompt-tuning PeftModel."""
    return peft_model.prompt_encoder[peft_model.active_adapter].embedding.weight


def with_prefix_mask(mask: "torch.Tensor", v: int) -> "torch.Tensor":
    """A training batch's attention mask with `v` virtual tokens in front, which every token sees
    (the virtual tokens see each other causally). 2D padding mask [B, T] -> [B, v+T]; 4D block
    mask [1, 1, T, T] (bool: True attends; float: 0 or the minimum) -> [1, 1, v+T, v+T]."""
    import torch

    if mask.dim() == 2:
        return torch.cat([torch.ones((mask.shape[0], v), dtype=mask.dtype, device=mask.device), mask], dim=1)
    allowed = mask if mask.dtype == torch.bool else mask == 0
    b, h, t, _ = allowed.shape
    top = torch.cat([torch.ones((v, v), dtype=torch.bool, device=mask.device).tril(),
                     torch.zeros((v, t), dtype=torch.bool, device=mask.device)], dim=1)
    bottom = torch.cat([torch.ones((t, v), dtype=torch.bool, device=mask.device), allowed[0, 0]], dim=1)
    full = torch.cat([top, bottom], dim=0)[None, None].expand(b, h, -1, -1)
    if mask.dtype == torch.bool:
        return full
    return torch.zeros(full.shape, dtype=mask.dtype, device=mask.device).masked_fill(~full, torch.finfo(mask.dtype).min)


def _soft_prompted_class():
    import torch

    class SoftPrompted(torch.nn.Module):
        """The base model behind `prompt` virtual tokens, with the call signature the training loop
        uses (answer_loss_sum): positions and masks shifted by V, logits kept where asked."""

        def __init__(self, model: Any, prompt: "torch.nn.Parameter"):
            super().__init__()
            self.model, self.prompt = model, prompt

        def forward(self, input_ids, attention_mask, position_ids, use_cache=False, logits_to_keep=0):
            v, b = self.prompt.shape[0], input_ids.shape[0]
            emb = self.model.get_input_embeddings()(input_ids)
            soft = self.prompt.to(emb.dtype)[None].expand(b, -1, -1)
            pos = torch.cat([torch.arange(v, device=input_ids.device)[None].expand(b, -1), position_ids + v], dim=1)
            keep = logits_to_keep + v if isinstance(logits_to_keep, torch.Tensor) else logits_to_keep
            return self.model(inputs_embeds=torch.cat([soft, emb], dim=1),
                              attention_mask=with_prefix_mask(attention_mask, v), position_ids=pos,
                              use_cache=use_cache, logits_to_keep=keep)

    return SoftPrompted


def soft_prompted(model: Any, prompt: Any):
    """nn.Module: `model` with the trainable `prompt` [V, hidden] in front of every input."""
    return _soft_prompted_class()(model, prompt)
