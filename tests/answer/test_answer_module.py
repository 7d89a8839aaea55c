"""fathom.answer from worked examples: extraction, normalisation, matching and the judge rule — the one rule the
evaluation scores with, the RL reward pays for and DuetQA verifies with."""

from __future__ import annotations

import time

import pytest

from fathom.answer import (
    AnswerJudge,
    answers_match,
    exact_match,
    extract_answer,
    extract_boxed,
    gold_choice,
    grade,
    grade_auto,
    grade_mc,
    grade_number,
    normalize_answer,
    parse_judge_output,
    parse_options,
)


@pytest.mark.parametrize("text,expected", [
    ("so \\boxed{42}.", "42"),
    ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),
    ("\\boxed{a} then \\boxed{b}", "b"),
    ("\\boxed{a} then \\boxed{ }", "a"),  # an empty box is skipped
    ("\\boxed{a} then \\boxed{b", "a"),  # an unclosed box is skipped
    ("\\boxed {x}", "x"),
    ("\\fbox{y}", "y"),
    ("The answer is \\boxed 7$ km", "7"),
    ("\\boxed{\\boxed{inner}}", "inner"),  # the last box to start
    ("no box here", None),
    ("", None),
])
def test_extract_boxed_worked_examples(text, expected):
    assert extract_boxed(text) == expected


def test_extract_answer_fallbacks():
    assert extract_answer("so <answer> Paris </answer>") == "Paris"
    assert extract_answer("<answer>a<answer>b</answer>") == "b"  # innermost of the last pair
    assert extract_answer("reasoning...\nFinal answer: Rome\nthanks") == "Rome"
    assert extract_answer("The answer is: 12") == "12"
    assert extract_answer("line one\nlast line\n") == "last line"
    assert extract_answer(None) == ""


@pytest.mark.parametrize("make", [
    lambda n: "x" * n + "\\boxed{42}",
    lambda n: "\\boxed{" * (n // 7),
    lambda n: "\\boxed{}" * (n // 8),
    lambda n: "\\boxed{" + "{}" * (n // 2),
    lambda n: ("answer" + " " * 5000) * (n // 5006),
    lambda n: "<answer>" * (n // 8),
    lambda n: "<tool_call>" * (n // 11),
])
def test_extraction_is_linear_a_1mb_turn_under_100ms(make):
    """Linear, not quadratic: 10× the text costs well under 100× the CPU (a quadratic scan of 1 MB costs seconds).
    CPU seconds of this process, best of 3, so that other jobs on the machine do not decide it; the 100 ms figure
    itself is the fuzz benchmark's (`benchmarks/bench_fuzz.py`)."""
    def cpu(n: int) -> float:
        text = make(n)
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            extract_boxed(text)
            extract_answer(text)
            best = min(best, time.process_time() - t0)
        return best

    small, large = cpu(100_000), cpu(1_000_000)
    assert large < 0.5, f"{large * 1000:.0f} ms of CPU for 1 MB"
    assert large < 30 * max(small, 0.002), f"100 kB {small * 1000:.1f} ms, 1 MB {large * 1000:.1f} ms of CPU"


def test_normalisation():
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("\\text{Café Müller}") == "cafe muller"
    assert normalize_answer("1,630 km") == "1630 km"
    assert normalize_answer(None) == ""


def test_grader_fixes_of_issue_9():
    q = ("Which condition of Arrhenius's sixth impossibility theorem do critical-level views violate?\n\n"
         "Answer Choices:\nA. Egalitarian Dominance\nB. General Non-Extreme Priority\nC. Non-Elitism\n"
         "D. Weak Non-Sadism\n")
    assert parse_options(q)["C"] == "non elitism"
    assert not grade_mc("D. Non-Elitism", "D", question=q).correct  # the text names option C
    assert grade_mc("D. Weak Non-Sadism", "D", question=q).correct
    assert grade_mc("Weak Non-Sadism", "D", question=q).correct  # the text alone names D
    assert gold_choice("b) Only two") == ("B", "only two")
    for pred in ("b", "B", "\\boxed{b}", "(b)", "Only two", "b) Only two"):
        assert grade_auto(pred, "b) Only two").correct, pred
    assert not grade_auto("c", "b) Only two").correct
    assert grade_auto("None", "None").correct and grade_auto("none", "None").correct  # gold none is an answer
    assert grade_auto("$|x|$", "$|x|$").correct and not grade_auto("x", "|x| or y")  .correct
    g = grade_number("1" * 400 + "/1", "1")  # no int() overflow: just not a number
    assert g.label == "incorrect" and g.error is None
    assert grade("x", "1", "number").error is None


def test_one_rule_for_eval_rl_and_duetqa():
    assert answers_match("The Beatles", "the beatles.") == "normalized"
    assert answers_match("1,000", "1000") == "normalized"
    assert answers_match("Paris", "Paris") == "exact"
    assert answers_match("C", "(c)") == "normalized"
    assert answers_match("Paris", "Lyon") is None and answers_match("x", None) is None
    assert exact_match("42", ["forty-two", "42"])
    for pred, gold in [("the paris", "Paris"), ("70.0", "70"), ("(b)", "B"), ("Lyon", "Paris")]:
        assert exact_match(pred, gold) == grade(pred, gold, "auto").correct


class _Chat:
    def __init__(self, reply=None, exc=None):
        self.reply, self.exc, self.calls = reply, exc, 0

    async def chat(self, messages, **kw):
        from fathom.llm.base import Completion

        self.calls += 1
        if self.exc:
            raise self.exc
        return Completion(text=self.reply)


async def test_judge_rule():
    j = AnswerJudge(_Chat("Same city.\nGRADE: CORRECT"))
    assert (await j.grade("q", "Paris", "")).label == "not_attempted" and j.client.calls == 0
    g = await j.grade("q", "Paris", "paris")
    assert g.correct and g.method == "normalized" and j.client.calls == 0
    g = await j.grade("q", "Paris", "the French capital")
    assert g.correct and g.method == "llm" and g.rationale == "Same city." and j.client.calls == 1
    down = AnswerJudge(_Chat(exc=TimeoutError("down")))
    g = await down.grade("q", "Paris", "Lyon")
    assert not g.correct and g.method == "fallback" and g.error.startswith("judge call failed") and down.fallbacks == 1
    assert await AnswerJudge(None).judge("q", "paris", "Paris") is True
    assert parse_judge_output("yes")[0] == "correct" and parse_judge_output("no.")[0] == "incorrect"
    assert parse_judge_output("no label here")[0] is None
