"""The answer judge: one prompt, one reply parser and one decision rule for every place that asks "is this answer
right?" — the evaluation's judge grader, the RL answer reward and DuetQA verification.

Rule (:meth:`AnswerJudge.grade`): an empty prediction is NOT_ATTEMPTED (no call); a prediction the deterministic
``auto`` rule already accepts is CORRECT (no call); otherwise the judge role decides, SimpleQA style (CORRECT /
INCORRECT / NOT_ATTEMPTED at temperature 0, its rationale kept). A failed call or an unparseable reply falls back
to the deterministic verdict and records ``error`` (counted by the caller, never dropped). Without a judge role the
deterministic verdict is final.
"""

from __future__ import annotations

import asyncio
import logging
import re

from fathom.answer.grade import Gold, Grade, Label, golds_of, grade, token_f1

log = logging.getLogger(__name__)

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
_YES = re.compile(r"^\W*(yes|true|right)\s*(?:[.,!:;]|$)", re.IGNORECASE)  # "yes", "Yes, they match"
_NO = re.compile(r"^\W*(no|false|wrong)\s*(?:[.,!:;]|$)", re.IGNORECASE)  # "no.", not "no label here"
MAX_REPLY_CHARS = 20_000  # a judge reply is parsed from its last characters only


def judge_messages(question: str, gold: Gold, pred: str) -> list[dict]:
    """The chat messages of one judgement (aliases of the gold are joined with `` | ``)."""
    gold_text = " | ".join(golds_of(gold))
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_USER.format(question=question, gold=gold_text, pred=pred)}]


def parse_judge_output(text: str | None) -> tuple[Label | None, str]:
    """(label, rationale) from a judge reply. Prefers an explicit ``GRADE: X`` line (SimpleQA letters A/B/C are
    accepted too), else the last bare label word (``unknown``, the reference's word, is NOT_ATTEMPTED), else a
    leading yes/no. Returns (None, text) when no label can be found."""
    text = (text or "").strip()[-MAX_REPLY_CHARS:]
    m = None
    for m in _GRADE_LINE.finditer(text):
        pass
    if m is not None:
        raw = m.group(1).upper()
        rationale = (text[: m.start()] + text[m.end():]).strip()
    else:
        found = _ANY_LABEL.findall(text)
        if not found:
            if _YES.match(text):
                return "correct", text
            if _NO.match(text):
                return "incorrect", text
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


class AnswerJudge:
    """The judge role (any chat client, or None for deterministic grading only), with bounded concurrency.

    ``grade`` is the one decision rule (module doc). ``judge`` is the boolean form the RL reward uses. ``calls``
    counts judge calls, ``fallbacks`` the judgements that fell back after a failed or unparseable reply."""

    name = "judge"

    def __init__(self, client=None, *, concurrency: int = 8, max_tokens: int = 256, timeout_s: float = 120.0):
        self.client = client
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self._sem = asyncio.Semaphore(max(1, int(concurrency)))
        self.calls = 0
        self.fallbacks = 0

    @classmethod
    def from_role(cls, role: str | None, **kw) -> AnswerJudge:
        """``None``/``"exact"``/``"none"`` -> deterministic only; otherwise a role (``local:...`` or a URL)."""
        if role in (None, "", "exact", "none"):
            return cls(None, **kw)
        from fathom.config import RoleConfig
        from fathom.llm import make_client

        return cls(make_client(RoleConfig.parse(role)), **kw)

    def messages(self, question: str, gold: Gold, pred: str) -> list[dict]:
        return judge_messages(question, gold, pred)

    async def grade(self, question: str, gold: Gold, pred: str | None) -> Grade:
        """The verdict on ``pred`` (see the module doc); never raises."""
        pred = pred or ""
        if not pred.strip():
            return Grade(label="not_attempted", score=0.0, grader=self.name, f1=0.0, method="no_answer",
                         rationale="empty prediction (judge not called)")
        rule = grade(pred, gold, "auto")
        f1 = max((token_f1(pred, g) for g in golds_of(gold)), default=0.0)
        if rule.correct or self.client is None:
            return rule.model_copy(update={"grader": self.name, "f1": f1})
        try:
            async with self._sem:
                self.calls += 1
                comp = await asyncio.wait_for(
                    self.client.chat(self.messages(question, gold, pred), max_tokens=self.max_tokens,
                                     temperature=0.0),
                    timeout=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - any failure becomes a counted fallback
            self.fallbacks += 1
            msg = f"judge call failed: {type(exc).__name__}: {exc}"[:500]
            log.warning("%s; falling back to the deterministic verdict", msg)
            return rule.model_copy(update={"grader": self.name, "f1": f1, "method": "fallback", "error": msg,
                                           "raw": f"[error] {exc}"[:500]})
        label, rationale = parse_judge_output(comp.text)
        if label is None:
            self.fallbacks += 1
            return rule.model_copy(update={
                "grader": self.name, "f1": f1, "method": "fallback", "rationale": rationale[:4000],
                "raw": (comp.text or "")[:4000], "error": "judge reply has no CORRECT/INCORRECT/NOT_ATTEMPTED label"})
        return Grade(label=label, score=float(label == "correct"), grader=self.name, f1=f1, method="llm",
                     rationale=rationale[:4000], raw=(comp.text or "")[:4000])

    async def judge(self, question: str, pred: str | None, gold: Gold) -> bool:
        """Boolean form (the RL answer reward): is ``pred`` correct?"""
        return (await self.grade(question, gold, pred)).correct

    async def judge_many(self, items) -> list[bool]:
        """``judge`` over ``(question, pred, gold)`` triples, concurrently."""
        return list(await asyncio.gather(*(self.judge(q, p, g) for q, p, g in items)))

    async def aclose(self) -> None:
        if self.client is not None and hasattr(self.client, "aclose"):
            await self.client.aclose()
