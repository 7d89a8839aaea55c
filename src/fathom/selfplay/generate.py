"""Candidate generation (method.md §1.3 step 2): prompts of the generator agent and the parser of its candidate.

The generator (M1 or M2) first runs as a search agent to gather recent/obscure facts for the sampled themes, then
composes one multi-hop candidate as JSON from the evidence it saw: ``{"question", "answer", "themes_used",
"hops": [{"fact", "url", "date"}]}``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from fathom.llm.base import ChatMessage
from fathom.selfplay.banks import ItemPlan


class Hop(BaseModel):
    fact: str
    url: str = ""
    date: str | None = Field(default=None, description="ISO date (YYYY-MM-DD, YYYY-MM or YYYY) of the fact.")


class Candidate(BaseModel):
    question: str
    answer: str
    hops: list[Hop] = []
    themes_used: list[str] = []


def gather_task(plan: ItemPlan, cutoff: dt.date) -> str:
    """The 'question' given to the generator agent for its research phase."""
    themes = "; ".join(plan.themes)
    base = (f"Research task. Themes: {themes}. For several of these themes, search the web and find specific, "
            f"little-known facts, preferably dated on or after {cutoff.isoformat()}. Note each fact with its source "
            "URL and date.")
    if plan.seed is not None:
        base += f" The facts will be used to rewrite this seed question with the same multi-hop structure: " \
                f"{plan.seed.question}"
    return base + " When done, give a one-line summary of the best fact in \\boxed{}."


COMPOSE_SYSTEM = (
    "You write hard multi-hop quiz questions from research notes. Return one JSON object and nothing else:\n"
    '{"question": "...", "answer": "...", "themes_used": ["..."], '
    '"hops": [{"fact": "...", "url": "...", "date": "YYYY-MM-DD"}]}\n'
    "Rules: chain 2-4 facts from the notes into one reasoning path; the answer is a short entity, date or number; "
    "every hop cites a URL that appears in the notes; at least one hop is dated on or after {cutoff}."
)


def compose_messages(plan: ItemPlan, cutoff: dt.date, evidence: str, urls: list[str]) -> list[ChatMessage]:
    user = [f"Themes: {', '.join(plan.themes)}"]
    if plan.seed is not None:
        user.append(f"Seed question (keep its multi-hop scaffold, replace its facts): {plan.seed.question}")
        if plan.seed.scaffold:
            user.append(f"Scaffold: {plan.seed.scaffold}")
    user.append("Research notes:\n" + (evidence or "(no notes)"))
    user.append("URLs explored:\n" + ("\n".join(urls) if urls else "(none)"))
    user.append("Write the JSON object now.")
    return [{"role": "system", "content": COMPOSE_SYSTEM.replace("{cutoff}", cutoff.isoformat())},
            {"role": "user", "content": "\n\n".join(user)}]


def _json_objects(text: str):
    """Yield every balanced {...} substring (outermost first), tolerating prose and code fences around it."""
    for start in [m.start() for m in re.finditer(r"\{", text)]:
        depth, in_str, esc = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if esc:
                    esc = False
                elif ch == "\\":
                    esc = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    yield text[start:i + 1]
                    break


def parse_candidate(text: str) -> tuple[Candidate | None, str | None]:
    """(candidate, None) or (None, reason). Takes the first JSON object that validates as a candidate."""
    saw_json = False
    for blob in _json_objects(text):
        try:
            data: Any = json.loads(blob)
        except json.JSONDecodeError:
            continue
        saw_json = True
        if not isinstance(data, dict) or "question" not in data:
            continue
        try:
            data["answer"] = str(data.get("answer", "")).strip()
            cand = Candidate.model_validate(data)
        except ValidationError:
            continue
        cand.question = " ".join(cand.question.split())
        if not cand.question or not cand.answer:
            return None, "candidate_empty_field"
        return cand, None
    return None, "candidate_invalid_json" if saw_json else "candidate_no_json"


def parse_date(value: str | None) -> dt.date | None:
    """'2025-03-14' / '2025-03' / '2025' / 'March 14, 2025' -> a date (first day of an open period)."""
    if not value:
        return None
    v = value.strip()
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y", "%B %d, %Y", "%d %B %Y", "%B %Y", "%b %d, %Y", "%b %Y"):
        try:
            return dt.datetime.strptime(v, fmt).date()
        except ValueError:
            pass
    m = re.search(r"\b(19|20)\d{2}\b", v)
    return dt.date(int(m.group(0)), 1, 1) if m else None


def evidence_from_trajectory(traj, max_chars: int) -> tuple[str, list[str]]:
    """Tool results the generator saw (truncated) and the URLs it explored, in order."""
    from fathom.selfplay.traces import trajectory_urls

    parts, used = [], 0
    for call in traj.tool_calls:
        if call.error:
            continue
        chunk = call.result.strip()
        if not chunk:
            continue
        room = max_chars - used
        if room <= 0:
            break
        parts.append(chunk[:room])
        used += len(parts[-1])
    return "\n---\n".join(parts), trajectory_urls(traj)
