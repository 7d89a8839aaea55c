"""The evaluation's graders: the answer module's deterministic graders (multiple-choice letter, number, normalised
EM, token F1, auto) and its judge (SimpleQA-style CORRECT / INCORRECT / NOT_ATTEMPTED at temperature 0, rationale
stored), chosen per dataset.

Extraction, normalisation, matching and the judge live in :mod:`fathom.answer` — the same rules the RL reward and
DuetQA verification use; this module only picks the grader of a dataset. The grader is chosen per dataset
(``BenchmarkInfo.grader`` without a judge role, ``BenchmarkInfo.judge_grader`` with one) and its name is recorded
in every result row and in the report. An empty prediction is NOT_ATTEMPTED for every grader (the judge is not
called for it). Grading never raises: a failure is a Grade with ``error`` set, which the runner turns into a row
error.
"""

from __future__ import annotations

from fathom.answer import (
    DETERMINISTIC,
    JUDGE_SYSTEM,
    JUDGE_USER,
    AnswerJudge,
    Grade,
    Label,
    extract_answer,
    extract_boxed,
    extract_choice,
    grade,
    grade_auto,
    grade_em,
    grade_f1,
    grade_mc,
    grade_number,
    is_abstention,
    normalize_text,
    parse_judge_output,
    parse_number,
    strip_latex,
    token_f1,
)

LLMJudge = AnswerJudge  # the evaluation's name for the judge role

__all__ = [
    "DETERMINISTIC", "JUDGE_SYSTEM", "JUDGE_USER", "Grade", "Grader", "LLMJudge", "Label", "choose_grader",
    "extract_answer", "extract_boxed", "extract_choice", "grade_auto", "grade_em", "grade_f1", "grade_mc",
    "grade_number", "is_abstention", "normalize_text", "parse_judge_output", "parse_number", "strip_latex",
    "token_f1",
]


class Grader:
    """Grades predictions for one dataset with the grader chosen for it (deterministic or the judge)."""

    def __init__(self, name: str, judge: AnswerJudge | None = None):
        if name == "judge" and judge is None:
            raise ValueError("the judge grader needs a judge role")
        if name != "judge" and name not in DETERMINISTIC:
            raise ValueError(f"unknown grader {name!r}; choose from {sorted(DETERMINISTIC) + ['judge']}")
        self.name = name
        self.judge = judge

    async def grade(self, question: str, gold: str, pred: str | None) -> Grade:
        pred = pred or ""
        if self.name == "judge":
            assert self.judge is not None
            return await self.judge.grade(question, gold, pred)
        return grade(pred, gold, self.name, question=question)


def choose_grader(dataset_grader: str, dataset_judge_grader: str, judge: AnswerJudge | None,
                  override: str | None = None) -> Grader:
    """The grader for a dataset: an explicit override, else the judge grader when a judge is given, else the
    deterministic default."""
    if override:
        return Grader(override, judge)
    return Grader(dataset_judge_grader if judge is not None else dataset_grader, judge)
