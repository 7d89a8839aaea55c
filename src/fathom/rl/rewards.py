"""Trajectory rewards of stage 1 (method.md §2.1, Eq. 4), as pure functions.

* ``format_reward``: 1.0 when every model turn is well formed in the Fathom format, else 0.0 — reasoning closed
  with ``</think>`` (generation starts after the ``<think>`` prefix the environment writes), every
  ``<tool_call>`` block closed and a valid JSON call of a known tool, no tool response written by the model, and a
  final turn without tool calls holding a ``\\boxed{}`` answer.
* ``answer_reward``: 1.0 when the predicted answer matches the ground truth. The judge is a role
  (:class:`AnswerJudge`); the offline fallback is exact match after SQuAD-style normalisation.
* ``trajectory_reward``: ``α·format + (1 − α)·answer`` with α = 0.1 (Eq. 4).

Nothing here touches a model, the network or torch, except :class:`AnswerJudge` which wraps an LLM client.
"""

from __future__ import annotations

import logging
import re
import string
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fathom.agent.parse import ParseError, extract_boxed, parse_tool_calls

log = logging.getLogger(__name__)

FORMAT_WEIGHT = 0.1  # α in Eq. 4


# ---------------------------------------------------------------------------------------------------------------
# Answer matching


def normalize_answer(text: str | None) -> str:
    """SQuAD-style normalisation: NFKC, lower case, drop punctuation and English articles, collapse spaces.
    LaTeX wrappers a model may leave around a boxed answer (``\\text{..}``, ``$``) are removed first."""
    if not text:
        return ""
    s = unicodedata.normalize("NFKC", str(text))
    s = re.sub(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}", r"\1", s)
    s = s.replace("$", " ").replace("\\,", " ").replace("\\%", "%")
    s = s.lower()
    s = "".join(ch if ch not in set(string.punctuation) - {"%"} else " " for ch in s)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str | None, gold: str | Sequence[str] | None) -> bool:
    """True when the normalised prediction equals the normalised gold answer (or any of several gold aliases)."""
    if pred is None or gold is None:
        return False
    golds = [gold] if isinstance(gold, str) else list(gold)
    p = normalize_answer(pred)
    return bool(p) and any(p == normalize_answer(g) for g in golds if g is not None)


def answer_reward(pred: str | None, gold: str | Sequence[str] | None) -> float:
    """R^answer of Eq. 4 with the offline judge: 1.0 for a normalised exact match, else 0.0."""
    return 1.0 if exact_match(pred, gold) else 0.0


# ---------------------------------------------------------------------------------------------------------------
# Format


@dataclass(frozen=True)
class FormatCheck:
    """The verdict of :func:`check_format`: ``ok`` and the reasons it is not (empty when ok)."""

    ok: bool
    problems: tuple[str, ...] = field(default_factory=tuple)

    @property
    def reward(self) -> float:
        return 1.0 if self.ok else 0.0


_STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def _strip_stops(text: str) -> str:
    text = text.rstrip()
    changed = True
    while changed:
        changed = False
        for s in _STOP_TOKENS:
            if text.endswith(s):
                text = text[: -len(s)].rstrip()
                changed = True
    return text


def check_format(turn_texts: Sequence[str], schemas: list[dict] | None = None) -> FormatCheck:
    """Check the model's turns (the text each turn generated after the ``<think>`` prefix, stop tokens allowed).

    Rules: every turn closes its reasoning with exactly one ``</think>`` and opens no second ``<think>``; every
    ``<tool_call>`` block is closed and holds a valid JSON call (valid against ``schemas`` when given); the model
    never writes ``<tool_response>`` itself; every turn but the last makes at least one call; the last turn makes
    no call and holds a non-empty ``\\boxed{}``. Zero turns is malformed."""
    problems: list[str] = []
    if not turn_texts:
        return FormatCheck(False, ("no model turn",))
    last = len(turn_texts) - 1
    for i, raw in enumerate(turn_texts):
        text = _strip_stops(raw)
        if text.count("</think>") != 1:
            problems.append(f"turn {i}: expected exactly one </think>, found {text.count('</think>')}")
        if "<think>" in text:
            problems.append(f"turn {i}: a second <think> inside the turn")
        if "<tool_response>" in text or "</tool_response>" in text:
            problems.append(f"turn {i}: the model wrote a tool response")
        after_think = text.split("</think>", 1)[-1]
        calls = parse_tool_calls(after_think, schemas) if "<tool_call>" in after_think else []
        if "</tool_call>" in after_think and not calls:
            problems.append(f"turn {i}: a </tool_call> without an opening tag")
        bad = [c for c in calls if isinstance(c, ParseError)]
        if bad:
            problems.append(f"turn {i}: invalid tool call ({', '.join(c.code for c in bad)})")
        if "<tool_call>" in text.split("</think>", 1)[0] and "</think>" in text:
            problems.append(f"turn {i}: a tool call inside the reasoning")
        if i < last and not calls:
            problems.append(f"turn {i}: an intermediate turn without a tool call")
        if i == last:
            if calls:
                problems.append("last turn: still calling tools (no final answer)")
            if extract_boxed(after_think) is None:
                problems.append("last turn: no \\boxed{} answer")
    return FormatCheck(not problems, tuple(problems))


