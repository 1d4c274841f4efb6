"""Model facts without weights: parameter count (total and active), shape, context, pretraining tokens.

Why: "is a fine-tune worth the GPU spend?" bites at 1-70B parameters, and a team prices such a
model before downloading it. The facts come, in order, from: the bundled table; a local folder's
config.json (or the Hugging Face cache's), counted by instantiating the architecture on the meta
device (accelerate's init_empty_weights: no memory, no weights); the shipped, dated table
`data/model_facts.json` (each row with its source); and `params:` given in the task. Pretraining
token counts come only from the shipped table (published figures) or the task.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import AdvisorError

TABLE_FILE = "model_facts.json"


@dataclass(frozen=True)
class ModelFacts:
    name: str
    params: int
    active_params: int  # = params for dense models; experts used per token for mixture-of-experts
    n_layers: int = 0
    hidden: int = 0
    kv_heads: int | None = None
    vocab: int | None = None
    context: int | None = None
    pretrain_tokens: float | None = None
    source: str = ""  # where params/shape came from
    tokens_source: str | None = None  # where pretrain_tokens came from (None: unknown)
    config_dir: str | None = None  # a local folder (or cached hub id) holding config + tokenizer

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# counting from a config (meta device)

def _expert_numbers(cfg: Any) -> tuple[int, int]:
    """(experts per layer, experts used per token); (0, 0) for a dense model."""
    n = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None) or 0
    k = getattr(cfg, "num_experts_per_tok", None) or 0
    return int(n or 0), int(k or 0)


def count_config(cfg: Any, trust_remote_code: bool = False) -> tuple[int, int]:
    """(total, active) parameters of a causal LM config, built on the meta device (no memory).

    Active: every expert's weights count k/n of their total (k experts used per token out of n).
    Tied embeddings count once (`parameters()` yields shared tensors once).
    """
    import warnings

    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with init_empty_weights():
            model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
        if hasattr(model, "tie_weights"):
            model.tie_weights()  # tied input/output embeddings are one tensor in the real model
    total = experts = 0
    for name, p in model.named_parameters():
        total += p.numel()
        if ".experts." in f".{name}." and "shared_expert" not in name:
            experts += p.numel()
    n, k = _expert_numbers(getattr(cfg, "get_text_config", lambda: cfg)())
    active = total - experts + (experts * k // n if n and k else experts)
    return int(total), int(active)


def _text_config(cfg: Any) -> Any:
    return cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg


def _shape(cfg: Any) -> dict:
    t = _text_config(cfg)
    return {
        "n_layers": int(getattr(t, "num_hidden_layers", 0) or 0),
        "hidden": int(getattr(t, "hidden_size", 0) or 0),
        "kv_heads": getattr(t, "num_key_value_heads", None) or getattr(t, "num_attention_heads", None),
        "vocab": getattr(t, "vocab_size", None),
        "context": getattr(t, "max_position_embeddings", None),
    }


def config_from_dict(d: dict) -> Any:
    """A transformers config from the dict of a config.json (its `model_type` picks the class)."""
    from transformers import AutoConfig

    d = dict(d)
    return AutoConfig.for_model(d.pop("model_type"), **d)


def facts_from_config_dict(name: str, d: dict, source: str) -> ModelFacts:
    cfg = config_from_dict(d)
    total, active = count_config(cfg)
    return ModelFacts(name=name, params=total, active_params=active, source=source, **_shape(cfg))


def _safetensors_count(folder: Path) -> int | None:
    """Parameter count from safetensors headers (no tensor read), when weights are present."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    n = 0
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                shape = sf.get_slice(key).get_shape()
                size = 1
                for s in shape:
                    size *= int(s)
                n += size
    return n


