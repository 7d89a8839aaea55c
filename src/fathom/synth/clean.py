"""Turn a search trajectory into the plain-text trace the synthesizer reads.

The reference's ``reformat_trace`` ran regexes over the whole transcript and deleted *any* ``<...>`` text, which
also ate HTML-like page content inside tool results (``<table>``, ``a < b > c``, code). Here the trace is rebuilt
from the structured :class:`~fathom.agent.trajectory.Trajectory` instead: only the protocol's own tags are removed
from the model's turns, and tool results are kept verbatim (ChatML special tokens aside). Layout (same labels as
the reference)::

    USER:
    {question}

    ASSISTANT:
    {reasoning}          <- <think> dropped, </think> becomes a newline, <tool_call> tags dropped (JSON kept)

    USER:
    SEARCH RESULT
    {raw call}
    result:
    {result}
    ...

Long traces are cut deterministically, per tool response (head kept, then a marker), never by dropping turns.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fathom.agent.trajectory import Trajectory

_SPECIAL = re.compile(r"<\|(?:im_start|im_end|endoftext|eot_id|begin_of_text|end_of_text)\|>")
_MODEL_TAGS = re.compile(r"</?tool_call>|<think>")
_MANY_NEWLINES = re.compile(r"\n{3,}")
URL_RE = re.compile(r"https?://[^\s<>\"'\]\[)(}{|\\^`]+")
_TRAILING = ".,;:!?'\""


def cut_text(text: str, max_chars: int | None) -> str:
    """Keep the first ``max_chars`` characters (at a line or word boundary when one is close) and say how much
    was left out."""
    if max_chars is None or len(text) <= max_chars:
        return text
    head = text[:max_chars]
    for sep in ("\n", " "):
        k = head.rfind(sep)
        if k >= max_chars * 0.8:
            head = head[:k]
            break
    return f"{head.rstrip()}\n[... {len(text) - len(head)} characters omitted]"


def _clean_model_text(text: str) -> str:
    text = _SPECIAL.sub("", text)
    text = text.replace("</think>", "\n")
    return _MODEL_TAGS.sub("", text).strip()


def clean_trace(traj: Trajectory, *, max_chars_per_response: int | None = None) -> str:
    """The trace text (see module doc). ``max_chars_per_response`` cuts each tool result to that many characters."""
    parts = [f"USER:\n{traj.question.strip()}"]
    for turn in traj.turns:
        body = _clean_model_text(turn.text)
        if body:
            parts.append(f"ASSISTANT:\n{body}")
        if turn.calls:
            blocks = []
            for rec in turn.calls:
                result = cut_text(_SPECIAL.sub("", rec.result).strip(), max_chars_per_response)
                blocks.append(f"SEARCH RESULT\n{rec.raw}\nresult:\n{result}")
            parts.append("USER:\n" + "\n\n".join(blocks))
    return _MANY_NEWLINES.sub("\n\n", "\n\n".join(parts)).strip()


def normalize_url(url: str) -> str:
    """Canonical form for comparing citations: trailing punctuation, fragment and trailing slash dropped,
    scheme and host lowercased."""
    url = url.strip().rstrip(_TRAILING)
    while url.endswith(")") and url.count("(") < url.count(")"):
        url = url[:-1]
    url = url.split("#", 1)[0]
    m = re.match(r"(?i)(https?)://([^/?]+)(.*)", url)
    if not m:
        return url
    scheme, host, rest = m.group(1).lower(), m.group(2).lower(), m.group(3)
    if rest in ("", "/"):
        rest = ""
    elif rest.endswith("/") and "?" not in rest:
        rest = rest[:-1]
    return f"{scheme}://{host}{rest}"


def find_urls(text: str) -> list[str]:
    """URLs in ``text`` in order of appearance (deduplicated by normalized form, original spelling kept)."""
    seen: set[str] = set()
    out: list[str] = []
    for m in URL_RE.finditer(text):
        url = m.group(0).rstrip(_TRAILING)
        key = normalize_url(url)
        if key not in seen:
            seen.add(key)
            out.append(url)
    return out


def trajectory_urls(traj: Trajectory) -> set[str]:
    """Every URL the agent saw or opened (normalized): URLs in tool results (search hits, page readings) and the
    ``url`` arguments of well-formed calls. Citations are checked against this set."""
    urls: set[str] = set()
    for rec in traj.tool_calls:
        if rec.name:
            url = rec.arguments.get("url")
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                urls.add(normalize_url(url))
            urls.update(normalize_url(u) for u in find_urls(rec.result))
    return urls


def tool_calls_json(traj: Trajectory) -> list[dict]:
    """The well-formed calls as recorded: ``[{"name": ..., "arguments": {...}}, ...]``."""
    return [{"name": rec.name, "arguments": rec.arguments} for rec in traj.tool_calls if rec.name]


def fit_trace(traj: Trajectory, render: Callable[[str], str], count_tokens: Callable[[str], int],
              max_tokens: int) -> tuple[str, int | None]:
    """The longest trace (largest per-response cap) whose rendered message fits in ``max_tokens``. Deterministic:
    the cap is found by bisection over character counts. Returns (trace, cap or None when uncut)."""
    full = clean_trace(traj)
    if count_tokens(render(full)) <= max_tokens:
        return full, None
    longest = max((len(r.result) for r in traj.tool_calls), default=0)
    lo, hi, best = 0, longest, None
    while lo <= hi:
        mid = (lo + hi) // 2
        trace = clean_trace(traj, max_chars_per_response=mid)
        if count_tokens(render(trace)) <= max_tokens:
            best, lo = (trace, mid), mid + 1
        else:
            hi = mid - 1
    if best is not None:
        return best
    return clean_trace(traj, max_chars_per_response=0), 0
