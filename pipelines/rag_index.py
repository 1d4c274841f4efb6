"""The RAG index: corpus chunks or train examples, embedded and stored in Chroma.

Kept apart from the chain so building, reusing and querying an index can be tested and
benchmarked without a language model.

* **Chunks.** Documents are split with LangChain's recursive character splitter (each chunk keeps
  its source id and title; chunk ids are ``<doc id>#<i>``).
* **Embeddings.** Batches through the task's sentence-transformers model (on CPU, the same model
  exported to ONNX Runtime or OpenVINO when that is faster here and near-exact: ``embed_onnx``;
  opt-in int8 vectors get collections of their own), longest texts first across
  the whole call, wrapped as a LangChain ``Embeddings``, so Chroma never reaches for its default
  ONNX embedder, which downloads.
* **Collections.** Named by a hash of (content, embedder, chunking). A collection is built under
  a temporary name and renamed only after its last vector is in, with a ``complete`` marker and
  the chunk count in its metadata: a killed build is never mistaken for a finished one, and a
  second run over the same corpus builds nothing. ``rag.chroma_url`` uses a Chroma server
  (``HttpClient``) instead of the local ``PersistentClient`` under the advisor home.
* **Example selector.** LangChain's ``SemanticSimilarityExampleSelector`` over the LangChain
  Chroma store, with a batched path (one embedding batch and one Chroma query for the whole
  eval set); the per-item ``select_examples`` gives the same examples.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import urlparse

from langchain_core.documents import Document as LCDocument
from langchain_core.embeddings import Embeddings
from langchain_core.example_selectors import SemanticSimilarityExampleSelector

from .base import no_progress

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Document

# Bump when what goes into a collection changes (text embedded, metadata layout): old
# collections then stop matching instead of being reused with stale contents.
INDEX_VERSION = 1
EMBED_BATCH = 64
QUERY_BATCH = 256  # queries per Chroma call (bounds the payload in server mode)
STALE_BUILD_SECONDS = 3600  # an unfinished build older than this is from a killed process


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

    def __init__(self, model, name: str, progress=no_progress, batch_size: int | None = None):
        self.model = model
        self.name = name
        self.progress = progress
        # an exported encoder carries the batch measured fastest for it (embed_onnx)
        self.batch_size = batch_size or getattr(model, "batch_size", EMBED_BATCH)

    @property
    def vector_tag(self) -> str:
        """Non-empty for vectors that are not (near) the fp32 model's (opt-in int8): own collections."""
        return getattr(self.model, "vector_tag", "")

    def embed_many(self, texts: Sequence[str], desc: str | None = "embedding"):
        """float32 [n, dim], L2-normalised, in batches of ``batch_size``."""
        import numpy as np

        from .baseline import embed

        if not texts:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype="float32")
        report = self.progress if desc else no_progress
        # longest first over the whole call, not per batch: each batch pads to similar lengths
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vecs = np.asarray(embed(self.model, [texts[i] for i in order], report, desc or "", self.batch_size),
                          dtype="float32")
        out = np.empty_like(vecs)
        out[order] = vecs
        return out

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
    try:
        client = chromadb.PersistentClient(path=str(path), settings=settings)
        client.list_collections()  # reads the store's catalogue: a damaged file fails here
        return client
    except Exception as e:
        if not _is_corrupt(e):
            raise
    # The store is a cache (every collection is rebuilt from the corpus on a miss): a damaged
    # one is moved aside and rebuilt, never reported as a failed pipeline run after run.
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # chromadb keeps one (broken) system per path
    aside = path.with_name(f"chroma.corrupt-{os.getpid()}-{uuid.uuid4().hex[:6]}")
    os.replace(path, aside)
    shutil.rmtree(aside, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


_CORRUPT = ("malformed", "not a database", "file is encrypted", "database disk image", "no such table")


def _is_corrupt(err: Exception) -> bool:
    """A damaged Chroma store (SQLite says so), as opposed to a permission or disk problem."""
    return any(s in str(err).lower() for s in _CORRUPT)


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
    tag = getattr(embedder, "vector_tag", "")
    if tag:  # int8 vectors never mix with fp32 ones in one collection
        key = f"{key}-{tag}"
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
    if len(vectors) == 0:
        return []
    # No col.count() first: it is a second round trip per query (~1.3 ms of a ~20 ms query on
    # 10k chunks), and Chroma 1.x returns fewer hits, without error, when asked for more
    # results than the collection holds (an empty one included).
    extra = max((len(e) for e in exclude), default=0) if exclude else 0
    n = k + extra
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
