"""Property-based tests (Hypothesis): nothing raises on model text or benchmark files, and the rules are
consistent. Example counts are modest so the suite stays fast."""

from __future__ import annotations

import json
import random

from fuzz import FRAGMENTS, model_turn  # noqa: E402 - sibling helper (rootdir on sys.path)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom.agent import AgentConfig, FunctionTools, preset_schemas, run_agent
from fathom.agent.parse import ParsedCall, ParseError, parse_tool_calls
from fathom.agent.testing import ScriptedLLM
from fathom.answer import (
    extract_answer,
    extract_boxed,
    grade,
    normalize_answer,
)
from fathom.evaluate.datasets import DatasetError, parse_jsonl
from fathom.rl.rewards import check_format

FAST = settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))

fragments = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=40).map("".join)
turns = st.one_of(fragments, st.integers(0, 2**32).map(lambda s: model_turn(random.Random(s))))
SCHEMAS = preset_schemas("fathom")


@FAST
@given(turns)
def test_parser_never_raises_and_accounts_for_every_block(text):
    out = parse_tool_calls(text, SCHEMAS)
    assert all(isinstance(c, (ParsedCall, ParseError)) for c in out)
    assert len(out) == text.count("<tool_call>")
    for c in out:
        if isinstance(c, ParseError):
            assert c.observation.startswith(f"[error:{c.code}]")


@FAST
@given(st.lists(turns, min_size=0, max_size=3))
def test_format_check_never_raises(texts):
    verdict = check_format(texts, SCHEMAS)
    assert verdict.ok == (not verdict.problems)


@FAST
@given(turns)
def test_extraction_properties(text):
    box = extract_boxed(text)
    if box is not None:
        assert box == box.strip() and box and ("\\boxed" in text or "\\fbox" in text)
    if box is not None and "{" not in box and "}" not in box and "$" not in box and "\n" not in box:
        assert extract_boxed(f"{text} then \\boxed{{{box}}}") == box  # the last box wins
    assert isinstance(extract_answer(text), str)


answers = st.one_of(st.text(max_size=30), st.sampled_from(["A", "b) Only two", "70", "1,000", "None", "|x|",
                                                          "1" * 400 + "/1", "\\frac{3}{4}", "3/4", "-0"]))


@FAST
@given(answers, answers, st.sampled_from(["mc", "number", "em", "f1", "auto"]))
def test_graders_never_raise_and_gold_grades_itself(pred, gold, name):
    g = grade(pred, gold, name)
    assert g.error is None and g.label in ("correct", "incorrect", "not_attempted")
    assert grade(gold, gold, name).correct or not gold.strip()
    if normalize_answer(pred) and normalize_answer(pred) == normalize_answer(gold):
        assert g.correct


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)


@FAST
@given(st.lists(st.one_of(
    st.builds(lambda q, a, i: json.dumps({"id": i, "question": q, "answer": a}), st.text(max_size=20), json_values,
              json_values),
    fragments, st.just("[" * 3000 + "]" * 3000), st.just('{"question": "q", "answer": ' + "1" * 5000 + "}")),
    max_size=5))
def test_dataset_loader_raises_only_dataset_errors(lines):
    text = "\n".join(lines)
    try:
        examples = parse_jsonl(text, dataset="d", source="f.jsonl")
    except DatasetError as exc:
        assert str(exc).startswith("f.jsonl:")
        return
    for ex in examples:
        assert ex.question == ex.question.strip() and ex.question and ex.answer


async def _search(query: str, top_k: int = 10) -> str:
    return f"### 1. hit\n**URL**: http://a.test/\n\n**Snippet**: {query[:20]}"


async def _query(url: str, goal: str) -> str:
    return "Summary: nothing"


RUNS: list[str] = []


@SLOW
@given(st.lists(turns, min_size=1, max_size=3))
def test_agent_turn_step_never_raises_on_model_text(script):
    import asyncio

    tools = FunctionTools(SCHEMAS, {"search_urls": _search, "query_url": _query})
    traj = asyncio.run(run_agent("Q?", ScriptedLLM(list(script) + ["done</think>\\boxed{x}"]), tools,
                                 AgentConfig(max_turns=4, max_total_tokens=200_000, max_tokens_per_turn=100_000)))
    RUNS.append(traj.status)
    assert traj.status in ("answered", "no_answer", "max_turns", "budget", "error")


def test_agent_property_ran():
    assert len(RUNS) >= 10
