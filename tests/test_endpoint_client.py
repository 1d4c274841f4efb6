"""The endpoint client against a small scripted HTTP server on loopback (status codes the real
server in test_endpoint_e2e cannot be made to return): retries with backoff on 429/5xx, the
response cache, and one line per failure. Plus the pure label matching."""

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from advisor.errors import AdvisorError
from advisor.spec import EndpointSpec
from pipelines.endpoint import EndpointClient, first_token_choice, match_label

OK = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
      "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "positive"},
                   "logprobs": {"content": [{"token": "pos", "logprob": -0.1, "bytes": None, "top_logprobs": [
                       {"token": "pos", "logprob": -0.1, "bytes": None},
                       {"token": " neg", "logprob": -2.5, "bytes": None}]}]}}],
      "usage": {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}}


class Scripted:
    """Answers each POST with the next (status, body) of a script; counts requests."""

    def __init__(self, script):
        self.script, self.posts, self.auth = list(script), 0, []
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("retry-after-ms", "5")  # keep the SDK's backoff short in tests
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "t"}]})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.posts += 1
                outer.auth.append(self.headers.get("authorization"))
                status, body = outer.script.pop(0) if outer.script else (200, OK)
                self._send(status, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def server():
    made = []

    def make(script=()):
        s = Scripted(script)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


MSG = [{"role": "user", "content": "Is this positive? great movie"}]


def test_retries_429_and_500_then_caches_the_answer(server, tmp_path):
    s = server([(429, {"error": {"message": "slow down"}}), (500, {"error": {"message": "oops"}})])
    c = EndpointClient("m", EndpointSpec(base_url=s.url, max_retries=3), tmp_path)
    r = c.chat(MSG, max_tokens=1, top_logprobs=5)
    assert s.posts == 3 and r.text == "positive" and not r.cached
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (12, 1)  # read from the response
    assert r.first_token_logprobs == {"pos": -0.1, " neg": -2.5}
    again = c.chat(MSG, max_tokens=1, top_logprobs=5)  # a rerun does not pay twice
    assert s.posts == 3 and again.cached and again.text == "positive"
    assert c.stats.cached == 1 and c.stats.prompt_tokens == 24


def test_the_key_comes_from_the_named_variable_and_is_never_stored(server, tmp_path, monkeypatch):
    s = server()
    monkeypatch.setenv("MY_TEST_KEY", "sk-secret-123")
    c = EndpointClient("m", EndpointSpec(base_url=s.url, api_key_env="MY_TEST_KEY"), tmp_path)
    c.chat(MSG)
    assert s.auth == ["Bearer sk-secret-123"]
    stored = "".join(p.read_text() for p in tmp_path.rglob("*.json"))
    assert stored and "sk-secret-123" not in stored


def test_401_names_the_environment_variable(server, tmp_path, monkeypatch):
    s = server([(401, {"error": {"message": "bad key"}})])
    monkeypatch.setenv("MY_TEST_KEY", "wrong")
    c = EndpointClient("m", EndpointSpec(base_url=s.url, api_key_env="MY_TEST_KEY"), tmp_path)
    with pytest.raises(AdvisorError) as e:
        c.chat(MSG)
    assert "MY_TEST_KEY" in str(e.value) and "wrong" not in str(e.value) and "\n" not in str(e.value)


def test_a_missing_key_variable_fails_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_KEY", raising=False)
    with pytest.raises(AdvisorError, match="NOT_SET_KEY"):
        EndpointClient("m", EndpointSpec(base_url="http://127.0.0.1:9/v1", api_key_env="NOT_SET_KEY"), tmp_path)


def test_unreachable_unknown_model_and_context_overflow_are_one_line_each(server, tmp_path):
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    c = EndpointClient("m", EndpointSpec(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout_s=2), tmp_path)
    with pytest.raises(AdvisorError, match="unreachable"):
        c.chat(MSG)
    s = server([(404, {"error": {"message": "The model `nope` does not exist."}}),
                (400, {"error": {"message": "This model's maximum context length is 2048 tokens. However, you requested 5000"}})])
    c = EndpointClient("nope", EndpointSpec(base_url=s.url, max_retries=0), tmp_path)
    with pytest.raises(AdvisorError, match="does not know the model 'nope'"):
        c.chat(MSG)
    with pytest.raises(AdvisorError, match="context window"):
        c.chat(MSG)
    with pytest.raises(AdvisorError, match="does not know the model 'nope'.*serves: m"):
        c.check()  # GET /models lists only "m"


def test_label_matching_from_short_answers():
    labels = ["positive", "negative", "very positive"]
    assert match_label("Positive.", labels) == "positive"
    assert match_label("very positive!", labels) == "very positive"
    assert match_label("The answer is negative", labels) == "negative"
    assert match_label("I cannot tell", labels) is None
    assert match_label("", labels) is None


def test_first_token_choice_ranks_labels_by_the_token_that_begins_them():
    label, scores = first_token_choice({"pos": -0.2, "neg": -1.9, "The": -3.0}, ["positive", "negative"])
    assert label == "positive" and scores == [-0.2, -1.9]
    # no label among the top tokens: cannot tell (the caller falls back to generation)
    assert first_token_choice({"The": -0.1}, ["positive", "negative"])[0] is None
    # two labels with the same first token tie: cannot tell either
    assert first_token_choice({"very": -0.1}, ["very good", "very bad"])[0] is None
    assert first_token_choice(None, ["a", "b"]) == (None, [None, None])
    assert not math.isnan(first_token_choice({" Neg": -0.5}, ["negative"])[1][0])


# ------------------------------------------------------------------------------------------------
# the task file: candidates as mappings


def _load(tmp_path, models_yaml):
    from advisor import spec

    (tmp_path / "eval.jsonl").write_text('{"text": "a", "label": "x"}\n')
    (tmp_path / "task.yaml").write_text(
        "name: t\ntype: classification\ndata: {eval: eval.jsonl}\ntarget: {metric: accuracy, min: 0.5}\n" + models_yaml)
    return spec.load(tmp_path / "task.yaml")


def test_candidates_mix_names_sizes_and_endpoints(tmp_path):
    s = _load(tmp_path, "models:\n  candidates:\n    - bundled:smollm2-135m-instruct\n"
                        "    - {name: acme/private-7b, params: 7.2e9}\n"
                        "    - {name: gpt-4o-mini, base_url: 'https://api.openai.com/v1', api_key_env: OPENAI_API_KEY}\n")
    m = s.models
    assert m.candidates == ["bundled:smollm2-135m-instruct", "acme/private-7b", "gpt-4o-mini"]
    assert m.facts["acme/private-7b"].params == 7.2e9
    assert m.is_endpoint("gpt-4o-mini") and m.endpoints["gpt-4o-mini"].api_key_env == "OPENAI_API_KEY"
    assert m.local_candidates == ["bundled:smollm2-135m-instruct", "acme/private-7b"]


@pytest.mark.parametrize("item, needle", [
    ("{name: x, base_url: 'not a url'}", "not a server address"),
    ("{name: x, base_url: 'http://h/v1', api_key_env: 'sk-abc 123'}", "not an environment variable name"),
    ("{name: x, parms: 7e9}", "unknown key"),
    ("{params: 7e9}", "has no 'name'"),
    ("{name: x, model: y}", "no base_url"),
])
def test_bad_candidate_mappings_are_one_line(tmp_path, item, needle):
    with pytest.raises(AdvisorError) as e:
        _load(tmp_path, f"models:\n  candidates:\n    - {item}\n")
    assert needle in str(e.value) and "\n" not in str(e.value) and "candidates item 0" in str(e.value)


def test_a_lora_trains_the_best_local_candidate_when_the_base_is_an_endpoint(tmp_path):
    from advisor.engine import Assessment

    s = _load(tmp_path, "models:\n  candidates:\n    - bundled:smollm2-135m-instruct\n    - ./local-b\n"
                        "    - {name: hosted, base_url: 'http://127.0.0.1:9/v1'}\n")
    local_b = s.models.candidates[1]
    a = Assessment(s, tmp_path / "run")
    sel = {"table": [{"model": "bundled:smollm2-135m-instruct", "score": 0.6, "params": 1},
                     {"model": local_b, "score": 0.7, "params": 2},
                     {"model": "hosted", "score": 0.9, "params": 0}]}
    assert a.finetune_base("hosted", sel) == local_b  # best local by score
    assert a.finetune_base("bundled:smollm2-135m-instruct", sel) == "bundled:smollm2-135m-instruct"
    only = _load(tmp_path, "models:\n  candidates:\n    - {name: hosted, base_url: 'http://127.0.0.1:9/v1'}\n")
    assert Assessment(only, tmp_path / "run2").finetune_base("hosted", {"table": [{"model": "hosted"}]}) is None
