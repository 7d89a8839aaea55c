"""The obfuscation pass (method.md §1.3 step 3): M3, without search, rewrites a question with in-context exemplars
so that its anchors are softened (dates -> coarse intervals, numbers -> magnitudes, named entities -> descriptors,
pivots -> descriptors) while the facts and the answer stay the same."""

from __future__ import annotations

import re

from fathom.llm.base import ChatMessage
from fathom.selfplay.text import normalize_answer

OBFUSCATION_RULES = (
    "Rewrite the question so that it is harder to look up, without changing any fact or its answer:\n"
    "1. exact dates become coarse intervals (\"March 2025\" -> \"early 2025\");\n"
    "2. precise numbers become magnitudes (\"1%\" -> \"a negligible share\");\n"
    "3. named entities become indirect descriptors (\"University of Florida\" -> \"a major southeastern "
    "university\");\n"
    "4. causal or comparative links become descriptions, not explicit connectors.\n"
    "Never mention the answer. Output only the rewritten question."
)

EXEMPLARS: list[tuple[str, str]] = [
    ("Which cricket stadium hosted the Mandela Trophy final in 1995, the tournament named after the statesman "
     "Idris Elba played in 'Mandela: Long Walk to Freedom'?",
     "Which ground staged the deciding match of a mid-1990s one-day series named after a statesman whom a British "
     "actor portrayed in a biopic of the 2010s?"),
    ("In March 2025 the University of Florida reported a 1% drop in enrolment; who was its president then?",
     "When a major southeastern public university reported a negligible dip in enrolment in early 2025, who "
     "led the institution?"),
    ("Which company acquired the startup founded by the creator of the Rust programming language's first "
     "compiler in 2024?",
     "Which firm, in the mid-2020s, bought the young company started by the engineer behind the first compiler "
     "of a memory-safe systems language?"),
]


def obfuscation_messages(question: str, exemplars: list[tuple[str, str]] | None = None) -> list[ChatMessage]:
    """System rules + few-shot user/assistant pairs + the question."""
    msgs: list[ChatMessage] = [{"role": "system", "content": OBFUSCATION_RULES}]
    for original, rewritten in (EXEMPLARS if exemplars is None else exemplars):
        msgs.append({"role": "user", "content": f"Question: {original}"})
        msgs.append({"role": "assistant", "content": rewritten})
    msgs.append({"role": "user", "content": f"Question: {question}"})
    return msgs


_PREFIX = re.compile(r"^\s*(rewritten question|question|rewrite|obfuscated question)\s*:\s*", re.I)


def clean_obfuscation(text: str) -> str:
    """First non-empty paragraph, without a 'Question:' style prefix or wrapping quotes."""
    text = text.strip()
    para = next((p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()), "")
    para = _PREFIX.sub("", " ".join(para.split()))
    return para.strip().strip('"“”').strip()


def check_obfuscation(original: str, rewritten: str, answer: str, *, min_ratio: float = 0.4,
                      max_ratio: float = 3.0) -> str | None:
    """None if the rewrite is usable, else the rejection reason."""
    if not rewritten:
        return "obfuscation_empty"
    if len(rewritten) < min_ratio * len(original):
        return "obfuscation_too_short"
    if len(rewritten) > max_ratio * len(original) + 80:
        return "obfuscation_too_long"
    na = normalize_answer(answer)
    if na and len(na) >= 3 and f" {na} " in f" {normalize_answer(rewritten)} ":
        return "obfuscation_leaks_answer"
    if not rewritten.rstrip().endswith("?") and "?" not in rewritten:
        return "obfuscation_not_a_question"
    return None
