"""Goal-conditioned reading of a page: the query LLM, a robust parser of its output, and a deterministic fallback.

The query LLM gets the (clipped) page and the goal and answers in three sections, ``Rationale:``, ``Evidence:``
(passages copied from the page) and ``Summary:``. Its output is trusted only if it parses *and* at least one
evidence item is grounded in the page (most of its words occur there). Otherwise — the model failed, timed out, or
wrote junk, which a 135M model often does — `fallback_reading` ranks the page's passages against the goal with BM25
and returns the best ones as evidence, so the agent still gets the relevant part of the page.

Pure functions (`build_messages`, `parse_reading`, `split_passages`, `fallback_reading`) are unit tested; `PageReader`
adds the model call, the timeout and the choice between the two.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from fathom.llm.base import ChatMessage, LLMClient

log = logging.getLogger(__name__)

PROMPT_VERSION = "read-v1"

SYSTEM_PROMPT = (
    "You help a research assistant by reading one web page for a stated goal. You report only what the page "
    "itself says, copy evidence word for word, and say plainly when the page does not address the goal."
)

USER_TEMPLATE = """Goal: {goal}
Page: {url}

Page content:
<<<
{text}
>>>

Read the page for the goal above and reply in exactly three sections:

Rationale: one or two sentences on which parts of the page bear on the goal, and why.
Evidence:
- a passage copied word for word from the page that helps with the goal
- (one passage per line, most useful first)
Summary: a short answer to the goal that uses only the evidence; if the page does not answer it, say so."""

_HEADER = re.compile(
    r"^[ \t>#*_\-\d.)]*\b(rationale|evidence|summary)\b[*_ \t]*(?::|：|$)[*_ \t]*(.*)$", re.I | re.M)
_BULLET = re.compile(r"^\s*(?:[-*•·]|\d{1,2}[.)]|\[\d{1,2}\])\s+")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_PLACEHOLDERS = {"", "none", "n/a", "na", "(not found)", "not found", "nothing", "no evidence", "null", "-", "..."}
STOPWORDS = frozenset("""a an and are as at be been but by can could did do does for from had has have how i if in
into is it its of on or that the their them there these this those to was were what when where which who whom whose
why will with would you your about after before between during than then over under also not no yes more most such
page goal find information""".split())


@dataclass
class Reading:
    rationale: str = ""
    evidence: list[str] = field(default_factory=list)
    summary: str = ""
    extraction: str = "none"  # llm | fallback | none
    note: str = ""  # why the fallback was used (logged, not shown to the agent)


def tokens(text: str) -> list[str]:
    return [t for t in (w.casefold() for w in _WORD.findall(text)) if t not in STOPWORDS and (len(t) > 1 or t.isdigit())]


def build_messages(url: str, goal: str, text: str) -> list[ChatMessage]:
    return [ChatMessage(role="system", content=SYSTEM_PROMPT),
            ChatMessage(role="user", content=USER_TEMPLATE.format(goal=goal.strip(), url=url, text=text))]


def _clean_item(item: str) -> str:
    item = _BULLET.sub("", item.strip()).strip()
    item = item.strip("*_ ").strip()
    if len(item) >= 2 and item[0] in "\"“'‘" and item[-1] in "\"”'’":
        item = item[1:-1].strip()
    return item


def _split_evidence(block: str) -> list[str]:
    lines = [ln.rstrip() for ln in block.strip().splitlines()]
    if any(_BULLET.match(ln) for ln in lines):
        items: list[str] = []
        for ln in lines:
            if _BULLET.match(ln):
                items.append(ln)
            elif ln.strip() and items:
                items[-1] += " " + ln.strip()
            elif ln.strip():
                items.append(ln)
    else:
        items = [p.replace("\n", " ") for p in re.split(r"\n\s*\n", block.strip())]
    out = []
    for it in items:
        it = _clean_item(it)
        if it.casefold().strip(". ") not in _PLACEHOLDERS and len(it) >= 8:
            out.append(it)
    return out


def grounded(item: str, page_vocab: set[str], threshold: float = 0.6) -> bool:
    """Most of the item's content words occur in the page (a cheap check against invented evidence)."""
    toks = tokens(item)
    if len(toks) < 2:
        return False
    return sum(t in page_vocab for t in toks) / len(toks) >= threshold


