"""One answer module: extraction of the final answer from model text, normalisation, deterministic matching and
the judge call. The evaluation graders, the RL answer reward, the stage-2 filter and DuetQA verification all use
it, so the policy is rewarded by the rule it is scored by.

    extract   extract_boxed, extract_answer          (linear time in the text)
    normalize normalize_answer, strip_latex, is_abstention
    grade     Grade, grade (mc | number | em | f1 | auto), answers_match, exact_match, token_f1, parse_number
    judge     AnswerJudge (the decision rule with a judge role), parse_judge_output, judge_messages
"""

from fathom.answer.extract import MAX_BOXED_CHARS, extract_answer, extract_answer_tag, extract_boxed
from fathom.answer.grade import (
    DETERMINISTIC,
    Grade,
    Label,
    Method,
    answers_match,
    exact_match,
    extract_choice,
    gold_choice,
    golds_of,
    grade,
    grade_auto,
    grade_em,
    grade_f1,
    grade_mc,
    grade_number,
    grader_for_gold,
    parse_number,
    parse_options,
    token_f1,
)
from fathom.answer.judge import JUDGE_SYSTEM, JUDGE_USER, AnswerJudge, judge_messages, parse_judge_output
from fathom.answer.normalize import is_abstention, normalize_answer, normalize_text, strip_latex

__all__ = [
    "DETERMINISTIC", "JUDGE_SYSTEM", "JUDGE_USER", "MAX_BOXED_CHARS", "AnswerJudge", "Grade", "Label", "Method",
    "answers_match", "exact_match", "extract_answer", "extract_answer_tag", "extract_boxed", "extract_choice",
    "gold_choice", "golds_of", "grade", "grade_auto", "grade_em", "grade_f1", "grade_mc", "grade_number",
    "grader_for_gold", "is_abstention", "judge_messages", "normalize_answer", "normalize_text", "parse_judge_output",
    "parse_number", "parse_options", "strip_latex", "token_f1",
]
