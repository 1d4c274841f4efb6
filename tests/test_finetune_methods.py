"""Fine-tuning methods side by side (issue 14): each method's trainable share against a hand count
from the model's config, prompt tuning's virtual tokens against peft's own forward, the generator's
soft prefix against a plain forward, and a short real run of two methods on a tiny random Llama."""

from __future__ import annotations

import pytest

from advisor import catalogue
from advisor.stages import stage_key
from pipelines.finetune import FinetunePipeline, _ModelState
from pipelines.training import collate, encode_pairs, pack, trainable_counts
from test_assess_e2e import _assess, tiny_task  # noqa: F401 - tiny_task is a fixture
from test_finetune import _assert_clean, _ctx, _snapshot, make_task

# the tiny Llama of conftest.tiny_llm: hidden 32, MLP 64, 2 layers, 4 heads of 8, 2 key/value heads
H, F, LAYERS, KV = 32, 64, 2, 2 * 8


def base_params(vocab: int) -> int:
    """Llama parameters by hand: tied embedding; per layer q, k, v, o, gate, up, down and two
    RMSNorm weights (no biases); the final norm."""
    per_layer = H * H + H * KV + H * KV + H * H + H * F + H * F + F * H + 2 * H
    return vocab * H + LAYERS * per_layer + H


def test_every_method_has_a_title_and_the_catalogue_cleans_its_weights():
    from advisor import catalogue
    from pipelines.methods import METHODS, artifact_dir

    assert METHODS == ("lora", "full", "prompt_tuning", "ia3") and set(dict(catalogue.entry("finetune").method_titles)) == set(METHODS)
    assert FT.artifacts == tuple(artifact_dir(m) for m in METHODS) and artifact_dir("lora") == "adapter"


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
    u = out.usage.to_dict()
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


# ------------------------------------------------------------------------------------ the family in the engine

# train-side validation losses vs eval accuracy: IA³ scores best on the eval items, full has the
# lowest validation loss; the family must pick full (the eval items never choose)
VAL = {"lora": 0.52, "full": 0.31, "prompt_tuning": 0.93, "ia3": 0.40}
RIGHT = {"lora": 14, "full": 15, "prompt_tuning": 10, "ia3": 18}  # of 20 eval items
FT = catalogue.entry("finetune")
TRAINABLE = {"lora": 460_800, "full": 134_515_008, "prompt_tuning": 11_520, "ia3": 57_600}


@pytest.fixture
def family(tmp_path, monkeypatch):
    """An Assessment whose fine-tune stages are fakes with known losses, scores and usage."""
    import json

    from advisor import spec as S
    from advisor.data import load_task_data
    from advisor.engine import Assessment
    from pipelines.base import PipelineOutput, Prediction
    from pipelines.methods import artifact_dir
    from test_finetune import WORDS

    rows = [{"text": w, "label": "a" if i % 2 else "b"} for i, w in enumerate(WORDS)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:24]))
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[24:44]))

    def make(methods: str, out: str = "run"):
        (tmp_path / "task.yaml").write_text(
            "name: fam\ntype: classification\nlabels: [a, b]\ndata: {eval: eval.jsonl, train: train.jsonl}\n"
            f"target: {{metric: accuracy, min: 0.8}}\nhardware: {{gpu: H100}}\nfinetune: {{mode: always, methods: {methods}}}\n")
        spec = S.load(tmp_path / "task.yaml")
        a = Assessment(spec, tmp_path / out)
        a.data = load_task_data(spec)
        a.out_dir.mkdir(exist_ok=True)
        return a

    calls: list[str] = []

    def fake_run(self, name, llm_name, log_name=None, method="lora"):
        calls.append(method)
        ex = self.data.eval.examples
        preds = [Prediction(e.id, e.expected[0] if i < RIGHT[method] else ("a" if e.expected[0] == "b" else "b"), 30, 2)
                 for i, e in enumerate(ex)]
        (self.out_dir / artifact_dir(method)).mkdir(parents=True, exist_ok=True)
        (self.out_dir / artifact_dir(method) / "weights.bin").write_text(method)
        n = 134_515_008
        usage = {"method": method, "trainable_params": TRAINABLE[method], "total_params": n + (0 if method == "full" else TRAINABLE[method]),
                 "trainable_pct": 100.0 * TRAINABLE[method] / (n if method == "full" else n + TRAINABLE[method]),
                 "train_tokens_total": 10_000, "train_seconds": 60.0, "tokens_per_second": 166.7, "device_hardware": "CPU",
                 "cpu_load_per_core": 1.0, "peak_memory_gb": 3.0 if method == "full" else 1.0, "train_seq_len": 40,
                 "prompt_tokens_mean": 30.0, "output_tokens_mean": 2.0,
                 "model_shape": {"n_params": n, "n_layers": 30, "hidden": 576}}
        out = PipelineOutput(preds, timings={"total": 70.0}, usage=usage, details={"final_val_loss": VAL[method]})
        return self._score("finetune", out, ex)

    monkeypatch.setattr(Assessment, "_run_pipeline", fake_run)
    return make, calls