def parse_reading(output: str, page_text: str) -> Reading | None:
    """Parse a Rationale/Evidence/Summary answer (plain, markdown-decorated, or JSON). None if unusable."""
    output = (output or "").strip()
    if not output:
        return None
    sections: dict[str, str] = {}
    m = re.search(r"\{.*\}", output, re.S)
    if m:
        try:
            data = json.loads(m.group(0))
            if isinstance(data, dict):
                for k in ("rationale", "evidence", "summary"):
                    v = data.get(k) or data.get(k.capitalize())
                    if isinstance(v, list):
                        v = "\n".join(f"- {x}" for x in v if isinstance(x, str))
                    if isinstance(v, str):
                        sections[k] = v
        except ValueError:
            pass
    if not sections:
        heads = list(_HEADER.finditer(output))
        for i, h in enumerate(heads):
            name = h.group(1).lower()
            end = heads[i + 1].start() if i + 1 < len(heads) else len(output)
            body = (h.group(2) + output[h.end():end]).strip()
            if name not in sections:  # the first occurrence of each section wins
                sections[name] = body
    if "evidence" not in sections:
        return None
    vocab = set(tokens(page_text))
    evidence = [e for e in _split_evidence(sections["evidence"]) if grounded(e, vocab)]
    if not evidence:
        return None
    summary = " ".join(sections.get("summary", "").split())
    rationale = " ".join(sections.get("rationale", "").split())
    if summary.casefold().strip(". ") in _PLACEHOLDERS:
        summary = ""
    if rationale.casefold().strip(". ") in _PLACEHOLDERS:
        rationale = ""
    return Reading(rationale=rationale, evidence=evidence, summary=summary, extraction="llm")


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"“(])")


def split_passages(text: str, *, target: int = 500, max_len: int = 800) -> list[str]:
    """Paragraphs of the page; short fragments (headings, list items) merged with their neighbours up to ~`target`
    chars, long paragraphs cut at sentence ends into pieces of at most `max_len` chars."""
    short = target // 4
    paras: list[str] = []
    for block in re.split(r"\n\s*\n", text):  # blank lines separate paragraphs
        cur = ""
        for ln in (" ".join(x.split()) for x in block.splitlines()):
            if not ln:
                continue
            wrapped = cur and not cur.endswith((".", "!", "?", ":", '"', "”", "|")) and len(cur) < 4 * max_len
            if cur and (wrapped or (min(len(cur), len(ln)) < short and len(cur) + len(ln) < target)):
                cur += " " + ln  # a hard-wrapped line (PDF, plain text) or a short fragment
            else:
                if cur:
                    paras.append(cur)
                cur = ln
        if cur:
            paras.append(cur)
    merged: list[str] = []
    for p in paras:  # a heading or short fragment joins its neighbour
        if merged and min(len(p), len(merged[-1])) < short and len(merged[-1]) + len(p) + 1 <= target:
            merged[-1] += " " + p
        else:
            merged.append(p)
    out: list[str] = []
    for p in merged:
        if len(p) <= max_len:
            out.append(p)
            continue
        cur = ""
        for s in _SENT.split(p):
            while len(s) > max_len:  # a "sentence" without punctuation
                if cur:
                    out.append(cur)
                    cur = ""
                out.append(s[:max_len])
                s = s[max_len:]
            if cur and len(cur) + len(s) + 1 > target:
                out.append(cur)
                cur = s
            else:
                cur = f"{cur} {s}".strip()
        if cur:
            out.append(cur)
    return out


def bm25_scores(query_terms: list[str], docs: list[list[str]], k1: float = 1.2, b: float = 0.75) -> list[float]:
    n = len(docs)
    if not n or not query_terms:
        return [0.0] * n
    avg = sum(len(d) for d in docs) / n or 1.0
    df = Counter(t for d in docs for t in set(d))
    q = set(query_terms)
    scores = []
    for d in docs:
        tf = Counter(d)
        s = 0.0
        for t in q:
            if tf[t]:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(d) / avg))
        scores.append(s)
    return scores


