"""Fine-tuning methods side by side (issue 14): each method's trainable share against a hand count
from the model's config, prompt tuning's virtual tokens against peft's own forward, the generator's
soft prefix against a plain forward, and a short real run of two methods on a tiny random Llama."""

from __future__ import annotations

import pytest

from pipelines.finetune import FinetunePipeline, _ModelState
from pipelines.training import collate, encode_pairs, pack, trainable_counts
from test_finetune import _assert_clean, _ctx, _snapshot, make_task

# the tiny Llama of conftest.tiny_llm: hidden 32, MLP 64, 2 layers, 4 heads of 8, 2 key/value heads
H, F, LAYERS, KV = 32, 64, 2, 2 * 8


def base_params(vocab: int) -> int:
    """Llama parameters by hand: tied embedding; per layer q, k, v, o, gate, up, down and two
    RMSNorm weights (no biases); the final norm."""
    per_layer = H * H + H * KV + H * KV + H * H + H * F + H * F + F * H + 2 * H
    return vocab * H + LAYERS * per_layer + H


def _trainable_with(method, tiny_llm, write, tmp_path, finetune=""):
    spec, data = make_task(write, finetune=f"methods: [{method}], {finetune}")
    pipe = FinetunePipeline(method=method)
    pipe.ctx = _ctx(spec, data, tiny_llm, tmp_path)
    return pipe, spec


@pytest.mark.parametrize("method,finetune,expected", [
    # LoRA r=8 on q (32 -> 32) and v (32 -> 16): r * (d_in + d_out) per matrix, per layer
    ("lora", "r: 8, targets: 'q,v'", LAYERS * 8 * ((H + H) + (H + KV))),
    # IA³: one scale per output of k and v, one per *input* of down_proj (the feed-forward module)
    ("ia3", "", LAYERS * (KV + KV + F)),
    # prompt tuning: num_virtual_tokens x hidden
    ("prompt_tuning", "prompt_tuning_tokens: 7", 7 * H),
])
def test_peft_methods_train_exactly_the_hand_counted_parameters(tiny_llm, write, tmp_path, method, finetune, expected):
    model = tiny_llm.model
    n = base_params(len(tiny_llm.tokenizer))
    assert sum(p.numel() for p in model.parameters()) == n  # the hand count of the base itself
    snap = _snapshot(model)
    pipe, _ = _trainable_with(method, tiny_llm, write, tmp_path, finetune)
    state = _ModelState.capture(model)
    peft_model, trained = pipe._trainable(model)
    try:
        trainable, total, pct = trainable_counts(trained)
        assert trainable == expected
        assert total == n + expected and pct == pytest.approx(100 * expected / (n + expected))
    finally:
        state.restore(peft_model, model)
    _assert_clean(model, snap)


def test_full_fine_tuning_trains_every_weight_of_a_copy(tiny_llm, write, tmp_path):
    model = tiny_llm.model
    snap = _snapshot(model)
    pipe, _ = _trainable_with("full", tiny_llm, write, tmp_path)
    peft_model, trained = pipe._trainable(model)
    assert peft_model is None and trained is not model
    trainable, total, pct = trainable_counts(trained)
    assert trainable == total == base_params(len(tiny_llm.tokenizer)) and pct == 100.0
    _assert_clean(model, snap)  # the shared model is neither trainable nor changed


def test_ia3_targets_keys_values_and_the_feedforward_input(tiny_llm, write, tmp_path):
    model = tiny_llm.model
    pipe, _ = _trainable_with("ia3", tiny_llm, write, tmp_path)
    state = _ModelState.capture(model)
    peft_model, _ = pipe._trainable(model)
    try:
        shapes = {n.split(".")[-3]: tuple(p.shape) for n, p in peft_model.named_parameters() if p.requires_grad}
    finally:
        state.restore(peft_model, model)
    assert shapes == {"k_proj": (KV, 1), "v_proj": (KV, 1), "down_proj": (1, F)}


def _encoded(tok, n=3):
    prompts = [[{"role": "system", "content": "Say the fruit."}, {"role": "user", "content": w}]
               for w in ("apple", "a ripe yellow banana", "kiwi")[:n]]
    return encode_pairs(tok, prompts, ["red", "yellow and long", "green"][:n], max_length=128)