def test_the_family_is_chosen_by_validation_loss_and_keeps_only_the_chosen_weights(family):
    from advisor.stages import StageStore

    make, calls = family
    a = make("[lora, full, prompt_tuning, ia3]")
    store = StageStore(a.out_dir)
    out = a._family(store, FT, "bundled:smollm2-135m-instruct")
    assert calls == ["lora", "full", "prompt_tuning", "ia3"]
    # full has the lowest validation loss; IA³ the best eval score, which must not matter
    assert out["method"] == "full" and out["score"] == pytest.approx(15 / 20)
    assert "validation loss" in out["method_choice"] and "0.3100" in out["method_choice"]
    assert sorted(p.name for p in a.out_dir.iterdir() if p.name.startswith("adapter")) == ["adapter-full"]
    assert {p.stem for p in (a.out_dir / "stages").iterdir()} == {
        "finetune", "finetune-full", "finetune-prompt_tuning", "finetune-ia3"}

    # a rerun (same folder) reuses all four; adding nothing retrains nothing
    b = make("[lora, full, prompt_tuning, ia3]")
    store_b = StageStore(b.out_dir)
    again = b._family(store_b, FT, "bundled:smollm2-135m-instruct")
    assert calls == ["lora", "full", "prompt_tuning", "ia3"] and again["method"] == "full"
    assert store_b.status == {s: "reused" for s in ("finetune", "finetune-full", "finetune-prompt_tuning", "finetune-ia3")}
    # dropping a method keeps the others' results: nothing is retrained
    c = make("[lora, ia3]")
    pair = c._family(StageStore(c.out_dir), FT, "bundled:smollm2-135m-instruct")
    assert pair["method"] == "ia3" and len(calls) == 4
    # IA³'s weights went when full was chosen: the report says so instead of pointing at nothing
    assert any("not in this run folder" in n for n in pair["notes"])


def test_lora_keeps_its_stage_key_when_other_methods_join(family):
    from advisor.stages import StageStore

    make, _ = family
    from advisor.family import member_key

    alone, joined = make("[lora]"), make("[lora, ia3]")
    base = "bundled:smollm2-135m-instruct"

    def key(a, method):
        return member_key(FT, method, a._base_key(*FT.key_sections, model=base), a.spec.finetune)

    assert key(alone, "lora") == key(joined, "lora")
    assert key(joined, "ia3") != key(joined, "lora")
    # ... and it is the key the catalogue loop gives a pipeline without methods
    plain = stage_key("finetune", **alone._base_key(*FT.key_sections, model=base))
    assert key(alone, "lora") == plain
    one = alone._family(StageStore(alone.out_dir), FT, base)
    assert "method" not in one and not alone.method_results  # a single method is today's fine-tune, no family