FALLBACK_MAX_CHARS = 200_000


def fallback_reading(page_text: str, goal: str, *, k: int = 3, reason: str = "") -> Reading:
    """Deterministic reading: the `k` passages of the page most relevant to the goal (BM25 over its passages,
    over the first `FALLBACK_MAX_CHARS` characters so the cost stays bounded)."""
    passages = split_passages(page_text[:FALLBACK_MAX_CHARS])
    if not passages:
        return Reading(rationale="The page has no readable text.", extraction="fallback", note=reason)
    qt = tokens(goal)
    scores = bm25_scores(qt, [tokens(p) for p in passages])
    ranked = sorted((i for i in range(len(passages)) if scores[i] > 0), key=lambda i: (-scores[i], i))[:k]
    if ranked:
        evidence = [passages[i] for i in ranked]
        matched = sorted({t for t in qt if any(t in tokens(e) for e in evidence)})
        rationale = (f"Passages of the page ranked by overlap with the goal's terms ({', '.join(matched[:8])}); "
                     "chosen without the reading model.")
        sents = [s for e in evidence[:1] for s in _SENT.split(e)]
        sscore = bm25_scores(qt, [tokens(s) for s in sents])
        summary = sents[max(range(len(sents)), key=lambda i: (sscore[i], -i))] if sents else evidence[0]
    else:
        evidence = passages[:k]
        rationale = "No passage of the page shares terms with the goal; these are the page's opening passages."
        summary = "The page does not appear to address the goal directly."
    return Reading(rationale=rationale, evidence=evidence, summary=summary[:600], extraction="fallback", note=reason)


class PageReader:
    """Runs the query LLM on a page for a goal, falling back to `fallback_reading`."""

    def __init__(self, client: LLMClient | None, *, page_chars: int = 15_000, max_tokens: int = 512,
                 timeout_s: float = 90.0, attempts: int = 1, fallback_passages: int = 3):
        self.client = client
        self.page_chars = page_chars
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.fallback_passages = fallback_passages

    @property
    def model_name(self) -> str:
        return self.client.model if self.client is not None else "none"

    def clip(self, url: str, goal: str, text: str) -> str:
        """Clip to `page_chars`, then further if the prompt would not fit the model's context."""
        text = text[: self.page_chars]
        ctx = self.client.context_length if self.client is not None else None
        if ctx:
            budget = ctx - self.max_tokens - 64
            overhead = self.client.count_tokens(SYSTEM_PROMPT + USER_TEMPLATE + url + goal)
            while text and overhead + self.client.count_tokens(text) > budget:
                text = text[: int(len(text) * 0.8)]
        return text

    async def read(self, url: str, goal: str, page_text: str, *, timeout_s: float | None = None) -> Reading:
        """The model's reading, or the fallback. `timeout_s` (the caller's remaining budget) can only shorten the
        configured reading timeout."""
        timeout = min(self.timeout_s, timeout_s) if timeout_s is not None else self.timeout_s
        if self.client is None:
            return fallback_reading(page_text, goal, k=self.fallback_passages, reason="no query model configured")
        clipped = self.clip(url, goal, page_text)
        reason = ""
        for attempt in range(self.attempts):
            try:
                async with asyncio.timeout(timeout):
                    out = await self.client.chat(build_messages(url, goal, clipped), max_tokens=self.max_tokens,
                                                 temperature=0.0 if attempt == 0 else 0.3)
            except TimeoutError:
                reason = f"query model timed out after {timeout:.3g}s"
                log.warning("%s on %s", reason, url)
                break
            except Exception as exc:  # noqa: BLE001 - any model failure degrades to the fallback
                reason = f"query model failed: {type(exc).__name__}: {str(exc)[:200]}"
                log.warning("%s on %s", reason, url)
                break
            reading = parse_reading(out.text, clipped)
            if reading is not None:
                return reading
            reason = "query model output did not parse or its evidence is not in the page"
        return fallback_reading(page_text, goal, k=self.fallback_passages, reason=reason)
