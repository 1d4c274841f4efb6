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
