"""The retraining loop closes on one machine: `retrain` under kfp.local (SubprocessRunner) on the embedded
default with tiny counts — every step runs and writes non-empty outputs, the gate sees a real candidate and a real
baseline run, and the local release answers its smoke test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.longest, pytest.mark.timeout(3600)]


def _non_empty(path: Path) -> bool:
    if path.is_file():
        return path.stat().st_size > 0
    return path.is_dir() and any(p.is_file() and p.stat().st_size > 0 for p in path.rglob("*"))


def test_retrain_runs_end_to_end_on_the_embedded_default(tmp_path):
    from fathom.evaluate.heldout import heldout_eval_config
    from fathom.pipeline_cli import run_local

    ev = {k: v for k, v in heldout_eval_config(3).items() if k != "limit"}
    ev["agent"] = {**ev["agent"], "max_turns": 2, "max_tokens_per_turn": 32}
    overrides = tmp_path / "overrides.json"  # advanced knobs of the embedded profile, as a config_uri
    # one optimizer step per training stage (a RAPO step is ~40 s here); the synthesizer's step on short briefs (one
    # fact per section, ~750 report tokens) cut to 2,048 tokens: the test is about every step running and writing
    # outputs, not about what they learn
    overrides.write_text(json.dumps({"preset": "cpu-smoke", "filter_limit_per_source": 2,
                                     "stage1_config_json": {"max_steps": 1}, "stage2_config_json": {"max_steps": 1},
                                     "eval_config_json": ev,
                                     "sft_config": {"world_related": 1, "world_attrs": 1, "world_claims": 1},
                                     "sft_config_json": {"max_steps": 1, "max_length": 2048,
                                                         "gradient_checkpointing": False},
                                     "eval_limit": 3, "gate_max_drop": 1.0,
                                     # a cpu-smoke candidate cannot search yet: the endpoint checks only (the
                                     # embedded profile's run also has the release answer a held-out question)
                                     "smoke_agent": False}))
    args = {"n_duetqa": 3, "n_sft": 2, "gate_require": "non-inferior", "config_uri": str(overrides)}
    run_local("retrain", args, tmp_path / "root")

    runs = [p for p in (tmp_path / "root").iterdir() if p.is_dir()]
    assert len(runs) == 1
    tasks = {p.name: p for p in runs[0].rglob("executor_output.json")}
    ran = {p.parent.name for p in runs[0].rglob("executor_output.json")}
    for step in ("duetqa-generate", "decontaminate", "sft-corpus", "policy-warmstart", "rapo-stage1",
                 "stage2-filter", "rapo-stage2", "synthesizer-sft", "convert-checkpoint", "convert-checkpoint-2",
                 "evaluate-benchmark", "evaluation-report", "baseline-evaluation", "evaluation-gate",
                 "deploy-release", "smoke-test"):
        assert step in ran, f"{step} did not run (ran: {sorted(ran)})"
    del tasks
    # every artifact every step wrote is non-empty
    empty = [str(p.relative_to(runs[0])) for p in runs[0].glob("*/*") if p.name != "executor_output.json"
             and not _non_empty(p)]
    assert not empty, f"empty outputs: {empty}"
    task = {p.parent.name: p.parent for p in runs[0].rglob("executor_output.json")}
    rl = (task["decontaminate"] / "clean" / "rl.jsonl").read_text().splitlines()
    assert rl and all(json.loads(r)["source"].startswith("duetqa") for r in rl)
    assert list((task["policy-warmstart"] / "model").glob("*.safetensors"))
    gate = json.loads((task["evaluation-gate"] / "executor_output.json").read_text())
    assert "passed" in json.dumps(gate)
    baseline = task["baseline-evaluation"] / "run"
    assert (baseline / "results.jsonl").read_text().strip(), "the gate saw a real baseline run"
