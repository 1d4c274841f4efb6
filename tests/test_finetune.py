"""LoRA pipeline: masking, batching and counts (unit); divergence, OOM, Ctrl-C and clean-up on a
tiny random Llama (fast); learning a made-up format and reloading the adapter with the real model."""

from __future__ import annotations

import json

import pytest

from pipelines.finetune import _ModelState
from pipelines.training import (
    IGNORE,
    TrainingDiverged,
    collate,
    encode_pairs,
    length_grouped_batches,
    linear_warmup_decay,
    lora_targets,
    pack,
    plan_steps,
    shared_prefix,
    split_val,
    trainable_counts,
)

WORDS = ("apple pear plum kiwi lime lemon mango melon grape peach cherry berry fig olive onion garlic pepper "
         "carrot potato tomato radish turnip celery leek bean pea corn rice wheat oat rye barley hops mint sage "
         "basil thyme dill chive cress kale chard okra yam squash").split()


def make_task(write, *, n_train=24, n_eval=6, finetune="", instructions="Echo the word in house style."):
    """A generation task whose answer is a made-up format: "<word> zork"."""
    from advisor import spec as S
    from advisor.data import load_task_data

    rows = [{"text": w, "label": f"{w} zork"} for w in WORDS]
    write("train.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:n_train]))
    write("eval.jsonl", "".join(json.dumps(r) + "\n" for r in rows[n_train: n_train + n_eval]))
    path = write("task.yaml", (
        f"name: fmt\ntype: generation\ninstructions: {instructions}\n"
        "data: {eval: eval.jsonl, train: train.jsonl}\n"
        "target: {metric: exact_match, min: 0.5}\nprompting: {max_new_tokens: 8}\n"
        f"finetune: {{mode: always, {finetune}}}\n"
    ))
    spec = S.load(path)
    return spec, load_task_data(spec)


# ------------------------------------------------------------------------------------ unit


def test_prompt_and_padding_masked_exactly(smollm):
    tok = smollm.tokenizer
    prompts = [[{"role": "system", "content": "Sys."}, {"role": "user", "content": u}]
               for u in ("hi", "a much longer question about the weather today")]
    enc = encode_pairs(tok, prompts, ["yes", "no way"], max_length=512)
    for e, p, a in zip(enc, prompts, ["yes", "no way"]):
        rendered = tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        n_prompt = len(tok(rendered, add_special_tokens=False)["input_ids"])
        answer = tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert e.labels == [IGNORE] * n_prompt + answer
        assert e.input_ids[n_prompt:] == answer and e.answer_tokens == len(answer)
    b = collate(enc, tok.pad_token_id)
    width = b.input_ids.shape[1]
    for row, e in enumerate(enc):
        pad = width - len(e)
        assert b.attention_mask[row].tolist() == [0] * pad + [1] * len(e)
        assert b.labels[row].tolist() == [IGNORE] * pad + e.labels  # padding and prompt masked
        assert b.position_ids[row, pad:].tolist() == list(range(len(e)))
    assert b.tokens == sum(len(e) for e in enc) and b.answer_tokens == sum(e.answer_tokens for e in enc)
    assert b.keep == max(e.answer_tokens for e in enc) + 1


def test_truncation_keeps_answer_and_end_of_prompt(smollm):
    tok = smollm.tokenizer
    long = [[{"role": "user", "content": "word " * 200 + "final question"}]]
    (e,) = encode_pairs(tok, long, ["ok"], max_length=32)
    assert len(e) == 32 and e.truncated
    assert e.labels[-e.answer_tokens:] == tok("ok", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_length_grouping_sorts_within_mega_batches_and_shuffles_batches():
    lengths = [((i * 37) % 101) + 1 for i in range(200)]
    batches = length_grouped_batches(lengths, batch_size=8, seed=3, mega=5)
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len(b) == 8 for b in batches)
    # each batch comes from one sorted run: its lengths never increase
    assert all(all(lengths[b[j]] >= lengths[b[j + 1]] for j in range(len(b) - 1)) for b in batches)
    spread = sum(lengths[b[0]] - lengths[b[-1]] for b in batches) / len(batches)
    rand = sum(max(lengths[i] for i in range(k, k + 8)) - min(lengths[i] for i in range(k, k + 8))
               for k in range(0, 200, 8)) / 25
    assert spread < rand / 3  # far less padding than unsorted batches
    assert batches == length_grouped_batches(lengths, 8, seed=3, mega=5)  # seeded
    assert batches != length_grouped_batches(lengths, 8, seed=4, mega=5)


def test_val_split_is_seeded_and_sized():
    tr, val = split_val(100, 0.1, seed=1)
    assert len(val) == 10 and sorted(tr + val) == list(range(100)) and (tr, val) == split_val(100, 0.1, seed=1)
    assert len(split_val(20, 0.1, seed=0)[1]) == 5 - 1  # at least 4 ...
    assert split_val(15, 0.1, seed=0)[1] == []  # ... when the train set allows
    assert split_val(100, 0.0, seed=0)[1] == []


def test_targets_steps_and_schedule():
    assert lora_targets("q,v") == ["q_proj", "v_proj"]
    assert lora_targets("all-linear") == "all-linear"
    assert lora_targets(["q_proj", "o_proj"]) == ["q_proj", "o_proj"]
    assert plan_steps(720, 8, 1, 1, 2, None) == 180 and plan_steps(720, 8, 2, 2, 2, None) == 45
    assert plan_steps(720, 8, 1, 1, 2, 7) == 7
    f = linear_warmup_decay(2, 10)
    assert [round(f(s), 3) for s in range(10)] == [0.333, 0.667, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125]


def test_trainable_percent_counts_lora_params(tiny_llm):
    from peft import LoraConfig, get_peft_model

    model = tiny_llm.model
    base = sum(p.numel() for p in model.parameters())
    state = _ModelState.capture(model)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    try:
        trainable, total, pct = trainable_counts(peft_model)
        # q: 32 -> 32, v: 32 -> 16 (2 kv heads of 8): r * (in + out) per module, 2 layers
        assert trainable == 2 * 4 * ((32 + 32) + (32 + 16))
        assert total == base + trainable
        assert pct == pytest.approx(100 * trainable / total)
    finally:
        state.restore(peft_model, model)
    assert not any("lora" in n for n, _ in model.named_modules())


def test_answer_loss_equals_hf_loss_on_a_left_padded_batch(tiny_llm):
    import torch

    from pipelines.training import answer_loss_sum

    tok = tiny_llm.tokenizer
    prompts = [[{"role": "user", "content": w * k}] for k, w in enumerate(["ab ", "cd ", "efg "], start=1)]
    enc = encode_pairs(tok, prompts, ["x", "yy zz", "long answer here"], 512)
    b = collate(enc, tok.pad_token_id)
    with torch.no_grad():
        mine = answer_loss_sum(tiny_llm.model, b) / b.answer_tokens
        ref = tiny_llm.model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                             labels=b.labels).loss
    assert mine.item() == pytest.approx(ref.item(), rel=1e-5)