def facts_from_folder(name: str, folder: Path, trust_remote_code: bool = False) -> ModelFacts:
    """Facts of a local folder (or a cached hub snapshot) holding a config.json."""
    from transformers import AutoConfig

    from .models import check_local_config

    check_local_config(folder, name, "llm")  # unreadable JSON: the same one line as assess's preflight
    try:
        cfg = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        total, active = count_config(cfg, trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        raise AdvisorError(
            f"its config.json cannot be read as a causal language model ({type(e).__name__}: {str(e)[:120]})",
            where=f"model '{name}'", fix="point models.candidates at a folder with a transformers config.json, "
            "or give the model's size as `params:` in the task",
        ) from None
    return ModelFacts(name=name, params=total, active_params=active, source=f"config.json in {folder} (meta-device count)",
                      config_dir=str(folder), **_shape(cfg))


# ---------------------------------------------------------------------------------------------
# the shipped table

@lru_cache(maxsize=1)
def table() -> dict:
    """The dated table of well-known open models (package data)."""
    text = resources.files("advisor").joinpath("data", TABLE_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def _table_index() -> dict[str, dict]:
    out = {}
    for row in table()["models"]:
        for key in [row["id"], *row.get("aliases", [])]:
            out[key.lower()] = row
    return out


def table_row(name: str) -> dict | None:
    return _table_index().get(name.strip().lower())


def facts_from_row(name: str, row: dict) -> ModelFacts:
    c = row["config"]
    return ModelFacts(
        name=name, params=int(row["params"]), active_params=int(row.get("active_params") or row["params"]),
        n_layers=int(c.get("num_hidden_layers", 0)), hidden=int(c.get("hidden_size", 0)),
        kv_heads=c.get("num_key_value_heads") or c.get("num_attention_heads"), vocab=c.get("vocab_size"),
        context=row.get("context") or c.get("max_position_embeddings"),
        pretrain_tokens=row.get("pretrain_tokens"),
        source=f"advisor's model table ({table()['updated']}; config: {row['config_source']})",
        tokens_source=row.get("tokens_source"),
    )


# ---------------------------------------------------------------------------------------------
# resolution

def _cached_hub_dir(name: str) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(name, "config.json")
    except Exception:  # not shaped like an id, or no cache
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def _override(f: ModelFacts | None, name: str, given: Any) -> ModelFacts | None:
    """Apply `params:` (and friends) from the task over whatever was found."""
    if given is None:
        return f
    vals = {k: v for k, v in given.model_dump().items() if v is not None} if hasattr(given, "model_dump") else dict(given)
    if f is None:
        if not vals.get("params"):
            return None
        p = int(vals["params"])
        f = ModelFacts(name=name, params=p, active_params=int(vals.get("active_params") or p), source="params: in the task")
        vals.pop("params")
        vals.pop("active_params", None)
    repl = {}
    for key in ("params", "active_params", "n_layers", "hidden", "context"):
        if key in vals:
            repl[key] = int(vals[key])
    if "params" in repl and "active_params" not in repl and f.active_params == f.params:
        repl["active_params"] = repl["params"]
    if "pretrain_tokens" in vals:
        repl["pretrain_tokens"] = float(vals["pretrain_tokens"])
        repl["tokens_source"] = "pretrain_tokens: in the task"
    if repl.keys() & {"params", "n_layers", "hidden"}:
        repl["source"] = f"{f.source}; overridden by the task" if f.source != "params: in the task" else f.source
    from dataclasses import replace

    return replace(f, **repl)


def model_facts(name: str, given: Any = None, trust_remote_code: bool = False) -> ModelFacts:
    """Facts of a candidate, without loading weights; one clear line when nothing is known."""
    from .models import BUNDLED, converted_dir

    f: ModelFacts | None = None
    b = BUNDLED.get(name)
    row = table_row(name)
    if b is not None and b.kind == "llm":
        src = converted_dir(name)
        f = ModelFacts(name=name, params=b.params, active_params=b.params, n_layers=b.n_layers, hidden=b.hidden,
                       source="bundled model", config_dir=str(src) if (src / "config.json").exists() else None)
        row = row or table_row(b.description.split(" ", 1)[0])
    else:
        try:
            p = Path(name).expanduser()
            folder = p if (p / "config.json").exists() else None
        except (OSError, ValueError):
            folder = None
        folder = folder or (None if name.startswith((".", "/", "~")) else _cached_hub_dir(name))
        if folder is not None:
            f = facts_from_folder(name, folder, trust_remote_code)
        elif row is not None:
            f = facts_from_row(name, row)
    if f is not None and row is not None and f.pretrain_tokens is None and row.get("pretrain_tokens"):
        from dataclasses import replace

        f = replace(f, pretrain_tokens=float(row["pretrain_tokens"]), tokens_source=row.get("tokens_source"))
    f = _override(f, name, given)
    if f is None:
        raise AdvisorError(
            "is not a local folder, not in the Hugging Face cache and not in advisor's model table, so its size is unknown",
            where=f"model '{name}'",
            fix="point it at a local folder holding its config.json (and tokenizer), or give its size in the task: "
            f"models.candidates: [{{name: {name}, params: 8.0e9}}]",
        )
    return f


def known_models() -> list[dict]:
    return list(table()["models"])


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "1") not in ("0", "false", "False")
