"""The Pipeline protocol and the records every pipeline returns.

A pipeline turns eval examples into predictions and says what that cost (tokens, seconds,
memory). Scoring, statistics and costs happen outside, identically for every pipeline, so the
comparison stays fair. Pipelines never print: they report progress through `ctx.progress`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

from advisor.usage import Usage

if TYPE_CHECKING:  # pragma: no cover
    from advisor.data import Example, TaskData
    from advisor.models import LoadedLLM
    from advisor.spec import TaskSpec

    from .generation import Generator

# progress(task description, done, total); total None = indeterminate
ProgressFn = Callable[[str, int, "int | None"], None]


def no_progress(task: str, done: int, total: int | None) -> None:
    return None


@dataclass
class Prediction:
    id: str
    output: str  # the answer that is scored (a label for choices decoding)
    prompt_tokens: int
    output_tokens: int
    raw: str | None = None  # free text before extraction, when it differs from output
    extra: dict[str, Any] = field(default_factory=dict)  # retrieved ids, label log-probs, ...

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PipelineOutput:
    predictions: list[Prediction]
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    usage: Usage = field(default_factory=Usage)
    details: dict[str, Any] = field(default_factory=dict)  # pipeline-specific (retrieval, loss curve)
    notes: list[str] = field(default_factory=list)


@dataclass
class RunContext:
    """What a pipeline may use. `llm`/`generator` are the selected base model's."""

    spec: "TaskSpec"
    data: "TaskData"
    llm: "LoadedLLM | None" = None
    generator: "Generator | None" = None
    progress: ProgressFn = no_progress
    run_dir: Path | None = None
    cache_dir: Path | None = None


class Pipeline(Protocol):
    name: str

    def prepare(self, ctx: RunContext) -> None:
        """Build what prediction needs (an index, an adapter); may be slow."""

    def predict(self, examples: "list[Example]") -> PipelineOutput:
        """Predictions for `examples`, in order."""


class SkipPipeline(Exception):
    """Raised by prepare() when the pipeline does not apply (no corpus, no train set)."""
