"""Worked examples for the tool-call parser and the boxed-answer extractor."""

from __future__ import annotations

import json

import pytest

from fathom.agent import ParsedCall, ParseError, extract_boxed, parse_tool_calls, preset_schemas
from fathom.agent.parse import split_tool_calls

S = preset_schemas("fathom")


def call(name, **args) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": args}) + "\n</tool_call>"


def test_two_calls_in_one_turn_with_defaults_filled():
    text = "thinking</think>\n" + call("search_urls", query="a b") + "\n" + call("query_url", url="http://x", goal="g")
    out = parse_tool_calls(text, S)
    assert out == [
        ParsedCall("search_urls", {"query": "a b", "top_k": 10}, '{"name": "search_urls", "arguments": '
                   '{"query": "a b"}}', 0),
        ParsedCall("query_url", {"url": "http://x", "goal": "g"}, '{"name": "query_url", "arguments": '
                   '{"url": "http://x", "goal": "g"}}', 1),
    ]


def test_raw_is_stripped_inside_of_tags():
    out = parse_tool_calls('<tool_call>  {"name": "search_urls", "arguments": {"query": "q"}}  \n</tool_call>', S)
    assert out[0].raw == '{"name": "search_urls", "arguments": {"query": "q"}}'


@pytest.mark.parametrize("text, code", [
    ('<tool_call>\n{"name": "search_urls", "arguments": {"query": "q"}}', "unclosed_tag"),
    ('<tool_call>\n{"name": "search_urls", "arguments": {"query": "q"\n</tool_call>', "bad_json"),
    ("<tool_call>\nsearch_urls(query='q')\n</tool_call>", "bad_json"),
    ('<tool_call>\n["search_urls"]\n</tool_call>', "bad_call"),
    ('<tool_call>\n{"arguments": {"query": "q"}}\n</tool_call>', "bad_call"),
    ('<tool_call>\n{"name": "search_urls", "arguments": [1]}\n</tool_call>', "bad_call"),
    ('<tool_call>\n{"name": "google", "arguments": {"query": "q"}}\n</tool_call>', "unknown_tool"),
    ('<tool_call>\n{"name": "query_url", "arguments": {"url": "http://x"}}\n</tool_call>', "missing_argument"),
    ('<tool_call>\n{"name": "query_url", "arguments": {"url": "http://x", "goal": " "}}\n</tool_call>',
     "missing_argument"),
    ('<tool_call>\n{"name": "search_urls", "arguments": {"query": "q", "lang": "en"}}\n</tool_call>',
     "unexpected_argument"),
    ('<tool_call>\n{"name": "search_urls", "arguments": {"query": 5}}\n</tool_call>', "bad_argument_type"),
    ('<tool_call>\n{"name": "search_urls", "arguments": {"query": "q", "top_k": "ten"}}\n</tool_call>',
     "bad_argument_type"),
    ('<tool_call>\n{"name": "search_urls", "arguments": {"query": "q", "top_k": true}}\n</tool_call>',
     "bad_argument_type"),
])
def test_malformed_calls_become_errors(text, code):
    out = parse_tool_calls(text, S)
    assert len(out) == 1 and isinstance(out[0], ParseError) and out[0].code == code
    assert out[0].observation.startswith(f"[error:{code}] ")


def test_huge_call_is_refused_and_echo_is_capped():
    text = call("search_urls", query="x" * 20_000)
    (err,) = parse_tool_calls(text, S)
    assert isinstance(err, ParseError) and err.code == "too_large"
    assert len(err.raw) < 600 and err.raw.endswith("...[truncated]")


def test_unclosed_then_good_call_keeps_the_good_one():
    text = '<tool_call>\n{"name": "search_urls"\n' + call("search_urls", query="ok")
    out = parse_tool_calls(text, S)
    assert [type(o).__name__ for o in out] == ["ParseError", "ParsedCall"]
    assert out[0].code == "unclosed_tag" and out[1].arguments == {"query": "ok", "top_k": 10}


def test_lenient_forms_accepted():
    fenced = '<tool_call>\n```json\n{"name": "search_urls", "arguments": {"query": "q"}}\n```\n</tool_call>'
    double = '<tool_call>\n{"name": "search_urls", "arguments": "{\\"query\\": \\"q\\", \\"top_k\\": 3.0}"}\n</tool_call>'
    assert parse_tool_calls(fenced, S)[0].arguments == {"query": "q", "top_k": 10}
    assert parse_tool_calls(double, S)[0].arguments == {"query": "q", "top_k": 3}


def test_without_schemas_only_syntax_is_checked():
    (c,) = parse_tool_calls(call("anything", a=1))
    assert isinstance(c, ParsedCall) and c.name == "anything" and c.arguments == {"a": 1}


def test_no_tags_no_calls():
    assert parse_tool_calls("just an answer \\boxed{1}", S) == []
    assert split_tool_calls("a </tool_call> b") == []


@pytest.mark.parametrize("text, expected", [
    ("The answer is \\boxed{42}.", "42"),
    ("\\boxed{1} then \\boxed{2}", "2"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\[ \\boxed{12 May 2021} \\]", "12 May 2021"),
    ("\\fbox{x}", "x"),
    ("\\boxed{a} and later \\fbox{b}", "b"),
    ("$\\boxed 7$ done", "7"),
    ("\\boxed {spaced}", "spaced"),
    ("\\boxed{good} then \\boxed{unclosed", "good"),
    ("\\boxed{}", None),
    ("no answer here", None),
])
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


def test_boxed_never_from_system_prompt():
    """The reference's "20c" bug: the system prompt's example must not be read as the model's answer."""
    from fathom.agent import build_prompt

    prompt = build_prompt("Q", S)
    assert extract_boxed(prompt) is not None  # the example is in the prompt...
    model_turns = "I could not find it.</think>\nUnknown."
    assert extract_boxed(model_turns) is None  # ...and the loop only reads the model's own turns
