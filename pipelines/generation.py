"""The one generator every pipeline shares: batched greedy generation and label scoring.

Sharing it is what makes the comparison fair (same chat template, same decoding, same token
accounting) and what makes the tool fast: prompts are tokenised once, sorted by length so each
batch pads little, left-padded, and run under `torch.inference_mode`.

Classification with `choices` decoding ranks each label by the log-likelihood of
"<label><end of turn>" after the prompt: one forward pass over the prompt, then one pass over
every label's tokens packed into a single sequence per prompt, with a tree attention mask (each
label sees the prompt's KV cache and its own earlier tokens only), so the cache is neither copied
per label nor padded to the longest label. That is how evaluation harnesses score multiple
choice, and how a deployment would constrain the output.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from .base import Prediction, ProgressFn, no_progress

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from advisor.models import LoadedLLM

Messages = list[dict[str, str]]


@dataclass
class Generation:
    text: str
    prompt_tokens: int
    output_tokens: int


@dataclass
class ChoiceResult:
    label: str
    logprobs: list[float]  # one per choice, in the order given
    prompt_tokens: int
    output_tokens: int | None = None  # None: the label's own tokens (local scoring generates nothing)
    extra: dict | None = None  # e.g. how an endpoint chose the label


def length_batches(lengths: Sequence[int], max_batch: int, max_tokens: int) -> list[list[int]]:
    """Indices grouped longest-first into batches bounded by count and padded tokens."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = lengths[cur[0]] if cur else lengths[i]
        if cur and (len(cur) >= max_batch or longest * (len(cur) + 1) > max_tokens):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