def format_reward(turn_texts: Sequence[str], schemas: list[dict] | None = None) -> float:
    """R^format of Eq. 4: 1.0 for a well-formed trajectory (see :func:`check_format`), else 0.0."""
    return check_format(turn_texts, schemas).reward


def trajectory_reward(format_r: float, answer_r: float, alpha: float = FORMAT_WEIGHT) -> float:
    """Eq. 4: ``r = α·R_format + (1 − α)·R_answer`` (α = 0.1 gives 0.1·format + 0.9·answer)."""
    return alpha * float(format_r) + (1.0 - alpha) * float(answer_r)


# ---------------------------------------------------------------------------------------------------------------
# The answer judge (a role)

JUDGE_PROMPT = """You are grading whether a predicted answer to a question matches the ground-truth answer.
Judge semantic equivalence: ignore formatting, capitalisation, articles and harmless extra detail, but a different
entity, number, date or unit is wrong. Reply with exactly one word: CORRECT or INCORRECT.

Question: {question}
Ground truth: {gold}
Prediction: {pred}
Verdict:"""


class AnswerJudge:
    """R^answer with an LLM judge (a role, e.g. GPT-4.1-mini at T=0) and the normalised exact match as fallback.

    A normalised exact match is accepted without a call; an empty prediction is wrong without a call; a judge
    failure (network, unparseable verdict) falls back to exact match and is counted in ``fallbacks``."""

    def __init__(self, client=None, *, max_tokens: int = 8, timeout_s: float = 60.0):
        self.client = client
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.calls = 0
        self.fallbacks = 0

    @classmethod
    def from_role(cls, role: str | None) -> AnswerJudge:
        """``None``/``"exact"`` → offline exact match only; otherwise a role string (``local:...`` or URL)."""
        if role in (None, "", "exact", "none"):
            return cls(None)
        from fathom.config import RoleConfig
        from fathom.llm import make_client

        return cls(make_client(RoleConfig.parse(role)))

    @staticmethod
    def parse_verdict(text: str) -> bool | None:
        t = text.strip().upper()
        if t.startswith("INCORRECT") or t.startswith("WRONG") or t.startswith("NO"):
            return False
        if t.startswith("CORRECT") or t.startswith("YES") or t.startswith("RIGHT"):
            return True
        return None

    async def judge(self, question: str, pred: str | None, gold: str | Sequence[str]) -> bool:
        if not pred or not str(pred).strip():
            return False
        if exact_match(pred, gold):
            return True
        if self.client is None:
            return False
        import asyncio

        gold_text = gold if isinstance(gold, str) else " | ".join(gold)
        try:
            self.calls += 1
            out = await asyncio.wait_for(
                self.client.complete(JUDGE_PROMPT.format(question=question, gold=gold_text, pred=pred),
                                     max_tokens=self.max_tokens, temperature=0.0),
                timeout=self.timeout_s)
            verdict = self.parse_verdict(out.text)
        except Exception as exc:  # judge down: fall back, never fail the training step
            log.warning("answer judge failed (%s); falling back to exact match", exc)
            verdict = None
        if verdict is None:
            self.fallbacks += 1
            return exact_match(pred, gold)
        return verdict

    async def judge_many(self, items: Iterable[tuple[str, str | None, str | Sequence[str]]]) -> list[bool]:
        import asyncio

        return list(await asyncio.gather(*(self.judge(q, p, g) for q, p, g in items)))
