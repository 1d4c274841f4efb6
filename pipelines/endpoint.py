"""OpenAI-compatible endpoints as candidates: a hosted API, or a team's vLLM / llama.cpp / Ollama / TGI.

Two layers:

* `EndpointClient` — the small API anything in advisor uses to talk to a chat model behind a
  server (the prompting and RAG pipelines through `EndpointGenerator`, the LLM judge later):
  `chat(messages) -> ChatResponse(text, usage, first_token_logprobs)`, `chat_many(...)` with
  bounded concurrency. The openai SDK does the HTTP; its retries back off exponentially on
  connection errors, 408/409/429 and 5xx (honouring Retry-After). Every response is cached on
  disk under the request's hash, so a rerun does not pay twice. The API key is read from the
  environment variable the task names, passed to the SDK, and never written or printed.
  Errors become one line each (unreachable, 401 naming the variable, unknown model, context
  overflow): an `AdvisorError`, so the CLI exits 2 and stages already stored stay stored.

* `EndpointGenerator` — the same interface as pipelines.generation.Generator (`generate`,
  `score_choices`), so prompting and RAG run unchanged, with the same prompts, metrics and
  statistics. Classification with `choices` decoding, best method first: each label's exact likelihood
  ("<label><end of turn>" after the prompt, as the local Generator scores it) from the server's
  prompt log-probabilities (completions + echo: vLLM, llama.cpp), when the served model's
  tokenizer is known locally to render its chat template; else the first answer token's top
  log-probabilities (labels ranked by the best token that begins them); else (or when no label is
  among the top tokens) a short generation matched to a label. Which method answered each item,
  and how many answers matched no label, are reported.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from advisor.atomic import atomic_write_json
from advisor.errors import AdvisorError

from .base import ProgressFn, no_progress
from .generation import ChoiceResult, Generation

if TYPE_CHECKING:  # pragma: no cover
    from advisor.spec import EndpointSpec

Messages = list[dict[str, str]]
TOP_LOGPROBS = 20  # OpenAI's maximum; servers cap it lower where they must
NO_KEY = "no-key"  # local servers ignore the key, the SDK insists on one


@dataclass
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatResponse:
    text: str
    usage: Usage
    first_token_logprobs: dict[str, float] | None = None  # the first generated token's top alternatives
    cached: bool = False


@dataclass
class EndpointStats:
    requests: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    choice_methods: dict[str, int] = field(default_factory=dict)
    unparsed: int = 0
    choice_items: int = 0

    def to_dict(self) -> dict:
        d = {"requests": self.requests, "cached_responses": self.cached, "prompt_tokens": self.prompt_tokens,
             "completion_tokens": self.completion_tokens}
        if self.choice_items:
            d["choice_methods"] = dict(self.choice_methods)
            d["unparsed_rate"] = round(self.unparsed / self.choice_items, 6)
        return d


def _where(name: str) -> str:
    return f"endpoint candidate '{name}'"


class EndpointClient:
    """One OpenAI-compatible server and model. Thread-safe; responses cached under `cache_dir`."""

    def __init__(self, name: str, spec: "EndpointSpec", cache_dir: Path | None = None):
        from openai import OpenAI

        self.name, self.spec = name, spec
        self.model = spec.model or name
        key = NO_KEY
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env) or ""
            if not key:
                raise AdvisorError(f"needs an API key in the environment variable {spec.api_key_env}, which is not set",
                                   where=_where(name), fix=f"export {spec.api_key_env}=... before running advisor")
        self._client = OpenAI(base_url=spec.base_url, api_key=key, max_retries=spec.max_retries, timeout=spec.timeout_s)
        self.cache_dir = Path(cache_dir) / "endpoint-cache" if cache_dir else None
        self.stats = EndpointStats()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- errors
    def _error(self, e: Exception) -> AdvisorError:
        import openai

        where = _where(self.name)
        if isinstance(e, openai.APITimeoutError):  # a subclass of APIConnectionError: test it first
            return AdvisorError(f"the endpoint {self.spec.base_url} did not answer within {self.spec.timeout_s:g} s "
                                f"({self.spec.max_retries} retries)", where=where,
                                fix="raise timeout_s or lower max_concurrency (a busy server queues requests)")
        if isinstance(e, openai.APIConnectionError):
            return AdvisorError(f"the endpoint {self.spec.base_url} is unreachable ({type(e).__name__})", where=where,
                                fix="start the server or fix base_url")
        if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
            var = self.spec.api_key_env
            return AdvisorError(f"the server refused the API key ({getattr(e, 'status_code', 401)})", where=where,
                                fix=f"check the key in the environment variable {var}" if var
                                else "name the environment variable holding the key in api_key_env")
        msg = str(getattr(e, "message", "") or e)
        if isinstance(e, openai.NotFoundError) or re.search(r"model.*(not found|does not exist|unknown)", msg, re.I):
            return AdvisorError(f"the server does not know the model '{self.model}'", where=where,
                                fix="set model: to a name the server lists at GET /models")
        if isinstance(e, (openai.BadRequestError, openai.UnprocessableEntityError)) and re.search(
                r"context|too long|maximum.*length|exceed", msg, re.I):
            return AdvisorError("a prompt is longer than the model's context window", where=where,
                                fix="use fewer shots (prompting.shots) or fewer / shorter passages (rag.k, rag.chunk_chars)")
        if isinstance(e, openai.RateLimitError):
            return AdvisorError(f"still rate limited (429) after {self.spec.max_retries} retries with backoff", where=where,
                                fix="lower max_concurrency or raise max_retries")
        status = getattr(e, "status_code", None)
        return AdvisorError(f"the server answered {status or type(e).__name__}: {msg[:160]}", where=where,
                            fix="check the server's log")

    def check(self) -> None:
        """Reachable, key accepted, model known (when the server lists its models): fail before any work."""
        try:
            listed = [m.id for m in self._client.models.list()]
        except Exception as e:  # noqa: BLE001 - every failure becomes one line
            import openai

            if isinstance(e, openai.NotFoundError):  # some servers have no /models: not an error by itself
                return
            raise self._error(e) from None
        if listed and self.model not in listed:
            raise AdvisorError(f"the server does not know the model '{self.model}' (it serves: {', '.join(listed[:5])})",
                               where=_where(self.name), fix="set model: to one of those names")

    # ---------------------------------------------------------------- cache
    def _key(self, payload: dict) -> str:
        blob = json.dumps({"base_url": self.spec.base_url, **payload}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.json" if self.cache_dir else None

    def _cached(self, key: str) -> dict | None:
        p = self._cache_path(key)
        if p is None or not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def _store(self, key: str, data: dict) -> None:
        p = self._cache_path(key)
        if p is None:
            return
        atomic_write_json(p, data)

    # ---------------------------------------------------------------- requests
    def chat(self, messages: Messages, *, max_tokens: int = 64, top_logprobs: int = 0) -> ChatResponse:
        """One greedy chat completion (temperature 0), from the cache when this exact request was made."""
        payload: dict[str, Any] = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        if top_logprobs:
            payload.update(logprobs=True, top_logprobs=top_logprobs)
        key = self._key(payload)
        data = self._cached(key)
        cached = data is not None
        if data is None:
            try:
                resp = self._client.chat.completions.create(**payload)
            except Exception as e:  # noqa: BLE001
                raise self._error(e) from None
            data = self._record(resp)
            self._store(key, data)
        out = ChatResponse(data["text"], Usage(data["prompt_tokens"], data["completion_tokens"]),
                           data.get("first_token_logprobs"), cached)
        with self._lock:
            self.stats.requests += 1
            self.stats.cached += cached
            self.stats.prompt_tokens += out.usage.prompt_tokens
            self.stats.completion_tokens += out.usage.completion_tokens
        return out

    def prompt_logprobs(self, text: str) -> tuple[list[float | None], int] | None:
        """(log-probabilities of the tokens of `text` as the server scores it, ending with its last
        token; the number of prompt tokens), from the completions endpoint with echo + logprobs
        (vLLM; llama.cpp with logits_all); None when the server returns no prompt log-probabilities."""
        payload: dict[str, Any] = {"model": self.model, "prompt": text, "max_tokens": 1, "temperature": 0,
                                   "echo": True, "logprobs": 1, "_kind": "completion"}
        key = self._key(payload)
        data = self._cached(key)
        cached = data is not None
        if data is None:
            import openai

            body = {k: v for k, v in payload.items() if k != "_kind"}
            try:
                resp = self._client.completions.create(**body)
            except (openai.BadRequestError, openai.NotFoundError, openai.UnprocessableEntityError) as e:
                if re.search(r"context|too long|maximum.*length|exceed", str(e), re.I):
                    raise self._error(e) from None
                return None  # no completions endpoint / no echo: the caller uses another method
            except Exception as e:  # noqa: BLE001
                raise self._error(e) from None
            lp = getattr(resp.choices[0], "logprobs", None)
            values = list(getattr(lp, "token_logprobs", None) or [])
            usage = resp.usage
            data = {"logprobs": values,
                    "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                    "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0)}
            self._store(key, data)
        with self._lock:
            self.stats.requests += 1
            self.stats.cached += cached
            self.stats.prompt_tokens += data["prompt_tokens"]
            self.stats.completion_tokens += data["completion_tokens"]
        # the echo ends with the generated token(s): drop them; what is left ends with the prompt's
        # last token (servers differ at the start: llama.cpp omits the first token, vLLM gives None)
        n, gen = data["prompt_tokens"], data["completion_tokens"]
        values = data["logprobs"][: len(data["logprobs"]) - gen] if gen else data["logprobs"]
        if n < 2 or len(values) < 2 or all(v is None for v in values[1:]):
            return None
        return values, n

    @staticmethod
    def _record(resp) -> dict:
        choice = resp.choices[0]
        usage = resp.usage
        first = None
        lp = getattr(choice, "logprobs", None)
        content = getattr(lp, "content", None) if lp is not None else None
        if content:
            tops = content[0].top_logprobs or []
            first = {t.token: float(t.logprob) for t in tops} or {content[0].token: float(content[0].logprob)}
        return {
            "text": (choice.message.content or "").strip(),
            "prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
            "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
            "first_token_logprobs": first,
        }

    def chat_many(self, prompts: Sequence[Messages], *, max_tokens: int, top_logprobs: int = 0,
                  progress: ProgressFn = no_progress, desc: str = "endpoint") -> list[ChatResponse]:
        """`chat` over many prompts, at most `max_concurrency` in flight; results in order."""
        done = 0
        progress(desc, 0, len(prompts))

        def one(m):
            return self.chat(m, max_tokens=max_tokens, top_logprobs=top_logprobs)

        out: list[ChatResponse] = []
        with ThreadPoolExecutor(max_workers=self.spec.max_concurrency) as pool:
            for r in pool.map(one, prompts):
                out.append(r)
                done += 1
                progress(desc, done, len(prompts))
        return out


# ------------------------------------------------------------------------------------------------
# labels from text / from first-token log-probabilities (pure)

def _norm(s: str) -> str:
    return re.sub(r"[^\w]+", " ", s.lower()).strip()


def match_label(text: str, labels: Sequence[str]) -> str | None:
    """The label a short answer names: exact, then the one it starts with, then the only one it
    contains (longest labels first, so 'very positive' is not read as 'positive'); None otherwise."""
    t = _norm(text)
    if not t:
        return None
    by_len = sorted(labels, key=lambda x: -len(_norm(x)))
    for lab in by_len:
        if t == _norm(lab):
            return lab
    for lab in by_len:
        n = _norm(lab)
        if n and (t.startswith(n + " ") or t == n):
            return lab
    inside = [lab for lab in by_len if _norm(lab) and re.search(rf"\b{re.escape(_norm(lab))}\b", t)]
    return inside[0] if len(inside) == 1 else None


def rank_by_first_token(top: dict[str, float], labels: Sequence[str]) -> list[float | None]:
    """Per label, the log-probability of the most likely top-k first token that begins it
    (case-insensitive, leading space ignored); None when no top token begins it."""
    scores: list[float | None] = []
    for lab in labels:
        best = None
        target = lab.strip().lower()
        for tok, lp in top.items():
            t = tok.strip().lower()
            if t and target.startswith(t) and (best is None or lp > best):
                best = lp
        scores.append(best)
    return scores


def first_token_choice(top: dict[str, float] | None, labels: Sequence[str]) -> tuple[str | None, list[float | None]]:
    """The label the first-token log-probabilities pick, or None when they cannot tell (no label
    among the top tokens, or the best score shared by labels with the same first token)."""
    if not top:
        return None, [None] * len(labels)
    scores = rank_by_first_token(top, labels)
    real = [s for s in scores if s is not None]
    if not real:
        return None, scores
    best = max(real)
    winners = [lab for lab, s in zip(labels, scores) if s is not None and math.isclose(s, best)]
    return (winners[0] if len(winners) == 1 else None), scores


# ------------------------------------------------------------------------------------------------
# the Generator interface over an endpoint

@dataclass
class EndpointModel:
    """What the engine and reports read from a loaded model, for an endpoint."""

    name: str
    n_params: int = 0  # 0: unknown (a hosted model's size is rarely published)
    n_layers: int = 0
    hidden: int = 0
    device: str = "endpoint"
    tokenizer: Any = None
    model: Any = None
    path: str = ""


class EndpointGenerator:
    """Drop-in for pipelines.generation.Generator on an endpoint (no local model, no KV cache)."""

    def __init__(self, client: EndpointClient, *, choices: str = "auto", progress: ProgressFn = no_progress,
                 tokenizer: Any = None):
        self.client = client
        self.choices_mode = choices
        self.progress = progress
        self.llm = EndpointModel(client.name)
        # the server never cuts a prompt (an over-long one is an error, reported as such)
        self.max_context = 10**9
        # the served model's tokenizer, when known locally: its chat template renders the prompt the
        # server would build, so each label's exact likelihood can be read from prompt log-probs
        self.tok = tokenizer

    def _label_likelihoods(self, messages: Messages, choices: Sequence[str]) -> tuple[list[float], int, list[int]] | None:
        """log p(label + end of turn | prompt) per label, from the server's prompt log-probabilities:
        the same quantity the local Generator ranks labels by. None when the server cannot say."""
        rendered = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        end = self.tok.eos_token or ""
        base = self.client.prompt_logprobs(rendered)  # how many tokens the server makes of the prompt
        if base is None:
            return None
        n0 = base[1]
        scores, lengths = [], []
        for c in choices:
            got = self.client.prompt_logprobs(rendered + c + end)
            if got is None:
                return None
            values, n = got
            tail = values[-(n - n0):] if n > n0 else []  # the label's tokens and the end of turn
            if not tail or any(v is None for v in tail):
                return None
            scores.append(float(sum(tail)))
            lengths.append(len(tail))
        return scores, n0, lengths

    def generate(self, prompts: Sequence[Messages], max_new_tokens: int, desc: str = "generating") -> list[Generation]:
        res = self.client.chat_many(prompts, max_tokens=max_new_tokens, progress=self.progress, desc=desc)
        return [Generation(r.text, r.usage.prompt_tokens, r.usage.completion_tokens) for r in res]

    def score_choices(self, prompts: Sequence[Messages], choices: Sequence[str], desc: str = "scoring labels"
                      ) -> list[ChoiceResult]:
        stats = self.client.stats
        results: list[ChoiceResult | None] = [None] * len(prompts)
        todo = list(range(len(prompts)))
        if self.choices_mode in ("auto", "prompt_logprobs") and self.tok is not None and todo:
            self.progress(f"{desc} (label likelihood from prompt log-probs)", 0, len(prompts))
            with ThreadPoolExecutor(max_workers=self.client.spec.max_concurrency) as pool:
                exact = list(pool.map(lambda m: self._label_likelihoods(m, choices), prompts))
            todo = []
            for i, got in enumerate(exact):
                if got is None:
                    todo.append(i)
                    continue
                scores, n_prompt, lengths = got
                best = max(range(len(choices)), key=lambda j: scores[j])
                results[i] = ChoiceResult(choices[best], scores, n_prompt, output_tokens=lengths[best],
                                          extra={"choice_method": "prompt_logprobs"})
                self._count("prompt_logprobs")
            self.progress(f"{desc} (label likelihood from prompt log-probs)", len(prompts), len(prompts))
        if self.choices_mode in ("auto", "first_token") and todo:
            sub = [prompts[i] for i in todo]
            res = self.client.chat_many(sub, max_tokens=1, top_logprobs=TOP_LOGPROBS, progress=self.progress,
                                        desc=f"{desc} (first-token log-probs)")
            todo_before, todo = todo, []
            for i, r in zip(todo_before, res):
                label, scores = first_token_choice(r.first_token_logprobs, choices)
                if label is None:
                    todo.append(i)
                    continue
                results[i] = ChoiceResult(label, [s if s is not None else float("-inf") for s in scores],
                                          r.usage.prompt_tokens, output_tokens=r.usage.completion_tokens,
                                          extra={"choice_method": "first_token"})
                self._count("first_token")
        if todo:
            longest = max(len(c) for c in choices)
            gen = self.client.chat_many([prompts[i] for i in todo], max_tokens=max(8, min(64, longest // 2 + 4)),
                                        progress=self.progress, desc=f"{desc} (generate, then match a label)")
            for i, r in zip(todo, gen):
                label = match_label(r.text, choices)
                if label is None:
                    with self.client._lock:
                        stats.unparsed += 1
                self._count("generate")
                results[i] = ChoiceResult(label or "", [0.0 if c == label else float("-inf") for c in choices],
                                          r.usage.prompt_tokens, output_tokens=r.usage.completion_tokens,
                                          extra={"choice_method": "generate", "raw": r.text})
        with self.client._lock:
            stats.choice_items += len(prompts)
        return results  # type: ignore[return-value]

    def _count(self, method: str) -> None:
        with self.client._lock:
            m = self.client.stats.choice_methods
            m[method] = m.get(method, 0) + 1

    def take_stats(self) -> dict:
        """Usage since the last call (per pipeline), then reset."""
        with self.client._lock:
            d = self.client.stats.to_dict()
            self.client.stats = EndpointStats()
        return d


def wait_until_up(base_url: str, seconds: float = 60.0) -> bool:
    """Poll GET /models until the server answers (for scripts and tests that start one)."""
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.5)
    return False
