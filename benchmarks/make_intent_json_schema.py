"""Write benchmarks/tasks/intent_json.schema.json from the Banking77 subset's labels.json.

The intent_json task (benchmarks/tasks/intent_json.yaml) reads the messages and gold labels
from ../shared/data/banking77 at run time; the only derived file is this schema: a JSON object
with exactly one field, `intent`, whose value is one of the 20 labels. Rerun after the data
changes:  python benchmarks/make_intent_json_schema.py [path/to/banking77/labels.json]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("ADVISOR_DATA", HERE.parents[1] / "shared" / "data"))


def schema(labels: list[str]) -> dict:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Routed customer message",
        "type": "object",
        "properties": {"intent": {"type": "string", "enum": sorted(labels)}},
        "required": ["intent"],
        "additionalProperties": False,
    }


def main(argv: list[str]) -> None:
    labels_file = Path(argv[0]) if argv else DATA / "banking77" / "labels.json"
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    out = HERE / "tasks" / "intent_json.schema.json"
    out.write_text(json.dumps(schema(labels), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(labels)} intents from {labels_file})")


if __name__ == "__main__":
    main(sys.argv[1:])
