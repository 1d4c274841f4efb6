"""What a run ran on (versions, device, git commit) and the secret filter for anything we write.

Versions come from package metadata, not imports, so recording them costs nothing.
"""

from __future__ import annotations

import json
import functools
import os
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__

PACKAGES = (
    "torch", "transformers", "peft", "accelerate", "sentence-transformers", "chromadb", "langchain",
    "langchain-core", "langchain-chroma", "numpy", "scikit-learn", "scipy",
)
SECRET_NAME = re.compile(
    r"(_API_KEY|_TOKEN|_SECRET|_PASSWORD|_ACCESS_KEY|_SECRET_KEY)$|^(HF_TOKEN|OPENAI_API_KEY)$", re.I
)


def versions() -> dict[str, str | None]:
    return dict(_versions())


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def git_commit(path: Path | None = None) -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=path or Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def environment(device: str | None = None) -> dict[str, Any]:
    return {
        "advisor": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "device": device,
        "git_commit": git_commit(),
        "packages": versions(),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
    }


def secret_values() -> list[str]:
    """Values of environment variables that look like secrets (long enough to be real)."""
    return [v for k, v in os.environ.items() if SECRET_NAME.search(k) and v and len(v) >= 6]


def redact(text: str) -> str:
    for value in sorted(secret_values(), key=len, reverse=True):
        text = text.replace(value, "***")
        escaped = json.dumps(value, ensure_ascii=False)[1:-1]  # the form it takes inside a JSON string
        if escaped != value:
            text = text.replace(escaped, "***")
    return text


# Terminal control sequences: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST: window titles,
# hyperlinks, clipboard writes), DCS/SOS/PM/APC strings, two-byte ESC sequences, 8-bit CSI.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?|\x9b[0-?]*[ -/]*[@-~]"
)
# other C0/C1 controls (\t and \n kept), DEL, and bidirectional overrides that reorder text
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_control(text: str) -> str:
    """Text with every terminal escape sequence and control character removed: data (a label, a
    model output, a path) must never set a terminal's title, clear its screen or move its cursor."""
    if text.isprintable():  # the common case: nothing to do, and cheap
        return text
    return _CONTROLS.sub("", _ESCAPES.sub("", text))


def shown(obj: Any, escape=None) -> Any:
    """A copy of a report (or any JSON-like value) fit to show: every string redacted, then
    stripped of control sequences, then escaped for the output format (html.escape, ...) — in
    that order, so a secret holding `&<>"'` is found before escaping changes how it is spelt."""
    values = secret_values()

    def one(text: str) -> str:
        for value in sorted(values, key=len, reverse=True):
            text = text.replace(value, "***")
        text = strip_control(text)
        return escape(text) if escape else text

    def walk(x: Any) -> Any:
        if isinstance(x, str):
            return one(x)
        if isinstance(x, dict):
            return {one(k) if isinstance(k, str) else k: walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        return x

    return walk(obj)
