"""The record a pipeline hands the engine about what it consumed (tokens, training, memory).

It lives in advisor/ (light, no heavy imports) because the engine, the catalogue's cost inputs
and the cost model read it; pipelines build it (pipelines.base re-exports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Usage:
    """What a pipeline consumed, per request and to set up: the cost model's inputs.

    Typed so the engine, the cost model and the reports read one record instead of guessing
    string keys; ``extra`` carries pipeline-specific figures (steps, learning rate, index
    chunks) that reports show but nothing prices. ``to_dict()`` is what report.json holds.
    """

    prompt_tokens_mean: float = 0.0
    output_tokens_mean: float = 0.0
    query_tokens_mean: float | None = None  # rag: text embedded per request
    corpus_tokens: float | None = None  # rag: text embedded once, to build the index
    train_tokens: float | None = None  # baseline: train text embedded once
    train_tokens_total: float | None = None  # fine-tune: tokens trained on, all epochs
    trainable_params: int | None = None
    train_seconds: float | None = None
    device_hardware: str | None = None  # the cost table's name of the training device (None: unknown card)
    cpu_load_per_core: float | None = None  # load beside a CPU training run (contention)
    train_seq_len: float | None = None
    peak_memory_gb: float | None = None
    model_shape: dict[str, int] | None = None  # n_params, n_layers, hidden of the model that ran
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.extra}

    @classmethod
    def from_dict(cls, d: "dict[str, Any] | Usage | None") -> "Usage":
        if isinstance(d, Usage):
            return d
        d = dict(d or {})
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: d.pop(k) for k in list(d) if k in known}, extra=d)
