"""Candidate checks (pure functions): answer length/type, question shape, hops, cutoff, source diversity,
sources actually explored. Each returns None when the candidate passes, else a short machine-readable reason."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlparse

from fathom.selfplay.config import FilterConfig
from fathom.selfplay.generate import Candidate, parse_date
from fathom.selfplay.text import normalize_answer


def check_answer(answer: str, cfg: FilterConfig) -> str | None:
    a = answer.strip()
    if not a:
        return "answer_empty"
    if len(a) > cfg.max_answer_chars:
        return "answer_too_long"
    if len(a.split()) > cfg.max_answer_words:
        return "answer_too_many_words"
    if normalize_answer(a) in {"yes", "no", "true", "false", "unknown", "none", "n a"}:
        return "answer_trivial"
    return None


def check_question(question: str, answer: str, cfg: FilterConfig) -> str | None:
    q = question.strip()
    if len(q) < cfg.min_question_chars:
        return "question_too_short"
    if len(q) > cfg.max_question_chars:
        return "question_too_long"
    na = normalize_answer(answer)
    if na and len(na) >= 3 and f" {na} " in f" {normalize_answer(q)} ":
        return "question_contains_answer"
    return None


def domain(url: str) -> str:
    host = (urlparse(url).hostname or "").lower()
    return host.removeprefix("www.")


def check_hops(cand: Candidate, cfg: FilterConfig, cutoff: dt.date, explored: list[str] | None) -> str | None:
    """Hop count, post-cutoff requirement, source diversity, and (for model candidates) sources ⊆ explored URLs."""
    if len(cand.hops) < cfg.min_hops:
        return "too_few_hops"
    if cfg.require_post_cutoff:
        dates = [parse_date(h.date) for h in cand.hops]
        if not any(d is not None and d >= cutoff for d in dates):
            return "no_hop_after_cutoff"
    urls = [h.url for h in cand.hops if h.url]
    if len(set(urls)) < cfg.min_distinct_urls:
        return "too_few_sources"
    if len({domain(u) for u in urls}) < cfg.min_distinct_domains:
        return "too_few_domains"
    if explored is not None and cfg.require_hop_urls_in_trace:
        from fathom.synth import normalize_url  # same canonical form as the synthesizer's citation check

        seen = {normalize_url(u) for u in explored}
        if any(normalize_url(u) not in seen for u in urls):
            return "hop_url_not_explored"
    return None


def check_candidate(cand: Candidate, cfg: FilterConfig, cutoff: dt.date,
                    explored: list[str] | None = None) -> str | None:
    return (check_answer(cand.answer, cfg) or check_question(cand.question, cand.answer, cfg)
            or check_hops(cand, cfg, cutoff, explored))