def test_shared_prefix_stops_at_the_prompt(smollm):
    tok = smollm.tokenizer
    same = [[{"role": "system", "content": "Sys prompt here."}, {"role": "user", "content": "same"}]] * 2
    enc = encode_pairs(tok, same, ["yes", "yes"], 512)
    assert shared_prefix(enc) == enc[0].n_prompt  # identical pairs: the answer is never shared
    other = encode_pairs(tok, [same[0], [{"role": "user", "content": "x"}]], ["a", "b"], 512)
    assert shared_prefix(other) < 5


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packing_around_the_shared_prefix_gives_the_padded_loss_and_gradients(tiny_llm, write, attn):
    import torch

    from pipelines.prompts import build_messages
    from pipelines.training import answer_loss_sum

    spec, data = make_task(write)
    tok, model = tiny_llm.tokenizer, tiny_llm.model
    train = data.train.examples[:6]
    enc = encode_pairs(tok, [build_messages(spec, None, e.input) for e in train],
                       [e.expected[0] + " x" * i for i, e in enumerate(train)], 512)  # answers of several lengths
    prefix = shared_prefix(enc)
    assert prefix >= 10 and all(e.input_ids[:prefix] == enc[0].input_ids[:prefix] for e in enc)
    padded = collate(enc, tok.pad_token_id)
    packed = pack(enc, prefix, None if attn == "sdpa" else torch.float32)
    assert packed.tokens == prefix + sum(len(e) - prefix for e in enc) < padded.tokens
    assert packed.answer_tokens == padded.answer_tokens == sum(e.answer_tokens for e in enc)
    model.set_attn_implementation(attn)
    try:
        results = []
        for b in (padded, packed):
            loss = answer_loss_sum(model, b)
            loss.backward()
            results.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
            model.zero_grad(set_to_none=True)
    finally:
        model.set_attn_implementation("sdpa")
    (lp, gp), (lk, gk) = results
    assert lk == pytest.approx(lp, rel=1e-5)
    assert all(torch.allclose(gp[n], gk[n], rtol=1e-3, atol=1e-6) for n in gp)


