"""Graders: pure deterministic graders (multiple-choice letter, number, normalised EM, token F1) and an LLM judge
role with SimpleQA-style CORRECT / INCORRECT / NOT_ATTEMPTED grading at temperature 0 (its rationale is stored).

Every grader returns a ``Grade``. The grader is chosen per dataset (``BenchmarkInfo.grader`` without a judge role,
``BenchmarkInfo.judge_grader`` with one) and its name is recorded in every result row and in the report.
An empty prediction is NOT_ATTEMPTED for every grader (the judge is not called for it).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field

Label = Literal["correct", "incorrect", "not_attempted"]


class Grade(BaseModel):
    """The verdict on one prediction."""

    label: Label
    score: float = Field(description="1.0/0.0 for correct/incorrect (token F1 for the f1 grader).")
    grader: str = Field(description="Name of the grader that produced this verdict.")
    f1: float | None = Field(default=None, description="Token F1 of prediction vs gold (free-text graders).")
    extracted: str | None = Field(default=None, description="What the grader compared (letter, number, text).")
    rationale: str | None = Field(default=None, description="The judge's reasoning (LLM judge only).")
    error: str | None = Field(default=None, description="Grading problem (judge call failed / unparseable).")

    @property
    def correct(self) -> bool:
        return self.label == "correct"


# ---------------------------------------------------------------------------------------------------------------
# Answer extraction (pure)

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}``/``\\fbox{...}`` with brace matching (``\\boxed{\\frac{1}{2}}`` ->
    ``\\frac{1}{2}``); None if there is none or it is unbalanced."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth = 1
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    return text[start:i].strip()
    return None


_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_FINAL = re.compile(r"(?:final answer|answer)\s*(?:is)?\s*[:：]\s*(.+)", re.IGNORECASE)


def extract_answer(text: str | None) -> str:
    """Final answer from free model output: last ``\\boxed{}``, else last ``<answer>…</answer>``, else a
    ``Final answer:``/``Answer:`` line, else the last non-empty line. Never the system prompt's example: callers
    pass only the model's own text."""
    if not text:
        return ""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip()
    lines = [ln.strip() for ln in text.strip().split("\n") if ln.strip()]
    for ln in reversed(lines):
        m = _FINAL.search(ln)
        if m:
            return m.group(1).strip()
    return lines[-1] if lines else ""


# ---------------------------------------------------------------------------------------------------------------
# Normalisation (pure)

_ABSTAIN = re.compile(
    r"^(i\s+(do\s+not|don'?t)\s+know|unknown|not\s+sure|cannot\s+(be\s+)?determine[d]?|can'?t\s+determine|"
    r"no\s+answer|n/?a|none|insufficient\s+information|i\s+cannot\s+answer|i\s+can'?t\s+answer)\b", re.IGNORECASE)
_LATEX_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{([^{}]*)\}")


def strip_latex(text: str) -> str:
    text = _LATEX_WRAP.sub(r"\1", text)
    return text.replace("$", "").replace("\\,", "").replace("\\!", "").replace("\\ ", " ").strip()


_PUNCT = re.compile(r"[^\w\s]|_")
_ARTICLES = frozenset(("a", "an", "the"))
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


@lru_cache(maxsize=65536)
def normalize_text(text: str) -> str:
    """SQuAD-style normalisation: NFKD, drop accents, lowercase, drop thousands separators ("1,630" = "1630"),
    punctuation and articles, squeeze spaces."""
    text = unicodedata.normalize("NFKD", strip_latex(text))
    if not text.isascii():
        text = "".join(c for c in text if not unicodedata.combining(c))
    text = _PUNCT.sub(" ", _THOUSANDS.sub("", text.lower()))
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def is_abstention(pred: str) -> bool:
    p = pred.strip().strip(".").strip()
    return not p or bool(_ABSTAIN.match(p))


def token_f1(pred: str, gold: str) -> float:
    """Bag-of-tokens F1 of the normalised strings (SQuAD)."""
    p, g = normalize_text(pred).split(), normalize_text(gold).split()
    if not p or not g:
        return float(p == g)
    common = Counter(p) & Counter(g)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(p), overlap / len(g)
    return 2 * precision * recall / (precision + recall)


_LEAD_LETTER = re.compile(r"^\(?([A-Ja-j])[).:](?:\s|$)|^\(([A-Ja-j])\)")
_KEYWORD_LETTER = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:\(([A-Ja-j])\)|([A-J])\b)", re.IGNORECASE)
_PAREN_LETTER = re.compile(r"\(([A-J])\)")


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


_NUMBER = re.compile(r"[-+−]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+−]?\.\d+")


