"""Deterministic answer matching (pure): multiple-choice letter, number, normalised exact match, token F1, and
``auto`` (dispatch on the gold's shape). The evaluation graders, the RL answer reward and DuetQA verification all
decide with these functions, so the policy is rewarded by the rule it is scored by.

Every grader takes ``(pred, gold, *, question="")`` and returns a :class:`Grade`; a gold may be one string or a list
of aliases (a string is never split: ``|`` is part of many real answers). A prediction equal to the gold after
normalisation is correct for every grader (so gold answers like ``None`` or ``b) Only two`` grade themselves
correct); otherwise an empty or refusing prediction is NOT_ATTEMPTED. :func:`grade` never raises: a grader failure
becomes a Grade with ``error`` set.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

from fathom.answer.extract import extract_boxed
from fathom.answer.normalize import is_abstention, normalize_answer, strip_latex

Label = Literal["correct", "incorrect", "not_attempted"]
Method = Literal["exact", "normalized", "rule", "llm", "fallback", "no_answer"]
Gold = str | Sequence[str]


class Grade(BaseModel):
    """The verdict on one prediction."""

    label: Label
    score: float = Field(description="1.0/0.0 for correct/incorrect (token F1 for the f1 grader).")
    grader: str = Field(description="Name of the grader that produced this verdict.")
    f1: float | None = Field(default=None, description="Token F1 of prediction vs gold (free-text graders).")
    extracted: str | None = Field(default=None, description="What the grader compared (letter, number, text).")
    rationale: str | None = Field(default=None, description="The judge's reasoning (LLM judge only).")
    error: str | None = Field(default=None, description="Grading problem (judge call failed / unparseable / a "
                              "grader failure).")
    method: Method | None = Field(default=None, description="How the verdict was reached: exact / normalized "
                                  "string match, a grader rule, the LLM judge, a fallback after a judge failure, or "
                                  "no answer to grade.")
    raw: str | None = Field(default=None, description="The judge's raw reply (or the error), when it was asked.")

    @property
    def correct(self) -> bool:
        return self.label == "correct"


def golds_of(gold: Gold | None) -> list[str]:
    """The gold aliases as a list of strings (a string is one alias)."""
    if gold is None:
        return []
    if isinstance(gold, str):
        return [gold]
    return [str(g) for g in gold if g is not None]


def token_f1(pred: str, gold: str) -> float:
    """Bag-of-tokens F1 of the normalised strings (SQuAD)."""
    p, g = normalize_answer(pred).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(p), overlap / len(g)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------------------------------------------
# Multiple choice

_LEAD_LETTER = re.compile(r"^\(?([A-Ja-j])[).:](?:\s|$)|^\(([A-Ja-j])\)")
_KEYWORD_LETTER = re.compile(r"(?:answer|option|choice)\s*(?:(?:is|:)\s*)?(?:\(([A-Ja-j])\)|([A-J])\b)",
                             re.IGNORECASE)
_PAREN_LETTER = re.compile(r"\(([A-J])\)")
_GOLD_OPTION = re.compile(r"^\s*\(?([A-Ja-j])\)\s+(\S.*)$", re.DOTALL)  # "b) Only two", "(B) Only two"
_OPTION_LINE = re.compile(r"^[ \t]*\(?([A-J])[.)][ \t]+(\S[^\n]*)$", re.MULTILINE)  # "C. Non-Elitism"
_OPTION_INLINE = re.compile(r"\(([A-J])\)[ \t]*([^()\n]+?)(?=[ \t]*\([A-J]\)|\n|$)")  # "(A) x (B) y"


def extract_choice(pred: str) -> str | None:
    """Option letter A–J from a prediction (``"B"``, ``"(b)"``, ``"b) Only two"``, ``"The answer is C"``,
    ``"\\boxed{A}"``); a lowercase bare letter counts only with a delimiter (so "a cat" is not option A)."""
    p = strip_latex(extract_boxed(pred) or pred).strip()
    if len(p) == 1 and p.upper() in "ABCDEFGHIJ":
        return p.upper()
    for pat in (_LEAD_LETTER, _KEYWORD_LETTER, _PAREN_LETTER):
        m = None
        for m in pat.finditer(p):
            if pat is not _PAREN_LETTER:
                break
        if m:
            letter = next(g for g in m.groups() if g)
            if pat is _KEYWORD_LETTER and m.group(2) and not m.group(2).isupper():
                continue
            return letter.upper()
    return None


def parse_options(question: str) -> dict[str, str]:
    """Option letter -> normalised option text, from ``A. text`` lines or inline ``(A) text (B) text``."""
    opts: dict[str, str] = {}
    for pat in (_OPTION_LINE, _OPTION_INLINE):
        for m in pat.finditer(question or ""):
            text = normalize_answer(m.group(2))
            if text:
                opts.setdefault(m.group(1).upper(), text)
        if len(opts) >= 2:
            return opts
    return opts if len(opts) >= 2 else {}


def gold_choice(gold: str) -> tuple[str | None, str]:
    """(letter, option text) of a gold written as an option: ``"C"`` -> (C, ""), ``"b) Only two"`` ->
    (B, "only two"); (None, "") when the gold is not an option."""
    g = gold.strip()
    if len(g) == 1 and g.upper() in "ABCDEFGHIJ":
        return g.upper(), ""
    m = _GOLD_OPTION.match(g)
    if m:
        return m.group(1).upper(), normalize_answer(m.group(2))
    return None, ""


def _pred_option_text(pred: str) -> str:
    """The text after a leading option label of the prediction ("D. Non-Elitism" -> "non elitism")."""
    p = strip_latex(extract_boxed(pred) or pred).strip()
    m = _LEAD_LETTER.match(p)
    return normalize_answer(p[m.end():]) if m else ""


def _same(pred: str, golds: list[str]) -> Grade | None:
    """The shared first rule: a prediction equal to a gold (exactly, or after normalisation) is correct."""
    p = pred.strip()
    for g in golds:
        if p and p == g.strip():
            return Grade(label="correct", score=1.0, grader="", extracted=p, f1=1.0, method="exact")
    np_ = normalize_answer(p)
    if np_ and any(np_ == normalize_answer(g) for g in golds):
        return Grade(label="correct", score=1.0, grader="", extracted=np_, f1=1.0, method="normalized")
    return None


def _first_rules(grader: str, pred: str, golds: list[str]) -> Grade | None:
    same = _same(pred, golds)
    if same is not None:
        return same.model_copy(update={"grader": grader})
    if is_abstention(pred):
        return Grade(label="not_attempted", score=0.0, grader=grader, extracted=pred.strip() or None, f1=0.0,
                     method="no_answer")
    return None


def grade_mc(pred: str, gold: Gold, *, question: str = "") -> Grade:
    """Multiple choice: the option letter of the prediction equals the gold letter. With the question's options
    known, a prediction whose text names another option than its letter ("D. Non-Elitism" when Non-Elitism is C)
    is incorrect, and a prediction that only states an option's text counts as that option."""
    golds = golds_of(gold)
    if (first := _first_rules("mc", pred, golds)) is not None:
        return first
    options = parse_options(question)
    wanted: dict[str, str] = {}
    for g in golds:
        letter, text = gold_choice(g)
        wanted[letter or g.strip().upper()] = text
        if letter and text:
            options.setdefault(letter, text)
    letter = extract_choice(pred)
    said = _pred_option_text(pred) if letter else normalize_answer(strip_latex(extract_boxed(pred) or pred))
    named = [k for k, v in options.items() if said and v == said]
    if letter is None and len(named) == 1:
        letter = named[0]
    elif letter is not None and named and letter not in named:
        return Grade(label="incorrect", score=0.0, grader="mc", extracted=f"{letter} (text names {named[0]})",
                     method="rule")
    if letter is None:
        return Grade(label="incorrect", score=0.0, grader="mc", extracted=None, method="rule")
    ok = letter in wanted
    return Grade(label="correct" if ok else "incorrect", score=float(ok), grader="mc", extracted=letter,
                 method="rule")


