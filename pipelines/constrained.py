"""Workflow constraints: the prompting pipeline with the task's format enforced while decoding.

The cheap step between prompting and fine-tuning for a task that declares a `format:`: the same
prompt as `prompting` (so the only difference measured is the decoding), but at every step the
tokens that cannot continue a valid output (a JSON Schema, any JSON, or a regular expression)
are masked, so the model can only write what the format allows. Classification's `choices`
decoding (label likelihood) is already a constraint of this kind, so the pipeline skips there.

Library: lm-format-enforcer (pure Python, character-level parsers for JSON Schema and regex,
any tokenizer). Its transformers integration module does not import under transformers 5
(it imports `transformers.tokenization_utils.PreTrainedTokenizerBase`), so the tokenizer data
is built here with the library's public `TokenEnforcerTokenizerData`, the way that module does,
and the mask is applied by a plain `LogitsProcessor`. This path is separate from
generation.py's label scoring and prefix cache: a constrained batch is generated without the
shared-prefix KV cache (one more prefill per batch, identical outputs otherwise).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Sequence

from .base import Prediction, SkipPipeline
from .generation import Generation, Generator, Messages, length_batches
from .prompting import PromptingPipeline

if TYPE_CHECKING:  # pragma: no cover
    from advisor.metrics import FormatRules

_TOKENIZER_DATA: dict[int, object] = {}


def tokenizer_data(tok):
    """lm-format-enforcer's view of the vocabulary (~1-2 s for 49k tokens; built once per tokenizer)."""
    key = id(tok)
    if key not in _TOKENIZER_DATA:
        from lmformatenforcer.tokenenforcer import TokenEnforcerTokenizerData

        vocab = len(tok)
        special = set(tok.all_special_ids)
        zero = tok.encode("0", add_special_tokens=False)[-1]
        regular = []
        for i in range(vocab):
            if i in special:
                continue
            # decode after "0" to see whether the token starts a word (keeps its leading space)
            after_zero = tok.decode([zero, i])[1:]
            regular.append((i, after_zero, len(after_zero) > len(tok.decode([i]))))
        data = TokenEnforcerTokenizerData(
            regular, lambda ids: tok.decode(ids).rstrip("\ufffd"), tok.eos_token_id, False, vocab
        )
        data.blank_ids = frozenset(i for i, s, _ in regular if not s.strip())  # type: ignore[attr-defined]
        _TOKENIZER_DATA[key] = data
    return _TOKENIZER_DATA[key]


def parser_factory(rules: "FormatRules") -> Callable[[], object] | None:
    """A fresh character-level parser per output: the schema if any, else any JSON, else the regex."""
    from lmformatenforcer import JsonSchemaParser, RegexParser

    if rules.schema is not None:
        return lambda: JsonSchemaParser(rules.schema)
    if rules.json or rules.required or rules.answer_field:
        schema = {"type": "object", "required": list(rules.required)} if rules.required else None
        return lambda: JsonSchemaParser(schema)
    if rules.regex is not None:
        return lambda: RegexParser(rules.regex)
    return None


class FormatMask:
    """LogitsProcessor: per row, only tokens that keep the output valid; end once it is complete
    and the format allows nothing but blanks (else a small model pads with newlines to the limit)."""

    def __init__(self, data, make_parser: Callable[[], object], rows: int, start: int, free_after: str | None = None):
        from lmformatenforcer import TokenEnforcer

        self.enforcers = [TokenEnforcer(data, make_parser()) for _ in range(rows)]
        self.start, self.eos, self.blank = start, data.eos_token_id, data.blank_ids
        self.decode, self.free_after = data.decoder, free_after

    def __call__(self, input_ids, scores):
        import torch

        mask = torch.full_like(scores, float("-inf"))
        for r in range(input_ids.shape[0]):
            seq = input_ids[r, self.start:].tolist()
            if self.eos in seq:
                allowed = [self.eos]  # finished row: generate() pads it
            elif self.free_after and self.free_after in self.decode(seq):
                mask[r] = 0.0  # the constrained head is written; the rest is free text
                continue
            else:
                allowed = self.enforcers[r].get_allowed_tokens(seq).allowed_tokens or [self.eos]
                if self.eos in allowed and len(allowed) <= len(self.blank) + 1 and \
                        all(t == self.eos or t in self.blank for t in allowed):
                    allowed = [self.eos]
            mask[r, allowed] = 0.0
        return scores + mask


def generate_constrained(
    gen: Generator, prompts: Sequence[Messages], make_parser: Callable[[], object], max_new_tokens: int,
    desc: str = "generating (constrained)", free_after: str | None = None,
) -> list[Generation]:
    """Greedy generation under a format: batched and length-sorted like Generator.generate.

    `free_after`: once a row has written this text, it continues unconstrained. Free text under
    a parser is the expensive case (every vocabulary token is walked at every step), so a
    format that ends in free text (the judge's reasoning) constrains only its head.
    """
    import torch
    from transformers import LogitsProcessorList

    data = tokenizer_data(gen.tok)
    encoded = gen.encode(prompts, reserve=max_new_tokens)
    results: list[Generation | None] = [None] * len(encoded)
    eos, done = gen.tok.eos_token_id, 0
    gen.progress(desc, 0, len(encoded))
    budget = max(gen.max_batch_tokens, max(len(e) for e in encoded) + max_new_tokens) if encoded else 0
    for batch in length_batches([len(e) + max_new_tokens for e in encoded], gen.batch_size, budget):
        ids, mask = gen._pad([encoded[i] for i in batch])
        proc = FormatMask(data, make_parser, len(batch), ids.shape[1], free_after)
        with torch.inference_mode():
            out = gen.model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                pad_token_id=gen.tok.pad_token_id, eos_token_id=eos, logits_processor=LogitsProcessorList([proc]),
            )
        gen.collect(out[:, ids.shape[1]:].tolist(), batch, encoded, results)
        done += len(batch)
        gen.progress(desc, done, len(encoded))
    return results  # type: ignore[return-value]


class ConstrainedPipeline(PromptingPipeline):
    """Prompting (same prompts, same variant choice on train items) with the format enforced."""

    name = "constrained"

    def prepare(self, ctx) -> None:
        if ctx.spec.decoding == "choices":
            raise SkipPipeline("choices decoding (label likelihood) already constrains the output to the labels")
        rules = ctx.spec.format_rules()
        self.make_parser = parser_factory(rules) if rules else None
        if self.make_parser is None:
            raise SkipPipeline("the task declares no output format (format: schema, json or regex)")
        t0 = time.perf_counter()
        tokenizer_data(ctx.generator.tok)
        self.vocab_seconds = time.perf_counter() - t0
        super().prepare(ctx)

    def _run(self, examples, demos, desc: str) -> list[Prediction]:
        from .prompts import build_messages

        spec = self.ctx.spec
        prompts = [build_messages(spec, self.labels, e.input, demos=demos) for e in examples]
        gens = generate_constrained(self.ctx.generator, prompts, self.make_parser, spec.max_new_tokens, desc=desc)
        return [Prediction(e.id, g.text, g.prompt_tokens, g.output_tokens) for e, g in zip(examples, gens)]

    def predict(self, examples):
        out = super().predict(examples)
        out.timings["vocabulary_index"] = round(self.vocab_seconds, 3)
        out.details["constraint"] = "lm-format-enforcer " + _version()
        return out


def _version() -> str:
    from importlib.metadata import version

    return version("lm-format-enforcer")
