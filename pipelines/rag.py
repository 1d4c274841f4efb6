"""RAG: passages from a corpus and/or retrieved train examples, through a Chroma index and an LCEL chain.

The index (chunking, embeddings, Chroma collections) is in ``rag_index``; the reader prompt
variants and answer extraction are in ``rag_reader``. This module wires them into the pipeline.

* **Retrieved examples** (dynamic few-shot): the train inputs get their own collection; the k
  nearest train examples are shown as prior chat turns (FIELD-NOTES: banking77 0.03 -> 0.97).
* **Chain.** ``retrieve | prompt | generate | parse``, each a batch-level ``RunnableLambda``: the
  eval set goes through as one list, queries are embedded in one batch, and the shared
  ``generation.answer`` sorts and batches the prompts (label scoring for ``choices`` decoding).
* **Reader choice.** For generated answers over documents the reader prompt and answer
  extraction are chosen on a held-out slice of the *train* set, never the eval set
  (see ``rag_reader`` for the measured variants).
* **Retrieval metrics.** recall@1, recall@k and MRR over source documents, when the eval items
  name their gold passage.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Sequence

from langchain_core.runnables import RunnableLambda

from .base import PipelineOutput, Prediction, RunContext, SkipPipeline, Usage
from .generation import answer
from .prompts import split_dev
from .rag_index import (
    BatchedExampleSelector,
    IndexInfo,
    SentenceEmbeddings,
    chroma_client,
    chunk_documents,
    embed_text,
    ensure_collection,
    index_key,
    query_collection,
    source_of,
)
from .rag_reader import (
    CANDIDATE_PROMPTS,
    DEFAULT_EXTRACTOR,
    DEFAULT_PROMPT,
    DEV_MIN,
    EXTRACTORS,
    READER_PROMPTS,
    AnswerParser,
    reader_messages,
)

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Example


# ---------------------------------------------------------------------------------------------
# retrieval metrics


def retrieval_metrics(retrieved: Sequence[Sequence[str]], gold: Sequence[str | None], k: int) -> dict | None:
    """recall@1, recall@k and MRR over source documents (a chunk counts for its source doc)."""
    rows = [(r, g) for r, g in zip(retrieved, gold) if g]
    if not rows:
        return None
    r1 = rk = mrr = 0.0
    for ids, g in rows:
        sources = [source_of(i) for i in ids[:k]]
        if sources[:1] == [g]:
            r1 += 1
        if g in sources:
            rk += 1
            mrr += 1.0 / (sources.index(g) + 1)
    n = len(rows)
    return {"n": n, "k": k, "recall@1": round(r1 / n, 4), f"recall@{k}": round(rk / n, 4),
            "mrr": round(mrr / n, 4)}


# ---------------------------------------------------------------------------------------------
# the pipeline


def resolve_mode(mode: str, has_corpus: bool, has_train: bool) -> str:
    if mode == "auto":
        if has_corpus:
            return "documents"
        if has_train:
            return "examples"
        raise SkipPipeline("no corpus and no train set to retrieve from")
    if mode in ("documents", "both") and not has_corpus:
        raise SkipPipeline(f"rag.mode {mode} needs data.corpus")
    if mode in ("examples", "both") and not has_train:
        raise SkipPipeline(f"rag.mode {mode} needs data.train (examples to retrieve)")
    return mode


class RagPipeline:
    name = "rag"

    def __init__(self, *, prompt: str | None = None, extractor: str | None = None):
        # forcing a reader prompt / extractor skips the choice on the train slice (tests, studies)
        self.forced_prompt = prompt
        self.forced_extractor = extractor

    # ------------------------------------------------------------------ prepare
    def prepare(self, ctx: RunContext) -> None:
        from advisor.models import advisor_home, embedder_path, load_embedder

        from .embed_onnx import fast_encoder

        spec, data = ctx.spec, ctx.data
        self.ctx, self.spec, self.labels = ctx, spec, data.labels
        self.mode = resolve_mode(spec.rag.mode, bool(data.corpus), bool(data.train))
        self.k = spec.rag.k
        self.uses_docs = self.mode in ("documents", "both")
        self.uses_examples = self.mode in ("examples", "both")
        if ctx.generator is None:
            raise SkipPipeline("no language model to read the retrieved context")

        t0 = time.perf_counter()
        st = load_embedder(spec.models.embedding)
        encoder = fast_encoder(st, spec.models.embedding, embedder_path(spec.models.embedding),
                               advisor_home(), device=str(st.device))
        self.embed_backend = getattr(encoder, "backend", "torch")
        self.embeddings = SentenceEmbeddings(encoder, spec.models.embedding, ctx.progress)
        self.client = chroma_client(spec.rag.chroma_url, ctx.cache_dir or advisor_home())
        self.load_seconds = time.perf_counter() - t0
        self.index: dict[str, IndexInfo] = {}
        self.corpus_tokens = 0
        self.doc_col = self.ex_col = self.selector = self.doc_store = None

        if self.uses_docs:
            rag = spec.rag
            chunks = chunk_documents(data.corpus, rag.chunk_chars, rag.chunk_overlap)
            texts = [embed_text(c.metadata["title"], c.page_content) for c in chunks]
            key = index_key("docs", data.corpus_hash, spec.models.embedding, rag.chunk_chars, rag.chunk_overlap)
            self.doc_col, self.index["documents"] = ensure_collection(
                self.client, "docs", key, [c.id for c in chunks], texts, [c.page_content for c in chunks],
                [c.metadata for c in chunks], self.embeddings, desc="RAG: embedding corpus chunks",
            )
            self.corpus_tokens += sum(self.embeddings.count_tokens(texts))
            self.doc_store = self._lc_store(self.index["documents"].name)

        if self.uses_examples:
            train = data.train.examples
            key = index_key("examples", data.train.hash, spec.models.embedding)
            metas = [{"id": e.id, "input": e.input, "answer": e.expected[0]} for e in train]
            self.ex_col, self.index["examples"] = ensure_collection(
                self.client, "examples", key, [e.id for e in train], [e.input for e in train],
                [e.input for e in train], metas, self.embeddings, desc="RAG: embedding train examples",
            )
            self.corpus_tokens += sum(self.embeddings.count_tokens([e.input for e in train]))
            self.selector = BatchedExampleSelector(
                vectorstore=self._lc_store(self.index["examples"].name), k=self.k, input_keys=["input"],
                example_keys=["id", "input", "answer"],
            )
        self.index_seconds = sum(i.build_seconds for i in self.index.values())
        self.chain = self._build_chain()
        self._choose_reader()

    def as_retriever(self):
        """The document index as a LangChain retriever (one query at a time, for interactive use)."""
        if self.doc_store is None:
            raise ValueError("this RAG pipeline retrieves examples, not documents")
        return self.doc_store.as_retriever(search_kwargs={"k": self.k})

    def _lc_store(self, name: str):
        from langchain_chroma import Chroma

        return Chroma(client=self.client, collection_name=name, embedding_function=self.embeddings,
                      create_collection_if_not_exists=False)

    # ------------------------------------------------------------------ the chain
    def _build_chain(self):
        return (
            RunnableLambda(self._retrieve, name="retrieve")
            | RunnableLambda(self._prompt, name="prompt")
            | RunnableLambda(self._generate, name="generate")
            | RunnableLambda(self._parse, name="parse")
        )

    def _retrieve(self, batch: dict) -> dict:
        """{examples, exclude_self[, k]} -> + passages / demos / retrieved ids per example (batched).

        ``k`` (documents only) asks for more passages than the pipeline's k: RAG + fine-tune
        draws distractors from them."""
        t0 = time.perf_counter()
        examples = batch["examples"]
        queries = [e.input for e in examples]
        exclude = [{e.id} for e in examples] if batch.get("exclude_self") else None
        rows: list[dict] = [{"example": e, "passages": [], "demos": [], "ids": []} for e in examples]
        vectors = None
        if self.uses_examples:
            chosen, vectors = self.selector.select_batch(queries, self.ex_col, exclude)
            from advisor.data import Example

            for row, picked in zip(rows, chosen):
                # most similar last: nearest to the question, where a small model copies best
                row["demos"] = [Example(m["id"], m["input"], (m["answer"],)) for m in reversed(picked)]
                row["ids"] += [m["id"] for m in picked]
        if self.uses_docs:
            if vectors is None:
                vectors = self.embeddings.embed_many(queries, desc="RAG: embedding queries")
            hits = query_collection(self.doc_col, vectors, batch.get("k") or self.k)
            for row, hs in zip(rows, hits):
                row["passages"] = [(h["metadata"].get("title", ""), h["text"]) for h in hs]
                row["ids"] += [h["id"] for h in hs]
                row["doc_ids"] = [h["id"] for h in hs]
        batch["query_tokens"] = self.embeddings.count_tokens(queries)
        batch["rows"] = rows
        batch["retrieve_seconds"] = time.perf_counter() - t0
        return batch

    def _prompt(self, batch: dict) -> dict:
        prompt = READER_PROMPTS[batch.get("reader") or self.reader]
        for row in batch["rows"]:
            row["messages"] = reader_messages(self.spec, self.labels, row["example"].input, row["passages"],
                                              row["demos"], prompt)
        return batch

    def _generate(self, batch: dict) -> dict:
        t0 = time.perf_counter()
        rows = batch["rows"]
        batch["predictions"] = answer(
            self.ctx.generator, [r["messages"] for r in rows], [r["example"].id for r in rows],
            decoding=self.spec.decoding, labels=self.labels, max_new_tokens=self.spec.max_new_tokens,
            desc=batch.get("desc", f"RAG ({self.mode})"),
        )
        batch["generate_seconds"] = time.perf_counter() - t0
        return batch

    def _parse(self, batch: dict) -> dict:
        parser = AnswerParser(extractor=batch.get("extractor") or self.extractor)
        for row, p in zip(batch["rows"], batch["predictions"]):
            p.extra["retrieved"] = row["ids"]
            if self.spec.decoding == "choices":
                continue  # already a label
            out = parser.parse(p.output, row["example"].input)
            if out != p.output:
                p.raw, p.output = p.output, out
        return batch

    # ------------------------------------------------------------------ reader choice (train slice)
    def _choose_reader(self) -> None:
        """Pick the reader prompt and answer extraction on held-out *train* items (never eval)."""
        spec, data = self.spec, self.ctx.data
        self.reader, self.extractor = DEFAULT_PROMPT, DEFAULT_EXTRACTOR
        self.dev_scores: dict[str, float] = {}
        self.reader_why = "default"
        self.select_seconds = 0.0
        self.race = None
        if self.forced_prompt or self.forced_extractor:
            self.reader = self.forced_prompt or self.reader
            self.extractor = self.forced_extractor or self.extractor
            self.reader_why = "forced"
            return
        if not self.uses_docs:
            self.reader, self.extractor = "plain", "raw"
            self.reader_why = "no passages: retrieved examples as chat turns"
            return
        if spec.decoding == "choices":
            # the reader study was on generated answers; label scoring reads all k passages
            self.reader, self.extractor = "plain", "raw"
            self.reader_why = "label scoring: all k passages, no answer extraction"
            return
        if not data.train:
            self.reader_why = "no train set to choose a reader prompt on"
            return
        _, dev = split_dev(data.train.examples, spec.seed)
        if len(dev) < DEV_MIN:
            self.reader_why = "train set too small for a dev slice"
            return
        from advisor.metrics import choice_metric, score

        from .choice import PER_ITEM_METRICS, choose, item_scores, model_identity

        t0 = time.perf_counter()
        base = self._retrieve({"examples": dev, "exclude_self": True})
        names, seen = [], set()
        for name in CANDIDATE_PROMPTS:
            rp = READER_PROMPTS[name]
            shape = (min(rp.passages or self.k, self.k), rp.sandwich, rp.exact_words)
            if shape not in seen:  # k=1: top-1 and top-2 are the same prompt
                seen.add(shape)
                names.append(name)

        def run(name: str, idx: list[int]) -> dict[str, list[float]]:
            batch = {**base, "rows": [dict(base["rows"][i]) for i in idx], "reader": name,
                     "desc": f"RAG: choosing the reader prompt ({name}, train dev)"}
            texts = [p.output for p in self._generate(self._prompt(batch))["predictions"]]
            items = [dev[i] for i in idx]
            arms = {}
            for ex_name, fn in EXTRACTORS.items():  # the extraction is chosen on the same generations (free)
                outs = [fn(t, e.input) for t, e in zip(texts, items)]
                s = score(spec.type, outs, [e.expected for e in items], self.labels, rules=spec.format_rules())
                arms[f"{name}/{ex_name}"] = item_scores(s, choice_metric(s, spec.metric, spec.type))
            return arms

        prompts = {name: [reader_messages(spec, self.labels, r["example"].input, r["passages"], r["demos"],
                                          READER_PROMPTS[name]) for r in base["rows"]] for name in names}
        inputs = {"prompts": prompts, "expected": [list(e.expected) for e in dev], "type": spec.type,
                  "metric": spec.metric, "max_new_tokens": spec.max_new_tokens, "extractors": list(EXTRACTORS)}
        default = f"{DEFAULT_PROMPT}/{DEFAULT_EXTRACTOR}"
        res = choose("rag-reader", model_identity(self.ctx.generator), inputs, run, names, len(dev),
                     prefer=lambda v: v == default, racing=spec.metric in PER_ITEM_METRICS, home=self.ctx.cache_dir)
        self.race, self.dev_scores = res, res.scores
        self.reader, self.extractor = res.winner.split("/")
        self.reader_why = f"best {spec.metric} on {len(dev)} held-out train items"
        if res.reused:
            self.reader_why += " (choice reused: same model, prompts and dev items as an earlier run)"
        elif res.generated < res.full:
            self.reader_why += f" (raced: {res.generated} of {res.full} dev generations)"
        self.select_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ predict
    def predict(self, examples: list["Example"]) -> PipelineOutput:
        t0 = time.perf_counter()
        batch = self.chain.invoke({"examples": list(examples)})
        preds: list[Prediction] = batch["predictions"]
        total = time.perf_counter() - t0
        n = max(1, len(preds))
        retrieval = None
        if self.uses_docs:
            retrieval = retrieval_metrics([r.get("doc_ids", []) for r in batch["rows"]],
                                          [e.context_id for e in examples], self.k)
        qtok = batch["query_tokens"]
        index = {kind: info.to_dict() for kind, info in self.index.items()}
        notes = []
        for kind, info in self.index.items():
            state = "reused" if info.reused else f"built in {info.build_seconds:.1f} s"
            notes.append(f"{kind} index {state} (hash {info.hash}, {info.chunks} entries)")
        return PipelineOutput(
            preds,
            timings={
                "index": round(self.index_seconds, 3),
                "select_reader": round(self.select_seconds, 3),
                "retrieve": round(batch["retrieve_seconds"], 3),
                "predict": round(batch["generate_seconds"], 3),
                "chain": round(total, 3),
            },
            usage=Usage(
                prompt_tokens_mean=sum(p.prompt_tokens for p in preds) / n,
                output_tokens_mean=sum(p.output_tokens for p in preds) / n,
                query_tokens_mean=sum(qtok) / max(1, len(qtok)),
                corpus_tokens=self.corpus_tokens,
                extra={"index_chunks": sum(i.chunks for i in self.index.values())},
            ),
            details={
                "mode": self.mode, "k": self.k, "embedding": self.spec.models.embedding,
                "embedding_backend": self.embed_backend,
                "store": self.spec.rag.chroma_url or "persistent (advisor home)",
                "index": index.get("documents") or index.get("examples"),
                "indexes": index,
                "retrieval": retrieval,
                "prompt_variant": self.reader, "extractor": self.extractor,
                "variant_reason": self.reader_why, "dev_scores": self.dev_scores,
                "variant_race": self.race.to_dict() if self.race else None,
                "chunking": {"chunk_chars": self.spec.rag.chunk_chars, "chunk_overlap": self.spec.rag.chunk_overlap}
                if self.uses_docs else None,
            },
            notes=notes,
        )
