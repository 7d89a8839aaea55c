"""DuetQA's verdicts on solver answers, decided by the answer module's judge (:class:`fathom.answer.AnswerJudge`):
the same matching rule and judge prompt the evaluation scores with. A match by the ``auto`` rule needs no call;
otherwise the judge role decides; a failed or unparseable judge call falls back to the matching verdict. Every
verdict records how it was reached and a transcript id."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from fathom.answer import AnswerJudge, judge_messages, parse_judge_output
from fathom.llm.base import LLMClient

__all__ = ["Method", "Verdict", "judge_answer", "judge_messages", "parse_judgement"]

Method = Literal["exact", "normalized", "llm", "fallback", "no_answer"]


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


def parse_judgement(text: str) -> bool | None:
    """True (correct) / False (incorrect or not attempted) / None (no verdict) from a judge reply."""
    label, _ = parse_judge_output(text)
    return None if label is None else label == "correct"


async def judge_answer(question: str, gold: str, pred: str | None, client: LLMClient | None, *,
                       max_tokens: int = 256, transcript_ref: str | None = None) -> Verdict:
    """Correctness of `pred` against `gold`. `client=None` judges by matching only."""
    g = await AnswerJudge(client, max_tokens=max_tokens).grade(question, gold, pred)
    method = g.method if g.method in ("exact", "normalized", "llm", "fallback", "no_answer") else (
        "normalized" if g.correct else "fallback")  # a grader rule (letter, number) decided without the judge
    return Verdict(answer=pred, correct=g.correct, method=method, judge_raw=g.raw, transcript_ref=transcript_ref)