# ------------------------------------------------------------------------------------ tiny model


def _ctx(spec, data, llm, run_dir, progress=None):
    from pipelines.base import RunContext

    return RunContext(spec, data, llm, None, progress or (lambda *a: None), run_dir, None)


def _snapshot(model):
    return ({n: t.detach().clone() for n, t in model.state_dict().items()},
            {n: p.requires_grad for n, p in model.named_parameters()}, model.training)


def _assert_clean(model, snap):
    import torch

    weights, grads, training = snap
    assert not any("lora" in n for n, _ in model.named_modules()), "adapter layers left in the shared model"
    state = model.state_dict()
    assert set(state) == set(weights) and all(torch.equal(state[n], weights[n]) for n in weights)
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads and model.training == training
    assert "peft_config" not in model.__dict__


def test_tiny_run_measures_saves_and_leaves_model_clean(tiny_llm, write, tmp_path):
    from peft import PeftModel

    from pipelines.finetune import FinetunePipeline

    spec, data = make_task(write, finetune="max_steps: 4, batch_size: 4")
    snap = _snapshot(tiny_llm.model)
    seen = []
    pipe = FinetunePipeline()
    pipe.prepare(_ctx(spec, data, tiny_llm, tmp_path, lambda d, done, total: seen.append((d, done, total))))
    _assert_clean(tiny_llm.model, snap)
    out = pipe.predict(data.eval.examples)
    _assert_clean(tiny_llm.model, snap)
    u = out.usage.to_dict()
    assert u["steps"] == 4 and u["device_hardware"] == "CPU" and u["n_val"] == 4 and u["n_train"] == 20
    assert u["train_tokens_total"] > u["train_answer_tokens_total"] > 0 and u["tokens_per_second"] > 0
    assert 0 < u["trainable_pct"] < 100 and u["peak_memory_gb"] > 0 and u["prompt_tokens_mean"] > 0
    curve = out.details["loss_curve"]
    assert [s for s, _ in curve["train"]] == [1, 2, 3, 4] and curve["val"][0][0] == 0 and curve["val"][-1][0] == 4
    assert any("CPU run of all 4 planned steps" in n for n in out.notes)
    assert out.details["shared_prefix_tokens"] >= 10 and u["train_tokens_total"] < u["train_tokens_unpacked"]
    assert ("finetune: training", 4, 4) in seen
    assert len(out.predictions) == len(data.eval.examples)
    state = _ModelState.capture(tiny_llm.model)
    loaded = PeftModel.from_pretrained(tiny_llm.model, str(tmp_path / "adapter"))
    try:
        assert sum(p.numel() for n, p in loaded.named_parameters() if "lora" in n) == u["trainable_params"]
    finally:
        state.restore(loaded, tiny_llm.model)
    _assert_clean(tiny_llm.model, snap)
    saved = json.loads((tmp_path / "adapter" / "advisor_training.json").read_text())
    assert saved["steps"] == 4 and saved["finetune"]["lr"] == spec.finetune.lr


