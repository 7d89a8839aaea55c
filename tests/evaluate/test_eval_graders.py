"""Graders from worked examples, and the LLM judge through an OpenAI-compatible stub on loopback."""

from __future__ import annotations

import pytest

from fathom.evaluate.graders import (
    Grader,
    LLMJudge,
    choose_grader,
    extract_answer,
    extract_boxed,
    extract_choice,
    grade_auto,
    grade_em,
    grade_f1,
    grade_mc,
    grade_number,
    normalize_text,
    parse_judge_output,
    parse_number,
    token_f1,
)
from fathom.llm import make_client


@pytest.mark.parametrize("pred,letter", [
    ("B", "B"), ("(b)", "B"), ("b) Only two", "B"), ("The answer is C", "C"), ("Answer: D", "D"),
    ("\\boxed{A}", "A"), ("A. foo", "A"), ("I think (B), no wait, (C)", "C"), ("a cat", None), ("bob", None),
])
def test_extract_choice(pred, letter):
    assert extract_choice(pred) == letter


def test_mc_grader():
    assert grade_mc("(c)", "C").label == "correct"
    assert grade_mc("D", "C").label == "incorrect"
    assert grade_mc("", "C").label == "not_attempted"
    assert grade_mc("I don't know", "C").label == "not_attempted"
    assert grade_mc("probably the second one", "B").label == "incorrect"


@pytest.mark.parametrize("text,value", [
    ("70", 70.0), ("1,234", 1234.0), ("$70", 70.0), ("\\frac{3}{4}", 0.75), ("3/4", 0.75), ("x = −5", -5.0),
    ("the answer is 2.50 m", 2.5), ("none", None),
])
def test_parse_number(text, value):
    assert parse_number(text) == value


def test_number_grader():
    assert grade_number("\\boxed{70}".replace("\\boxed{", "").rstrip("}"), "70").label == "correct"
    assert grade_number("70.0", "70").correct and grade_number("1,000", "1000").correct
    assert grade_number("71", "70").label == "incorrect"
    assert grade_number("seventy", "70").label == "incorrect"


def test_normalised_em_and_f1_worked_examples():
    assert normalize_text("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_text("Café Müller") == "cafe muller"
    assert grade_em("the eiffel tower.", "Eiffel Tower").correct
    assert grade_em("Paris", ["London", "Paris"]).correct  # aliases are a list...
    assert not grade_em("Paris", "London|Paris").correct  # ...a string is one answer ("|" is part of real answers)
    assert grade_em("London|Paris", "London|Paris").correct
    g = grade_em("Jane Ballou", "Jane Ballou Smith")
    assert g.label == "incorrect" and g.f1 == pytest.approx(0.8)  # P=1, R=2/3
    assert token_f1("w x y z", "y z u v") == pytest.approx(0.5)
    assert token_f1("a b c d", "c d e f") == pytest.approx(4 / 7)  # article "a" dropped: P=2/3, R=1/2
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert grade_f1("funded by EU4Health, started September 2022", "The project is funded by the EU4Health program, "
                    "it started in September 2022").label == "correct"
    assert grade_em("I don't know.", "Paris").label == "not_attempted"


def test_auto_dispatch():
    assert grade_auto("B", "B").grader == "mc"
    assert grade_auto("70", "70").grader == "number"
    assert grade_auto("Michio Sugeno", "Michio Sugeno").grader == "em"


def test_extract_answer():
    assert extract_boxed("x \\boxed{\\frac{1}{2}} y") == "\\frac{1}{2}"
    assert extract_boxed("\\boxed{a} then \\boxed{b}") == "b"
    assert extract_boxed("\\boxed{unbalanced") is None
    assert extract_answer("so <answer> Paris </answer>") == "Paris"
    assert extract_answer("reasoning...\nFinal answer: Rome") == "Rome"
    assert extract_answer("line one\nlast line\n") == "last line"
    assert extract_answer("") == ""


@pytest.mark.parametrize("reply,label", [
    ("The prediction names the same person.\nGRADE: CORRECT", "correct"),
    ("Different city.\nGRADE: INCORRECT", "incorrect"),
    ("The model refused.\nGRADE: NOT_ATTEMPTED", "not_attempted"),
    ("GRADE: not attempted", "not_attempted"),
    ("GRADE: **B**", "incorrect"),
    ("correct", "correct"),
    ("incorrect", "incorrect"),
    ("unknown", "not_attempted"),
    ("no label here", None),
])
def test_parse_judge_output(reply, label):
    assert parse_judge_output(reply)[0] == label


def test_parse_judge_keeps_rationale():
    label, why = parse_judge_output("Both name Michio Sugeno.\nGRADE: CORRECT")
    assert label == "correct" and why == "Both name Michio Sugeno."


async def test_llm_judge_over_loopback(llm_stub):
    def reply(user: str) -> str:
        pred = user.split("Predicted answer: ")[1].split("\n")[0]
        if pred == "Sugeno, Michio":
            return "Same person as the gold target.\nGRADE: CORRECT"
        if pred == "pass":
            return "The model did not answer.\nGRADE: NOT_ATTEMPTED"
        if pred == "garbage":
            return "I am not sure what to say"
        return "A different person.\nGRADE: INCORRECT"

    llm_stub.reply = reply
    client = make_client(llm_stub.role)
    judge = LLMJudge(client, concurrency=4)
    q, gold = "Who received the IEEE Frank Rosenblatt Award in 2010?", "Michio Sugeno"
    g = await judge.grade(q, gold, "Michio Sugeno")  # the deterministic rule accepts it: no judge call
    assert g.label == "correct" and g.method == "exact" and g.grader == "judge" and not llm_stub.requests
    g = await judge.grade(q, gold, "Sugeno, Michio")
    assert g.label == "correct" and g.rationale == "Same person as the gold target." and g.method == "llm"
    assert (await judge.grade(q, gold, "Geoffrey Hinton")).label == "incorrect"
    assert (await judge.grade(q, gold, "pass")).label == "not_attempted"
    bad = await judge.grade(q, gold, "garbage")
    assert bad.label == "incorrect" and bad.error and "no CORRECT" in bad.error
    n_before = len(llm_stub.requests)
    empty = await judge.grade(q, gold, "")
    assert empty.label == "not_attempted" and len(llm_stub.requests) == n_before  # judge not called
    body = llm_stub.requests[0]
    assert body["temperature"] == 0.0 and body["messages"][0]["role"] == "system"
    assert "Gold target: Michio Sugeno" in body["messages"][1]["content"]  # gold not lower-cased
    await client.aclose()


async def test_judge_transport_failure_is_an_error_grade():
    from fathom.config import RoleConfig

    client = make_client(RoleConfig(model="m", base_url="http://127.0.0.1:9/v1", max_retries=0, timeout_s=2))
    g = await LLMJudge(client).grade("q", "a", "b")
    assert g.label == "incorrect" and g.error.startswith("judge call failed")
    await client.aclose()


def test_choose_grader():
    assert choose_grader("em", "judge", None).name == "em"
    judge = LLMJudge(object())
    assert choose_grader("em", "judge", judge).name == "judge"
    assert choose_grader("mc", "mc", judge).name == "mc"  # MC needs no judge
    assert choose_grader("em", "judge", None, override="f1").name == "f1"
    with pytest.raises(ValueError, match="judge role"):
        Grader("judge", None)