def parse_number(text: str) -> float | None:
    """The last number in ``text`` (``"1,234"``, ``"$70"``, ``"70.0"``, ``"\\frac{3}{4}"``, ``"−5"``), or None."""
    t = strip_latex(text)
    frac = re.search(r"\\d?frac\{\s*([-\d.]+)\s*\}\{\s*([-\d.]+)\s*\}", t)
    if frac:
        try:
            return float(frac.group(1)) / float(frac.group(2))
        except (ValueError, ZeroDivisionError):
            return None
    simple = re.fullmatch(r"\s*([-+]?\d+)\s*/\s*(\d+)\s*", t)
    if simple and int(simple.group(2)) != 0:
        return int(simple.group(1)) / int(simple.group(2))
    nums = _NUMBER.findall(t)
    if not nums:
        return None
    raw = nums[-1].replace(",", "").replace("−", "-")
    try:
        return float(raw)
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------------
# Deterministic graders (pure)

def _not_attempted(grader: str, pred: str) -> Grade | None:
    if is_abstention(pred):
        return Grade(label="not_attempted", score=0.0, grader=grader, extracted=pred.strip() or None, f1=0.0)
    return None


def grade_mc(pred: str, gold: str) -> Grade:
    """Multiple choice: the option letter of the prediction equals the gold letter."""
    if (na := _not_attempted("mc", pred)) is not None:
        return na
    letter = extract_choice(pred)
    gold_letter = extract_choice(gold) or gold.strip().upper()
    if letter is None:
        return Grade(label="incorrect", score=0.0, grader="mc", extracted=None)
    ok = letter == gold_letter
    return Grade(label="correct" if ok else "incorrect", score=float(ok), grader="mc", extracted=letter)


def grade_number(pred: str, gold: str, *, rel_tol: float = 1e-6) -> Grade:
    """Numeric exact match (integers exactly, decimals within a relative tolerance)."""
    if (na := _not_attempted("number", pred)) is not None:
        return na
    p, g = parse_number(pred), parse_number(gold)
    if p is None or g is None:
        return Grade(label="incorrect", score=0.0, grader="number", extracted=None)
    ok = abs(p - g) <= rel_tol * max(1.0, abs(g))
    shown = str(int(p)) if p.is_integer() else repr(p)
    return Grade(label="correct" if ok else "incorrect", score=float(ok), grader="number", extracted=shown)


def grade_em(pred: str, gold: str) -> Grade:
    """Normalised exact match; the gold may list alternatives separated by ``|``. Token F1 is recorded too."""
    if (na := _not_attempted("em", pred)) is not None:
        return na
    golds = [g for g in gold.split("|") if g.strip()] if "|" in gold else [gold]
    np_ = normalize_text(pred)
    ok = any(np_ == normalize_text(g) for g in golds)
    f1 = max(token_f1(pred, g) for g in golds)
    return Grade(label="correct" if ok else "incorrect", score=float(ok), grader="em", extracted=np_, f1=f1)


def grade_f1(pred: str, gold: str, *, threshold: float = 0.5) -> Grade:
    """Token F1 for long free-text answers; CORRECT when F1 >= threshold (score is the F1 itself)."""
    if (na := _not_attempted("f1", pred)) is not None:
        return na
    f1 = token_f1(pred, gold)
    return Grade(label="correct" if f1 >= threshold else "incorrect", score=f1, grader="f1",
                 extracted=normalize_text(pred), f1=f1)


def grade_auto(pred: str, gold: str) -> Grade:
    """Dispatch on the gold's shape: an option letter -> mc, a number -> number, else normalised EM."""
    g = gold.strip()
    if len(g) == 1 and g.upper() in "ABCDEFGHIJ":
        return grade_mc(pred, gold)
    if re.fullmatch(r"[-+]?\d[\d,]*(\.\d+)?", g):
        return grade_number(pred, gold)
    return grade_em(pred, gold)


DETERMINISTIC: dict[str, Callable[[str, str], Grade]] = {
    "mc": grade_mc, "number": grade_number, "em": grade_em, "f1": grade_f1, "auto": grade_auto,
}


# ---------------------------------------------------------------------------------------------------------------
# LLM judge

JUDGE_SYSTEM = """You are grading an answer to a question against a gold target, in the style of SimpleQA.
Grade the predicted answer as exactly one of:
CORRECT: it contains the gold target's meaning without contradicting it (case, formatting, extra detail, \
small spelling differences and equivalent phrasing are fine; for numbers the value must match to the precision \
given by the gold target; for multiple choice the option label must match).
INCORRECT: it states an answer that contradicts the gold target or is a different answer, including hedged \
answers that list several candidates.
NOT_ATTEMPTED: it does not give an answer (refusal, "I don't know", asks for more information, empty, or only \
discusses the question) and does not contradict the gold target.
First write a short rationale (one to three sentences). Then, on the last line, write "GRADE: " followed by \
CORRECT, INCORRECT or NOT_ATTEMPTED."""