def test_cpu_step_budget_caps_planned_steps(tiny_llm, write, tmp_path):
    from pipelines.finetune import FinetunePipeline

    spec, data = make_task(write, finetune="epochs: 3, batch_size: 8, cpu_max_steps: 2, val_fraction: 0")
    pipe = FinetunePipeline()
    pipe.prepare(_ctx(spec, data, tiny_llm, tmp_path))
    assert pipe.usage["planned_steps"] == 9 and pipe.usage["steps"] == 2  # ceil(3 * 24 / 8)
    assert any("CPU run: 2 of 9 planned steps" in n and "stand-in" in n for n in pipe.notes)
    assert pipe.details["loss_curve"]["val"] == []


def test_nan_loss_stops_training_with_a_clear_error(tiny_llm, write, tmp_path, monkeypatch):
    import pipelines.finetune as ft

    real = ft.answer_loss_sum
    calls = []

    def poisoned(model, batch):
        calls.append(1)
        loss = real(model, batch)
        return loss * float("nan") if len(calls) >= 3 else loss

    spec, data = make_task(write, finetune="max_steps: 6, batch_size: 8, val_fraction: 0")
    snap = _snapshot(tiny_llm.model)
    monkeypatch.setattr(ft, "answer_loss_sum", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 3 of 6.*lower finetune.lr"):
        ft.FinetunePipeline().prepare(_ctx(spec, data, tiny_llm, tmp_path))
    assert issubclass(TrainingDiverged, RuntimeError)
    _assert_clean(tiny_llm.model, snap)


def test_oom_halves_micro_batch_and_doubles_accumulation(tiny_llm, write, tmp_path, monkeypatch):
    import torch

    import pipelines.finetune as ft

    real = ft.answer_loss_sum
    sizes = []

    def oom_once(model, batch):
        sizes.append(batch.input_ids.shape[0])
        if len(sizes) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(model, batch)

    spec, data = make_task(write, finetune="max_steps: 3, batch_size: 8, val_fraction: 0")
    monkeypatch.setattr(ft, "answer_loss_sum", oom_once)
    pipe = ft.FinetunePipeline(share_prefix=False)  # padded rows: the batch dimension is the micro-batch
    pipe.prepare(_ctx(spec, data, tiny_llm, tmp_path))
    assert sizes[:2] == [8, 8]  # step 1 fine, step 2 runs out of memory ...
    assert sizes[2:] == [4, 4, 4, 4]  # ... and is retried (and step 3 run) as 2 micro-batches of 4
    assert pipe.details["oom_retries"] == [{"step": 2, "micro_batch": 4, "grad_accum": 2}]
    assert pipe.usage["micro_batch"] == 4 and pipe.usage["steps"] == 3
    assert [s for s, _ in pipe.details["loss_curve"]["train"]] == [1, 2, 3]


def test_micro_batches_accumulate_to_the_same_gradient_as_one_batch(tiny_llm, write):
    """What the OOM path relies on: splitting a step into micro-batches changes nothing."""
    from accelerate import Accelerator
    from peft import LoraConfig, get_peft_model

    from pipelines.finetune import FinetunePipeline
    from pipelines.prompts import build_messages

    spec, data = make_task(write)
    tok = tiny_llm.tokenizer
    train = data.train.examples[:8]
    enc = encode_pairs(tok, [build_messages(spec, None, e.input) for e in train],
                       [e.expected[0] for e in train], 512)
    pipe = FinetunePipeline()
    pipe.accel, pipe.cuda = Accelerator(mixed_precision="no", cpu=True), False
    pipe.prefix, pipe.mask_dtype = shared_prefix(enc), None
    model = tiny_llm.model
    state = _ModelState.capture(model)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_dropout=0.0, target_modules=["q_proj", "v_proj"]))
    try:
        peft_model.train()
        results = []
        for micro in (8, 3):
            loss, _ = pipe._accumulate(peft_model, [enc], micro, "cpu", tok.pad_token_id)
            grads = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
            peft_model.zero_grad(set_to_none=True)
            results.append((loss.item(), grads))
    finally:
        state.restore(peft_model, model)
    (l8, g8), (l3, g3) = results
    assert l3 == pytest.approx(l8, rel=1e-5)
    assert all(g8[n].allclose(g3[n], rtol=1e-4, atol=1e-7) for n in g8)
    assert any(g.abs().sum() > 0 for g in g8.values())


