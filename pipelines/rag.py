"""RAG: passages from a corpus and/or retrieved train examples, through a Chroma index and an LCEL chain.

* **Index.** Documents are split with LangChain's recursive character splitter (each chunk keeps
  its source id and title; chunk ids are ``<doc id>#<i>``), embedded in batches with the task's
  sentence-transformers model (wrapped as a LangChain ``Embeddings``, so Chroma never reaches for
  its default ONNX embedder, which downloads), and stored in a Chroma collection named by a hash
  of (content, embedder, chunking). A collection is built under a temporary name and renamed
  only after its last vector is in, with a ``complete`` marker and the chunk count in its
  metadata: a killed build is never mistaken for a finished one, and a second run over the same
  corpus builds nothing. ``rag.chroma_url`` uses a Chroma server (``HttpClient``) instead of the
  local ``PersistentClient`` under the advisor home.
* **Retrieved examples** (dynamic few-shot): the train inputs get their own collection; the k
  nearest train examples are shown as prior chat turns (FIELD-NOTES: banking77 0.03 -> 0.97).
  The selector is LangChain's ``SemanticSimilarityExampleSelector`` over the LangChain Chroma
  store, with a batched path (one embedding batch and one Chroma query for the whole eval set);
  the per-item ``select_examples`` gives the same examples.
* **Chain.** ``retrieve | prompt | generate | parse``, each a batch-level ``RunnableLambda``: the
  eval set goes through as one list, queries are embedded in one batch, and the shared
  ``generation.answer`` sorts and batches the prompts (label scoring for ``choices`` decoding).
* **Reader prompt.** A 135M model reads context poorly (FIELD-NOTES: gold passage only, F1 0.12),
  so for generated answers over documents a few prompt wordings and answer extractions are
  compared on a held-out slice of the *train* set (never the eval set) and the best is kept.
  On 32 held-out squad_rag train questions (token F1, raw -> trimmed answer): the default
  prompt with 4 passages 0.06 -> 0.09; the question before and after 4 passages 0.08 -> 0.17;
  the same with the top 2 passages 0.14 -> 0.25, with the top 1 0.13 -> 0.21. The two best
  wordings are tried at run time; the extraction is chosen on the same generations (free).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence
from urllib.parse import urlparse

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings
from langchain_core.example_selectors import SemanticSimilarityExampleSelector
from langchain_core.output_parsers import BaseOutputParser
from langchain_core.runnables import RunnableLambda

from .base import PipelineOutput, Prediction, RunContext, SkipPipeline, no_progress
from .generation import answer
from .prompting import build_messages, format_context, split_dev

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Document, Example

# Bump when what goes into a collection changes (text embedded, metadata layout): old
# collections then stop matching instead of being reused with stale contents.
INDEX_VERSION = 1
EMBED_BATCH = 64
QUERY_BATCH = 256  # queries per Chroma call (bounds the payload in server mode)
STALE_BUILD_SECONDS = 3600  # an unfinished build older than this is from a killed process
DEV_MIN = 8  # fewer held-out train items than this: keep the default prompt


# ---------------------------------------------------------------------------------------------
# chunking and keys


def chunk_documents(docs: Sequence["Document"], chunk_chars: int, chunk_overlap: int) -> list:
    """LangChain Documents, one per chunk: id ``<doc id>#<i>``, metadata source/title/chunk."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_chars, chunk_overlap=chunk_overlap)
    chunks = []
    for d in docs:
        for i, text in enumerate(splitter.split_text(d.text) or [d.text]):
            chunks.append(LCDocument(
                page_content=text, id=f"{d.id}#{i}",
                metadata={"source": d.id, "title": d.title, "chunk": i},
            ))
    return chunks


def embed_text(title: str, text: str) -> str:
    """What is embedded for a chunk: the title helps retrieval ("Amazon rainforest" + its text)."""
    return f"{title}\n{text}" if title else text


def index_key(kind: str, content: str, embedder: str, chunk_chars: int | None = None,
              chunk_overlap: int | None = None) -> str:
    """The collection's identity: changes when content, embedder or chunking change, only then."""
    from advisor.data import content_hash

    return content_hash({"v": INDEX_VERSION, "kind": kind, "content": content, "embedder": embedder,
                         "chunk_chars": chunk_chars, "chunk_overlap": chunk_overlap})


