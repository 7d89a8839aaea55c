"""Answer normalisation (pure): the one rule by which the evaluation, the RL reward and DuetQA verification decide
that two short answers are the same string.

``normalize_answer`` is SQuAD-style: LaTeX wrappers removed (``\\text{Paris}``, ``$``), NFKD with accents dropped,
lower case, thousands separators dropped ("1,630" = "1630"), punctuation to spaces, English articles dropped,
whitespace squeezed.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_LATEX_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\{([^{}]*)\}")
_PUNCT = re.compile(r"[^\w\s]|_")
_ARTICLES = frozenset(("a", "an", "the"))
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_ABSTAIN = re.compile(
    r"^(i\s+(do\s+not|don'?t)\s+know|unknown|not\s+sure|cannot\s+(be\s+)?determine[d]?|can'?t\s+determine|"
    r"no\s+answer|n/?a|none|insufficient\s+information|i\s+cannot\s+answer|i\s+can'?t\s+answer)\b", re.IGNORECASE)


def strip_latex(text: str) -> str:
    """Remove LaTeX wrappers and spacing commands a model may leave around an answer."""
    text = _LATEX_WRAP.sub(r"\1", text)
    return (text.replace("$", "").replace("\\%", "%").replace("\\,", "").replace("\\!", "").replace("\\ ", " ")
            .strip())


@lru_cache(maxsize=65536)
def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKD", strip_latex(text))
    if not text.isascii():
        text = "".join(c for c in text if not unicodedata.combining(c))
    text = _PUNCT.sub(" ", _THOUSANDS.sub("", text.lower()))
    return " ".join(w for w in text.split() if w not in _ARTICLES)


def normalize_answer(text: str | None) -> str:
    """SQuAD-style normalisation of an answer (see the module doc); ``None`` and ``""`` give ``""``."""
    if not text:
        return ""
    text = str(text)
    return _normalize(text) if len(text) <= 4096 else _normalize.__wrapped__(text)


normalize_text = normalize_answer  # the evaluation's historical name


def is_abstention(pred: str | None) -> bool:
    """An empty prediction or a refusal ("I don't know", "unknown", "N/A", ...)."""
    p = (pred or "").strip().strip(".").strip()
    return not p or bool(_ABSTAIN.match(p))
