"""Eq. 4 rewards: format checks, normalised answer matching, the 0.1/0.9 mix, the judge's fallback."""

import pytest

from fathom.agent.format import preset_schemas
from fathom.rl.rewards import (
    AnswerJudge,
    check_format,
    exact_match,
    format_reward,
    normalize_answer,
    trajectory_reward,
)

SCHEMAS = preset_schemas("fathom")
CALL = '<tool_call>\n{"name": "search_urls", "arguments": {"query": "capital of France"}}\n</tool_call>'
GOOD = [f" I should search. </think>\n{CALL}<|im_end|>", r" Found it. </think> The answer is \boxed{Paris}.<|im_end|>"]


def test_normalisation_worked_examples():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer(r"\text{Paris}") == "paris"
    assert exact_match("the paris", "Paris")
    assert exact_match("42", ["forty-two", "42"])
    assert not exact_match("", "Paris") and not exact_match(None, "Paris")
    assert not exact_match("Lyon", "Paris")


def test_well_formed_trajectory_gets_format_1():
    assert check_format(GOOD, SCHEMAS).ok
    assert format_reward(GOOD, SCHEMAS) == 1.0


@pytest.mark.parametrize("turns,problem", [
    ([], "no model turn"),
    ([r" no close \boxed{x}"], "exactly one </think>"),
    ([r" a </think> b </think> \boxed{x}"], "exactly one </think>"),
    ([' x </think>\n<tool_call>\n{"name": "search_urls", "arguments": {"query": 1}}\n</tool_call>',
      r" y </think> \boxed{z}"], "invalid tool call"),
    ([' x </think>\n<tool_call>\n{not json}\n</tool_call>', r" y </think> \boxed{z}"], "invalid tool call"),
    ([" x </think> <tool_call>\n{\"name\": \"search_urls\", \"arguments\": {\"query\": \"q\"}}"], "invalid tool call"),
    ([f" x </think>\n{CALL}"], "still calling tools"),
    ([" x </think> the answer is Paris"], "no \\boxed{}"),
    ([" x </think> <tool_response>fake</tool_response> \\boxed{a}"], "wrote a tool response"),
    ([" x </think> thinking more", r" y </think> \boxed{a}"], "without a tool call"),
])
def test_malformed_trajectories_get_format_0(turns, problem):
    res = check_format(turns, SCHEMAS)
    assert not res.ok and res.reward == 0.0
    assert any(problem in p for p in res.problems), res.problems


def test_eq4_mix():
    assert trajectory_reward(1, 1) == pytest.approx(1.0)
    assert trajectory_reward(1, 0) == pytest.approx(0.1)
    assert trajectory_reward(0, 1) == pytest.approx(0.9)
    assert trajectory_reward(0, 0) == 0.0


class _Client:
    def __init__(self, text=None, exc=None):
        self.text, self.exc, self.prompts = text, exc, []

    async def chat(self, messages, **kw):
        self.prompts.append(messages[-1]["content"])
        if self.exc:
            raise self.exc
        from fathom.llm.base import Completion
        return Completion(text=self.text, prompt_tokens=1, completion_tokens=1, finish_reason="stop", latency_s=0)


async def test_judge_shortcuts_and_fallbacks():
    offline = AnswerJudge(None)
    assert await offline.judge("q", "paris", "Paris") is True
    assert await offline.judge("q", "City of Paris", "Paris") is False  # exact fallback only
    yes = _Client(" CORRECT")
    j = AnswerJudge(yes)
    assert await j.judge("q", "City of Paris", "Paris") is True and len(yes.prompts) == 1
    assert await j.judge("q", "", "Paris") is False and len(yes.prompts) == 1  # empty: no call
    assert await j.judge("q", "paris", "Paris") is True and len(yes.prompts) == 1  # exact: no call
    assert await AnswerJudge(_Client(" INCORRECT")).judge("q", "Lyon", "Paris") is False
    broken = AnswerJudge(_Client(exc=TimeoutError("down")))
    assert await broken.judge("q", "Lyon", "Paris") is False and broken.fallbacks == 1
    garbled = AnswerJudge(_Client("maybe?"))
    assert await garbled.judge("q", "Lyon", "Paris") is False and garbled.fallbacks == 1
