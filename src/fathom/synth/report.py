"""Parse the synthesizer's ``<think>plan</think>report`` output and check its citations against the trajectory.

Citation rules (method §5.3): every cited URL must be one the search agent actually saw (a search hit, a page it
read, or a URL inside a tool result); "Sources used" should list exactly the cited URLs. The check reports the
unsupported-citation rate and the disagreements between the body's citations and the sources list.
"""

from __future__ import annotations

import re
import time

from pydantic import BaseModel, Field, computed_field

from fathom.agent.trajectory import Trajectory
from fathom.llm.base import LLMClient
from fathom.synth.clean import find_urls, normalize_url, trajectory_urls
from fathom.synth.prompt import build_synth_messages

MANDATORY_SECTIONS = ("Executive Summary", "Main Body", "Recommendations", "Conclusion", "Sources used")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


class Report(BaseModel):
    plan: str = Field(description="The private plan (text inside <think>...</think>).")
    report: str = Field(description="The public Markdown report.")
    cited_urls: list[str] = Field(default_factory=list, description="URLs cited in the body, in order, deduped.")
    unsupported_urls: list[str] = Field(default_factory=list,
                                        description="Cited or listed URLs that are not in the trajectory.")
    sources_used: list[str] = Field(default_factory=list, description="URLs listed under 'Sources used'.")
    sections: list[str] = Field(default_factory=list, description="Heading texts of the report, in order.")
    missing_sections: list[str] = Field(default_factory=list, description="Mandatory sections not found.")
    sources_not_cited: list[str] = Field(default_factory=list, description="Listed as a source but never cited.")
    cited_not_in_sources: list[str] = Field(default_factory=list, description="Cited but missing from the list.")
    word_count: int = 0
    has_plan_tags: bool = Field(default=False, description="True when the output had a </think> separator.")
    finish_reason: str = ""
    latency_s: float = 0.0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unsupported_rate(self) -> float:
        """Share of cited URLs (body) that the trajectory does not contain; 0.0 when nothing is cited."""
        if not self.cited_urls:
            return 0.0
        bad = {normalize_url(u) for u in self.unsupported_urls}
        return sum(normalize_url(u) in bad for u in self.cited_urls) / len(self.cited_urls)


def split_plan(text: str) -> tuple[str, str, bool]:
    """(plan, report, had_separator). Tolerates a missing ``<think>`` opener (the generation prefix may hold it),
    a missing ``</think>`` (the report then starts at the first Markdown heading) and no tags at all."""
    text = text.strip()
    if "</think>" in text:
        plan, report = text.rsplit("</think>", 1)
        return plan.replace("<think>", "", 1).strip(), report.strip(), True
    if text.startswith("<think>"):
        body = text[len("<think>"):]
        m = re.search(r"^# ", body, re.MULTILINE)
        if m:
            return body[: m.start()].strip(), body[m.start():].strip(), False
        return body.strip(), "", False
    return "", text, False


def _split_sources(report: str) -> tuple[str, str]:
    """(body, sources section text)."""
    for m in _HEADING.finditer(report):
        if "sources used" in m.group(2).lower() or m.group(2).strip().lower() in ("sources", "references"):
            rest = report[m.end():]
            nxt = _HEADING.search(rest)
            section = rest[: nxt.start()] if nxt else rest
            body = report[: m.start()] + (rest[nxt.start():] if nxt else "")
            return body, section
    return report, ""


def parse_report(text: str, trajectory_urls: set[str]) -> Report:
    """Split plan/report, list sections, and check citations against ``trajectory_urls`` (normalized or not)."""
    plan, report, tagged = split_plan(text)
    allowed = {normalize_url(u) for u in trajectory_urls}
    body, sources_text = _split_sources(report)
    cited = find_urls(body)
    sources = find_urls(sources_text)
    cited_keys = {normalize_url(u) for u in cited}
    source_keys = {normalize_url(u) for u in sources}
    unsupported = [u for u in find_urls(body + "\n" + sources_text) if normalize_url(u) not in allowed]
    sections = [m.group(2).strip() for m in _HEADING.finditer(report)]
    lowered = [s.lower() for s in sections]
    missing = [s for s in MANDATORY_SECTIONS if not any(s.lower() in h for h in lowered)]
    return Report(
        plan=plan, report=report, cited_urls=cited, unsupported_urls=unsupported, sources_used=sources,
        sections=sections, missing_sections=missing,
        sources_not_cited=[u for u in sources if normalize_url(u) not in cited_keys],
        cited_not_in_sources=[u for u in cited if normalize_url(u) not in source_keys],
        word_count=len(re.findall(r"\b\w+\b", report)), has_plan_tags=tagged,
    )


def default_synth_max_tokens(client: LLMClient, requested: int) -> int:
    """Keep at least half of a known context for the prompt."""
    ctx = client.context_length
    return min(requested, ctx // 2) if ctx else requested


async def synthesize(question: str, traj: Trajectory, client: LLMClient, *, max_tokens: int = 10_000,
                     temperature: float = 0.4, top_p: float = 1.0, template: str = "default",
                     context_length: int | None = None, seed: int | None = None) -> Report:
    """Write the report for one trajectory. The trace is cut to fit ``context_length`` (default: the client's)
    minus ``max_tokens``; the answer is parsed and citation-checked."""
    ctx = context_length or client.context_length
    max_new = min(max_tokens, ctx // 2) if ctx else max_tokens
    budget = (ctx - max_new - 64) if ctx else None
    messages = build_synth_messages(question, traj, template=template, max_prompt_tokens=budget,
                                    count_tokens=client.count_tokens)
    t0 = time.perf_counter()
    c = await client.chat(messages, max_tokens=max_new, temperature=temperature, top_p=top_p, seed=seed)
    rep = parse_report(c.text, trajectory_urls(traj))
    rep.finish_reason = c.finish_reason
    rep.latency_s = time.perf_counter() - t0
    return rep
