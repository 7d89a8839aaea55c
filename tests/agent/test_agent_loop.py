"""The agent loop against a scripted policy (canned turns) and in-process tools."""

from __future__ import annotations

import asyncio
import json
import time

from fathom.agent import AgentConfig, FunctionTools, preset_schemas, run_agent
from fathom.agent.format import force_answer_instruction, nudge_instruction
from fathom.agent.testing import ScriptedLLM
from fathom.errors import LLMError, ToolError
from fathom.llm.base import Completion


def call(name, **args) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


ANSWER = "Done.</think>\nSo \\boxed{Paris}."


def make_tools(delay: float = 0.0, log: list | None = None):
    async def search_urls(query: str, top_k: int = 10) -> str:
        t0 = time.perf_counter()
        await asyncio.sleep(delay)
        if log is not None:
            log.append(("search", t0, time.perf_counter()))
        return f"hits for {query}"

    async def query_url(url: str, goal: str) -> str:
        t0 = time.perf_counter()
        await asyncio.sleep(delay)
        if log is not None:
            log.append(("query", t0, time.perf_counter()))
        if "fail" in url:
            raise ToolError("fetch_failed", "could not fetch")
        if "slow" in url:
            await asyncio.sleep(10)
        return f"page {url} for {goal}"

    return FunctionTools(preset_schemas("fathom"), {"search_urls": search_urls, "query_url": query_url})


def check_segments(traj):
    assert traj.prompt + "".join(s.text for s in traj.segments) == traj.transcript
    assert traj.transcript.startswith(traj.prompt)
    # model segments are exactly the turns' texts (+ <|im_end|>)
    model = [s.text for s in traj.segments if s.role == "model" and s.text != "<|im_end|>"]
    assert model == [t.text for t in traj.turns if t.text]


async def test_parallel_calls_then_answer_and_calls_overlap():
    log: list = []
    turn1 = "plan</think>\n" + call("search_urls", query="capital of France") + "\n" + call(
        "query_url", url="http://a", goal="capital")
    policy = ScriptedLLM([turn1, ANSWER])
    events: list[dict] = []
    traj = await run_agent("What is the capital of France?", policy, make_tools(0.3, log), AgentConfig(),
                           on_event=events.append)
    assert traj.status == "answered" and traj.answer == "Paris" and traj.error is None
    assert len(traj.turns) == 2 and [c.name for c in traj.tool_calls] == ["search_urls", "query_url"]
    assert traj.tool_calls[0].arguments == {"query": "capital of France", "top_k": 10}
    assert traj.tool_calls[1].result == "page http://a for capital"
    # concurrency: both calls ran at the same time
    (_, _, e1), (_, s2, _) = sorted(log)
    assert s2 < e1, "the two calls of one turn did not overlap"
    assert traj.turns[0].tool_latency_s < 0.55
    check_segments(traj)
    # the second prompt holds both responses in ONE user turn
    second = policy.calls[1]["prompt"]
    assert second.count("<|im_start|>user\n") == 2 and second.count("<tool_response>") == 2
    assert second.endswith("</tool_response>\n<|im_end|>\n<|im_start|>assistant\n<think>")
    assert policy.calls[0]["stop"] == ["<|im_end|>", "<|endoftext|>"]
    assert policy.calls[0]["temperature"] == 0.6 and policy.calls[0]["repetition_penalty"] == 1.05
    kinds = [e["type"] for e in events]
    assert kinds[0] == "turn_start" and kinds[-1] == "done"
    assert kinds.count("call_start") == 2 and kinds.count("call_end") == 2 and kinds.count("turn_end") == 2
    assert traj.transcript.endswith(ANSWER + "<|im_end|>")


async def test_malformed_outputs_become_observations_and_loop_goes_on():
    turn1 = ("hmm</think>\n<tool_call>\n{bad json}\n</tool_call>\n" + call("browse", url="x") + "\n"
             + call("query_url", url="http://a") + "\n" + call("query_url", url="http://fail", goal="g")
             + "\n<tool_call>\n{\"name\": \"search_urls\"")
    policy = ScriptedLLM([turn1, ANSWER])
    traj = await run_agent("Q", policy, make_tools(), AgentConfig())
    assert traj.status == "answered"
    errors = [c.error for c in traj.turns[0].calls]
    assert errors == ["bad_json", "unknown_tool", "missing_argument", "fetch_failed", "unclosed_tag"]
    env = policy.calls[1]["prompt"]
    assert env.count("<tool_response>") == 5
    assert "result: \n[error:bad_json] " in env and "result: \n[error:unknown_tool] " in env
    assert "result: \n[error:fetch_failed] could not fetch\n</tool_response>" in env
    check_segments(traj)