# ---------------------------------------------------------------------------------------------------------------
# Numbers

_NUMBER = re.compile(r"[-+−]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+")
_FRAC = re.compile(r"\\d?frac\{\s*([-\d.]+)\s*\}\{\s*([-\d.]+)\s*\}")
_SIMPLE_FRAC = re.compile(r"\s*([-+]?\d+)\s*/\s*(\d+)\s*")
_NUMERIC_GOLD = re.compile(r"[-+]?\d[\d,]*(\.\d+)?")


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def parse_number(text: str) -> float | None:
    """The last number in ``text`` (``"1,234"``, ``"$70"``, ``"70.0"``, ``"\\frac{3}{4}"``, ``"3/4"``, ``"−5"``), or
    None. Numbers are parsed as floats (never ``int()``: a 400-digit numerator must not raise); a value that
    overflows to infinity is not a number."""
    t = strip_latex(text)
    frac = _FRAC.search(t)
    try:
        if frac:
            return _finite(float(frac.group(1)) / float(frac.group(2)))
        simple = _SIMPLE_FRAC.fullmatch(t)
        if simple:
            den = float(simple.group(2))
            return _finite(float(simple.group(1)) / den) if den else None
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    last = None
    for last in _NUMBER.finditer(t):
        pass
    if last is None:
        return None
    try:
        return _finite(float(last.group().replace(",", "").replace("−", "-")))
    except (ValueError, OverflowError):
        return None


