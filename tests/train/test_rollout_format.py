"""Multi-turn rollouts: exact Fathom bytes, env tokens masked, limits (tool steps, per-turn, total budget)."""

import asyncio

import pytest
from rapo_testkit import scripted

from fathom.agent.format import build_prompt, preset_schemas
from fathom.agent.trajectory import ToolResult
from fathom.rl.rollout import RolloutConfig, RolloutEngine, StubTools

CALL = ' Search first. </think>\n<tool_call>\n{"name": "search_urls", "arguments": {"query": "capital of France"}}\n</tool_call>'
ANSWER = r" The page says Paris. </think> \boxed{Paris}"


@pytest.fixture(scope="module")
def tok(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


def test_two_turn_rollout_bytes_and_mask(tok):
    stub = StubTools()
    eng = RolloutEngine(lambda: stub, RolloutConfig(max_tool_steps=4, max_tokens_per_turn=200, max_total_tokens=4000))
    try:
        [r] = eng.generate(["What is the capital of France?"], tok, scripted(tok, [CALL, ANSWER]))
    finally:
        eng.close()
    traj = r.trajectory
    assert traj.status == "answered" and traj.answer == "Paris"
    assert stub.calls == [("search_urls", {"query": "capital of France", "top_k": 10})]
    # ids are the ground truth and decode to the exact transcript
    assert r.prompt_ids == tok(build_prompt("What is the capital of France?", preset_schemas("fathom")),
                               add_special_tokens=False).input_ids
    assert tok.decode(r.prompt_ids + r.completion_ids) == traj.transcript
    assert "<|im_end|>\n<|im_start|>user\n<tool_response>" in traj.transcript
    assert "</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>" in traj.transcript
    # mask: 1 on the model's tokens, 0 on every environment token
    model_ids = [t for t, m in zip(r.completion_ids, r.env_mask) if m]
    env_ids = [t for t, m in zip(r.completion_ids, r.env_mask) if not m]
    assert tok.decode(model_ids) == "".join(s.text for s in traj.segments if s.role == "model")
    assert tok.decode(env_ids) == "".join(s.text for s in traj.segments if s.role == "env")
    assert "<tool_response>" in tok.decode(env_ids) and "<tool_response>" not in tok.decode(model_ids)
    assert r.env_mask[-1] == 1 and r.completion_ids[-1] == tok.eos_token_id
    assert len(traj.tool_calls) == 1 and traj.tool_calls[0].result.startswith("### 1.")


def test_max_tool_steps_and_zero_tool_calls(tok):
    eng = RolloutEngine(lambda: StubTools(), RolloutConfig(max_tool_steps=1, max_tokens_per_turn=200,
                                                           max_total_tokens=4000))
    try:
        rs = eng.generate(["q1", "q2"], tok, scripted(tok, [CALL, CALL, CALL]))
        assert [r.trajectory.status for r in rs] == ["max_turns", "max_turns"]
        # the last turn's calls are still run and recorded (shared turn engine rule); their results are env tokens
        assert all(len(r.trajectory.tool_calls) == 2 and len(r.trajectory.turns) == 2 for r in rs)
        assert all(r.trajectory.transcript.count("<tool_response>") == 2 and r.env_mask[-1] == 0 for r in rs)
        assert all(tok.decode(r.prompt_ids + r.completion_ids) == r.trajectory.transcript for r in rs)
        [z] = eng.generate(["q"], tok, scripted(tok, [ANSWER]))
        assert z.trajectory.tool_calls == [] and z.trajectory.status == "answered" and all(z.env_mask)
    finally:
        eng.close()


def test_token_limits(tok):
    eng = RolloutEngine(lambda: StubTools(), RolloutConfig(max_tool_steps=4, max_tokens_per_turn=5,
                                                           max_total_tokens=4000))
    try:
        [r] = eng.generate(["q"], tok, scripted(tok, [ANSWER]))
        assert len(r.completion_ids) == 5 and r.trajectory.turns[0].finish_reason == "length"
        assert r.trajectory.status == "no_answer"  # a cut turn without a call or an answer (no reminders in RL)
        n_prompt = len(r.prompt_ids)
    finally:
        eng.close()
    eng = RolloutEngine(lambda: StubTools(), RolloutConfig(max_tool_steps=4, max_tokens_per_turn=500,
                                                           max_total_tokens=n_prompt + 60))
    try:
        [r] = eng.generate(["q"], tok, scripted(tok, [CALL, ANSWER]))
        assert len(r.prompt_ids) + len(r.completion_ids) <= n_prompt + 60
        assert r.trajectory.status == "budget"  # the tool response would not fit: stop, nothing appended
        assert all(r.env_mask)
    finally:
        eng.close()


def test_broken_calls_become_observations(tok):
    class Slow:
        async def call(self, name, arguments):
            await asyncio.sleep(5)
            return ToolResult(text="late")

    bad = ' x </think>\n<tool_call>\n{"name": "search_urls", "arguments": {}}\n</tool_call>'
    eng = RolloutEngine(lambda: Slow(), RolloutConfig(max_tool_steps=2, max_tokens_per_turn=200,
                                                      max_total_tokens=4000, tool_timeout_s=0.2))
    try:
        [r] = eng.generate(["q"], tok, scripted(tok, [bad, CALL, ANSWER]))
    finally:
        eng.close()
    calls = r.trajectory.tool_calls
    assert calls[0].error == "missing_argument" and "[error:missing_argument]" in calls[0].result
    assert calls[1].error == "timeout"
    assert r.trajectory.answer == "Paris"
