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


def _words(text: str) -> int:
    return len(text.split())


def _row(user_words: int, report_words: int) -> dict:
    return {"messages": [{"role": "system", "content": "sys " * 10},
                         {"role": "user", "content": " ".join(f"u{i}" for i in range(user_words))},
                         {"role": "assistant", "content": " ".join(f"r{i}" for i in range(report_words))}]}


def test_fit_rows_shortens_the_trace_never_the_report():
    from fathom.sft.trainer import TRACE_CUT, fit_rows

    short, long_, hopeless = _row(50, 40), _row(2000, 300), _row(100, 1000)
    rows, fit = fit_rows([short, long_, hopeless], _words, 800, overhead=4)
    assert fit == {"rows_in": 3, "trace_shortened": 1, "dropped_too_long": 1, "kept": 2}
    assert rows[0] == short
    msgs = rows[1]["messages"]
    assert msgs[2] == long_["messages"][2]  # the report, whole
    assert sum(_words(m["content"]) + 4 for m in msgs) <= 800
    user = msgs[1]["content"]
    assert user.startswith("u0 u1") and user.rstrip().endswith("u1999") and TRACE_CUT.strip() in user


def test_sft_that_would_train_on_nothing_fails_loudly(tmp_path, embedded_model_dir):
    """max_length below system + report: every row is dropped, the stage raises instead of training on nothing."""
    from fathom.errors import EmptyStageError
    from fathom.sft.config import SynthSFTSpec
    from fathom.sft.trainer import train_synthesizer

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in tiny_sft_rows(2)))
    spec = SynthSFTSpec(out_dir=tmp_path / "out", preset="cpu-smoke", model=str(tiny_model_dir(tmp_path,
                        embedded_model_dir)), data=data, overrides={"max_length": 40})
    with pytest.raises(EmptyStageError, match="no row fits max_length=40"):
        train_synthesizer(spec)