def grade_number(pred: str, gold: Gold, *, question: str = "", rel_tol: float = 1e-6) -> Grade:
    """Numeric match (integers exactly, decimals within a relative tolerance)."""
    golds = golds_of(gold)
    if (first := _first_rules("number", pred, golds)) is not None:
        return first
    p = parse_number(pred)
    values = [v for v in (parse_number(g) for g in golds) if v is not None]
    if p is None or not values:
        return Grade(label="incorrect", score=0.0, grader="number", extracted=None, method="rule")
    ok = any(abs(p - g) <= rel_tol * max(1.0, abs(g)) for g in values)
    shown = str(int(p)) if p.is_integer() and abs(p) < 1e300 else repr(p)
    return Grade(label="correct" if ok else "incorrect", score=float(ok), grader="number", extracted=shown,
                 method="rule")


# ---------------------------------------------------------------------------------------------------------------
# Free text

def grade_em(pred: str, gold: Gold, *, question: str = "") -> Grade:
    """Normalised exact match against the gold (or any of its aliases). Token F1 is recorded too."""
    golds = golds_of(gold)
    f1 = max((token_f1(pred, g) for g in golds), default=0.0)
    if (first := _first_rules("em", pred, golds)) is not None:
        return first.model_copy(update={"f1": f1 if first.label != "correct" else 1.0})
    return Grade(label="incorrect", score=0.0, grader="em", extracted=normalize_answer(pred), f1=f1, method="rule")


def grade_f1(pred: str, gold: Gold, *, question: str = "", threshold: float = 0.5) -> Grade:
    """Token F1 for long free-text answers; CORRECT when F1 >= threshold (score is the F1 itself)."""
    golds = golds_of(gold)
    if (first := _first_rules("f1", pred, golds)) is not None:
        return first
    f1 = max((token_f1(pred, g) for g in golds), default=0.0)
    return Grade(label="correct" if f1 >= threshold else "incorrect", score=f1, grader="f1",
                 extracted=normalize_answer(pred), f1=f1, method="rule")


def grader_for_gold(gold: str) -> str:
    """The deterministic grader ``auto`` uses for one gold: an option (``C``, ``b) Only two``) -> mc, a number ->
    number, anything else -> em."""
    if gold_choice(gold)[0] is not None:
        return "mc"
    if _NUMERIC_GOLD.fullmatch(gold.strip()):
        return "number"
    return "em"


def grade_auto(pred: str, gold: Gold, *, question: str = "") -> Grade:
    """Dispatch on the gold's shape (per alias, the best verdict wins): option -> mc, number -> number, else em."""
    golds = golds_of(gold)
    best: Grade | None = None
    for g in golds or [""]:
        gr = DETERMINISTIC[grader_for_gold(g)](pred, g, question=question)
        if best is None or (gr.correct and not best.correct):
            best = gr
    assert best is not None
    return best


DETERMINISTIC: dict[str, Callable[..., Grade]] = {
    "mc": grade_mc, "number": grade_number, "em": grade_em, "f1": grade_f1, "auto": grade_auto,
}


def grade(pred: str | None, gold: Gold, grader: str = "auto", *, question: str = "") -> Grade:
    """Grade with a deterministic grader by name; never raises (a failure is an incorrect Grade with ``error``)."""
    try:
        fn = DETERMINISTIC[grader]
    except KeyError:
        raise ValueError(f"unknown grader {grader!r}; choose from {sorted(DETERMINISTIC)}") from None
    try:
        return fn(pred or "", gold, question=question)
    except Exception as exc:  # noqa: BLE001 - a grading failure is counted, never a crash of the run
        return Grade(label="incorrect", score=0.0, grader=grader, method="rule",
                     error=f"grading failed: {type(exc).__name__}: {exc}"[:500])


def answers_match(gold: Gold | None, pred: str | None) -> str | None:
    """``"exact"`` or ``"normalized"`` when ``pred`` matches ``gold`` by the ``auto`` rule, else None."""
    if gold is None or pred is None or not pred.strip():
        return None
    g = grade(pred, gold, "auto")
    if not g.correct:
        return None
    return "exact" if g.method == "exact" else "normalized"


def exact_match(pred: str | None, gold: Gold | None) -> bool:
    """True when ``pred`` matches ``gold`` (or any alias) by the ``auto`` rule."""
    return answers_match(gold, pred) is not None
