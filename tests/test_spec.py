"""task.yaml: a table of bad files -> the exact one-line message, and what good files turn into.

Every message names the file (and line or field), what is wrong and how to fix it. The texts are
part of the interface: a change here is a change users see, so the table pins them exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from advisor import spec
from advisor.errors import AdvisorError
from helpers import TINY_TASK

BASE = TINY_TASK
QA = BASE.replace("type: classification", "type: qa").replace("labels: [negative, positive]\n", "").replace(
    "metric: accuracy", "metric: token_f1"
)

ALLOWED_TOP = (
    "name, type, decoding, instructions, labels, data, models, target, budget, hardware, prompting, finetune, "
    "rag, baseline, format, judge, decision, seed"
)
TASK_FIX = "write 'key: value' lines such as 'name:', 'type:', 'data:', 'target:' (see examples/)"

# (case id, task.yaml text, exact message)
BAD = [
    ("yaml-syntax", "name: tiny\ntype: [classification\n",
     "task.yaml:3:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence "
     "started at line 2, column 7); fix the indentation or quoting there."),
    ("yaml-tab", "name: tiny\n\ttype: qa\n",
     "task.yaml:2:1: YAML syntax error: found character '\\t' that cannot start any token; "
     "fix the indentation or quoting there."),
    ("not-a-mapping", "- name\n- type\n", f"task.yaml: the task file is a list, not a mapping; {TASK_FIX}."),
    ("plain-text", "hello\n", f"task.yaml: the task file is text, not a mapping; {TASK_FIX}."),
    ("empty", "", f"task.yaml: the task file is empty, not a mapping; {TASK_FIX}."),
    ("comments-only", "# nothing yet\n", f"task.yaml: the task file is empty, not a mapping; {TASK_FIX}."),
    ("key-not-text", BASE + "1: x\n", "task.yaml: key 1 is not text; use names such as 'name' or 'data'."),
    ("unknown-key", BASE.replace("name:", "nme:"), "task.yaml: unknown key 'nme': did you mean 'name'?"),
    ("unknown-nested-key", BASE.replace("eval:", "evl:"),
     "task.yaml: unknown key 'evl' in 'data': did you mean 'eval'?"),
    ("unknown-fields-key", BASE.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  fields: {inputs: text}\n"),
     "task.yaml: unknown key 'inputs' in 'data.fields': did you mean 'input'?"),
    ("unknown-key-no-match", BASE + "colour: red\n",
     f"task.yaml: unknown key 'colour': not a setting here; remove it, or use one of: {ALLOWED_TOP}."),
    ("wrong-type-number", BASE.replace("min: 0.8", "min: lots"),
     "task.yaml: field 'target.min': must be a number (got 'lots'); write a number."),
    ("wrong-type-mapping", BASE.replace("target: {metric: accuracy, min: 0.8}", "target: accuracy"),
     "task.yaml: field 'target': must be a mapping (got 'accuracy'); write 'key: value' lines under it."),
    ("wrong-type-whole-number", BASE + "prompting: {shots: 2.5}\n",
     "task.yaml: field 'prompting.shots': must be a whole number (got 2.5); write a whole number."),
    ("wrong-type-bool", BASE + "models: {trust_remote_code: maybe}\n",
     "task.yaml: field 'models.trust_remote_code': must be true or false (got 'maybe'); write true or false."),
    ("wrong-type-text", BASE.replace("metric: accuracy", "metric: [accuracy]"),
     "task.yaml: field 'target.metric': must be text, not a list; write a text value (quote it if needed)."),
    ("missing-target", BASE.replace("target: {metric: accuracy, min: 0.8}\n", ""),
     "task.yaml: field 'target': is required; add e.g. 'target: {metric: accuracy, min: 0.8}'."),
    ("missing-eval", BASE.replace("  eval: eval.jsonl\n", "  train: train.jsonl\n"),
     "task.yaml: field 'data.eval': is required; add 'eval: path/to/eval.jsonl' under 'data'."),
    ("missing-min", BASE.replace(", min: 0.8", ""),
     "task.yaml: field 'target.min': is required; add e.g. 'min: 0.8' under 'target'."),
    ("missing-name", BASE.replace("name: tiny\n", ""), "task.yaml: field 'name': is required; add e.g. 'name: my-task'."),
    ("type-typo", BASE.replace("type: classification", "type: clasification"),
     "task.yaml: field 'type': 'clasification' is not allowed; did you mean 'classification'?"),
    ("type-empty", BASE.replace("type: classification", "type:"),
     "task.yaml: field 'type': is empty; use one of: classification, qa, generation."),
    ("mode-unknown", BASE + "finetune: {mode: sometimes}\n",
     "task.yaml: field 'finetune.mode': 'sometimes' is not allowed; use one of: auto, always, never."),
    ("method-unknown", BASE + "finetune: {methods: [lora, adapter]}\n",
     "task.yaml: field 'finetune.methods.1': 'adapter' is not allowed; use one of: lora, full, prompt_tuning, ia3."),
    ("method-twice", BASE + "finetune: {methods: [ia3, lora, ia3]}\n",
     "task.yaml: field 'finetune.methods': ia3 is listed twice; list each method once."),
    ("methods-empty", BASE + "finetune: {methods: []}\n",
     "task.yaml: field 'finetune.methods': is an empty list; list at least 1 item."),
    ("methods-on-several-processes", BASE + "finetune: {methods: [lora, full], devices: 2}\n",
     "task.yaml: field 'finetune': several processes (devices > 1) train LoRA only; set methods: [lora] or devices: 1."),
    ("method-lr-typo", BASE + "finetune: {method_lr: {fulll: 0.0001}}\n",
     "task.yaml: field 'finetune.method_lr.fulll': 'fulll' is not allowed; did you mean 'full'?"),
    ("metric-of-other-type", BASE.replace("metric: accuracy", "metric: token_f1"),
     "task.yaml: field 'target.metric': 'token_f1' is not a metric of a classification task; "
     "use one of: accuracy, macro_f1, or a custom scorer module:function."),
    ("metric-unknown-qa", QA.replace("metric: token_f1", "metric: accuracy"),
     "task.yaml: field 'target.metric': 'accuracy' is not a metric of a qa task; "
     "use one of: token_f1, exact_match, contains, semantic_similarity, or a custom scorer module:function."),
    ("target-out-of-range", BASE.replace("min: 0.8", "min: 80"),
     "task.yaml: field 'target.min': 80 is outside 0..1; write a score such as 0.8."),
    ("target-nan", BASE.replace("min: 0.8", "min: .nan"),
     "task.yaml: field 'target.min': must be a finite number (got nan); write a number."),
    ("var-unset", BASE.replace("eval: eval.jsonl", "eval: ${ADVISOR_TEST_UNSET_VAR}/eval.jsonl"),
     "task.yaml: field 'data.eval': ${ADVISOR_TEST_UNSET_VAR} is not set; export ADVISOR_TEST_UNSET_VAR=... "
     "or write ${ADVISOR_TEST_UNSET_VAR:-default}."),
    ("var-unset-in-labels", BASE.replace("[negative, positive]", "${ADVISOR_TEST_UNSET_VAR}/labels.json"),
     "task.yaml: field 'labels': ${ADVISOR_TEST_UNSET_VAR} is not set; export ADVISOR_TEST_UNSET_VAR=... "
     "or write ${ADVISOR_TEST_UNSET_VAR:-default}."),
    ("negative-price", BASE + "hardware: {gpu: H100, usd_per_hour: -2}\n",
     "task.yaml: field 'hardware.usd_per_hour': must be greater than 0 (got -2); write a number above 0."),
    ("zero-requests", BASE + "budget: {requests_per_month: 0}\n",
     "task.yaml: field 'budget.requests_per_month': must be greater than 0 (got 0); write a number above 0."),
    ("negative-setup-budget", BASE + "budget: {setup_usd: -50}\n",
     "task.yaml: field 'budget.setup_usd': must be at least 0 (got -50); write 0 or more."),
    ("infinite-budget", BASE + "budget: {setup_usd: .inf}\n",
     "task.yaml: field 'budget.setup_usd': must be a finite number (got inf); write a number."),
    ("too-many-shots", BASE + "prompting: {shots: 100}\n",
     "task.yaml: field 'prompting.shots': must be at most 64 (got 100); write 64 or less."),
    ("unknown-gpu", BASE + "hardware: {gpu: H1000}\n",
     "task.yaml: field 'hardware.gpu': unknown hardware 'H1000'; did you mean 'H100'? "
     "known: H100, H200, A100-80GB, L40S, L4, A10G, T4, CPU."),
    ("labels-for-qa", QA.replace("data:", "labels: [a, b]\ndata:"),
     "task.yaml: labels are only for classification tasks; remove 'labels'."),
    ("choices-for-qa", QA.replace("data:", "decoding: choices\ndata:"),
     "task.yaml: decoding 'choices' is only for classification tasks; use 'generate'."),
    ("labels-mapping", BASE.replace("[negative, positive]", "{a: 1}"),
     "task.yaml: field 'labels': must be a list of labels or the path of a JSON file, not a mapping; "
     "write e.g. [negative, positive]."),
    ("labels-null-item", BASE.replace("[negative, positive]", "[negative, null]"),
     "task.yaml: field 'labels': item 1 (None) is not a label name; write each label as text."),
    ("bad-name", BASE.replace("name: tiny", "name: my task"),
     "task.yaml: field 'name': 'my task' is not a usable name (it names the run folder); "
     "use letters, digits, '-', '_' or '.'."),
    ("python-tag", BASE + "seed: !!python/object/apply:os.system [echo hi]\n",
     "task.yaml:7:7: the YAML tag '!!python/object/apply:os.system' is not allowed "
     "(advisor reads plain YAML data only, never Python objects); remove the tag."),
    ("bad-date", BASE.replace("name: tiny", "name: 2024-13-01"),
     "task.yaml:1:7: cannot read the value '2024-13-01' (month must be in 1..12); "
     "quote it to keep it as text, or correct it."),
    ("same-columns", BASE.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  fields: {input: text, expected: text}\n"),
     "task.yaml: field 'data.fields': input and expected are both 'text'; map them to different columns."),
    ("no-candidates", BASE + "models: {candidates: []}\n",
     "task.yaml: field 'models.candidates': is an empty list; list at least one model, "
     "e.g. bundled:smollm2-135m-instruct."),
    ("empty-candidate", BASE + "models: {candidates: ['']}\n",
     "task.yaml: field 'models.candidates': item 0 is not a model name; write e.g. bundled:smollm2-135m-instruct."),
    ("rag-overlap", BASE + "rag: {chunk_chars: 100, chunk_overlap: 100}\n",
     "task.yaml: field 'rag': chunk_overlap (100) must be smaller than chunk_chars (100); lower rag.chunk_overlap."),
    ("chroma-url", BASE + "rag: {chroma_url: 'localhost:8000'}\n",
     "task.yaml: field 'rag.chroma_url': 'localhost:8000' is not a server address; write e.g. http://localhost:8000."),
    ("eval-empty", BASE.replace("eval: eval.jsonl", "eval:"),
     "task.yaml: field 'data.eval': is empty; write a path relative to the task file."),
    ("eval-number", BASE.replace("eval: eval.jsonl", "eval: 5"),
     "task.yaml: field 'data.eval': must be a path (text), not a number; write a path relative to the task file."),
    ("eval-nul", BASE.replace("eval: eval.jsonl", 'eval: "a\\0b"'),
     "task.yaml: field 'data.eval': contains a NUL character; write a plain path."),
    ("corpus-empty-list", BASE.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  corpus: []\n"),
     "task.yaml: field 'data.corpus': is an empty list; name a .jsonl file or a folder of .md/.txt, or remove it."),
    ("unquoted-var-in-list", BASE.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  corpus: [${DOCS}/a]\n"),
     "task.yaml:6:13: YAML syntax error: expected ',' or ']', but got '{'; "
     "quote a value that uses ${VAR} inside [...] or {...}, e.g. ['${VAR}/docs']."),
    ("deeply-nested", "a: " + "[" * 600 + "\n",
     "task.yaml: YAML is nested too deeply; write a flat task file (see examples/)."),
]


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ADVISOR_TEST_UNSET_VAR", raising=False)
    return tmp_path


@pytest.mark.parametrize("text, message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_task_file_message(in_tmp, text, message):
    (in_tmp / "task.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(AdvisorError) as err:
        spec.load("task.yaml")
    assert str(err.value) == message
    assert "\n" not in message and message.startswith("task.yaml")  # one line, naming the file
    assert "; " in message or message.endswith("?")  # ...and saying how to fix it


def test_case_ids_are_unique():
    ids = [c[0] for c in BAD]
    assert len(ids) == len(set(ids))


def test_task_file_not_utf8(in_tmp):
    (in_tmp / "task.yaml").write_bytes(BASE.replace("tiny", "caf\xe9").encode("latin-1"))
    with pytest.raises(AdvisorError, match=r"^task\.yaml: not UTF-8 text \(invalid byte at offset 9\); "
                                           r"re-save it as UTF-8\.$"):
        spec.load("task.yaml")


def test_task_file_missing_or_folder(in_tmp):
    with pytest.raises(AdvisorError) as err:
        spec.load("nope.yaml")
    assert str(err.value) == "nope.yaml: no such file; check the path (see examples/ for a task file)."
    (in_tmp / "tasks").mkdir()
    with pytest.raises(AdvisorError) as err:
        spec.load("tasks")
    assert str(err.value) == "tasks: is a folder, not a task file; name the task.yaml inside it."


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_task_file_unreadable(in_tmp):
    p = in_tmp / "task.yaml"
    p.write_text(BASE)
    p.chmod(0)
    with pytest.raises(AdvisorError, match=r"^task\.yaml: cannot read \(Permission denied\); check its permissions\.$"):
        spec.load("task.yaml")


def test_unknown_key_beats_missing_field(in_tmp):
    """'nme:' means both "name is missing" and "nme is unknown": the typo hint is the useful one."""
    (in_tmp / "task.yaml").write_text(BASE.replace("name:", "nme:"))
    with pytest.raises(AdvisorError, match="did you mean 'name'"):
        spec.load("task.yaml")


# ---------------------------------------------------------------------------------------------
# good files


def load_text(folder: Path, text: str, name: str = "task.yaml") -> spec.TaskSpec:
    p = folder / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")
    return spec.load(p)


def test_paths_are_relative_to_the_task_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # cwd is not where the task lives
    text = BASE.replace("[negative, positive]", "meta/labels.json").replace(
        "  eval: eval.jsonl\n",
        "  eval: data/eval.jsonl\n  train: ../shared/train.jsonl\n  corpus: docs\n",
    )
    s = load_text(tmp_path / "tasks" / "t1", text)
    base = (tmp_path / "tasks" / "t1").resolve()
    assert s.data.eval == base / "data" / "eval.jsonl"
    assert s.data.train == base / ".." / "shared" / "train.jsonl"
    assert s.data.corpus == [base / "docs"]
    assert s.labels == base / "meta" / "labels.json"
    assert s.source == base / "task.yaml"


def test_absolute_and_home_paths_stay(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = BASE.replace("eval: eval.jsonl", "eval: /srv/data/eval.jsonl\n  train: ~/train.jsonl")
    s = load_text(tmp_path, text)
    assert s.data.eval == Path("/srv/data/eval.jsonl")
    assert s.data.train == tmp_path / "home" / "train.jsonl"


def test_var_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_TEST_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.delenv("ADVISOR_TEST_UNSET_VAR", raising=False)
    text = BASE.replace("[negative, positive]", "${ADVISOR_TEST_UNSET_VAR:-meta}/labels.json").replace(
        "  eval: eval.jsonl\n",
        "  eval: ${ADVISOR_TEST_DATA}/eval.jsonl\n"
        "  train: ${ADVISOR_TEST_UNSET_VAR:-defaults}/train.jsonl\n"
        "  corpus: ['${ADVISOR_TEST_DATA:-nowhere}/docs', '${ADVISOR_TEST_UNSET_VAR:-/abs}/kb.jsonl']\n",
    )
    s = load_text(tmp_path, text)
    assert s.data.eval == tmp_path / "elsewhere" / "eval.jsonl"  # set: the value (absolute stays)
    assert s.data.train == tmp_path.resolve() / "defaults" / "train.jsonl"  # unset: the default, then relative
    assert s.data.corpus == [tmp_path / "elsewhere" / "docs", Path("/abs/kb.jsonl")]
    assert s.labels == tmp_path.resolve() / "meta" / "labels.json"


def test_var_set_but_empty_uses_default(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_TEST_EMPTY", "")
    s = load_text(tmp_path, BASE.replace("eval: eval.jsonl", "eval: ${ADVISOR_TEST_EMPTY:-d}/e.jsonl"))
    assert s.data.eval == tmp_path.resolve() / "d" / "e.jsonl"


def test_var_expansion_in_model_names(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVISOR_TEST_MODEL", "bundled:smollm2-135m-instruct")
    s = load_text(tmp_path, BASE + "models:\n  candidates: ${ADVISOR_TEST_MODEL}\n")
    assert s.models.candidates == ["bundled:smollm2-135m-instruct"]


def test_defaults_by_type(tmp_path):
    c = load_text(tmp_path, BASE)
    assert c.decoding == "choices" and c.max_new_tokens == 8
    assert c.models.candidates == [spec.BUNDLED_LLM] and c.models.embedding == spec.BUNDLED_EMBEDDER
    assert c.models.trust_remote_code is False
    assert c.finetune.mode == "auto" and c.rag.mode == "auto" and c.baseline.enabled
    assert c.budget.requests_per_month == 100_000 and c.budget.setup_usd is None
    assert c.hardware.gpu == "H100" and c.hardware.usd_per_hour is None
    assert (c.data.fields.input, c.data.fields.expected) == ("text", "label")
    assert c.metric == "accuracy" and c.instructions == "" and c.seed == 0
    q = load_text(tmp_path, QA, "qa.yaml")
    assert q.decoding == "generate" and q.max_new_tokens == 32 and q.labels is None
    g = load_text(tmp_path, QA.replace("type: qa", "type: generation"), "gen.yaml")
    assert g.decoding == "generate" and g.max_new_tokens == 64


def test_explicit_settings_are_kept(tmp_path):
    text = BASE.replace("type: classification", "type: classification\ndecoding: generate") + (
        "prompting: {shots: 0, max_new_tokens: 5}\n"
        "hardware: {gpu: h100, usd_per_hour: 2.5}\n"
        "models: {trust_remote_code: true, selection_limit: 10}\n"
        "finetune: {mode: always, r: 16, targets: all-linear}\n"
    )
    s = load_text(tmp_path, text)
    assert s.decoding == "generate" and s.max_new_tokens == 5 and s.prompting.shots == 0
    assert s.hardware.gpu == "H100" and s.hardware.usd_per_hour == 2.5  # gpu names are case-insensitive
    assert s.models.trust_remote_code is True and s.models.selection_limit == 10
    assert (s.finetune.mode, s.finetune.r, s.finetune.targets) == ("always", 16, "all-linear")


def test_finetune_methods_default_to_lora_and_leave_old_stage_keys_alone(tmp_path):
    c = load_text(tmp_path, BASE)
    assert c.finetune.methods == ["lora"] and c.finetune.lr_for("lora") == c.finetune.lr == 1e-3
    # the finetune section a LoRA-only task's stage key hashes: exactly the fields it had before methods
    assert list(c.section("finetune")["finetune"]) == [
        "r", "alpha", "dropout", "targets", "lr", "warmup_ratio", "epochs", "max_steps", "cpu_max_steps",
        "batch_size", "grad_accum", "val_fraction", "max_length", "seed", "devices", "accelerate_config"]
    s = load_text(tmp_path, BASE + "finetune: {methods: [lora, full, prompt_tuning, ia3], lr: 0.002, "
                                   "method_lr: {ia3: 0.01}, prompt_tuning_tokens: 8, prompt_tuning_init: random}\n")
    ft = s.finetune
    assert ft.methods == ["lora", "full", "prompt_tuning", "ia3"] and ft.prompt_tuning_tokens == 8
    # LoRA keeps finetune.lr; the others their own scale unless the task sets one
    assert (ft.lr_for("lora"), ft.lr_for("ia3"), ft.lr_for("full"), ft.lr_for("prompt_tuning")) == (
        0.002, 0.01, 5e-5, 3e-2)
    assert s.section("finetune")["finetune"]["prompt_tuning_init"] == "random"
    from advisor.cli import _with_methods  # `advisor assess --methods` sets the same field, checked alike

    assert _with_methods(c.finetune, " lora, ia3 ").methods == ["lora", "ia3"] and c.finetune.methods == ["lora"]


def test_labels_forms(tmp_path):
    assert load_text(tmp_path, BASE.replace("[negative, positive]", "[0, 1]")).labels == ["0", "1"]
    assert load_text(tmp_path, BASE.replace("labels: [negative, positive]\n", "")).labels is None  # inferred later


def test_single_corpus_path_becomes_a_list(tmp_path):
    s = load_text(tmp_path, BASE.replace("  eval: eval.jsonl\n", "  eval: eval.jsonl\n  corpus: kb.jsonl\n"))
    assert s.data.corpus == [tmp_path.resolve() / "kb.jsonl"]


def test_model_names_and_paths(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    text = BASE + (
        "models:\n  candidates: [bundled:smollm2-135m-instruct, ./local-model, models/mine, HuggingFaceTB/SmolLM2-360M]\n"
        "  embedding: ../emb\n"
    )
    s = load_text(tmp_path, text)
    base = tmp_path.resolve()
    assert s.models.candidates == [
        "bundled:smollm2-135m-instruct", str(base / "local-model"), str(base / "models" / "mine"),
        "HuggingFaceTB/SmolLM2-360M",  # a hub id: nothing of that name beside the task
    ]
    assert s.models.embedding == str(base / ".." / "emb")


def test_parse_takes_a_yaml_document(tmp_path):
    import yaml

    s = spec.parse(yaml.safe_load(BASE), file="inline", base=tmp_path)
    assert s.name == "tiny" and s.data.eval == tmp_path / "eval.jsonl" and s.source is None


def test_section_is_json_ready(tmp_path):
    s = load_text(tmp_path, BASE)
    sec = s.section("type", "data", "target")
    assert sec["type"] == "classification" and sec["target"] == {"metric": "accuracy", "min": 0.8}
    assert isinstance(sec["data"]["eval"], str)


def test_a_library_that_rewrites_pyyaml_does_not_change_how_task_files_read(in_tmp, monkeypatch):
    """lm-format-enforcer (the constrained pipeline) maps YAML timestamps to strings in PyYAML's
    global SafeLoader when imported: a task file read after a constrained run in the same process
    (a bench suite) must read exactly as before."""
    import yaml

    table = dict(yaml.SafeLoader.yaml_constructors)
    table["tag:yaml.org,2002:timestamp"] = table["tag:yaml.org,2002:str"]  # what the library does
    monkeypatch.setattr(yaml.SafeLoader, "yaml_constructors", table)
    case = next(c for c in BAD if c[0] == "bad-date")
    (in_tmp / "task.yaml").write_text(case[1], encoding="utf-8")
    with pytest.raises(AdvisorError) as err:
        spec.load("task.yaml")
    assert str(err.value) == case[2]


def test_finetune_mode_gates_the_stage_but_is_not_part_of_its_key(tmp_path):
    """auto, always and never decide whether the fine-tune runs, not what it computes: switching
    `--finetune auto` to `always` must reuse a trained stage instead of training again."""
    auto = load_text(tmp_path, BASE + "finetune: {mode: auto, lr: 0.002}\n")
    always = load_text(tmp_path, BASE + "finetune: {mode: always, lr: 0.002}\n")
    assert always.finetune.mode == "always" and auto.finetune.mode == "auto"
    assert always.section("finetune", "rag") == auto.section("finetune", "rag")
    assert always.section("finetune") != load_text(tmp_path, BASE + "finetune: {mode: always}\n").section("finetune")


def test_baseline_device_defaults_to_cpu_is_validated_and_does_not_change_cached_results():
    from advisor.spec import TaskSpec

    raw = {"name": "x", "type": "classification", "labels": ["a", "b"], "data": {"eval": "e.jsonl"},
           "target": {"metric": "accuracy", "min": 0.5}}
    s = TaskSpec.model_validate(raw)
    assert s.baseline.device == "CPU"
    on_gpu = TaskSpec.model_validate({**raw, "baseline": {"device": "l4"}})
    assert on_gpu.baseline.device == "L4"
    assert on_gpu.section("baseline") == s.section("baseline")  # cost only: the stage key is unchanged
    with pytest.raises(Exception, match="unknown hardware 'H10'.*did you mean 'H100'"):
        TaskSpec.model_validate({**raw, "baseline": {"device": "H10"}})
