"""Structure and citation checks on a teacher's plan-then-write output (pure functions over the parsed report)."""

from __future__ import annotations

import re

from fathom.sftdata.config import ReportFilterConfig
from fathom.synth import Report, normalize_url

_PLAN_SECTION = re.compile(r"\b(S(?:Q)?\d{1,2})\b\s*[:.)\-–—]\s*([^\n|]{2,120})")


def plan_sections(plan: str) -> list[tuple[str, str]]:
    """Sections declared in the plan: [("S1", "Background"), ...] from lines like "- S1: Background" or
    "SQ2 - Findings" (first declaration of each id wins; table rows referencing S1 do not count)."""
    out: dict[str, str] = {}
    for line in plan.splitlines():
        if line.lstrip().startswith("|"):
            continue
        for m in _PLAN_SECTION.finditer(line):
            sid = m.group(1).replace("SQ", "S")
            out.setdefault(sid, m.group(2).strip().rstrip(".").strip())
    return list(out.items())


def _section_present(sid: str, title: str, headings: list[str]) -> bool:
    low = [h.lower() for h in headings]
    num = sid[1:]
    if any(re.search(rf"\bs(?:q)?{num}\b", h) for h in low):
        return True
    t = title.lower()
    return bool(t) and any(t in h or h in t for h in low if len(h) > 3)


def check_report(rep: Report, cfg: ReportFilterConfig) -> list[str]:
    """Reasons the report fails (empty list: accepted)."""
    reasons: list[str] = []
    if cfg.require_plan and not rep.plan.strip():
        reasons.append("no_plan")
    if cfg.require_sections:
        reasons += [f"missing_section:{s}" for s in rep.missing_sections]
    if cfg.require_plan_sections and rep.plan.strip():
        declared = plan_sections(rep.plan)
        if not declared:
            reasons.append("plan_has_no_sections")
        reasons += [f"plan_section_missing:{sid}" for sid, title in declared
                    if not _section_present(sid, title, rep.sections)]
    if cfg.require_citations and not rep.cited_urls:
        reasons.append("no_citations")
    if cfg.citations_in_trace and rep.unsupported_urls:
        reasons.append("citation_not_in_trace")
    if cfg.sources_equal_cited:
        cited = {normalize_url(u) for u in rep.cited_urls}
        listed = {normalize_url(u) for u in rep.sources_used}
        if cited != listed:
            reasons.append("sources_used_mismatch")
    if rep.word_count < cfg.min_words:
        reasons.append("too_short")
    return reasons