JUDGE_USER = """Question: {question}
Gold target: {gold}
Predicted answer: {pred}

Rationale, then the last line "GRADE: CORRECT|INCORRECT|NOT_ATTEMPTED"."""

_GRADE_LINE = re.compile(r"GRADE\s*[:：]\s*\**\s*(NOT[\s_-]*ATTEMPTED|INCORRECT|CORRECT|[ABC])\b", re.IGNORECASE)
_ANY_LABEL = re.compile(r"\b(NOT[\s_-]*ATTEMPTED|INCORRECT|CORRECT|UNKNOWN)\b", re.IGNORECASE)
_LETTER_LABEL = {"A": "correct", "B": "incorrect", "C": "not_attempted"}


def parse_judge_output(text: str) -> tuple[Label | None, str]:
    """(label, rationale) from a judge reply. Prefers an explicit ``GRADE: X`` line (SimpleQA letters A/B/C are
    accepted too), else the last bare label word; ``unknown`` (the reference's word) maps to NOT_ATTEMPTED.
    Returns (None, text) when no label can be found."""
    text = (text or "").strip()
    m = None
    for m in _GRADE_LINE.finditer(text):
        pass
    if m is not None:
        raw = m.group(1).upper()
        rationale = (text[: m.start()] + text[m.end():]).strip()
    else:
        found = _ANY_LABEL.findall(text)
        if not found:
            return None, text
        raw = found[-1].upper()
        rationale = text
    raw = re.sub(r"[\s_-]+", "_", raw)
    label: Label
    if raw in _LETTER_LABEL:
        label = _LETTER_LABEL[raw]  # type: ignore[assignment]
    elif raw in ("NOT_ATTEMPTED", "UNKNOWN"):
        label = "not_attempted"
    elif raw == "INCORRECT":
        label = "incorrect"
    else:
        label = "correct"
    return label, rationale


class LLMJudge:
    """SimpleQA-style judge over any chat role (temperature 0). Concurrency is bounded by ``concurrency``.
    A failed call or an unparseable reply gives label INCORRECT with ``error`` set (counted, never dropped)."""

    name = "judge"

    def __init__(self, client, *, concurrency: int = 8, max_tokens: int = 256, timeout_s: float = 120.0):
        self.client = client
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self._sem = asyncio.Semaphore(max(1, int(concurrency)))
        self.calls = 0

    def messages(self, question: str, gold: str, pred: str) -> list[dict]:
        return [{"role": "system", "content": JUDGE_SYSTEM},
                {"role": "user", "content": JUDGE_USER.format(question=question, gold=gold, pred=pred)}]

    async def grade(self, question: str, gold: str, pred: str) -> Grade:
        if not pred or not pred.strip():
            return Grade(label="not_attempted", score=0.0, grader=self.name, f1=0.0,
                         rationale="empty prediction (judge not called)")
        f1 = token_f1(pred, gold)
        try:
            async with self._sem:
                self.calls += 1
                comp = await asyncio.wait_for(
                    self.client.chat(self.messages(question, gold, pred), max_tokens=self.max_tokens,
                                     temperature=0.0),
                    timeout=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a counted grading error
            return Grade(label="incorrect", score=0.0, grader=self.name, f1=f1,
                         error=f"judge call failed: {type(exc).__name__}: {exc}"[:500])
        label, rationale = parse_judge_output(comp.text)
        if label is None:
            return Grade(label="incorrect", score=0.0, grader=self.name, f1=f1, rationale=rationale[:4000],
                         error="judge reply has no CORRECT/INCORRECT/NOT_ATTEMPTED label")
        return Grade(label=label, score=float(label == "correct"), grader=self.name, f1=f1,
                     rationale=rationale[:4000])


class Grader:
    """Grades predictions for one dataset with the grader chosen for it (deterministic or the judge)."""

    def __init__(self, name: str, judge: LLMJudge | None = None):
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
        return DETERMINISTIC[self.name](pred, gold)


def choose_grader(dataset_grader: str, dataset_judge_grader: str, judge: LLMJudge | None,
                  override: str | None = None) -> Grader:
    """The grader for a dataset: an explicit override, else the judge grader when a judge is given, else the
    deterministic default."""
    if override:
        return Grader(override, judge)
    return Grader(dataset_judge_grader if judge is not None else dataset_grader, judge)