def test_method_rows_judge_and_price_each_method(family):
    from statsmodels.stats.proportion import proportion_confint

    from advisor.stages import StageStore

    make, _ = family
    a = make("[lora, full, prompt_tuning, ia3]")
    store = StageStore(a.out_dir)
    a.results["finetune"] = a._family(store, FT, "bundled:smollm2-135m-instruct")
    n = 134_515_008
    costs = a.costs(n, {"n_layers": 30, "hidden": 576})
    assert costs["full_finetune_estimate"] is None  # full ran: its measured row replaces the contrast estimate
    rows = {r["method"]: r for r in a._method_rows(store, FT)}
    assert list(rows) == ["lora", "full", "prompt_tuning", "ia3"] and rows["full"]["chosen"]
    for m, r in rows.items():
        lo, hi = proportion_confint(RIGHT[m], 20, alpha=0.05, method="agresti_coull")  # the decision's interval for 0/1
        assert r["score"] == pytest.approx(RIGHT[m] / 20) and r["ci"] == pytest.approx([lo, hi], abs=1e-6)
        assert r["final_val_loss"] == VAL[m] and r["trainable_params"] == TRAINABLE[m]
        # the cost model on the device it ran on: k·N·D / (1.92e11 FLOP/s x 0.55 MFU), k = 6 full, 4 the others
        k = 6 if m == "full" else 4
        est = k * n * 10_000 / (1.92e11 * 0.55)
        assert r["train_seconds_estimated"] == pytest.approx(est, rel=1e-9)
        assert r["estimate_error_pct"] == pytest.approx(100 * (est - 60.0) / 60.0, rel=1e-9)
    assert rows["full"]["trainable_pct"] == 100.0 and rows["prompt_tuning"]["trainable_pct"] < 0.01
    # setup $ on the task's H100 (not the CPU): the full fine-tune costs 6/4 of the others
    assert rows["full"]["setup_usd"] == pytest.approx(1.5 * rows["lora"]["setup_usd"], rel=1e-9)


def test_the_family_table_is_in_every_report_format_only_when_several_methods_ran():
    from rich.console import Console

    from advisor.report import files, html, terminal
    from test_report_html import full_report

    report, preds = full_report()
    rows = [
        {"method": "lora", "title": "LoRA fine-tune", "status": "ok", "chosen": False, "score": 0.9, "ci": [0.74, 0.97],
         "trainable_pct": 0.3414, "trainable_params": 460_800, "final_val_loss": 0.4123, "train_tokens_per_second": 181.2,
         "train_seconds": 61.0, "train_seconds_estimated": 52.1, "device": "CPU", "train_flops_rule": "4·N·D",
         "estimate_error_pct": -14.6, "wall_seconds": 80.5, "peak_memory_gb": 1.61, "cpu_load_per_core": 1.2,
         "setup_usd": 0.0021},
        {"method": "full", "title": "Full fine-tune", "status": "ok", "chosen": True, "score": 0.93, "ci": [0.78, 0.98],
         "trainable_pct": 100.0, "trainable_params": 134_515_008, "final_val_loss": 0.3012,
         "train_tokens_per_second": 98.7, "train_seconds": 112.0, "train_seconds_estimated": 78.2, "device": "CPU",
         "train_flops_rule": "6·N·D", "estimate_error_pct": -30.2, "wall_seconds": 140.0, "peak_memory_gb": 3.95,
         "cpu_load_per_core": 1.3, "setup_usd": 0.0032},
        {"method": "ia3", "title": "IA³ fine-tune", "status": "failed", "chosen": False, "reason": "RuntimeError: <boom>"},
    ]
    from advisor import catalogue

    # the engine titles a family by its chosen member: an IA³ or full fine-tune is never "LoRA fine-tune";
    # a sentence names it with an acronym kept and a plain word lower-cased
    for method, phrase in ((None, "LoRA fine-tune"), ("lora", "LoRA fine-tune"), ("full", "full fine-tune"),
                           ("ia3", "IA³ fine-tune"), ("prompt_tuning", "prompt tuning")):
        r = {"pipelines": {"finetune": {"title": catalogue.title("finetune", method)}}}
        assert files.finetune_phrase(r) == phrase and files.finetune_phrase({}) == "LoRA fine-tune"
    assert [catalogue.title("finetune", m) for m in (None, "lora", "full", "prompt_tuning", "ia3")] == [
        "LoRA fine-tune", "LoRA fine-tune", "Full fine-tune", "Prompt tuning", "IA³ fine-tune"]
    report["pipelines"]["finetune"].update(methods=rows, method="full", method_choice="lowest validation loss",
                                           title=catalogue.title("finetune", "full"))
    report["recommendation"].update(choice="finetune", verdict="provisional")
    report["recommendation"]["why_not"] = {"rag": "below the target", "baseline": "no train set"}
    md = files.to_markdown(report)
    assert "| Full fine-tune | ok |" in md and "| LoRA fine-tune | ok |" not in md
    assert "**Full fine-tune — provisional**" in md
    assert "- **RAG**: below the target" in md and "- **Classical baseline**: no train set" in md  # titles, not keys
    assert "## Fine-tuning methods side by side — Full fine-tune chosen: lowest validation loss" in md
    assert "| LoRA fine-tune | 0.341 % (460,800) | 0.900 | [0.740, 0.970] | 0.4123 | 181 | 61.0 | 52.1 | -15 % | 80.5 | 1.61 |" in md
    assert "| Full fine-tune | 100 % (134,515,008) |" in md and "RuntimeError: &lt;boom&gt;" in md
    assert "method full |" in md  # the pipelines table says which method "the fine-tune" is
    assert "the cost model for CPU (6·N·D full, 4·N·D the others)" in md and "1.20–1.30" in md
    page = html.render(report, predictions=preds)
    assert "Fine-tuning methods side by side" in page and "134,515,008" in page and "&lt;boom&gt;" in page
    assert '<span class="nm">Full fine-tune</span>' in page and '<span class="nm">LoRA fine-tune' not in page
    assert "Full fine-tune — provisional" in page
    for width in (180, 140, 80):
        console = Console(width=width, record=True)
        terminal.render(report, console)
        text = console.export_text()
        assert "Fine-tuning methods side by side" in text and "100 %" in text and "0.4123" in text, text
        assert "…" not in text.split("Fine-tuning methods")[1].split("Paired")[0], text  # every cell whole
        outside = text.split("Fine-tuning methods side by side")[0] + text.split("Paired")[-1]
        assert "Full fine-tune — provisional" in text and "LoRA fine-tune" not in outside, text  # only its row
    report["pipelines"]["finetune"]["methods"] = rows[:1]  # one method: today's report, no table
    assert "Fine-tuning methods" not in files.to_markdown(report)