def test_virtual_tokens_give_peft_prompt_tunings_own_loss(tiny_llm, write, tmp_path):
    """SoftPrompted (virtual tokens at positions 0..V-1, the prompt after them) against peft's
    PeftModelForCausalLM forward, which prepends the same embeddings, on unpadded rows."""
    import torch
    import torch.nn.functional as F_

    from pipelines.methods import soft_prompt, soft_prompted
    from pipelines.training import IGNORE, answer_loss_sum

    model, tok = tiny_llm.model, tiny_llm.tokenizer
    pipe, _ = _trainable_with("prompt_tuning", tiny_llm, write, tmp_path, "prompt_tuning_tokens: 5")
    state = _ModelState.capture(model)
    peft_model, wrapped = pipe._trainable(model)
    try:
        with torch.no_grad():
            soft_prompt(peft_model).add_(torch.randn(5, H))  # not the init: any learned values
        for e in _encoded(tok):
            b = collate([e], tok.pad_token_id)
            with torch.no_grad():
                mine = answer_loss_sum(wrapped, b) / b.answer_tokens
                logits = peft_model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits[0, 5:]
            labels = torch.tensor(e.labels)
            ref = F_.cross_entropy(logits[:-1], labels[1:], ignore_index=IGNORE)
            assert float(mine) == pytest.approx(float(ref), rel=1e-5)
        # packing around the shared prefix: the same loss behind the virtual tokens
        enc = _encoded(tok)
        from pipelines.training import shared_prefix

        with torch.no_grad():
            padded = answer_loss_sum(wrapped, collate(enc, tok.pad_token_id))
            packed = answer_loss_sum(wrapped, pack(enc, shared_prefix(enc)))
        assert float(packed) == pytest.approx(float(padded), rel=1e-4)
        assert soft_prompted is not None
    finally:
        state.restore(peft_model, model)


@pytest.mark.parametrize("system", ["Label it.", "Label the sentiment of the review. " * 6])
def test_generator_soft_prefix_scores_and_generates_like_a_plain_forward(tiny_llm, system):
    """Label log-probabilities and greedy tokens with virtual tokens in the prefix KV cache (alone,
    or before a shared token prefix long enough to be cached too), against one uncached forward of
    [virtual tokens, prompt, label] per item."""
    import torch

    from pipelines.generation import Generator

    model, tok = tiny_llm.model, tiny_llm.tokenizer
    torch.manual_seed(1)
    soft = torch.randn(4, H) * 0.1
    gen = Generator(tiny_llm, batch_size=2, soft_prefix=soft)
    prompts = [[{"role": "system", "content": system}, {"role": "user", "content": w}]
               for w in ("fig", "a long sentence about olives", "plum")]
    shared = gen._shared_prefix(gen.encode(prompts))
    assert (shared > 0) == (len(system) > 20)
    labels = ["negative", "positive"]
    got = gen.score_choices(prompts, labels)
    emb = model.get_input_embeddings()
    for p, r in zip(prompts, got):
        ids = tok(gen.render(p), add_special_tokens=False)["input_ids"]
        ref = []
        for c in gen.choice_ids(labels):
            x = torch.tensor([ids + c])
            with torch.no_grad():
                logits = model(inputs_embeds=torch.cat([soft[None], emb(x)], 1)).logits[0].log_softmax(-1)
            start = 4 + len(ids) - 1  # the logit predicting the label's first token
            ref.append(sum(float(logits[start + t, tok_id]) for t, tok_id in enumerate(c)))
        assert r.logprobs == pytest.approx(ref, abs=1e-4)
    outs = gen.generate(prompts, max_new_tokens=4)
    for p, o in zip(prompts, outs):
        ids = tok(gen.render(p), add_special_tokens=False)["input_ids"]
        seq = list(ids)
        for _ in range(4):
            with torch.no_grad():
                x = torch.tensor([seq])
                nxt = int(model(inputs_embeds=torch.cat([soft[None], emb(x)], 1)).logits[0, -1].argmax())
            seq.append(nxt)
            if nxt == tok.eos_token_id:
                break
        new = seq[len(ids):]
        n = new.index(tok.eos_token_id) if tok.eos_token_id in new else len(new)
        assert o.text == tok.decode(new[:n], skip_special_tokens=True).strip()


@pytest.mark.parametrize("method", ["prompt_tuning", "full"])
def test_tiny_run_of_a_method_saves_evaluates_and_leaves_the_model_clean(tiny_llm, write, tmp_path, method):
    spec, data = make_task(write, finetune=f"methods: [{method}], max_steps: 3, batch_size: 4")
    snap = _snapshot(tiny_llm.model)
    pipe = FinetunePipeline(method=method)
    pipe.prepare(_ctx(spec, data, tiny_llm, tmp_path))
    out = pipe.predict(data.eval.examples)
    _assert_clean(tiny_llm.model, snap)
    u = out.usage
    assert u["method"] == method and u["steps"] == 3 and len(out.predictions) == len(data.eval.examples)
    assert u["lr"] == spec.finetune.lr_for(method) != spec.finetune.lr
    folder = tmp_path / f"adapter-{method}"
    assert (folder / "advisor_training.json").is_file() and out.details["method"] == method
    if method == "full":
        assert u["trainable_pct"] == 100.0 and (folder / "model.safetensors").is_file()
    else:
        assert u["trainable_params"] == 20 * H and (folder / "adapter_model.safetensors").is_file()
        assert u["prompt_tokens_mean"] == pytest.approx(
            sum(p.prompt_tokens for p in out.predictions) / len(out.predictions) + 20)
