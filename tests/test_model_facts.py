"""Model facts without weights: meta-device counts against real weights and published sizes,
the shipped table's rows recounted from their configs, and the one-line error for an unknown model."""

import json

import pytest

from advisor.errors import AdvisorError
from advisor.model_facts import _safetensors_count, facts_from_config_dict, facts_from_folder, model_facts, table


def test_meta_count_of_the_bundled_config_equals_its_real_weights(smollm):
    """The converted bundled model's config.json, counted on the meta device, has exactly the
    parameters of the loaded model (tied embeddings once) and of its safetensors on disk."""
    from pathlib import Path

    folder = Path(smollm.path)
    facts = facts_from_folder("smollm", folder)
    loaded = sum(p.numel() for p in smollm.model.parameters())
    assert facts.params == loaded == 134_515_008
    # the file stores the tied embedding once as well
    assert _safetensors_count(folder) == loaded
    assert (facts.n_layers, facts.hidden, facts.kv_heads, facts.vocab) == (30, 576, 3, 49152)


def test_llama_8b_count_matches_a_hand_count():
    """Llama-3.1-8B by hand: untied embeddings and head 2·V·h, per layer q,o h² + k,v 2·h·(h/4)
    (8 of 32 heads) + 3·h·i MLP + 2 norms, and the final norm: 8,030,261,248 (the published 8.03B)."""
    V, h, i, L, kv = 128256, 4096, 14336, 32, 1024
    hand = 2 * V * h + L * (2 * h * h + 2 * h * kv + 3 * h * i + 2 * h) + h
    assert hand == 8_030_261_248
    f = model_facts("meta-llama/Llama-3.1-8B-Instruct")
    assert f.params == f.active_params == hand
    assert f.pretrain_tokens == 15e12 and "15" in f.tokens_source


def test_mixture_of_experts_counts_the_experts_used_per_token():
    """Mixtral-8x7B: 46.7B in memory, 12.9B per token (2 of 8 experts), as Mistral AI publishes.
    By hand: experts are 3·h·i each, 8 per layer; active = total − 6 experts per layer."""
    f = model_facts("mistralai/Mixtral-8x7B-Instruct-v0.1")
    expert = 3 * 4096 * 14336
    assert f.params - f.active_params == 32 * 6 * expert
    assert round(f.params / 1e9, 1) == 46.7 and round(f.active_params / 1e9, 1) == 12.9
    assert f.pretrain_tokens is None  # not published: left unknown, not guessed


def test_every_table_row_recounts_from_its_config_and_names_its_sources():
    doc = table()
    assert doc["updated"]
    for row in doc["models"]:
        assert row["config_source"], row["id"]
        assert (row.get("pretrain_tokens") is None) == (row.get("tokens_source") is None), row["id"]
        if row.get("pretrain_tokens") is None:
            assert row.get("tokens_note"), f"{row['id']}: an unknown token count says why"
    # recounting all takes a while (70B on the meta device is fast, but 20 models add up): a sample
    for row in doc["models"][::4]:
        f = facts_from_config_dict(row["id"], row["config"], "")
        assert (f.params, f.active_params) == (row["params"], row["active_params"]), row["id"]


def test_the_table_ships_inside_the_package():
    from importlib import resources

    text = resources.files("advisor").joinpath("data", "model_facts.json").read_text(encoding="utf-8")
    assert json.loads(text)["models"]


def test_a_local_folder_with_only_a_config(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
           "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    f = model_facts(str(tmp_path))
    assert f.params == 8_030_261_248 and f.config_dir == str(tmp_path) and "meta-device" in f.source


def test_unknown_model_is_one_line_saying_how_to_provide_it():
    with pytest.raises(AdvisorError) as e:
        model_facts("some-org/never-heard-of-it-7b")
    msg = str(e.value)
    assert "\n" not in msg and "params:" in msg and "config.json" in msg


def test_params_in_the_task_price_a_model_advisor_cannot_read():
    from advisor.spec import ModelFactsSpec

    f = model_facts("some-org/private-7b", ModelFactsSpec(params=7.0e9, pretrain_tokens=2e12))
    assert f.params == f.active_params == 7_000_000_000 and f.source == "params: in the task"
    assert f.pretrain_tokens == 2e12 and f.tokens_source == "pretrain_tokens: in the task"
