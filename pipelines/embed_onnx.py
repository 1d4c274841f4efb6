"""The embedder through ONNX Runtime or OpenVINO on CPU: the same MiniLM, exported from its local weights.

Embedding the corpus bounds a RAG index build (README: ~126 passages/s with PyTorch on the two
cores; 10k chunks in 30 s needs ~2.7x that). Measured on 2,000 squad_rag chunks in one process,
alternating, best of 3, this session alone on the machine (load ~1.8; issue 15 embed note): ONNX
Runtime fp32 1.11x, OpenVINO fp32 1.31x, OpenVINO bf16 2.23x, ONNX Runtime int8 (dynamic,
per-channel) 2.74x PyTorch; with other work on the cores (load ~4) PyTorch suffers most and the
same ratios were 1.70x, 2.13x, 3.73x, 2.99x.

* **Backends.** ``onnx``: ONNX Runtime, fp32; cosine to sentence-transformers' vectors >= 0.99999.
  ``openvino``: OpenVINO's CPU plugin on the same exported graph, in bf16 where the CPU has bf16
  units (AVX512-BF16/AMX; OpenVINO's own default there), else fp32. bf16 rounds weights and
  activations to 8 mantissa bits but accumulates in fp32: the pooled, normalised vectors keep
  cosine >= 0.99995 to fp32 (min over 1,470 squad_rag chunks, passages and questions) and recall@1/@4
  and MRR on squad_rag are unchanged — a near-exact trade, so it may be chosen automatically.
  Two single-thread streams fed by an asynchronous queue (``OpenVinoSentenceEncoder``) add 8-16 %.
* **Chosen automatically** on CPU, for a model that is one transformer with mean pooling (and
  optionally normalisation) — MiniLM's shape — after a one-time probe on the machine: 64 texts
  through PyTorch and every available backend (alternating, best of three); the fastest whose vectors keep
  cosine >= ``MIN_COSINE`` to PyTorch's on the probe texts is kept, recorded in ``probe.json`` beside
  the export. ``ADVISOR_EMBED_BACKEND=torch|onnx|openvino`` forces one;
  ``ADVISOR_EMBED_PRECISION=f32|bf16`` forces OpenVINO's precision.
* **int8 is opt-in only**: ``ADVISOR_EMBED_PRECISION=int8`` (ONNX Runtime, dynamic quantisation
  with per-channel int8 weights, ``quantize_dynamic`` on the export). ~3x PyTorch here, squad_rag
  recall unchanged, but cosine to fp32 only >= ~0.986, so rankings can move on near ties: never
  picked automatically, and its vectors get their own Chroma collections (``vector_tag``).
  Per-tensor weights (onnxruntime's default) fall to cosine 0.88 and lose squad_rag recall@1: not
  offered.
* **Export** offline from the sentence-transformers model already loaded (``torch.onnx.export``, the
  TorchScript exporter, opset 17; needs the ``onnx`` package), once per model, cached under
  ``<advisor home>/onnx/<name>-<hash of the weights' files>/model.onnx``, written to a temporary
  name and renamed. Anything unexpected (no onnx/openvino package, an export error, another model
  shape) keeps PyTorch.
* Texts are sorted by length over the whole call (not per batch of 64) so each batch pads little.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Sequence

from advisor.atomic import atomic_write_json

ONNX_VERSION = 1  # bump when the export changes
PROBE_VERSION = 3  # bump when the probe's choice changes (2: OpenVINO and the cosine check; 3: its streams)
BATCH = 32  # 2 cores: 32 a little faster than 64 or 128 for ONNX Runtime and OpenVINO (issue 15 notes)
OV_BATCH = 16  # OpenVINO's streams: 8-16 per request beat 32-64 with two streams (issue 15 notes)
OV_STREAMS = 2  # one per core on the 2-core machine; more streams than cores only contend
OV_CALL = 256  # texts per encode() call (progress step): 16 requests for the queue's 4 slots
PROBE_TEXTS = 64
PROBE_ROUNDS = 3
# The automatic choice keeps only near-exact backends: OpenVINO bf16 measured >= 0.99995 on real
# squad_rag text and >= 0.9999 on the probe; int8 (~0.986) stays below it, fp32 ONNX is ~1 - 1e-7.
MIN_COSINE = 0.9995
BACKENDS = ("onnx", "openvino")


class OnnxSentenceEncoder:
    """What SentenceEmbeddings uses of a SentenceTransformer (encode, tokenizer, max_seq_length)."""

    backend = "onnx"
    vector_tag = ""  # non-empty when the vectors are not (near) the fp32 model's: see int8
    batch_size = BATCH  # what SentenceEmbeddings batches by for this encoder

    def __init__(self, path: Path, st_model: Any, threads: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or _threads()
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.inputs = {i.name for i in self.session.get_inputs()}
        self._describe(st_model)

    def _describe(self, st_model: Any) -> None:
        self.tokenizer = st_model.tokenizer
        self.max_seq_length = st_model.max_seq_length
        self.normalize = _has_normalize(st_model)
        dim = getattr(st_model, "get_embedding_dimension", None) or st_model.get_sentence_embedding_dimension
        self._dim = int(dim())

    def get_embedding_dimension(self) -> int:
        return self._dim

    get_sentence_embedding_dimension = get_embedding_dimension  # the name rag_index calls

    def _hidden(self, feed: dict) -> Any:
        return self.session.run(None, feed)[0]

    def _feed(self, batch: list[str]) -> tuple[dict, Any]:
        """The graph's inputs for a batch of texts (token_type_ids zero when the tokenizer has
        none), and its attention mask for pooling."""
        import numpy as np

        x = self.tokenizer(batch, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="np")
        feed = {k: x[k].astype("int64") for k in ("input_ids", "attention_mask", "token_type_ids") if k in self.inputs}
        if "token_type_ids" in self.inputs and "token_type_ids" not in feed:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        return feed, x["attention_mask"]

    @staticmethod
    def _pool(hidden: Any, mask: Any, normalize: bool) -> Any:
        """Mean over the real tokens (sentence-transformers' mean pooling), then L2 if asked."""
        import numpy as np

        m = mask[..., None].astype("float32")
        e = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
        return e / np.clip(np.linalg.norm(e, axis=1, keepdims=True), 1e-12, None) if normalize else e

    def encode(self, texts: Sequence[str], batch_size: int = BATCH, normalize_embeddings: bool = False, **_: Any):
        import numpy as np

        texts = list(texts)
        out = np.zeros((len(texts), self._dim), dtype="float32")
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            feed, mask = self._feed([texts[i] for i in idx])
            out[idx] = self._pool(self._hidden(feed), mask, normalize_embeddings or self.normalize)
        return out


class Int8SentenceEncoder(OnnxSentenceEncoder):
    """ONNX Runtime on the per-channel int8 quantisation of the export (opt-in; see the module doc)."""

    backend = "onnx-int8"
    vector_tag = "int8"


class OpenVinoSentenceEncoder(OnnxSentenceEncoder):
    """The same exported graph through OpenVINO's CPU plugin: one stream per core (up to
    ``OV_STREAMS``), fed by an asynchronous queue while the next batch is tokenised.

    Measured on 2,000 squad_rag chunks, bf16, alternating, best of two (load ~2, issue 15 notes):
    two single-thread streams with four requests in flight and batches of 16 embed 340-353
    passages/s against 303-309 for one two-thread stream with batches of 32 (+8-16 % in separate
    processes, alternating); cosine to the one-stream vectors >= 0.99998 (only the batches'
    padding differs)."""

    # texts per encode() call from SentenceEmbeddings (its progress step): the queue needs several
    # requests per call to keep both streams busy; each request holds OV_BATCH of them
    batch_size = OV_CALL

    def __init__(self, path: Path, st_model: Any, threads: int | None = None, precision: str | None = None):
        import openvino as ov

        core = ov.Core()
        self.precision = precision or openvino_precision(core)
        self.backend = f"openvino-{self.precision}"
        threads = threads or _threads()
        streams = max(1, min(OV_STREAMS, threads))
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", {
            "INFERENCE_PRECISION_HINT": self.precision, "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY", "NUM_STREAMS": streams})
        self.inputs = {i.get_any_name() for i in self.compiled.inputs}
        self.queue = ov.AsyncInferQueue(self.compiled, 2 * streams)
        self._lock = threading.Lock()  # one queue: encode() calls from several threads take turns
        self._describe(st_model)

    def encode(self, texts: Sequence[str], batch_size: int = OV_BATCH, normalize_embeddings: bool = False, **_: Any):
        """Vectors for `texts`; `batch_size` is ignored: requests hold OV_BATCH texts each."""
        import numpy as np

        texts = list(texts)
        out = np.zeros((len(texts), self._dim), dtype="float32")
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        norm = normalize_embeddings or self.normalize
        errors: list[BaseException] = []

        def pooled(request: Any, job: tuple) -> None:  # runs on OpenVINO's thread as each batch finishes
            try:
                idx, mask = job
                out[idx] = self._pool(request.get_output_tensor(0).data, mask, norm)
            except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
                errors.append(exc)

        with self._lock:
            self.queue.set_callback(pooled)
            for s in range(0, len(order), OV_BATCH):
                idx = order[s: s + OV_BATCH]
                feed, mask = self._feed([texts[i] for i in idx])
                self.queue.start_async(feed, (idx, mask))
            self.queue.wait_all()
        if errors:
            raise errors[0]
        return out


