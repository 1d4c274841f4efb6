"""Small builders shared by the test modules (tests/ is on sys.path under pytest's default
import mode): the tiny classification task and its rows."""

import json

ROWS = [{"text": "great movie", "label": "positive"}, {"text": "awful movie", "label": "negative"},
        {"text": "loved it", "label": "positive"}, {"text": "hated it", "label": "negative"}]

TINY_TASK = """\
name: tiny
type: classification
labels: [negative, positive]
data:
  eval: eval.jsonl
target: {metric: accuracy, min: 0.8}
"""


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def free_port() -> int:
    """A loopback port nobody listens on now (for a real server a test starts)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc, timeout: float = 15) -> None:
    """Stop a server a test started: SIGTERM, then SIGKILL if it has not exited in time."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
