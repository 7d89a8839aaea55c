"""Prompt rows, the stage-2 mixture (≥3 hops), the filter's keep rule, presets, and the CLI wiring."""

import json

import pytest

from fathom.errors import ConfigError
from fathom.rl.config import rapo_config
from fathom.rl.data import hop_count, load_rl_rows, normalize_rows, stage2_mixture, write_jsonl
from fathom.rl.filter import keep_row


def test_rows_normalised_and_bad_rows_reported(tmp_path):
    p = write_jsonl([{"question": "Q1?", "answer": "a"}, {"prompt": "Q1?", "answer": "dup"},
                     {"prompt": "Q2?", "answer": 3, "id": "x2"}], tmp_path / "d.jsonl")
    rows = load_rl_rows(p)
    assert [r["prompt"] for r in rows] == ["Q1?", "Q2?"] and rows[1]["answer"] == "3" and rows[1]["id"] == "x2"
    assert rows[0]["id"].startswith("d-")
    with pytest.raises(ConfigError, match="lack a prompt"):
        normalize_rows([{"prompt": "Q", "answer": ""}])
    (tmp_path / "ds").mkdir()
    write_jsonl(rows, tmp_path / "ds" / "rl.jsonl")  # a stage's dataset folder
    assert load_rl_rows(tmp_path / "ds") == rows


def test_stage2_mixture_keeps_three_hop_musique():
    assert hop_count({"id": "3hop1__123"}) == 3 and hop_count({"hops": [1, 2]}) == 2 and hop_count({}) is None
    mus = [{"id": "2hop__1", "question": "a?", "answer": "1"}, {"id": "4hop3__2", "question": "b?", "answer": "2"},
           {"id": "m3", "question": "c?", "answer": "3"}]
    rows = stage2_mixture([{"prompt": "d?", "answer": "x"}], [{"prompt": "1+1?", "answer": "2"}], mus)
    assert [r["source"] for r in rows] == ["duetqa", "math", "musique"]  # unknown hop count: dropped
    assert [r["prompt"] for r in rows if r["source"] == "musique"] == ["b?"]
    lenient = stage2_mixture([], [], mus, keep_unknown_hops=True)
    assert [r["prompt"] for r in lenient] == ["b?", "c?"]
    assert hop_count({"question_decomposition": [{}, {}, {}]}) == 3


def test_filter_keeps_what_the_policy_does_not_solve():
    assert keep_row([False, False], 0.0) and not keep_row([True, False], 0.0)
    assert keep_row([True, False], 0.5) and not keep_row([True, True], 0.5)


def test_presets():
    from fathom.rl.config import PRESETS

    gpu = PRESETS["gpu"]  # bf16 + GPU: not instantiable on this CPU machine, check the settings themselves
    assert (gpu["learning_rate"], gpu["lr_scheduler_type"]) == (1e-6, "constant")
    assert gpu["num_generations"] == 5
    assert gpu["per_device_train_batch_size"] * 8 * gpu["steps_per_generation"] == 32 * 5  # 32 prompts on 8 GPUs
    assert gpu["per_device_train_batch_size"] * 8 == 16 * 5  # mini-batch 16 prompts per optimizer update
    assert (gpu["max_tool_steps"], gpu["max_tokens_per_turn"], gpu["max_total_tokens"]) == (32, 8192, 40960)
    assert (gpu["temperature"], gpu["top_p"], gpu["adam_beta1"], gpu["adam_beta2"], gpu["use_vllm"]) == \
        (1.4, 1.0, 0.9, 0.95, True)
    cpu_gpu = rapo_config("gpu", "/tmp/x-gpu-preset", bf16=False, use_cpu=True, use_vllm=False)
    assert cpu_gpu.generation_batch_size == 10 * 2  # per process; × 8 processes on the real node
    smoke = rapo_config("cpu-smoke", "/tmp/x-smoke-preset")
    assert smoke.use_cpu and not smoke.bf16 and smoke.max_steps <= 2 and 2 <= smoke.num_generations <= 4
    with pytest.raises(ValueError):  # groups must not straddle processes
        rapo_config("cpu-smoke", "/tmp/x", per_device_train_batch_size=3, num_generations=2)
    with pytest.raises(ValueError):
        rapo_config("nope", "/tmp/x")


def test_cli_registers_train_group():
    from typer.testing import CliRunner

    from fathom.cli import app

    res = CliRunner().invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    for cmd in ("search", "synthesizer", "filter"):
        assert cmd in res.output
    from fathom.rl.cli import _overrides

    assert _overrides(["max_steps=3", "judge=exact", "beta=0.001"]) == {"max_steps": 3, "judge": "exact",
                                                                       "beta": 0.001}
    assert json.dumps(_overrides(None)) == "{}"
