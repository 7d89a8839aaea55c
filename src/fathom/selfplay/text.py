"""Text normalisation for dedup (pure functions). Answer normalisation and matching live in :mod:`fathom.answer`
(re-exported here for the self-play modules): DuetQA verification decides by the evaluation's rule."""

from __future__ import annotations

import string
import unicodedata

from fathom.answer import answers_match, normalize_answer

__all__ = ["answers_match", "normalize_answer", "normalize_text", "shingles"]

_PUNCT = str.maketrans({c: " " for c in string.punctuation + "“”‘’–—…"})


def normalize_text(text: str) -> str:
    """For dedup: NFKC, lowercase, punctuation to spaces, collapse whitespace (articles kept)."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().translate(_PUNCT).split())


def shingles(text: str, n: int = 3) -> set[str]:
    words = normalize_text(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
