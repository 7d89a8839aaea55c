"""Golden bytes of the released model's turn format (pins our prose template and the protocol structure)."""

from __future__ import annotations

import os
from pathlib import Path

from fathom.agent import TEMPLATE_VERSION, AgentConfig, FunctionTools, build_prompt, preset_schemas, run_agent
from fathom.agent.format import format_tool_response_turn, load_template, render_system
from fathom.agent.testing import ScriptedLLM

GOLDEN = Path(__file__).parent / "golden" / "fathom_two_turns.txt"
QUESTION = "In which year did the Verrin Observatory record its first comet?"
TURN1 = (
    "I need the observatory's history; search and read its page in parallel.</think>\n"
    '<tool_call>\n{"name": "search_urls", "arguments": {"query": "Verrin Observatory first comet"}}\n</tool_call>\n'
    '<tool_call>\n{"name": "query_url", "arguments": {"url": "http://atlas.fathom.test/verrin", '
    '"goal": "year of the first comet"}}\n</tool_call>'
)
TURN2 = "Both sources say 2031.</think>\nThe observatory recorded its first comet in \\[ \\boxed{2031} \\]."


async def _search(query: str, top_k: int = 10) -> str:
    return f"### 1. Verrin Observatory\n**URL**: http://atlas.fathom.test/verrin\n\n**Snippet**: {query} ...\n"


async def _query(url: str, goal: str) -> str:
    return f"The useful information in {url} for goal \u201c{goal}\u201d:\n\nSummary:\nFirst comet: 2031."


async def _two_turn_transcript() -> str:
    tools = FunctionTools(preset_schemas("fathom"), {"search_urls": _search, "query_url": _query})
    traj = await run_agent(QUESTION, ScriptedLLM([TURN1, TURN2]), tools, AgentConfig())
    assert traj.status == "answered" and traj.answer == "2031"
    return traj.transcript


async def test_golden_two_turn_transcript():
    transcript = await _two_turn_transcript()
    if os.environ.get("FATHOM_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(transcript, encoding="utf-8", newline="")
    golden = GOLDEN.read_text(encoding="utf-8")
    assert transcript == golden, (
        f"transcript bytes changed (template {TEMPLATE_VERSION}); if intended, bump TEMPLATE_VERSION and rerun "
        "with FATHOM_UPDATE_GOLDEN=1")


async def test_transcript_equals_reference_assembly():
    """Independent re-statement of the reference's string assembly (init_prompt / cat_assistant_response /
    cat_tool_results): our loop must produce the same bytes."""
    schemas = preset_schemas("fathom")
    sys_prompt = load_template("fathom")
    prompt = (f"<|im_start|>system\n{sys_prompt.format(func_schemas=schemas)}<|im_end|>" + "\n"
              + f"<|im_start|>user\n{QUESTION}<|im_end|>" + "\n" + "<|im_start|>assistant\n<think>")
    prompt = prompt + TURN1 + "<|im_end|>"
    calls = ['{"name": "search_urls", "arguments": {"query": "Verrin Observatory first comet"}}',
             ('{"name": "query_url", "arguments": {"url": "http://atlas.fathom.test/verrin", '
              '"goal": "year of the first comet"}}')]
    # the reference executor returns f"result: \n{result}\n".strip()
    results = [f"result: \n{await _search('Verrin Observatory first comet')}\n".strip(),
               f"result: \n{await _query('http://atlas.fathom.test/verrin', 'year of the first comet')}\n".strip()]
    block = "".join(f"<tool_response>{c}\n{r}\n</tool_response>\n" for c, r in zip(calls, results))
    prompt = prompt + "\n" + f"<|im_start|>user\n{block}<|im_end|>" + "\n" + "<|im_start|>assistant\n<think>"
    prompt = prompt + TURN2 + "<|im_end|>"
    assert await _two_turn_transcript() == prompt


def test_schema_repr_single_quotes_in_json_fence():
    system = render_system(preset_schemas("fathom"))
    assert ": \n```json\n[{'name': 'search_urls', 'description': 'Google search and return links to web-pages " \
           "with a brief snippet given a text query', 'parameters': {'type': 'object', 'properties': {'query': " \
           "{'type': 'string'}, 'top_k': {'type': 'integer', 'default': 10}}, 'required': ['query']}}, " \
           "{'name': 'query_url'" in system
    assert system.count("```") == 2
    assert "\\n```" not in system and "```\n" in system  # real newlines, as the reference's string evaluates
    legacy = str(preset_schemas("legacy"))
    assert legacy.startswith("[{'name': 'web_search', 'description': 'Google search and return links")
    assert "'web_visit', 'description': 'Visit webpage and return its content'" in legacy
    assert "'The URL of the webpage to visit. Must be a single URL'" in legacy


def test_prompt_layout_and_generation_prefix():
    p = build_prompt("Q?", preset_schemas("fathom"))
    assert p.startswith("<|im_start|>system\n")
    assert p.endswith("<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n<think>")
    assert "\\boxed{}" in p and "{{" not in p  # format escapes resolved


def test_format_tool_response_turn_bytes():
    out = format_tool_response_turn([('{"name": "a"}', "x"), ('{"name": "b"}', "[error:timeout] slow")])
    assert out == ('<|im_end|>\n<|im_start|>user\n<tool_response>{"name": "a"}\nresult: \nx\n</tool_response>\n'
                   '<tool_response>{"name": "b"}\nresult: \n[error:timeout] slow\n</tool_response>\n'
                   "<|im_end|>\n<|im_start|>assistant\n<think>")


def test_user_template_file_with_released_style_prose(tmp_path):
    """A user-supplied prose file (the released prompt as Python evaluates it: indented, real newlines around the
    fence) is used byte-exact with str.format semantics."""
    f = tmp_path / "released.txt"
    f.write_text("\n    Prose.\n    Functions: \n```json\n{func_schemas}\n```\n    Box it: \\boxed{{}}.\n    ",
                 encoding="utf-8")
    p = build_prompt("Q", preset_schemas("legacy"), str(f))
    assert p.startswith("<|im_start|>system\n\n    Prose.\n    Functions: \n```json\n[{'name': 'web_search'")
    assert "Box it: \\boxed{}.\n    <|im_end|>\n<|im_start|>user\nQ<|im_end|>" in p