def openvino_precision(core: Any = None) -> str:
    """bf16 where the CPU has bf16 units (OpenVINO's own default there), else f32."""
    forced = os.environ.get("ADVISOR_EMBED_PRECISION", "").strip().lower()
    if forced in ("f32", "bf16"):
        return forced
    if core is None:
        import openvino as ov

        core = ov.Core()
    return "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f32"


def _threads() -> int:
    import torch

    return torch.get_num_threads()


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


def quantize_int8(path: Path) -> Path:
    """Dynamic int8 quantisation of the export's MatMuls and embedding table, weights per channel
    (per-tensor weights measured cosine 0.88 to fp32; per-channel 0.986), cached beside it."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import logging

    out = path.with_name("model-int8-pc.onnx")
    if not out.exists():
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        root = logging.getLogger()
        level, root.level = root.level, logging.ERROR  # its "consider pre-processing" advice, per call
        try:
            quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        tmp.replace(out)
    return out


def _probe_texts() -> list[str]:
    return [f"passage {i}: " + "the quick brown fox jumps over the lazy dog " * (2 + i % 12) for i in
            range(PROBE_TEXTS)]


def _probe(st_model: Any, encoders: dict[str, OnnxSentenceEncoder]) -> dict:
    """Seconds for the same texts through PyTorch and each backend, and each backend's smallest
    cosine to PyTorch's vectors; the fastest near-exact one is chosen.

    One warm-up call each, then ``PROBE_ROUNDS`` rounds in alternating order, best per backend: a
    burst of other work on the cores then slows every backend's round alike instead of deciding
    alone (a back-to-back probe picked PyTorch once at load ~3, issue 15 embed note)."""
    import numpy as np

    texts = _probe_texts()
    runs = {"torch": lambda: st_model.encode(texts, batch_size=64, normalize_embeddings=True,
                                             show_progress_bar=False)}
    runs |= {name: (lambda e: lambda: e.encode(texts, normalize_embeddings=True))(enc)
             for name, enc in encoders.items()}
    seconds: dict[str, list[float]] = {k: [] for k in runs}
    vecs = {k: fn() for k, fn in runs.items()}  # warm-up; these are also the vectors compared
    for r in range(PROBE_ROUNDS):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t0 = time.perf_counter()
            runs[name]()
            seconds[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in seconds.items()}
    probe: dict[str, Any] = {"v": PROBE_VERSION, "candidates": sorted(encoders), "torch_s": round(best["torch"], 4),
                             "min_cosine": {}, "backend": {}}
    chosen = "torch"
    for name, enc in encoders.items():
        cos = float((np.asarray(vecs[name]) * np.asarray(vecs["torch"])).sum(1).min())
        probe[f"{name}_s"], probe["min_cosine"][name], probe["backend"][name] = round(best[name], 4), round(cos, 7), \
            enc.backend
        if cos >= MIN_COSINE and best[name] < best[chosen]:
            chosen = name
    probe["chosen"] = chosen
    probe["onnx_faster"] = chosen == "onnx"  # the v1 key, kept for readers of old probe files
    probe["load"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return probe


def _available() -> list[str]:
    """Backends whose packages are installed (OpenVINO is optional)."""
    return [b for b in BACKENDS if importlib.util.find_spec(b if b == "openvino" else "onnxruntime")]


def fast_encoder(st_model: Any, name: str, model_dir: str, home: Path, device: str = "cpu") -> Any:
    """The fastest near-exact encoder here (probed once), a forced one, or the sentence-transformers model."""
    forced = os.environ.get("ADVISOR_EMBED_BACKEND", "").strip().lower()
    precision = os.environ.get("ADVISOR_EMBED_PRECISION", "").strip().lower()
    if forced == "torch" or device != "cpu" or not supported(st_model):
        return st_model
    folder = Path(home) / "onnx" / f"{_slug(name)}-{weights_hash(st_model, model_dir)}"
    path = folder / "model.onnx"

    def make(backend: str) -> OnnxSentenceEncoder:
        if backend == "openvino":
            return OpenVinoSentenceEncoder(path, st_model)
        return OnnxSentenceEncoder(path, st_model)

    try:
        if not path.exists():
            export(st_model, path)
        if precision == "int8":  # explicit only: never the automatic choice
            return Int8SentenceEncoder(quantize_int8(path), st_model)
        if forced in BACKENDS:
            return make(forced)
    except Exception:  # noqa: BLE001 - no onnx/openvino package, an exporter limit: PyTorch still works
        return st_model
    candidates = _available()
    probe_file = folder / "probe.json"
    try:
        probe = json.loads(probe_file.read_text())
        if probe.get("v") != PROBE_VERSION or probe.get("candidates") != candidates:
            raise ValueError("stale probe")
    except (OSError, ValueError):
        encoders = {}
        for b in candidates:
            try:
                encoders[b] = make(b)
            except Exception:  # noqa: BLE001 - this backend cannot run here; the others may
                pass
        probe = _probe(st_model, encoders)
        probe["candidates"] = candidates
        try:
            atomic_write_json(probe_file, probe)
        except OSError:
            pass
        return encoders.get(probe["chosen"], st_model)
    try:
        return make(probe["chosen"]) if probe.get("chosen") in BACKENDS else st_model
    except Exception:  # noqa: BLE001
        return st_model


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)[-60:]