@pytest.mark.e2e
def test_assess_trains_lora_and_ia3_and_reports_the_family(tiny_task, tmp_path):
    """`advisor assess` with two real methods on the bundled SmolLM2 (a few steps each): both rows,
    trainable counts against the model's config by hand, the choice by validation loss, only the
    chosen weights kept, and a rerun that reuses both stages."""
    import json

    task = tiny_task
    task.write_text(task.read_text().replace(
        "finetune: {mode: never}", "finetune: {mode: always, methods: [lora, ia3], max_steps: 3, batch_size: 8}"))
    proc = _assess(task, tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    ft = report["pipelines"]["finetune"]
    rows = {r["method"]: r for r in ft["methods"]}
    assert list(rows) == ["lora", "ia3"] and all(r["status"] == "ok" for r in rows.values())
    # SmolLM2-135M: 30 layers, hidden 576, 9 heads of 64 with 3 key/value heads (k, v: 192), MLP 1536
    assert rows["lora"]["trainable_params"] == 30 * 8 * ((576 + 576) + (576 + 192))  # r=8 on q, v: 460,800
    assert rows["ia3"]["trainable_params"] == 30 * (192 + 192 + 1536)  # k, v outputs + down_proj input: 57,600
    assert 0.3 <= rows["lora"]["trainable_pct"] <= 2 and rows["ia3"]["trainable_pct"] < 0.1
    best = min(rows.values(), key=lambda r: r["final_val_loss"])
    assert ft["method"] == best["method"] and [r["method"] for r in rows.values() if r["chosen"]] == [best["method"]]
    assert ft["title"] == {"lora": "LoRA fine-tune", "ia3": "IA³ fine-tune"}[best["method"]]
    assert report["pipelines"]["rag"]["title"] == "RAG"
    assert ft["score"] == best["score"] and ft["ci"][0] <= ft["score"] <= ft["ci"][1]
    for r in rows.values():
        assert r["train_seconds"] > 0 and r["train_seconds_estimated"] > 0 and r["peak_memory_gb"] > 0.3
    kept = sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith("adapter"))
    # --finetune always also runs RAG + fine-tune (its own artefact, adapter-rag); of the family only
    # the chosen method's weights stay
    rag_ft = report["pipelines"]["rag_finetune"]
    assert rag_ft["status"] == "ok", rag_ft
    assert kept == sorted([{"lora": "adapter", "ia3": "adapter-ia3"}[best["method"]], "adapter-rag"])
    assert "Fine-tuning methods side by side" in (tmp_path / "run" / "report.md").read_text()

    again = _assess(task, tmp_path / "run")
    assert again.returncode == 0, again.stderr[-3000:]
    stages = json.loads(again.stdout)["stages"]
    assert stages["finetune"] == stages["finetune-ia3"] == "reused"


