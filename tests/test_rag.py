"""RAG building blocks without the LLM: chunking, index keys, the Chroma index lifecycle (build,
reuse, a killed build), batched retrieval against the LangChain selector, retrieval metrics and
answer extraction. The embedder is the real bundled MiniLM (fast); Chroma runs in-process."""

from __future__ import annotations

import json

import pytest

from advisor.data import Document, content_hash, load_task_data
from advisor.spec import load
from pipelines.base import SkipPipeline
from pipelines.rag import resolve_mode, retrieval_metrics
from pipelines.rag_index import (
    BatchedExampleSelector,
    SentenceEmbeddings,
    chroma_client,
    chunk_documents,
    ensure_collection,
    index_key,
    query_collection,
)
from pipelines.rag_reader import (
    READER_PROMPTS,
    drop_question_words,
    first_sentence,
    reader_messages,
    short_clause,
    strip_lead_in,
)

LONG = " ".join(f"Sentence number {i} of the long handbook page talks about topic {i}." for i in range(40))


# ---------------------------------------------------------------------------------------------
# chunking


def test_chunks_keep_source_id_and_title():
    docs = [Document("handbook/long.md", "Long page", LONG), Document("short", "Short page", "Tiny text.")]
    chunks = chunk_documents(docs, chunk_chars=200, chunk_overlap=40)
    long_chunks = [c for c in chunks if c.metadata["source"] == "handbook/long.md"]
    assert len(long_chunks) > 5
    assert [c.id for c in long_chunks] == [f"handbook/long.md#{i}" for i in range(len(long_chunks))]
    assert all(c.metadata["title"] == "Long page" for c in long_chunks)
    assert all(len(c.page_content) <= 200 for c in long_chunks)
    # every word of the source survives the split, in order
    rebuilt = " ".join(c.page_content for c in long_chunks)
    assert all(f"topic {i}." in rebuilt for i in range(40))
    # consecutive chunks overlap (chunk_overlap > 0)
    assert long_chunks[0].page_content.split()[-1] in long_chunks[1].page_content
    short = [c for c in chunks if c.metadata["source"] == "short"]
    assert len(short) == 1 and short[0].id == "short#0" and short[0].page_content == "Tiny text."
    assert short[0].metadata == {"source": "short", "title": "Short page", "chunk": 0}


def test_chunk_ids_with_hash_in_doc_id_map_back_to_source():
    docs = [Document("a#b", "T", LONG)]
    chunks = chunk_documents(docs, 300, 0)
    assert retrieval_metrics([[c.id for c in chunks[1:3]]], ["a#b"], k=2)["recall@1"] == 1.0


# ---------------------------------------------------------------------------------------------
# index key


def _key(tmp_path, **kw):
    """The docs index key of a task written with these settings (through the real loaders)."""
    d = tmp_path / content_hash(kw)
    d.mkdir()
    corpus = kw.get("corpus", "The Zorblat office's door code is 4417.")
    (d / "corpus.jsonl").write_text(json.dumps({"id": "z1", "title": "Zorblat", "text": corpus}) + "\n")
    (d / "eval.jsonl").write_text(json.dumps({"question": kw.get("q", "What is the door code?"), "answer": "4417"}) + "\n")
    (d / "task.yaml").write_text(
        "name: keys\ntype: qa\n"
        "data: {eval: eval.jsonl, corpus: corpus.jsonl, fields: {input: question, expected: answer}}\n"
        f"models: {{embedding: {kw.get('embedding', 'bundled:all-minilm-l6-v2')}}}\n"
        "target: {metric: token_f1, min: 0.5}\n"
        f"rag: {{chunk_chars: {kw.get('chars', 800)}, chunk_overlap: {kw.get('overlap', 100)}, k: {kw.get('k', 4)}}}\n"
        f"prompting: {{shots: {kw.get('shots', 4)}}}\n"
    )
    spec = load(d / "task.yaml")
    data = load_task_data(spec)
    return index_key("docs", data.corpus_hash, spec.models.embedding, spec.rag.chunk_chars, spec.rag.chunk_overlap)


def test_index_key_changes_with_corpus_embedder_chunking_and_only_then(tmp_path):
    base = _key(tmp_path)
    assert base == _key(tmp_path, q="Another eval question?")  # eval set: same index
    assert base == _key(tmp_path, k=2)  # retrieval depth: same index
    assert base == _key(tmp_path, shots=0)  # prompting settings: same index
    changed = {
        "corpus": _key(tmp_path, corpus="The Zorblat office's door code is 4418."),
        "embedder": _key(tmp_path, embedding="/tmp/another-embedder"),
        "chunk_chars": _key(tmp_path, chars=400),
        "chunk_overlap": _key(tmp_path, overlap=50),
    }
    assert all(v != base for v in changed.values()), changed
    assert len(set(changed.values())) == 4


def test_index_key_kinds_differ():
    assert index_key("docs", "h", "e", 800, 100) != index_key("examples", "h", "e")
    assert len(index_key("docs", "h", "e", 800, 100)) == 16


