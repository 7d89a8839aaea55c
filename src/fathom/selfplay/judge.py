"""The answer judge: exact / normalised matching first, then an LLM judge for the rest; unparseable or failed
judge calls fall back to the matching verdict. Every verdict records how it was reached and a transcript id."""

from __future__ import annotations

import logging
import re
from typing import Literal

from pydantic import BaseModel, Field

from fathom.errors import LLMError
from fathom.llm.base import ChatMessage, LLMClient
from fathom.selfplay.text import answers_match

log = logging.getLogger(__name__)

Method = Literal["exact", "normalized", "llm", "fallback", "no_answer"]

JUDGE_SYSTEM = "You are a strict grader of short answers. Reply with one word: yes or no."


class Verdict(BaseModel):
    """One judged answer of one solver (or the M1-vs-M2 agreement)."""

    answer: str | None = Field(description="The solver's extracted final answer (None: it gave none).")
    correct: bool
    method: Method = Field(description="exact/normalized: string match; llm: the judge decided; fallback: the judge "
                           "failed or was unparseable and matching decided; no_answer: nothing to judge.")
    judge_raw: str | None = Field(default=None, description="The judge's raw reply, when it was asked.")
    transcript_ref: str | None = Field(default=None, description="Id of the solver's transcript in "
                                       "trajectories.jsonl.")
    status: str | None = Field(default=None, description="Solver run status (answered, max_turns, ...).")
    tool_calls: int = 0


def judge_messages(question: str, gold: str, pred: str) -> list[ChatMessage]:
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": (
            f"Question: {question}\nReference answer: {gold}\nCandidate answer: {pred}\n\n"
            "Does the candidate answer mean the same as the reference answer? Answer yes or no.")},
    ]


_YES = re.compile(r"^\W*(yes|correct|true)\b", re.I)
_NO = re.compile(r"^\W*(no|incorrect|false)\b", re.I)


def parse_judgement(text: str) -> bool | None:
    """'yes...' -> True, 'no...' -> False, anything else -> None (unparseable)."""
    text = text.strip()
    if _YES.match(text):
        return True
    if _NO.match(text):
        return False
    return None


async def judge_answer(question: str, gold: str, pred: str | None, client: LLMClient | None, *,
                       max_tokens: int = 8, transcript_ref: str | None = None) -> Verdict:
    """Correctness of `pred` against `gold`. `client=None` judges by matching only."""
    if pred is None or not pred.strip():
        return Verdict(answer=pred, correct=False, method="no_answer", transcript_ref=transcript_ref)
    matched = answers_match(gold, pred)
    if matched:
        return Verdict(answer=pred, correct=True, method=matched, transcript_ref=transcript_ref)
    if client is None:
        return Verdict(answer=pred, correct=False, method="fallback", transcript_ref=transcript_ref)
    try:
        out = await client.chat(judge_messages(question, gold, pred), max_tokens=max_tokens, temperature=0.0)
    except LLMError as exc:
        log.warning("judge failed (%s): falling back to matching", exc)
        return Verdict(answer=pred, correct=False, method="fallback", judge_raw=f"[error] {exc}",
                       transcript_ref=transcript_ref)
    decided = parse_judgement(out.text)
    if decided is None:
        return Verdict(answer=pred, correct=False, method="fallback", judge_raw=out.text,
                       transcript_ref=transcript_ref)
    return Verdict(answer=pred, correct=decided, method="llm", judge_raw=out.text, transcript_ref=transcript_ref)
