"""The acceptance rule of DuetQA (method.md §1.3 step 4), as a pure function."""

from __future__ import annotations

from pydantic import BaseModel

from fathom.selfplay.judge import Verdict


class Verification(BaseModel):
    m1: Verdict
    m2: Verdict
    m3: Verdict
    agreement: Verdict  # M2's answer judged against M1's answer
    keep: bool
    reason: str | None  # why it was rejected (None when kept)


def decide(m1: Verdict, m2: Verdict, m3: Verdict, agreement: Verdict) -> tuple[bool, str | None]:
    """Keep iff M1 and M2 (with search) are both correct and agree, and M3 (no search) fails.

    Reasons are checked in this order so that the recorded reason is the first failed condition.
    """
    if m1.answer is None:
        return False, "m1_no_answer"
    if not m1.correct:
        return False, "m1_incorrect"
    if m2.answer is None:
        return False, "m2_no_answer"
    if not m2.correct:
        return False, "m2_incorrect"
    if not agreement.correct:
        return False, "m1_m2_disagree"
    if m3.correct:
        return False, "no_search_solver_correct"
    return True, None


def verification(m1: Verdict, m2: Verdict, m3: Verdict, agreement: Verdict) -> Verification:
    keep, reason = decide(m1, m2, m3, agreement)
    return Verification(m1=m1, m2=m2, m3=m3, agreement=agreement, keep=keep, reason=reason)