async def test_budget_exhaustion_forces_an_answer():
    long_query = " ".join(["word"] * 50)
    turns = ["t</think>\n" + call("search_urls", query=long_query)] * 10 + [ANSWER]
    policy = ScriptedLLM(turns)
    cfg = AgentConfig(max_total_tokens=900, min_answer_tokens=100, min_turn_tokens=50, reserve_tokens=10,
                      max_tokens_per_turn=400)
    traj = await run_agent("Q", policy, make_tools(), cfg)
    forced = [t for t in traj.turns if t.forced]
    assert len(forced) == 1 and forced[0] is traj.turns[-1]
    assert force_answer_instruction() in policy.calls[-1]["prompt"]
    # the forced turn is generated from the instruction's user turn, no further tool calls are run
    assert policy.calls[-1]["prompt"].endswith(force_answer_instruction() + "<|im_end|>\n<|im_start|>assistant\n<think>")
    assert traj.turns[-1].calls == []
    # normal turns kept room for the answer
    for c in policy.calls[:-1]:
        assert c["max_tokens"] <= 900 - 10 - 100
    assert traj.status == "budget"  # the scripted model kept calling tools instead of answering
    check_segments(traj)


async def test_budget_forced_turn_that_answers_is_answered():
    turns = ["t</think>\n" + call("search_urls", query=" ".join(["w"] * 40)), ANSWER]
    policy = ScriptedLLM(turns)
    cfg = AgentConfig(max_total_tokens=700, min_answer_tokens=150, min_turn_tokens=100, reserve_tokens=10)
    traj = await run_agent("Q", policy, make_tools(), cfg)
    assert traj.turns[-1].forced and traj.status == "answered" and traj.answer == "Paris"


async def test_huge_results_are_cut_to_fit_forced_turn():
    async def search_urls(query: str, top_k: int = 10) -> str:
        return " ".join(["token"] * 5000)

    async def query_url(url: str, goal: str) -> str:
        return "x"

    tools = FunctionTools(preset_schemas("fathom"), {"search_urls": search_urls, "query_url": query_url})
    policy = ScriptedLLM(["t</think>\n" + call("search_urls", query="q"), ANSWER])
    cfg = AgentConfig(max_total_tokens=1500, min_answer_tokens=200, min_turn_tokens=100, reserve_tokens=10,
                      max_result_chars=1_000_000)
    traj = await run_agent("Q", policy, tools, cfg)
    assert traj.status == "answered"
    last_prompt = policy.calls[-1]["prompt"]
    assert policy.count_tokens(last_prompt) <= 1500 - 10 - 200
    assert "[... truncated]" in last_prompt


async def test_llm_error_once_then_success_is_a_step_retry():
    policy = ScriptedLLM([LLMError("boom", retryable=True), "t</think>\n" + call("search_urls", query="q"),
                          LLMError("again"), ANSWER])
    events: list[dict] = []
    traj = await run_agent("Q", policy, make_tools(), AgentConfig(retry_backoff_s=0.0), on_event=events.append)
    assert traj.status == "answered" and [t.retries for t in traj.turns] == [1, 1]
    assert len(policy.calls) == 4
    # the retried step used the same prompt (no restart of the trajectory)
    assert policy.calls[2]["prompt"] == policy.calls[3]["prompt"] and policy.calls[0]["prompt"] == policy.calls[1]["prompt"]
    assert sum(e["type"] == "retry" for e in events) == 2


