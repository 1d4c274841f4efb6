"""The shared generator: batching must not change outputs; label scoring must equal the
log-likelihood computed the slow way (full sequence per label, no cache)."""

import pytest

from pipelines.generation import Generator, answer, length_batches
from pipelines.prompts import build_messages


def test_length_batches_bounds_count_and_tokens():
    lengths = [5, 50, 10, 40, 45, 7]
    batches = length_batches(lengths, max_batch=2, max_tokens=1000)
    assert sorted(i for b in batches for i in b) == list(range(6))
    assert all(len(b) <= 2 for b in batches)
    assert batches[0] == [1, 4]  # longest first
    # token budget: longest * size must fit (a lone over-long item still gets a batch)
    tight = length_batches([100, 100, 100], max_batch=8, max_tokens=250)
    assert [len(b) for b in tight] == [2, 1]


def _prompts():
    texts = ["a moving and funny film .", "dull , boring and far too long .", "I hated every minute of it",
             "wonderful", "the plot makes no sense and the acting is wooden .", "a small gem ."]
    return [[{"role": "system", "content": "Say whether the review is negative or positive."},
             {"role": "user", "content": t}] for t in texts]


def test_batched_generation_equals_one_at_a_time(smollm):
    prompts = _prompts()
    batched = Generator(smollm, batch_size=6).generate(prompts, 12)
    single = Generator(smollm, batch_size=1).generate(prompts, 12)
    assert [g.text for g in batched] == [g.text for g in single]
    assert all(g.prompt_tokens > 10 and 1 <= g.output_tokens <= 12 for g in batched)


def test_choice_scores_equal_full_sequence_loglikelihood(smollm, generator):
    import torch

    prompts = _prompts()[:3]
    labels = ["negative", "positive", "top_up_failed"]
    results = generator.score_choices(prompts, labels)
    for p, r in zip(prompts, results):
        base = generator.encode([p])[0]
        ref = []
        for ids in generator.choice_ids(labels):
            with torch.inference_mode():
                logits = smollm.model(torch.tensor([base + ids])).logits[0].float()
            lp = torch.log_softmax(logits, -1)
            ref.append(sum(lp[len(base) - 1 + j, t].item() for j, t in enumerate(ids)))
        assert r.logprobs == pytest.approx(ref, abs=2e-3)
        assert r.label == labels[max(range(3), key=lambda j: ref[j])]


def test_progress_callback_reaches_total(smollm):
    seen = []
    gen = Generator(smollm, batch_size=4, progress=lambda d, done, total: seen.append((done, total)))
    gen.score_choices(_prompts(), ["negative", "positive"])
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)


def test_answer_choices_returns_labels_only(generator):
    from advisor.spec import parse

    spec = parse({"name": "t", "type": "classification", "data": {"eval": "x.jsonl"},
                  "target": {"metric": "accuracy", "min": 0.5}}, file="t.yaml", base=__import__("pathlib").Path("."))
    prompts = [build_messages(spec, ["negative", "positive"], t) for t in ["awful", "great fun"]]
    preds = answer(generator, prompts, ["a", "b"], decoding="choices", labels=["negative", "positive"],
                   max_new_tokens=4, desc="t")
    assert [p.id for p in preds] == ["a", "b"]
    assert all(p.output in ("negative", "positive") for p in preds)
    assert all(len(p.extra["label_logprobs"]) == 2 for p in preds)


def test_shared_prefix_cache_gives_the_same_scores(smollm):
    """Few-shot demos and label lists are a prefix every prompt shares; caching it once must
    not change a single score (rows of different lengths exercise the right-padding path)."""
    demos = [{"role": "user", "content": "great film"}, {"role": "assistant", "content": "positive"},
             {"role": "user", "content": "awful , boring"}, {"role": "assistant", "content": "negative"}]
    system = {"role": "system", "content": "Decide whether this review is negative or positive. " * 4}
    texts = ["a moving film .", "dull , boring and far too long .", "the plot makes no sense . " * 3]
    prompts = [[system, *demos, {"role": "user", "content": t}] for t in texts]
    labels = ["negative", "positive", "top_up_failed"]
    gen = Generator(smollm, batch_size=3)
    assert gen._shared_prefix(gen.encode(prompts)) >= Generator.MIN_SHARED_PREFIX
    cached = gen.score_choices(prompts, labels)
    gen.MIN_SHARED_PREFIX = 10**9  # force the plain path
    plain = gen.score_choices(prompts, labels)
    for a, b in zip(cached, plain):
        assert a.label == b.label
        assert a.logprobs == pytest.approx(b.logprobs, abs=2e-3)


def test_shared_prefix_cache_gives_the_same_generations(smollm):
    """Generation reuses the same prefix cache (few-shot QA prompts are mostly demos): the
    greedy outputs and token counts must not change, for rows of different lengths."""
    demos = [{"role": "user", "content": "Who wrote Hamlet?"}, {"role": "assistant", "content": "Shakespeare"},
             {"role": "user", "content": "What is the capital of France?"}, {"role": "assistant", "content": "Paris"}]
    system = {"role": "system", "content": "Answer the question in a few words."}
    questions = ["What colour is the sky?", "How many legs does a spider have?",
                 "Which planet is known as the red planet, and why is it called that?", "Who painted the Mona Lisa?"]
    prompts = [[system, *demos, {"role": "user", "content": q}] for q in questions]
    gen = Generator(smollm, batch_size=3)  # two batches: the cache is reused across batches
    assert gen._shared_prefix(gen.encode(prompts)) >= Generator.MIN_SHARED_PREFIX
    cached = gen.generate(prompts, 16)
    gen.MIN_SHARED_PREFIX = 10**9  # force the plain path
    plain = gen.generate(prompts, 16)
    assert [g.text for g in cached] == [g.text for g in plain]
    assert [(g.prompt_tokens, g.output_tokens) for g in cached] == [(g.prompt_tokens, g.output_tokens) for g in plain]
    assert any(g.text for g in cached)
