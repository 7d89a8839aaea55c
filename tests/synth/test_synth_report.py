"""Report parsing and the citation check (worked examples)."""

from __future__ import annotations

from fathom.agent.testing import ScriptedLLM
from fathom.synth import parse_report, split_plan

TRAJ_URLS = {"http://atlas.fathom.test/verrin", "http://atlas.fathom.test/orbit"}

REPORT = """<think>
SQ1: when. | S1 | http://atlas.fathom.test/verrin | 2031 | High |
</think>
# Executive Summary
- The comet was first seen in 2031. [http://atlas.fathom.test/verrin]

## Main Body
Scope.

## S1 Discovery
Seen in 2031 [http://atlas.fathom.test/verrin/] and its orbit is 7 years. [http://atlas.fathom.test/orbit]
A made-up claim. [https://invented.example.com/page]

## Recommendations
None.

## Conclusion
Done.

## Sources used
http://atlas.fathom.test/verrin
http://atlas.fathom.test/orbit
http://atlas.fathom.test/unused
"""


def test_parse_report_citations_and_sections():
    rep = parse_report(REPORT, TRAJ_URLS)
    assert rep.plan.startswith("SQ1: when.") and rep.report.startswith("# Executive Summary") and rep.has_plan_tags
    assert rep.sections == ["Executive Summary", "Main Body", "S1 Discovery", "Recommendations", "Conclusion",
                            "Sources used"]
    assert rep.missing_sections == []
    assert rep.cited_urls == ["http://atlas.fathom.test/verrin", "http://atlas.fathom.test/orbit",
                              "https://invented.example.com/page"]
    assert rep.unsupported_urls == ["https://invented.example.com/page", "http://atlas.fathom.test/unused"]
    assert abs(rep.unsupported_rate - 1 / 3) < 1e-9
    assert rep.sources_used == ["http://atlas.fathom.test/verrin", "http://atlas.fathom.test/orbit",
                                "http://atlas.fathom.test/unused"]
    assert rep.sources_not_cited == ["http://atlas.fathom.test/unused"]
    assert rep.cited_not_in_sources == ["https://invented.example.com/page"]
    assert rep.model_dump()["unsupported_rate"] == rep.unsupported_rate


def test_split_plan_tolerates_missing_tags():
    assert split_plan("plan only</think>\n# R") == ("plan only", "# R", True)
    assert split_plan("<think>thinking\n# Executive Summary\nx") == ("thinking", "# Executive Summary\nx", False)
    assert split_plan("<think>unfinished plan") == ("unfinished plan", "", False)
    assert split_plan("# Just a report") == ("", "# Just a report", False)


def test_no_citations_rate_zero_and_missing_sections():
    rep = parse_report("Short answer without structure.", TRAJ_URLS)
    assert rep.cited_urls == [] and rep.unsupported_rate == 0.0
    assert rep.missing_sections == ["Executive Summary", "Main Body", "Recommendations", "Conclusion",
                                    "Sources used"]


async def test_synthesize_with_scripted_client_fits_context():
    from fathom.agent import AgentConfig, FunctionTools, preset_schemas, run_agent
    from fathom.synth import synthesize

    async def search_urls(query: str, top_k: int = 10) -> str:
        return "### 1. V\n**URL**: http://atlas.fathom.test/verrin\n\n**Snippet**: " + "word " * 3000

    async def query_url(url: str, goal: str) -> str:
        return "x"

    tools = FunctionTools(preset_schemas("fathom"), {"search_urls": search_urls, "query_url": query_url})
    traj = await run_agent("Q?", ScriptedLLM([('a</think>\n<tool_call>\n{"name": "search_urls", "arguments": '
                                               '{"query": "v"}}\n</tool_call>'), "b</think>\\boxed{1}"]), tools,
                           AgentConfig())
    client = ScriptedLLM([REPORT], context_length=2000)
    rep = await synthesize("Q?", traj, client, max_tokens=500)
    sent = client.calls[0]
    assert sent["max_tokens"] == 500
    assert client.count_tokens(sent["prompt"]) <= 2000 - 500
    assert "characters omitted]" in sent["prompt"]
    assert rep.cited_urls[0] == "http://atlas.fathom.test/verrin" and rep.unsupported_rate > 0