def test_the_methods_table_fits_the_terminal_with_real_figures():
    """Figures as a real four-method run wrote them (sentiment_mr, 2026-11-29): at every width the
    terminal shows whole cells (no "…"), the columns it has room for, the chosen mark included; and
    the lines under the tables name the chosen method, not "LoRA"."""
    from rich.console import Console

    from advisor import catalogue
    from advisor.report import terminal
    from test_report_html import full_report

    report, _ = full_report()
    real = [("lora", "LoRA fine-tune", 0.833333, [0.717685, 0.908867], 0.3414, 460800, 0.22432, 214.3, 50.135, 54.7537, 2.445,
             0.9, 4.555e-05),
            ("full", "Full fine-tune", 0.883333, [0.77522, 0.945315], 100.0, 134515008, 0.17271, 141.0, 76.216, 82.1306, 4.243,
             0.99, 6.833e-05),
            ("prompt_tuning", "Prompt tuning", 0.783333, [0.662476, 0.870094], 0.0086, 11520, 0.30979, 276.3, 41.347,
             58.2185, 2.016, 0.98, 4.844e-05),
            ("ia3", "IA³ fine-tune", 0.85, [0.736569, 0.92131], 0.0428, 57600, 0.26879, 229.2, 46.876, 54.7537, 2.084, 0.99,
             4.555e-05)]
    rows = [{"method": m, "title": t, "status": "ok", "chosen": m == "full", "score": s, "ci": ci, "trainable_pct": pct,
             "trainable_params": n, "final_val_loss": vl, "train_tokens_per_second": tps, "train_seconds": ts,
             "train_seconds_estimated": est, "estimate_error_pct": 100 * (est - ts) / ts, "wall_seconds": ts + 10,
             "peak_memory_gb": gb, "cpu_load_per_core": load, "setup_usd": usd, "train_flops_rule": "6·N·D"}
            for m, t, s, ci, pct, n, vl, tps, ts, est, gb, load, usd in real]
    ft = report["pipelines"]["finetune"]
    ft.update(methods=rows, method="full", method_choice="lowest validation loss on the held-out train slice (0.1727)",
              title=catalogue.title("finetune", "full"))
    report["costs"].pop("full_finetune_estimate", None)  # as the engine writes it once full ran (costs())
    report["costs"]["pretraining"] = {"n_params": 1.35e8, "tokens": 2e12, "flops": 1.61e21, "gpu_hours": 1295,
                                      "device": "H100", "mfu": 0.35, "usd": 3886,
                                      "ratio": {"text": "1/10^7.8 of pretraining the base model", "times_cheaper": 5.7e7}}
    for width in (200, 170, 150, 130, 100, 80):
        console = Console(width=width, record=True)
        terminal.render(report, console)
        text = console.export_text()
        table = text.split("Fine-tuning methods side by side")[1].split("Paired")[0]
        assert "…" not in table, (width, table)
        assert "✓" in table, (width, table)  # the chosen column kept
        assert "this LoRA" not in text and "LoRA fine-tune training time" not in text, width
        assert "never run" not in text, width  # full ran: its estimate sits beside the measurement
        assert "full fine-tune costs 1/10^7.8" in " ".join(text.split()), width