def test_ctrl_c_saves_the_adapter_trained_so_far(tiny_llm, write, tmp_path):
    from peft import PeftModel

    from pipelines.finetune import FinetunePipeline

    def interrupt(desc, done, total):
        if desc == "finetune: training" and done == 2:
            raise KeyboardInterrupt

    spec, data = make_task(write, finetune="max_steps: 10, batch_size: 4")
    snap = _snapshot(tiny_llm.model)
    with pytest.raises(KeyboardInterrupt):
        FinetunePipeline().prepare(_ctx(spec, data, tiny_llm, tmp_path, interrupt))
    _assert_clean(tiny_llm.model, snap)
    info = json.loads((tmp_path / "adapter" / "advisor_training.json").read_text())
    assert info["interrupted_at_step"] == 2 and info["planned_steps"] == 10
    state = _ModelState.capture(tiny_llm.model)
    state.restore(PeftModel.from_pretrained(tiny_llm.model, str(tmp_path / "adapter")), tiny_llm.model)
    _assert_clean(tiny_llm.model, snap)


# ------------------------------------------------------------------------------------ real model


@pytest.mark.e2e
def test_twenty_steps_learn_a_made_up_format_and_the_adapter_reloads(smollm, generator, write, tmp_path):
    from peft import PeftModel

    from advisor.metrics import score
    from pipelines.finetune import FinetunePipeline
    from pipelines.generation import answer
    from pipelines.prompts import build_messages

    spec, data = make_task(write, n_train=32, n_eval=12,
                           finetune="max_steps: 20, lr: 0.001, batch_size: 8, val_fraction: 0, targets: all-linear")
    evals = data.eval.examples
    prompts = [build_messages(spec, None, e.input) for e in evals]
    ids = [e.id for e in evals]

    def run():
        return [p.output for p in answer(generator, prompts, ids, decoding="generate", labels=None,
                                         max_new_tokens=8, desc="t")]

    def exact(outputs):
        return score("generation", outputs, [e.expected for e in evals]).metrics["exact_match"]

    before = run()
    assert exact(before) <= 0.1
    snap = _snapshot(smollm.model)
    pipe = FinetunePipeline()
    pipe.prepare(_ctx(spec, data, smollm, tmp_path))
    out = pipe.predict(evals)
    tuned = [p.output for p in out.predictions]
    assert exact(tuned) >= 0.9, tuned  # FIELD-NOTES: 0/16 -> 16/16 after 20 steps
    curve = out.details["loss_curve"]["train"]
    assert curve[-1][1] < curve[0][1] / 3
    _assert_clean(smollm.model, snap)
    assert run() == before  # the shared model answers as before

    state = _ModelState.capture(smollm.model)
    loaded = PeftModel.from_pretrained(smollm.model, str(tmp_path / "adapter"))
    try:
        assert run() == tuned  # the saved adapter gives the same predictions
    finally:
        state.restore(loaded, smollm.model)
    _assert_clean(smollm.model, snap)
