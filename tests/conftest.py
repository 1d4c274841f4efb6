"""Test-wide fixtures: an isolated advisor home, the real bundled model cached once, no network.

* ADVISOR_HOME points at a temp folder per session; only the converted bundled model is shared
  across sessions (in .advisor-home/models, git-ignored) because converting it costs ~25 s.
* Every outbound socket is blocked for the whole suite (loopback stays allowed, for the Chroma
  server test). A blocked attempt raises *and* fails the test that made it, even when a library
  swallows the exception (telemetry clients do).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ADVISOR_DATA", ROOT.parent / "shared" / "data"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

# ---------------------------------------------------------------------------------------------
# network guard

ATTEMPTS: list[str] = []


class NetworkBlocked(OSError):
    pass


def _is_loopback(host) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check(sock, address) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        ATTEMPTS.append(f"connect {address!r}")
        raise NetworkBlocked(f"network access blocked in tests: {address!r}")


def _guarded_connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        ATTEMPTS.append(f"resolve {host!r}")
        raise NetworkBlocked(f"DNS lookup blocked in tests: {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def no_network():
    """Fails any test during which something tried to leave the machine."""
    start = len(ATTEMPTS)
    yield
    tried = ATTEMPTS[start:]
    if tried:
        pytest.fail(f"network access attempted: {tried[:3]}")


# ---------------------------------------------------------------------------------------------
# advisor home


@pytest.fixture(scope="session", autouse=True)
def advisor_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("advisor-home")
    shared_models = Path(os.environ.get("ADVISOR_TEST_MODELS", ROOT / ".advisor-home" / "models"))
    shared_models.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(shared_models, target_is_directory=True)
    os.environ["ADVISOR_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def smollm(advisor_home):
    """The real bundled SmolLM2, converted once and loaded once per session."""
    from advisor.models import load_llm

    return load_llm("bundled:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_llm(advisor_home):
    """A 2-layer random Llama with the real tokenizer: a training loop's mechanics in a fraction of
    a second (hidden 32, MLP 64, 4 heads of 8, 2 key/value heads, tied embeddings)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from advisor.models import LoadedLLM, load_tokenizer

    tok = load_tokenizer("bundled:smollm2-135m-instruct")
    tok.padding_side = "left"  # as load_llm sets it
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    return LoadedLLM("tiny", "", model, tok, "cpu", sum(p.numel() for p in model.parameters()))


@pytest.fixture(scope="session")
def generator(smollm):
    from pipelines.generation import Generator

    return Generator(smollm, batch_size=8)


@pytest.fixture
def write(tmp_path):
    """write("name", text) -> path: a file in this test's temp folder."""

    def _write(name: str, text: str | bytes) -> Path:
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        return p

    return _write