# ---------------------------------------------------------------------------------------------
# Chroma index lifecycle (real embedder, in-process Chroma)


@pytest.fixture(scope="module")
def embeddings():
    from advisor.models import load_embedder

    return SentenceEmbeddings(load_embedder("bundled:all-minilm-l6-v2"), "bundled:all-minilm-l6-v2")


FACTS = [
    ("zorblat", "Zorblat office", "The Zorblat office's door code is 4417."),
    ("quim", "Quimby lab", "The Quimby lab closes at 9 pm on Fridays."),
    ("parking", "Parking", "Visitors park in lot C, behind the cafeteria."),
    ("wifi", "Wi-Fi", "The guest Wi-Fi password is tangerine-42."),
]


def _build(client, emb, facts=FACTS, key="k1"):
    return ensure_collection(
        client, "docs", key, [f"{i}#0" for i, _, _ in facts], [f"{t}\n{x}" for _, t, x in facts],
        [x for _, _, x in facts], [{"source": i, "title": t, "chunk": 0} for i, t, _ in facts], emb, desc="t",
    )


def test_index_is_built_once_then_reused(tmp_path, embeddings):
    client = chroma_client(None, tmp_path)
    col, info = _build(client, embeddings)
    assert not info.reused and info.chunks == 4
    assert info.size_bytes > 4 * 384 * 4 and col.name == "docs-k1"
    assert col.metadata["complete"] is True and col.metadata["count"] == 4
    calls = []
    embeddings_spy = SentenceEmbeddings(embeddings.model, embeddings.name,
                                        progress=lambda *a: calls.append(a))
    client2 = chroma_client(None, tmp_path)  # a new process would open the same folder
    col2, info2 = _build(client2, embeddings_spy)
    assert info2.reused and info2.build_seconds == 0 and info2.chunks == 4 and info2.hash == "k1"
    assert calls == []  # nothing embedded on reuse
    assert [c.name for c in client2.list_collections()] == ["docs-k1"]  # no temporary leftovers


def test_killed_build_is_not_mistaken_for_complete(tmp_path, embeddings):
    client = chroma_client(None, tmp_path)
    # what a build killed after its first add leaves under the final name (an older layout),
    # and a temporary collection from a killed build
    half = client.create_collection("docs-k1", metadata={"complete": False}, embedding_function=None)
    half.add(ids=["zorblat#0"], embeddings=[[0.0] * 384], documents=["x"], metadatas=[{"source": "zorblat"}])
    stale = client.create_collection("docs-k1-tmp-1-abc", metadata={"complete": False, "started": 0.0},
                                     embedding_function=None)
    stale.add(ids=["a"], embeddings=[[0.0] * 384])
    col, info = _build(client, embeddings)
    assert not info.reused and col.count() == 4
    assert sorted(c.name for c in client.list_collections()) == ["docs-k1"]
    # a complete marker with the wrong count is rebuilt too
    col.modify(metadata={**col.metadata, "count": 5})
    _, info3 = _build(client, embeddings)
    assert not info3.reused


def test_concurrent_builders_of_one_index_build_it_once(tmp_path, embeddings):
    import threading

    client = chroma_client(None, tmp_path)
    infos = []

    def build():
        infos.append(_build(client, embeddings)[1])

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(i.reused for i in infos) == [False, True]
    assert [c.name for c in client.list_collections()] == ["docs-k1"]


def test_batched_query_finds_the_fact_and_excludes(tmp_path, embeddings):
    client = chroma_client(None, tmp_path)
    col, _ = _build(client, embeddings)
    vecs = embeddings.embed_many(["What is the door code of the Zorblat office?", "Where do visitors park?"])
    hits = query_collection(col, vecs, k=2)
    assert [h[0]["id"] for h in hits] == ["zorblat#0", "parking#0"]
    assert hits[0][0]["metadata"]["title"] == "Zorblat office" and "4417" in hits[0][0]["text"]
    assert all(len(h) == 2 for h in hits)
    hits = query_collection(col, vecs, k=2, exclude=[{"zorblat#0"}, set()])
    assert "zorblat#0" not in [h["id"] for h in hits[0]] and len(hits[0]) == 2
    # asking for more than the collection holds returns what there is; an empty one, nothing
    assert [len(h) for h in query_collection(col, vecs, k=50)] == [col.count()] * 2
    empty = client.get_or_create_collection("empty-one")
    assert query_collection(empty, vecs, k=2) == [[], []]
    assert query_collection(col, vecs[:0], k=2) == []


