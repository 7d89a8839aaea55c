"""RAPO settings: presets are files beside the trainer, the CPU preset can learn, one owner per knob, and a resume
refuses settings that differ from its checkpoint's run."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from fathom.errors import ConfigError
from fathom.rl.config import PRESETS, config_diff, config_fingerprint, rapo_config
from fathom.rl.step_reward import StepRewardConfig


def test_presets_are_the_files_beside_the_trainer():
    assert {"gpu", "cpu", "cpu-smoke"} <= set(PRESETS)


def test_cpu_preset_lets_every_rapo_part_act(tmp_path):
    a = rapo_config("cpu", str(tmp_path))
    groups_per_step = a.generation_batch_size // a.num_generations
    assert groups_per_step >= 2, "Eq. 6 needs at least two groups per step"
    assert a.num_generations >= 4
    assert a.max_tokens_per_turn >= 128, "a tool call or an answer must fit in one turn"
    assert a.max_steps == -1 and a.rapo_epochs >= 2, "max_steps follows the epochs, so an epoch ends (Eq. 5)"
    assert a.max_tool_result_chars == 600  # what the warm start imitated
    from fathom.web.stack import EMBEDDED_RESULT_CHARS

    assert a.max_tool_result_chars == EMBEDDED_RESULT_CHARS


def test_preset_from_a_file_and_unknown_fields(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("num_generations: 4\nper_device_train_batch_size: 8\nmax_steps: 3\nuse_cpu: true\nbf16: false\n")
    assert rapo_config(str(f), str(tmp_path / "o")).max_steps == 3
    f.write_text("num_generation: 4\n")
    with pytest.raises(ValueError, match="num_generation"):
        rapo_config(str(f), str(tmp_path / "o"))
    with pytest.raises(ValueError, match="unknown preset"):
        rapo_config("nope", str(tmp_path / "o"))


def test_step_reward_config_is_built_from_every_field(tmp_path):
    a = rapo_config("cpu-smoke", str(tmp_path), step_c1=0.3, step_c2=0.4, step_cap_search=5, step_cap_query=7,
                    step_verify_budget=2, format_weight=0.2, step_correct_floor=0.25, step_similarity=0.7)
    got = a.step_reward_config()
    assert got == StepRewardConfig(c1=0.3, c2=0.4, C_S=5, C_Q=7, B_v=2, format_weight=0.2, correct_floor=0.25,
                                   similarity=0.7)
    assert {f for f in StepRewardConfig.model_fields} == set(got.model_dump())


def test_resume_refuses_changed_settings(tmp_path):
    from fathom.rl.stage import _check_resume_config

    a = rapo_config("cpu-smoke", str(tmp_path))
    assert _check_resume_config(tmp_path, a, None, False) == {}
    saved = json.loads((tmp_path / "rapo_config.json").read_text())
    assert saved == json.loads(json.dumps(config_fingerprint(a), default=str))
    same = rapo_config("cpu-smoke", str(tmp_path))
    assert _check_resume_config(tmp_path, same, "checkpoint-2", False) == {}
    changed = rapo_config("cpu-smoke", str(tmp_path), learning_rate=3e-6)
    with pytest.raises(ConfigError, match="learning_rate"):
        _check_resume_config(tmp_path, changed, "checkpoint-2", False)
    assert "learning_rate" in _check_resume_config(tmp_path, changed, "checkpoint-2", True)
    assert config_diff({"a": 1}, {"a": 1, "b": 2}) == {"b": (None, 2)}
    assert "output_dir" not in config_fingerprint(a) and {f.name for f in fields(type(a))} > set(config_fingerprint(a))
