"""Text normalisation shared by the judge, the filters and dedup (pure functions)."""

from __future__ import annotations

import re
import string
import unicodedata

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’–—…"})


def normalize_answer(text: str | None) -> str:
    """SQuAD-style: NFKC, lowercase, drop punctuation and articles, collapse whitespace."""
    if not text:
        return ""
    t = unicodedata.normalize("NFKC", text).lower().translate(_PUNCT)
    t = _ARTICLES.sub(" ", t)
    return " ".join(t.split())


def normalize_text(text: str) -> str:
    """For dedup: NFKC, lowercase, punctuation to spaces, collapse whitespace (articles kept)."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().translate(_PUNCT).split())


def answers_match(gold: str | None, pred: str | None) -> str | None:
    """'exact' or 'normalized' when the answers match, else None. Numbers compare by value ("1,000" == "1000")."""
    if gold is None or pred is None:
        return None
    if gold.strip() == pred.strip() and gold.strip():
        return "exact"
    g, p = normalize_answer(gold), normalize_answer(pred)
    if g and g == p:
        return "normalized"
    gn, pn = _number(gold), _number(pred)
    if gn is not None and pn is not None and gn == pn:
        return "normalized"
    return None


def _number(text: str) -> float | None:
    t = text.strip().replace(",", "").rstrip(".")
    try:
        return float(t)
    except ValueError:
        return None


def shingles(text: str, n: int = 3) -> set[str]:
    words = normalize_text(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