async def test_llm_error_after_retries_is_status_error_keeping_turns():
    policy = ScriptedLLM(["t</think>\n" + call("search_urls", query="q")] + [LLMError("down")] * 3)
    traj = await run_agent("Q", policy, make_tools(), AgentConfig(step_retries=2, retry_backoff_s=0.0))
    assert traj.status == "error" and "down" in traj.error and "3 attempts" in traj.error
    assert len(traj.turns) == 1 and len(traj.tool_calls) == 1
    check_segments(traj)


async def test_max_turns():
    policy = ScriptedLLM(["t</think>\n" + call("search_urls", query=f"q{i}") for i in range(5)])
    traj = await run_agent("Q", policy, make_tools(), AgentConfig(max_turns=3))
    assert traj.status == "max_turns" and len(traj.turns) == 3 and len(traj.tool_calls) == 3
    assert traj.answer is None
    assert traj.transcript.count("<tool_response>") == 3  # last round's results are recorded too


async def test_no_call_no_answer_gets_one_nudge_then_no_answer():
    policy = ScriptedLLM(["I think it is Paris.", "Still Paris."])
    traj = await run_agent("Q", policy, make_tools(), AgentConfig(max_nudges=1))
    assert traj.status == "no_answer" and len(traj.turns) == 2
    assert nudge_instruction() in policy.calls[1]["prompt"]
    assert traj.final_text == "Still Paris."


async def test_nudge_then_answer():
    policy = ScriptedLLM(["I think it is Paris.", ANSWER])
    traj = await run_agent("Q", policy, make_tools(), AgentConfig())
    assert traj.status == "answered" and traj.answer == "Paris"


async def test_length_cut_turn_and_stop_token_stripping():
    cut = Completion(text="t</think>\n" + call("search_urls", query="q") + " and more", prompt_tokens=0,
                     completion_tokens=50, finish_reason="length")
    policy = ScriptedLLM([cut, ANSWER + "<|im_end|>"])
    traj = await run_agent("Q", policy, make_tools(), AgentConfig())
    assert traj.status == "answered"
    assert traj.segments[0].role == "model" and traj.segments[1] == traj.segments[1].__class__(role="env",
                                                                                               text="<|im_end|>")
    assert traj.turns[-1].text == ANSWER  # trailing stop token stripped
    assert traj.transcript.endswith(ANSWER + "<|im_end|>") and not traj.transcript.endswith("<|im_end|><|im_end|>")
    check_segments(traj)


async def test_tool_timeout_is_an_observation():
    policy = ScriptedLLM(["t</think>\n" + call("query_url", url="http://slow", goal="g"), ANSWER])
    traj = await run_agent("Q", policy, make_tools(), AgentConfig(tool_timeout_s=0.2))
    assert traj.tool_calls[0].error == "timeout" and traj.status == "answered"


async def test_too_many_calls_in_one_turn():
    text = "t</think>\n" + "\n".join(call("search_urls", query=f"q{i}") for i in range(4))
    traj = await run_agent("Q", ScriptedLLM([text, ANSWER]), make_tools(), AgentConfig(max_calls_per_turn=2))
    assert [c.error for c in traj.tool_calls] == [None, None, "too_many_calls", "too_many_calls"]


async def test_answer_never_taken_from_the_prompt_example():
    traj = await run_agent("Q", ScriptedLLM(["no idea", "none"]), make_tools(), AgentConfig())
    assert "\\boxed{" in traj.prompt and traj.answer is None


async def test_context_length_caps_the_budget():
    policy = ScriptedLLM([ANSWER], context_length=2000)
    await run_agent("Q", policy, make_tools(), AgentConfig(max_total_tokens=40960))
    assert policy.calls[0]["max_tokens"] <= 2000


async def test_broken_event_callback_does_not_break_the_run():
    def bad(event):
        raise RuntimeError("display crashed")

    traj = await run_agent("Q", ScriptedLLM([ANSWER]), make_tools(), AgentConfig(), on_event=bad)
    assert traj.status == "answered"


async def test_trajectory_roundtrips_as_json():
    from fathom.agent import Trajectory

    traj = await run_agent("Q", ScriptedLLM(["t</think>\n" + call("search_urls", query="q"), ANSWER]),
                           make_tools(), AgentConfig())
    again = Trajectory.model_validate_json(traj.model_dump_json())
    assert again == traj and again.transcript == traj.transcript
    assert traj.summary()["tool_calls"] == 1