def source_of(chunk_id: str) -> str:
    return chunk_id.rsplit("#", 1)[0]


# ---------------------------------------------------------------------------------------------
# embeddings


class SentenceEmbeddings(Embeddings):
    """Our sentence-transformers model as a LangChain ``Embeddings`` (batched, with progress)."""

    def __init__(self, model, name: str, progress=no_progress, batch_size: int = EMBED_BATCH):
        self.model = model
        self.name = name
        self.progress = progress
        self.batch_size = batch_size

    def embed_many(self, texts: Sequence[str], desc: str | None = "embedding"):
        """float32 [n, dim], L2-normalised, in batches of ``batch_size``."""
        import numpy as np

        from .baseline import embed

        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype="float32")
        report = self.progress if desc else no_progress
        return np.asarray(embed(self.model, list(texts), report, desc or "", self.batch_size), dtype="float32")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_many(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_many([text], desc=None)[0].tolist()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces the embedder actually reads per text (it truncates at max_seq_length)."""
        if not texts:
            return []
        tok = self.model.tokenizer
        limit = int(getattr(self.model, "max_seq_length", 0) or 10**9)
        ids = tok(list(texts), truncation=True, max_length=limit)["input_ids"] if limit < 10**9 \
            else tok(list(texts))["input_ids"]
        return [len(x) for x in ids]


# ---------------------------------------------------------------------------------------------
# Chroma


def chroma_client(chroma_url: str | None, home: Path):
    """A server client for ``rag.chroma_url``, else a persistent client under the advisor home."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if chroma_url:
        u = urlparse(chroma_url)
        ssl = u.scheme == "https"
        return chromadb.HttpClient(host=u.hostname, port=u.port or (443 if ssl else 8000), ssl=ssl,
                                   settings=settings)
    path = Path(home) / "chroma"
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


@dataclass
class IndexInfo:
    name: str
    hash: str
    reused: bool
    build_seconds: float
    chunks: int
    size_bytes: int  # what the index holds: vectors (float32) + chunk text + metadata

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@contextmanager
def _build_lock(client, name: str):
    """One builder per index across processes sharing a persistent store (POSIX file lock).

    A second process waits, then finds the finished collection and reuses it. Server mode needs
    no lock file here: each build has its own temporary name and the rename is checked.
    """
    try:
        import fcntl

        settings = client.get_settings()
        root = Path(settings.persist_directory) if settings.is_persistent else None
    except Exception:  # no fcntl (Windows) or an unknown client
        root = None
    if root is None:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_collection(client, kind: str, key: str, ids: Sequence[str], texts: Sequence[str],
                      documents: Sequence[str], metadatas: Sequence[dict], embedder: SentenceEmbeddings,
                      *, desc: str):
    """(collection, IndexInfo): reuse a complete ``<kind>-<key>`` collection, or build it.

    A build goes into ``<name>-tmp-<pid>-<rand>`` and is renamed after the last ``add``, with
    ``complete: True`` and the count in its metadata; reuse checks both, so a killed build is
    never taken for a finished one.
    """
    with _build_lock(client, f"{kind}-{key}"):
        return _ensure_collection(client, kind, key, ids, texts, documents, metadatas, embedder, desc=desc)


def _ensure_collection(client, kind, key, ids, texts, documents, metadatas, embedder, *, desc):
    from chromadb.errors import NotFoundError

    name = f"{kind}-{key}"
    n = len(ids)
    payload = sum(len(t.encode()) for t in documents) + sum(len(json.dumps(m)) for m in metadatas)

    def existing():
        try:
            col = client.get_collection(name, embedding_function=None)
        except (NotFoundError, ValueError):
            return None
        meta = col.metadata or {}
        if meta.get("complete") and meta.get("count") == n and col.count() == n:
            return col
        client.delete_collection(name)  # incomplete or inconsistent: rebuild
        return None

    col = existing()
    if col is not None:
        dim = int((col.metadata or {}).get("dim", 0))
        return col, IndexInfo(name, key, True, 0.0, n, payload + n * dim * 4)

    t0 = time.perf_counter()
    now = time.time()
    for c in client.list_collections():  # leftovers of killed builds of this index
        cname = getattr(c, "name", c)
        if str(cname).startswith(name + "-tmp-"):
            try:
                meta = client.get_collection(cname, embedding_function=None).metadata or {}
                if now - float(meta.get("started", 0)) > STALE_BUILD_SECONDS:
                    client.delete_collection(cname)
            except Exception:
                pass
    vectors = embedder.embed_many(list(texts), desc=desc)
    dim = int(vectors.shape[1]) if len(vectors) else 0
    tmp = f"{name}-tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    base_meta = {"kind": kind, "hash": key, "embedder": embedder.name, "dim": dim, "v": INDEX_VERSION}
    col = client.create_collection(tmp, metadata={**base_meta, "complete": False, "started": now},
                                   configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    try:
        step = max(1, min(client.get_max_batch_size(), 4096))
        for i in range(0, n, step):
            col.add(ids=list(ids[i:i + step]), embeddings=vectors[i:i + step], documents=list(documents[i:i + step]),
                    metadatas=list(metadatas[i:i + step]))
        if col.count() != n:
            raise RuntimeError(f"Chroma holds {col.count()} of {n} vectors after the build")
        col.modify(name=name, metadata={**base_meta, "complete": True, "count": n, "built": time.time()})
    except Exception:
        try:
            client.delete_collection(tmp)
        except Exception:
            pass
        col = existing()  # another process may have finished the same index meanwhile
        if col is None:
            raise
    col = client.get_collection(name, embedding_function=None)
    secs = time.perf_counter() - t0
    return col, IndexInfo(name, key, False, secs, n, payload + n * dim * 4)


def query_collection(col, vectors, k: int, exclude: Sequence[set[str]] | None = None) -> list[list[dict]]:
    """Top-k hits per query vector ({id, text, metadata, distance}), batched Chroma queries.

    ``exclude[i]``: ids not to return for query i (a train item must not retrieve itself).
    """
    total = col.count()
    if total == 0 or len(vectors) == 0:
        return [[] for _ in range(len(vectors))]
    extra = max((len(e) for e in exclude), default=0) if exclude else 0
    n = min(k + extra, total)
    out: list[list[dict]] = []
    for s in range(0, len(vectors), QUERY_BATCH):
        r = col.query(query_embeddings=vectors[s:s + QUERY_BATCH], n_results=n,
                      include=["documents", "metadatas", "distances"])
        for j in range(len(r["ids"])):
            skip = exclude[s + j] if exclude else set()
            hits = [
                {"id": i, "text": d, "metadata": m or {}, "distance": dist}
                for i, d, m, dist in zip(r["ids"][j], r["documents"][j], r["metadatas"][j], r["distances"][j])
                if i not in skip
            ]
            out.append(hits[:k])
    return out


class BatchedExampleSelector(SemanticSimilarityExampleSelector):
    """LangChain's semantic-similarity selector with a batched path for a whole eval set.

    ``select_examples({"input": q})`` (inherited) embeds one query and searches the LangChain
    Chroma store; ``select_batch`` embeds all queries in one batch and sends them to the
    same collection in one query, which is what an offline evaluation needs.
    """

    def select_batch(self, inputs: Sequence[str], collection, exclude: Sequence[set[str]] | None = None,
                     desc: str = "RAG: embedding queries") -> tuple[list[list[dict]], Any]:
        emb = self.vectorstore.embeddings
        vectors = emb.embed_many(list(inputs), desc=desc)
        hits = query_collection(collection, vectors, self.k, exclude)
        return [[dict(h["metadata"]) for h in row] for row in hits], vectors


# ---------------------------------------------------------------------------------------------
# reader prompts and answer extraction (QA over documents)


@dataclass(frozen=True)
class ReaderPrompt:
    """How retrieved passages are shown to a generating reader."""

    name: str
    passages: int | None = None  # how many of the k retrieved passages it reads (None: all)
    sandwich: bool = False  # the question before and after the passages
    exact_words: bool = False  # ask for "the exact words from the passage"


READER_PROMPTS = {
    p.name: p for p in (
        ReaderPrompt("plain"),
        ReaderPrompt("sandwich", sandwich=True, exact_words=True),
        ReaderPrompt("sandwich-top2", passages=2, sandwich=True, exact_words=True),
        ReaderPrompt("sandwich-top1", passages=1, sandwich=True, exact_words=True),
    )
}
DEFAULT_PROMPT = "sandwich-top2"
# tried on the train slice at run time (each costs one generation pass over it); the others can
# be forced: RagPipeline(prompt="plain")
CANDIDATE_PROMPTS = ("sandwich-top2", "sandwich-top1")

_LEAD_INS = [
    # "The answer to this question is: X", "Answer: X"
    re.compile(r"^.{0,80}?\banswer\b[^:.]{0,80}?(?:\bis\b\s*:?|:)\s*", re.I),
    # "[2] Sky (United Kingdom): X" (a copied passage header)
    re.compile(r"^\[\d+\]\s*[^:]{0,60}:\s*"),
    re.compile(r"^(?:according to|based on|in) (?:the )?(?:passages?|context)(?:\s*\[?\d+\]?)?,?\s*", re.I),
]
_SENT_END = re.compile(r"(?<!\b[A-Z])[.!?](?=\s|$)|\n")


def first_sentence(text: str) -> str:
    """The text up to its first sentence end or line break (abbreviations like 'U.S.' kept)."""
    t = text.strip()
    m = _SENT_END.search(t)
    return t[: m.start()].strip() if m and m.start() > 0 else t


def strip_lead_in(text: str) -> str:
    """Drop "The answer is:", "According to passage [1]," and copied passage headers."""
    t = text.strip()
    for pattern in _LEAD_INS:
        t = pattern.sub("", t, count=1).strip()
    return t.strip('"').strip() or text.strip()


def drop_question_words(text: str, question: str) -> str:
    """Remove leading/trailing words restated from the question ("The Amazon covers over half" -> ...).

    Only the ends are trimmed, so the middle of an answer keeps its words; the whole answer is
    kept when every word is in the question.
    """
    def norm(w: str) -> str:
        return re.sub(r"[^\w]", "", w.lower())

    stop = {"the", "a", "an", "is", "was", "are", "were", "of", "in", "to", "it", "that", "this", "by", "for", "on"}
    q = {norm(w) for w in question.split()} | stop
    words = text.split()
    i, j = 0, len(words)
    while i < j and norm(words[i]) in q:
        i += 1
    while j > i and norm(words[j - 1]) in q:
        j -= 1
    return " ".join(words[i:j]) if i < j else text


def short_clause(text: str, question: str, max_words: int = 6) -> str:
    """first-sentence-trim, then a long answer is cut at its first comma or semicolon."""
    a = drop_question_words(strip_lead_in(first_sentence(text)), question)
    if len(a.split()) > max_words:
        head = re.split(r"[,;](?=\s)", a, maxsplit=1)[0].strip()  # not inside "7,000,000"
        a = head or a
    return a


EXTRACTORS: dict[str, Callable[[str, str], str]] = {
    "raw": lambda text, q: text.strip(),
    "first-sentence": lambda text, q: strip_lead_in(first_sentence(text)),
    "first-sentence-trim": lambda text, q: drop_question_words(strip_lead_in(first_sentence(text)), q),
    "short-clause": short_clause,
}
# Without a train slice to choose on: what did best on held-out squad_rag *train* items
# (question before and after the top-2 passages; answers trimmed to the new words).
DEFAULT_EXTRACTOR = "first-sentence-trim"


class AnswerParser(BaseOutputParser[str]):
    """Output parser: the reader's free text -> the answer that is scored."""

    extractor: str = DEFAULT_EXTRACTOR

    def parse(self, text: str, question: str = "") -> str:  # type: ignore[override]
        return EXTRACTORS[self.extractor](text, question)

    @property
    def _type(self) -> str:
        return "advisor_answer"


def reader_messages(spec, labels, query: str, passages: Sequence[tuple[str, str]], demos: Sequence = (),
                    prompt: ReaderPrompt = READER_PROMPTS[DEFAULT_PROMPT]):
    """build_messages with the reader-prompt variant applied (passage count, wording, sandwich)."""
    shown = list(passages[: prompt.passages] if prompt.passages else passages)
    msgs = build_messages(spec, labels, query, demos=demos, passages=shown or None)
    if not shown or not (prompt.sandwich or prompt.exact_words):
        return msgs
    noun = "passage" if len(shown) == 1 else "passages"
    if prompt.exact_words and spec.type == "qa":
        head = spec.instructions.strip()
        rule = f"Answer with the exact words from the {noun}: a short phrase, not a sentence."
        msgs[0] = {"role": "system", "content": f"{head}\n{rule}" if head else rule}
    body = f"{noun.capitalize()}:\n{format_context(shown)}"
    if prompt.sandwich:
        tail = f"Question: {query}"
        if prompt.exact_words and spec.type == "qa":
            tail += f"\nAnswer with the exact words from the {noun}:"
        msgs[-1] = {"role": "user", "content": f"Question: {query}\n\n{body}\n\n{tail}"}
    return msgs


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
        from advisor.models import advisor_home, load_embedder

        spec, data = ctx.spec, ctx.data
        self.ctx, self.spec, self.labels = ctx, spec, data.labels
        self.mode = resolve_mode(spec.rag.mode, bool(data.corpus), bool(data.train))
        self.k = spec.rag.k
        self.uses_docs = self.mode in ("documents", "both")
        self.uses_examples = self.mode in ("examples", "both")
        if ctx.generator is None:
            raise SkipPipeline("no language model to read the retrieved context")

        t0 = time.perf_counter()
        self.embeddings = SentenceEmbeddings(load_embedder(spec.models.embedding), spec.models.embedding,
                                             ctx.progress)
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
        """{examples, exclude_self} -> + passages / demos / retrieved ids per example (batched)."""
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
            hits = query_collection(self.doc_col, vectors, self.k)
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
        from advisor.metrics import score

        t0 = time.perf_counter()
        base = self._retrieve({"examples": dev, "exclude_self": True})
        seen: set = set()
        for name in CANDIDATE_PROMPTS:
            rp = READER_PROMPTS[name]
            shape = (min(rp.passages or self.k, self.k), rp.sandwich, rp.exact_words)
            if shape in seen:  # k=1: top-1 and top-2 are the same prompt
                continue
            seen.add(shape)
            batch = {**base, "rows": [dict(r) for r in base["rows"]], "reader": name,
                     "desc": f"RAG: choosing the reader prompt ({name}, train dev)"}
            batch = self._generate(self._prompt(batch))
            texts = [p.output for p in batch["predictions"]]
            for ex_name, fn in EXTRACTORS.items():
                outs = [fn(t, e.input) for t, e in zip(texts, dev)]
                s = score(spec.type, outs, [e.expected for e in dev], self.labels)
                self.dev_scores[f"{name}/{ex_name}"] = round(s.metrics[spec.metric], 4)
        best = max(self.dev_scores, key=lambda v: (self.dev_scores[v], v == f"{DEFAULT_PROMPT}/{DEFAULT_EXTRACTOR}"))
        self.reader, self.extractor = best.split("/")
        self.reader_why = f"best {spec.metric} on {len(dev)} held-out train items"
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
            usage={
                "prompt_tokens_mean": sum(p.prompt_tokens for p in preds) / n,
                "output_tokens_mean": sum(p.output_tokens for p in preds) / n,
                "query_tokens_mean": sum(qtok) / max(1, len(qtok)),
                "corpus_tokens": self.corpus_tokens,
                "index_chunks": sum(i.chunks for i in self.index.values()),
            },
            details={
                "mode": self.mode, "k": self.k, "embedding": self.spec.models.embedding,
                "store": self.spec.rag.chroma_url or "persistent (advisor home)",
                "index": index.get("documents") or index.get("examples"),
                "indexes": index,
                "retrieval": retrieval,
                "prompt_variant": self.reader, "extractor": self.extractor,
                "variant_reason": self.reader_why, "dev_scores": self.dev_scores,
                "chunking": {"chunk_chars": self.spec.rag.chunk_chars, "chunk_overlap": self.spec.rag.chunk_overlap}
                if self.uses_docs else None,
            },
            notes=notes,
        )