class Generator:
    def __init__(
        self,
        llm: "LoadedLLM",
        *,
        batch_size: int = 32,  # ~20% more tokens/s than 16 on 2 CPU cores (benchmarks/bench_generation)
        max_batch_tokens: int = 8192,
        progress: ProgressFn = no_progress,
        soft_prefix: "torch.Tensor | None" = None,
    ):
        self.llm = llm
        self.tok = llm.tokenizer
        self.model = llm.model
        self.device = llm.device
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.progress = progress
        self.max_context = int(getattr(self.model.config, "max_position_embeddings", 4096) or 4096)
        # prompt tuning's learned virtual tokens [V, hidden]: input embeddings before every prompt,
        # at positions 0..V-1, held in the shared prefix's KV cache (pipelines/methods.py)
        self.soft_prefix = soft_prefix
        self.n_soft = 0 if soft_prefix is None else int(soft_prefix.shape[0])

    # ---------------------------------------------------------------- tokenisation
    def render(self, messages: Messages) -> str:
        return self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def encode(self, prompts: Sequence[Messages], reserve: int = 0) -> list[list[int]]:
        """Token ids of each rendered prompt (the template already holds the special tokens).

        Prompts longer than the context keep their end (the question) and lose their start.
        """
        texts = [self.render(m) for m in prompts]
        ids = self.tok(texts, add_special_tokens=False)["input_ids"]
        limit = self.max_context - reserve - self.n_soft
        return [x[-limit:] if len(x) > limit else x for x in ids]

    def _pad(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        pad = self.tok.pad_token_id
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s):] = 1
        return ids.to(self.device), mask.to(self.device)

    # ---------------------------------------------------------------- generation
    def generate(
        self, prompts: Sequence[Messages], max_new_tokens: int, desc: str = "generating"
    ) -> list[Generation]:
        import torch

        encoded = self.encode(prompts, reserve=max_new_tokens)
        results: list[Generation | None] = [None] * len(encoded)
        eos = self.tok.eos_token_id
        done = 0
        self.progress(desc, 0, len(encoded))
        budget = max(self.max_batch_tokens, max(len(e) for e in encoded) + max_new_tokens) if encoded else 0
        # Few-shot demos and instructions are the same tokens in every prompt: their KV cache is
        # computed once and shared by every batch instead of once per prompt.
        prefix = self._shared_prefix(encoded)
        prefix_ids = encoded[0][:prefix]
        cached = bool(prefix or self.n_soft)
        prefix_cache = self._prefix_cache(prefix_ids) if cached else None
        for batch in length_batches([len(e) + max_new_tokens for e in encoded], self.batch_size, budget):
            if cached:
                ids, mask, cache = self._prefixed_batch(prefix_cache, prefix_ids, [encoded[i][prefix:] for i in batch])
            else:
                (ids, mask), cache = self._pad([encoded[i] for i in batch]), None
            with torch.inference_mode():
                out = self.model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=self.tok.pad_token_id,
                    eos_token_id=eos,
                    **({"cache": cache} if cache is not None else {}),
                )
            self.collect(out[:, ids.shape[1]:].tolist(), batch, encoded, results)
            done += len(batch)
            self.progress(desc, done, len(encoded))
        return results  # type: ignore[return-value]

    def collect(self, new_tokens: list[list[int]], batch: Sequence[int], encoded: Sequence[Sequence[int]],
                results: list) -> None:
        """Decode each row's new tokens up to end-of-sequence into ``results`` at its prompt's index;
        output tokens count the end-of-sequence token when one was generated."""
        eos = self.tok.eos_token_id
        for row, i in enumerate(batch):
            toks = new_tokens[row]
            n = toks.index(eos) if eos in toks else len(toks)
            text = self.tok.decode(toks[:n], skip_special_tokens=True).strip()
            results[i] = Generation(text, len(encoded[i]), min(n + 1, len(toks)))

    # ---------------------------------------------------------------- label scoring
    def choice_ids(self, choices: Sequence[str]) -> list[list[int]]:
        end = self.tok.eos_token_id
        return [self.tok(c, add_special_tokens=False)["input_ids"] + [end] for c in choices]

    def score_choices(
        self, prompts: Sequence[Messages], choices: Sequence[str], desc: str = "scoring labels"
    ) -> list[ChoiceResult]:
        import torch

        encoded = self.encode(prompts, reserve=8)
        cids = self.choice_ids(choices)
        n_choices, width = len(cids), max(len(c) for c in cids)
        cont = torch.full((n_choices, width), self.tok.pad_token_id, dtype=torch.long)
        cmask = torch.zeros((n_choices, width), dtype=torch.long)
        for r, c in enumerate(cids):
            cont[r, : len(c)] = torch.tensor(c)
            cmask[r, : len(c)] = 1
        cont, cmask = cont.to(self.device), cmask.to(self.device)
        results: list[ChoiceResult | None] = [None] * len(encoded)
        prefix = self._shared_prefix(encoded)
        cached = bool(prefix or self.n_soft)
        if cached:
            # few-shot demos and label lists repeat in every prompt: encode them once
            prefix_cache = self._prefix_cache(encoded[0][:prefix])
            encoded_rest = [e[prefix:] for e in encoded]
        # every row carries all choices' tokens (logits rows x those tokens x vocab): bound rows by choices
        budget = max(self.max_batch_tokens * 2 // max(1, n_choices), 1)
        batches = length_batches([len(e) for e in encoded], self.batch_size, budget)
        done = 0
        self.progress(desc, 0, len(encoded))
        for batch in batches:
            if cached:
                scores = self._score_batch_prefixed(prefix_cache, self.n_soft + prefix, [encoded_rest[i] for i in batch],
                                                    cont, cmask)
            else:
                ids, mask = self._pad([encoded[i] for i in batch])
                scores = self._score_batch(ids, mask, cont, cmask)
            for row, i in enumerate(batch):
                lp = scores[row]
                best = max(range(n_choices), key=lambda j: lp[j])
                results[i] = ChoiceResult(choices[best], lp, len(encoded[i]))
            done += len(batch)
            self.progress(desc, done, len(encoded))
        return results  # type: ignore[return-value]

    MIN_SHARED_PREFIX = 24

    def _shared_prefix(self, encoded: list[list[int]]) -> int:
        """Length of the token prefix every prompt shares (0 when too short to be worth caching).

        At least one token of each prompt stays outside the prefix, so every row has a query.
        """
        if len(encoded) < 2:
            return 0
        first, n = encoded[0], min(len(e) for e in encoded) - 1
        k = 0
        while k < n and all(e[k] == first[k] for e in encoded):
            k += 1
        return k if k >= self.MIN_SHARED_PREFIX else 0

    def _prefix_cache(self, prefix: list[int]):
        import torch

        ids = torch.tensor([prefix], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            if self.soft_prefix is None:
                return self.model(input_ids=ids, use_cache=True, logits_to_keep=1).cache
            emb = self.model.get_input_embeddings()(ids)
            soft = self.soft_prefix.to(device=emb.device, dtype=emb.dtype)[None]
            return self.model(inputs_embeds=torch.cat([soft, emb], dim=1), use_cache=True, logits_to_keep=1).cache

    def _prefixed_batch(self, prefix_cache, prefix: list[int], rests: list[list[int]]):
        """(ids, mask, cache) for generate(): `prefix + rest` per row, the rests left-padded after
        the prefix (generate derives position ids from the mask, so padded slots in the middle
        shift nothing), and the prefix's cache repeated for the batch: generate runs only the rests."""
        import torch

        b = len(rests)
        rids, rmask = self._pad(rests)
        # virtual tokens have no ids: placeholders stand for them (generate runs only what the cache lacks)
        pids = torch.tensor([[self.tok.pad_token_id] * self.n_soft + list(prefix)], dtype=torch.long,
                            device=self.device).expand(b, -1)
        ids = torch.cat([pids, rids], dim=1)
        mask = torch.cat([torch.ones_like(pids), rmask], dim=1)
        return ids, mask, self._repeat_cache(prefix_cache, b)

    @staticmethod
    def _repeat_cache(prefix_cache, b: int):
        """A copy of the prefix's KV cache for `b` rows (the original stays for the next batch)."""
        import copy

        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(b)
        return cache

    def _score_batch_prefixed(self, prefix_cache, p0: int, rests: list[list[int]], cont, cmask) -> list[list[float]]:
        """Like _score_batch, but the prompts are `prefix + rest`, with the prefix's KV cache given.

        The rests are left-padded after the prefix (padded slots masked out, explicit position
        ids), so every row ends at the last column and only that column needs the vocabulary
        projection (logits_to_keep=1); the label tokens continue from each row's own length.
        """
        import torch

        b = len(rests)
        ids, smask = self._pad(rests)
        lengths = smask.sum(-1)
        with torch.inference_mode():
            cache = self._repeat_cache(prefix_cache, b)
            mask = torch.cat([torch.ones((b, p0), dtype=torch.long, device=self.device), smask], dim=1)
            pos = p0 + (smask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True,
                             logits_to_keep=1)
            lp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)[:, cont[:, 0]]
            lp = self._score_rest(out.cache, mask, p0 + lengths, lp, cont, cmask)
        return lp.tolist()

    def _score_batch(self, ids, mask, cont, cmask) -> list[list[float]]:
        import torch

        with torch.inference_mode():
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)  # [b, V]
            lp = first[:, cont[:, 0]]  # [b, C]: log p(first token of each choice)
            lp = self._score_rest(out.cache, mask, mask.sum(-1), lp, cont, cmask)
        return lp.tolist()

    def _score_rest(self, cache, ctx_mask, start, lp, cont, cmask):
        """lp [b, C] plus log p(each choice's tokens after its first), in one pass over `cache`.

        The tokens that predict them (every choice without its last token) are packed into one
        sequence shared by all rows; a 4D mask lets each see the row's real context columns
        (`ctx_mask`) and its own choice's earlier tokens, and positions restart at `start` for
        each choice. Needs an attention implementation that takes a custom mask (eager, sdpa).
        """
        import torch

        lens, rows = cmask.sum(-1).tolist(), cont.tolist()
        packed = [(rows[j][t], rows[j][t + 1], j, t) for j, n in enumerate(lens) for t in range(n - 1)]
        if not packed:
            return lp
        dev, dtype = self.device, self.model.dtype
        b, n, n_choices = ctx_mask.shape[0], len(packed), cont.shape[0]
        toks, targets, seg, off = (torch.tensor(x, device=dev) for x in zip(*packed))
        tree = (seg[:, None] == seg[None, :]) & (off[None, :] <= off[:, None])  # [n, n]
        allowed = torch.cat([ctx_mask.bool()[:, None, :].expand(b, n, -1), tree[None].expand(b, n, n)], dim=-1)
        mask4 = torch.zeros(allowed.shape, dtype=dtype, device=dev).masked_fill_(~allowed, torch.finfo(dtype).min)
        out = self.model(input_ids=toks[None].expand(b, n), attention_mask=mask4[:, None],
                         position_ids=start[:, None] + off[None, :], cache=cache, use_cache=True)
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        tok_lp = logp.gather(-1, targets[None, :, None].expand(b, n, 1)).squeeze(-1)  # [b, n]
        return lp + tok_lp @ torch.nn.functional.one_hot(seg, n_choices).to(tok_lp.dtype)


def answer(
    gen: Generator,
    prompts: Sequence[Messages],
    ids: Sequence[str],
    *,
    decoding: str,
    labels: Sequence[str] | None,
    max_new_tokens: int,
    desc: str,
) -> list[Prediction]:
    """Predictions with the task's decoding: label scoring (choices) or free generation."""
    if decoding == "choices":
        if not labels:
            raise ValueError("choices decoding needs labels")
        scored = gen.score_choices(prompts, labels, desc=desc)
        return [
            Prediction(i, r.label, r.prompt_tokens,
                       r.output_tokens if r.output_tokens is not None else len(gen.choice_ids([r.label])[0]),
                       extra={"label_logprobs": [round(x, 4) if math.isfinite(x) else None for x in r.logprobs],
                              **(r.extra or {})})
            for i, r in zip(ids, scored)
        ]
    gens = gen.generate(prompts, max_new_tokens, desc=desc)
    return [Prediction(i, g.text, g.prompt_tokens, g.output_tokens) for i, g in zip(ids, gens)]


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0
