"""Trajectory rewards of stage 1 (method.md §2.1, Eq. 4), as pure functions.

* ``format_reward``: 1.0 when every model turn is well formed in the Fathom format, else 0.0 — reasoning closed
  with ``</think>`` (generation starts after the ``<think>`` prefix the environment writes), every
  ``<tool_call>`` block closed and a valid JSON call of a known tool, no tool response written by the model, and a
  final turn without tool calls holding a ``\\boxed{}`` answer.
* ``answer_reward``: 1.0 when the predicted answer matches the ground truth. Matching and the judge role
  (:class:`AnswerJudge`) come from :mod:`fathom.answer`, the rules the evaluation scores with.
* ``trajectory_reward``: ``α·format + (1 − α)·answer`` with α = 0.1 (Eq. 4).

Nothing here touches a model, the network or torch (:class:`AnswerJudge` wraps an LLM client).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from fathom.agent.parse import ParseError, parse_tool_calls
from fathom.answer import AnswerJudge, exact_match, extract_boxed, normalize_answer

__all__ = ["FORMAT_WEIGHT", "AnswerJudge", "FormatCheck", "answer_reward", "check_format", "exact_match",
           "format_reward", "normalize_answer", "trajectory_reward"]

log = logging.getLogger(__name__)

FORMAT_WEIGHT = 0.1  # α in Eq. 4


# ---------------------------------------------------------------------------------------------------------------
# Answer matching: the answer module's rule (the one the evaluation scores with)


def answer_reward(pred: str | None, gold: str | Sequence[str] | None) -> float:
    """R^answer of Eq. 4 without a judge role: 1.0 when the prediction matches the gold (or any alias) by the
    evaluation's ``auto`` rule (:func:`fathom.answer.exact_match`), else 0.0."""
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
    no call and holds a non-empty ``\\boxed{}``. Zero turns is malformed. Never raises: whatever the text, a
    failure of the check itself is a malformed verdict with the reason."""
    try:
        return _check_format(turn_texts, schemas)
    except Exception as exc:  # noqa: BLE001 - model text must never crash a reward
        log.warning("format check failed on model text: %s", type(exc).__name__)
        return FormatCheck(False, (f"unparseable model text ({type(exc).__name__})",))


def _check_format(turn_texts: Sequence[str], schemas: list[dict] | None) -> FormatCheck:
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