def test_batched_selector_matches_langchain_per_item_selection(tmp_path, embeddings):
    from langchain_chroma import Chroma

    client = chroma_client(None, tmp_path)
    train = [("t1", "my card was stolen", "card_lost"), ("t2", "I lost my card on the bus", "card_lost"),
             ("t3", "how do I top up by bank transfer", "top_up"), ("t4", "top up failed twice", "top_up"),
             ("t5", "what is the exchange rate", "exchange_rate")]
    ids = [i for i, _, _ in train]
    metas = [{"id": i, "input": x, "answer": y} for i, x, y in train]
    col, _ = ensure_collection(client, "examples", "e1", ids, [x for _, x, _ in train], [x for _, x, _ in train],
                               metas, embeddings, desc="t")
    store = Chroma(client=client, collection_name=col.name, embedding_function=embeddings,
                   create_collection_if_not_exists=False)
    sel = BatchedExampleSelector(vectorstore=store, k=2, input_keys=["input"], example_keys=["id", "input", "answer"])
    queries = ["someone took my card", "the top-up did not work", "rate for euros?"]
    batched, vecs = sel.select_batch(queries, col)
    single = [sel.select_examples({"input": q}) for q in queries]
    assert [[m["id"] for m in row] for row in batched] == [[m["id"] for m in row] for row in single]
    assert batched[0][0]["answer"] == "card_lost" and batched[1][0]["answer"] == "top_up"
    assert vecs.shape == (3, 384)


# ---------------------------------------------------------------------------------------------
# retrieval metrics, extraction, modes, prompts


def test_retrieval_metrics_over_source_documents():
    retrieved = [
        ["a#0", "b#0", "c#1"],  # gold a at rank 1
        ["b#2", "a#3", "c#0"],  # gold a at rank 2 (a chunk of a split passage)
        ["b#0", "c#0", "d#0"],  # gold a missing
        ["x#0"],  # no gold id: not counted
    ]
    m = retrieval_metrics(retrieved, ["a", "a", "a", None], k=3)
    assert m == {"n": 3, "k": 3, "recall@1": round(1 / 3, 4), "recall@3": round(2 / 3, 4),
                 "mrr": round((1 + 0.5) / 3, 4)}
    assert retrieval_metrics([["a#0"]], [None], k=1) is None


def test_answer_extraction():
    assert first_sentence("Over half. The Amazon is big.") == "Over half"
    assert first_sentence("In the U.S. it is 4417.") == "In the U.S. it is 4417"
    assert first_sentence("3.5 million people\nmore") == "3.5 million people"
    assert strip_lead_in("The answer is: 4417") == "4417"
    assert strip_lead_in("According to passage [1], lot C") == "lot C"
    q = "What amount of Earth's rainforests does the Amazon rainforest make up?"
    assert drop_question_words("The Amazon rainforest makes up over half of Earth's rainforests", q) == \
        "makes up over half"
    assert drop_question_words("Amazon rainforest", q) == "Amazon rainforest"  # all words restated: keep
    assert strip_lead_in("The answer to the question about the article is: 3") == "3"
    assert strip_lead_in("[2] Sky (United Kingdom): BSkyB") == "BSkyB"
    assert strip_lead_in("The answer lies in the soil.") == "The answer lies in the soil."
    q2 = "What happened when cyanobacteria was assimilated?"
    text = "The cyanobacteria was assimilated, and many of its genes were lost, and its proteins moved."
    assert short_clause(text, q2) == "and many of its genes were lost"  # > 6 words: cut at a comma
    assert short_clause("Lot C, behind the cafeteria.", "Where?") == "Lot C, behind the cafeteria"
    long_number = "The Amazon Basin is approximately 7,000,000 square kilometers (2,100,000 sq mi) in size"
    assert short_clause(long_number, "How many square kilometers is the Amazon Basin?").startswith(
        "approximately 7,000,000 square")  # a comma inside a number is not a clause break


def test_modes():
    assert resolve_mode("auto", True, True) == "documents"
    assert resolve_mode("auto", False, True) == "examples"
    assert resolve_mode("both", True, True) == "both"
    for mode, corpus, train in [("auto", False, False), ("documents", False, True), ("examples", True, False),
                                ("both", True, False)]:
        with pytest.raises(SkipPipeline):
            resolve_mode(mode, corpus, train)


def test_reader_prompts_render_passages_and_demos(tmp_path):
    from advisor.data import Example

    spec = load(_write_min(tmp_path))
    passages = [("Zorblat office", "The door code is 4417."), ("Parking", "Lot C.")]
    demos = [Example("d1", "Where is lot C?", ("behind the cafeteria",))]
    plain = reader_messages(spec, None, "What is the code?", passages, demos, READER_PROMPTS["plain"])
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert "[1] Zorblat office: The door code is 4417." in plain[-1]["content"]
    assert "[2] Parking: Lot C." in plain[-1]["content"]
    top1 = reader_messages(spec, None, "What is the code?", passages, (), READER_PROMPTS["sandwich-top1"])
    user = top1[-1]["content"]
    assert user.startswith("Question: What is the code?") and user.count("What is the code?") == 2
    assert "Lot C" not in user and "exact words from the passage" in top1[0]["content"]


def _write_min(tmp_path):
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": "q?", "answer": "a"}) + "\n")
    (tmp_path / "task.yaml").write_text(
        "name: m\ntype: qa\ninstructions: Answer about the office.\n"
        "data: {eval: eval.jsonl, fields: {input: question, expected: answer}}\n"
        "target: {metric: token_f1, min: 0.5}\n")
    return tmp_path / "task.yaml"
