"""The embedder through ONNX Runtime on CPU: the same MiniLM, exported from its local weights.

Embedding the corpus bounds a RAG index build (README: ~126 passages/s with PyTorch on the two
cores). ONNX Runtime runs the same BERT graph with fused kernels; the vectors agree with
sentence-transformers' to ~1e-7 (cosine >= 0.99999, tests/test_embed_onnx.py), so retrieval is
unchanged. int8 dynamic quantisation was measured too and is *not* used: about 2x faster, but
cosine to the fp32 vectors fell to 0.917 on some passages, which moves rankings.

* **Export** offline from the sentence-transformers model already loaded (``torch.onnx.export``, the
  TorchScript exporter, opset 17; needs the ``onnx`` package), once per model, cached under
  ``<advisor home>/onnx/<name>-<hash of the weights' files>/model.onnx``, written to a temporary
  name and renamed.
* **Chosen automatically**: on CPU, for a model that is one transformer with mean pooling (and
  optionally normalisation) — MiniLM's shape — after a one-time probe on the machine (64 texts, both
  backends, the faster kept, recorded beside the export). ``ADVISOR_EMBED_BACKEND=torch|onnx``
  forces one. Anything unexpected (no onnx package, an export error, another model shape) keeps
  PyTorch.
* Texts are sorted by length over the whole call (not per batch of 64) so each batch pads little.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

from advisor.atomic import atomic_write_json

ONNX_VERSION = 1  # bump when the export changes
BATCH = 32  # ONNX Runtime, 2 cores: 32 a little faster than 64 or 128 (issue 15 note)
PROBE_TEXTS = 64


class OnnxSentenceEncoder:
    """What SentenceEmbeddings uses of a SentenceTransformer (encode, tokenizer, max_seq_length)."""

    backend = "onnx"

    def __init__(self, path: Path, st_model: Any, threads: int | None = None):
        import onnxruntime as ort
        import torch

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or torch.get_num_threads()
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.tokenizer = st_model.tokenizer
        self.max_seq_length = st_model.max_seq_length
        self.normalize = _has_normalize(st_model)
        dim = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
        self._dim = int(dim())

    def get_embedding_dimension(self) -> int:
        return self._dim

    get_sentence_embedding_dimension = get_embedding_dimension  # the name rag_index calls

    def encode(self, texts: Sequence[str], batch_size: int = BATCH, normalize_embeddings: bool = False, **_: Any):
        import numpy as np

        texts = list(texts)
        out = np.zeros((len(texts), self._dim), dtype="float32")
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            x = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_seq_length,
                               return_tensors="np")
            feed = {k: x[k].astype("int64") for k in ("input_ids", "attention_mask", "token_type_ids")
                    if k in self.inputs}
            if "token_type_ids" in self.inputs and "token_type_ids" not in feed:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            hidden = self.session.run(None, feed)[0]
            m = x["attention_mask"][..., None].astype("float32")
            e = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            if normalize_embeddings or self.normalize:
                e = e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None)
            out[idx] = e
        return out


def _has_normalize(st_model: Any) -> bool:
    return any(type(m).__name__ == "Normalize" for m in st_model)


def supported(st_model: Any) -> bool:
    """One transformer + mean pooling (+ normalise): what encode() above reproduces."""
    mods = list(st_model)
    names = [type(m).__name__ for m in mods]
    if names[:2] != ["Transformer", "Pooling"] or any(n not in ("Normalize",) for n in names[2:]):
        return False
    cfg = mods[1].get_config_dict()
    return cfg.get("pooling_mode", "mean") == "mean" and not cfg.get("pooling_mode_cls_token")


def weights_hash(st_model: Any, model_dir: str) -> str:
    """Identity of the weights: names, sizes and mtimes of the model folder's files (cheap, local)."""
    h = hashlib.sha256(f"{ONNX_VERSION}".encode())
    root = Path(model_dir)
    for p in sorted(root.rglob("*")) if root.is_dir() else []:
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root)}|{st.st_size}|{int(st.st_mtime)}".encode())
    return h.hexdigest()[:16]


def export(st_model: Any, path: Path) -> Path:
    """The transformer's last hidden state as an ONNX graph with dynamic batch and length."""
    import torch

    model = st_model[0].auto_model.eval()

    class Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    x = st_model.tokenizer(["an example sentence", "two"], padding=True, return_tensors="pt")
    tti = x.get("token_type_ids", torch.zeros_like(x["input_ids"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    import warnings

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(model), (x["input_ids"], x["attention_mask"], tti), str(tmp),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={k: {0: "batch", 1: "length"} for k in [*names, "last_hidden_state"]},
                          opset_version=17, dynamo=False)
    tmp.replace(path)
    return path


def _probe(st_model: Any, enc: OnnxSentenceEncoder) -> dict:
    """Seconds for the same texts through both backends (best of two each); the faster is kept."""
    texts = [f"passage {i}: " + "the quick brown fox jumps over the lazy dog " * (2 + i % 12) for i in
             range(PROBE_TEXTS)]

    def best(fn) -> float:
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_torch = best(lambda: st_model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False))
    t_onnx = best(lambda: enc.encode(texts, normalize_embeddings=True))
    return {"torch_s": round(t_torch, 4), "onnx_s": round(t_onnx, 4), "onnx_faster": t_onnx < t_torch,
            "load": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def fast_encoder(st_model: Any, name: str, model_dir: str, home: Path, device: str = "cpu") -> Any:
    """The ONNX encoder when it applies and is faster here, else the sentence-transformers model."""
    forced = os.environ.get("ADVISOR_EMBED_BACKEND", "").strip().lower()
    if forced == "torch" or device != "cpu" or not supported(st_model):
        return st_model
    folder = Path(home) / "onnx" / f"{_slug(name)}-{weights_hash(st_model, model_dir)}"
    path = folder / "model.onnx"
    try:
        if not path.exists():
            export(st_model, path)
        enc = OnnxSentenceEncoder(path, st_model)
    except Exception:  # noqa: BLE001 - no onnx package, an exporter limit: PyTorch still works
        return st_model
    if forced == "onnx":
        return enc
    probe_file = folder / "probe.json"
    try:
        probe = json.loads(probe_file.read_text())
    except (OSError, ValueError):
        probe = _probe(st_model, enc)
        try:
            atomic_write_json(probe_file, probe)
        except OSError:
            pass
    return enc if probe.get("onnx_faster") else st_model


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[-60:]
