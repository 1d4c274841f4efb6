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
