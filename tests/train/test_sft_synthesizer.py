"""Synthesizer SFT: assistant-only loss masks, YaRN in the saved config, presets, bad input."""

import json

import pytest
from rapo_testkit import tiny_model_dir

from fathom.errors import ConfigError
from fathom.sft.config import PRESETS
from fathom.sft.trainer import chat_template_text, load_sft_rows, tiny_sft_rows, yarn_config


def test_presets_match_the_paper():
    g = PRESETS["gpu"]
    assert (g["num_train_epochs"], g["learning_rate"], g["lr_scheduler_type"], g["gradient_accumulation_steps"],
            g["bf16"], g["max_length"], g["packing"], g["gradient_checkpointing"]) == \
        (5, 5e-5, "cosine", 8, True, 65536, True, True)
    assert (g["adam_beta1"], g["adam_beta2"]) == (0.9, 0.95)
    assert PRESETS["cpu-smoke"]["use_cpu"] is True and PRESETS["cpu-smoke"]["bf16"] is False


def test_assistant_only_mask_with_generation_template(embedded_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_model_dir)
    tok.chat_template = chat_template_text("qwen2_5_training")
    row = tiny_sft_rows(1)[0]
    out = tok.apply_chat_template(row["messages"], return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    trained = tok.decode([t for t, m in zip(ids, mask) if m])
    assert trained.lstrip().startswith("<think>S1") and trained.rstrip().endswith("<|im_end|>")
    assert "Sources used" in trained
    assert "Question:" not in trained and "cited research reports" not in trained
    assert sum(mask) < len(ids)


def test_yarn_factor_recorded(tmp_path, embedded_model_dir):
    cfg = yarn_config(tiny_model_dir(tmp_path, embedded_model_dir), 2.0)
    assert cfg.rope_parameters["rope_type"] == "yarn" and cfg.rope_parameters["factor"] == 2.0
    assert cfg.rope_parameters["original_max_position_embeddings"] == 2048 and cfg.max_position_embeddings == 4096


def test_bad_rows_are_reported(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(ConfigError, match="no `messages` with an assistant turn"):
        load_sft_rows(p)
    with pytest.raises(ConfigError):
        chat_template_text("no_such_template")
