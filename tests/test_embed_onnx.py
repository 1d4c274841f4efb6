"""The exported embedders (pipelines/embed_onnx.py) against sentence-transformers' own vectors.

Exported offline from the bundled MiniLM, cached in the advisor home. ONNX Runtime fp32 gives the
same vectors (cosine >= 0.99999); OpenVINO bf16 near-same ones (measured >= 0.99995 on 1,470 squad_rag
texts; asserted >= MIN_COSINE = 0.9995); opt-in int8 measured >= 0.979 (the empty string; 0.982 over
10k squad_rag chunks), asserted >= 0.97. Retrieval on squad_rag (80 test questions over its 240
passages, recall@4 computed here with numpy) must stay equal within one question for each: measured
equal for all three (issue 15 embed note), and a one-question change is far inside McNemar's noise
at n = 80 (exact p = 1.0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

NAME = "bundled:all-minilm-l6-v2"
# top-1 agreement with fp32 on the 80 questions, measured (issue 15 embed note) less a margin
TOP1_OPENVINO = 0.975  # measured 1.0 (80 of 80)
TOP1_INT8 = 0.95  # measured 0.9875 (79 of 80)
SQUAD = Path(os.environ.get("ADVISOR_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") / "squad_rag"


@pytest.fixture(scope="module")
def st_model(advisor_home):
    from advisor.models import load_embedder

    return load_embedder(NAME, "cpu")


def _forced(st_model, backend: str = "", precision: str = ""):
    from advisor.models import advisor_home as home
    from advisor.models import embedder_path
    from pipelines.embed_onnx import fast_encoder

    env = {"ADVISOR_EMBED_BACKEND": backend, "ADVISOR_EMBED_PRECISION": precision}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return fast_encoder(st_model, NAME, embedder_path(NAME), home())
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def onnx_encoder(st_model, advisor_home):
    from advisor.models import advisor_home as home
    from pipelines.embed_onnx import OnnxSentenceEncoder, supported

    assert supported(st_model)
    enc = _forced(st_model, "onnx")
    assert isinstance(enc, OnnxSentenceEncoder) and enc.backend == "onnx"
    exported = list((home() / "onnx").glob("*/model.onnx"))
    assert len(exported) == 1 and exported[0].stat().st_size > 10_000_000  # cached in the advisor home
    return enc


@pytest.fixture(scope="module")
def openvino_encoder(st_model, onnx_encoder):
    from pipelines.embed_onnx import OpenVinoSentenceEncoder

    enc = _forced(st_model, "openvino")
    assert isinstance(enc, OpenVinoSentenceEncoder) and enc.backend in ("openvino-bf16", "openvino-f32")
    return enc


@pytest.fixture(scope="module")
def int8_encoder(st_model, onnx_encoder):
    from advisor.models import advisor_home as home
    from pipelines.embed_onnx import Int8SentenceEncoder

    enc = _forced(st_model, precision="int8")
    assert isinstance(enc, Int8SentenceEncoder) and enc.backend == "onnx-int8" and enc.vector_tag == "int8"
    quantised = list((home() / "onnx").glob("*/model-int8-pc.onnx"))
    assert len(quantised) == 1 and quantised[0].stat().st_size < 40_000_000  # int8 weights: ~1/4 of fp32
    return enc


# (encoder fixture, smallest cosine to sentence-transformers' fp32 vectors, top-1 agreement on squad_rag)
ENCODERS = {"onnx": ("onnx_encoder", 0.99999, 0.98), "openvino": ("openvino_encoder", 0.9995, TOP1_OPENVINO),
            "int8": ("int8_encoder", 0.97, TOP1_INT8)}


@pytest.mark.parametrize("backend", list(ENCODERS))
def test_same_vectors_as_sentence_transformers(st_model, backend, request):
    fixture, min_cos, _ = ENCODERS[backend]
    enc = request.getfixturevalue(fixture)
    texts = ["The Zorblat office's door code is 4417.", "short", "a much longer sentence " * 40, ""]
    ref = st_model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    got = enc.encode(texts, normalize_embeddings=True)
    assert got.shape == ref.shape == (4, 384) and got.dtype == np.float32
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= min_cos, cos
    if backend == "onnx":
        assert np.abs(got - ref).max() < 1e-4


@pytest.mark.skipif(not SQUAD.exists(), reason="shared/data/squad_rag not present")
@pytest.mark.parametrize("backend", list(ENCODERS))
def test_retrieval_unchanged_on_squad_rag(st_model, backend, request):
    from pipelines.rag_index import SentenceEmbeddings, embed_text

    fixture, _, min_top1 = ENCODERS[backend]
    enc = request.getfixturevalue(fixture)
    corpus = [json.loads(x) for x in (SQUAD / "corpus.jsonl").read_text().splitlines() if x.strip()]
    qs = [json.loads(x) for x in (SQUAD / "test.jsonl").read_text().splitlines() if x.strip()]
    docs = [embed_text(r["title"], r["text"]) for r in corpus]

    def recall_at(enc, k=4):
        e = SentenceEmbeddings(enc, NAME)
        d, q = e.embed_many(docs, desc=None), e.embed_many([r["question"] for r in qs], desc=None)
        top = np.argsort(-(q @ d.T), axis=1)[:, :k]
        hits = [corpus[j]["id"] for j in range(len(corpus))]
        return [r["context_id"] in {hits[j] for j in row} for r, row in zip(qs, top)], top

    r_torch, top_torch = recall_at(st_model)
    r_fast, top_fast = recall_at(enc)
    assert abs(sum(r_torch) - sum(r_fast)) <= 1, (sum(r_torch), sum(r_fast))
    assert (top_torch[:, 0] == top_fast[:, 0]).mean() >= min_top1
    assert sum(r_torch) / len(qs) > 0.5  # the retrieval itself works (a sanity floor, not a pinned value)


def test_int8_vectors_get_their_own_collection(tmp_path):
    """Opt-in int8 vectors (cosine ~0.98 to fp32) must never be mixed into, or reused as, an fp32 index."""
    from pipelines.rag_index import SentenceEmbeddings, chroma_client, ensure_collection

    class Fake:  # a 3-d "model": what SentenceEmbeddings reads of one
        tokenizer = None

        def __init__(self, tag):
            self.vector_tag = tag

        def get_sentence_embedding_dimension(self):
            return 3

        def encode(self, texts, **_):
            return np.tile(np.array([[0.0, 0.6, 0.8]], dtype="float32"), (len(texts), 1))

    client = chroma_client(None, tmp_path)
    args = (["a", "b"], ["text a", "text b"], ["text a", "text b"], [{"source": "a"}, {"source": "b"}])
    _, fp32 = ensure_collection(client, "docs", "k1", *args, SentenceEmbeddings(Fake(""), "m"), desc=None)
    _, int8 = ensure_collection(client, "docs", "k1", *args, SentenceEmbeddings(Fake("int8"), "m"), desc=None)
    _, again = ensure_collection(client, "docs", "k1", *args, SentenceEmbeddings(Fake(""), "m"), desc=None)
    assert fp32.name == "docs-k1" and int8.name == "docs-k1-int8" and not int8.reused
    assert again.name == "docs-k1" and again.reused


def test_torch_is_kept_when_forced_or_not_cpu(st_model, advisor_home, monkeypatch):
    from advisor.models import advisor_home as home
    from advisor.models import embedder_path
    from pipelines.embed_onnx import fast_encoder

    monkeypatch.setenv("ADVISOR_EMBED_BACKEND", "torch")
    assert fast_encoder(st_model, NAME, embedder_path(NAME), home()) is st_model
    monkeypatch.delenv("ADVISOR_EMBED_BACKEND")
    assert fast_encoder(st_model, NAME, embedder_path(NAME), home(), device="cuda") is st_model


def test_automatic_choice_is_probed_once_and_recorded(st_model, onnx_encoder, advisor_home):
    from advisor.models import advisor_home as home
    from advisor.models import embedder_path
    from pipelines.embed_onnx import fast_encoder

    enc = fast_encoder(st_model, NAME, embedder_path(NAME), home())
    probe_file = next((home() / "onnx").glob("*/probe.json"))
    probe = json.loads(probe_file.read_text())
    assert probe["candidates"] == ["onnx", "openvino"] and probe["torch_s"] > 0
    # the rule, written out: the fastest of PyTorch and every backend whose vectors keep cosine >= 0.9995
    seconds = {"torch": probe["torch_s"]} | {b: probe[f"{b}_s"] for b in probe["candidates"]
                                            if probe["min_cosine"][b] >= 0.9995}
    assert probe["chosen"] == min(seconds, key=seconds.get)
    assert getattr(enc, "backend", "torch") == (probe["backend"].get(probe["chosen"]) or "torch")
    assert probe["min_cosine"]["onnx"] >= 0.99999 and probe["min_cosine"]["openvino"] >= 0.9995
    mtime = probe_file.stat().st_mtime_ns
    fast_encoder(st_model, NAME, embedder_path(NAME), home())
    assert probe_file.stat().st_mtime_ns == mtime  # probed once


def test_a_fast_but_inexact_backend_is_not_chosen(st_model):
    """The probe's cosine check: an encoder faster than everything whose vectors drift is rejected."""
    from pipelines.embed_onnx import _probe

    class Drifting:
        backend = "drifting"

        def encode(self, texts, normalize_embeddings=True, **_):
            rng = np.random.default_rng(0)
            v = st_model.encode(list(texts[:1]), normalize_embeddings=True)[0]  # one real row, cheap
            v = np.tile(v, (len(texts), 1)) + rng.normal(0, 0.01, (len(texts), v.size)).astype("float32")
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    probe = _probe(st_model, {"drifting": Drifting()})
    assert probe["drifting_s"] < probe["torch_s"]  # faster...
    assert probe["min_cosine"]["drifting"] < 0.9995 and probe["chosen"] == "torch"  # ...but not the same vectors


def test_an_old_probe_is_redone(st_model, onnx_encoder, advisor_home):
    """A v1 probe.json (ONNX vs PyTorch only) is measured again with today's candidates."""
    from advisor.models import advisor_home as home
    from advisor.models import embedder_path
    from pipelines.embed_onnx import PROBE_VERSION, fast_encoder

    probe_file = next((home() / "onnx").glob("*/model.onnx")).parent / "probe.json"
    probe_file.write_text(json.dumps({"torch_s": 1.0, "onnx_s": 0.5, "onnx_faster": True}))
    fast_encoder(st_model, NAME, embedder_path(NAME), home())
    probe = json.loads(probe_file.read_text())
    assert probe["v"] == PROBE_VERSION and "openvino" in probe["min_cosine"]
