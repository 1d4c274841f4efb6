"""The ONNX Runtime embedder (pipelines/embed_onnx.py) against sentence-transformers' own vectors.

Exported offline from the bundled MiniLM, cached in the advisor home, and giving the same vectors
(cosine >= 0.99999) and the same retrieval: recall@4 on the squad_rag questions over its 240
passages equal within one question, computed here with numpy for both backends.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

NAME = "bundled:all-minilm-l6-v2"
SQUAD = Path(os.environ.get("ADVISOR_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data") / "squad_rag"


@pytest.fixture(scope="module")
def st_model(advisor_home):
    from advisor.models import load_embedder

    return load_embedder(NAME, "cpu")


@pytest.fixture(scope="module")
def onnx_encoder(st_model, advisor_home):
    from advisor.models import advisor_home as home
    from advisor.models import embedder_path
    from pipelines.embed_onnx import OnnxSentenceEncoder, fast_encoder, supported

    assert supported(st_model)
    os.environ["ADVISOR_EMBED_BACKEND"] = "onnx"
    try:
        enc = fast_encoder(st_model, NAME, embedder_path(NAME), home())
    finally:
        del os.environ["ADVISOR_EMBED_BACKEND"]
    assert isinstance(enc, OnnxSentenceEncoder)
    exported = list((home() / "onnx").glob("*/model.onnx"))
    assert len(exported) == 1 and exported[0].stat().st_size > 10_000_000  # cached in the advisor home
    return enc


def test_same_vectors_as_sentence_transformers(st_model, onnx_encoder):
    texts = ["The Zorblat office's door code is 4417.", "short", "a much longer sentence " * 40, ""]
    ref = st_model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    got = onnx_encoder.encode(texts, normalize_embeddings=True)
    assert got.shape == ref.shape == (4, 384) and got.dtype == np.float32
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() >= 0.99999, cos
    assert np.abs(got - ref).max() < 1e-4


@pytest.mark.skipif(not SQUAD.exists(), reason="shared/data/squad_rag not present")
def test_retrieval_unchanged_on_squad_rag(st_model, onnx_encoder):
    from pipelines.rag_index import SentenceEmbeddings, embed_text

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
    r_onnx, top_onnx = recall_at(onnx_encoder)
    assert abs(sum(r_torch) - sum(r_onnx)) <= 1, (sum(r_torch), sum(r_onnx))
    assert (top_torch[:, 0] == top_onnx[:, 0]).mean() >= 0.98
    assert sum(r_torch) / len(qs) > 0.5  # the retrieval itself works (a sanity floor, not a pinned value)


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
    from pipelines.embed_onnx import OnnxSentenceEncoder, fast_encoder

    enc = fast_encoder(st_model, NAME, embedder_path(NAME), home())
    probe = json.loads(next((home() / "onnx").glob("*/probe.json")).read_text())
    assert probe["torch_s"] > 0 and probe["onnx_s"] > 0
    assert isinstance(enc, OnnxSentenceEncoder) == (probe["onnx_s"] < probe["torch_s"])
