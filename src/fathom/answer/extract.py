"""Final-answer extraction from model text, in time linear in the text (pure functions).

* :func:`extract_boxed` — the content of the LAST well-formed ``\\boxed{...}`` / ``\\fbox{...}`` (nested braces
  matched) or ``\\boxed x`` (up to ``$`` or the end of the line). An empty box is skipped; a box whose content is
  longer than ``MAX_BOXED_CHARS`` is not an answer. Used by the agent (its answer), the RL rewards (the format check)
  and the evaluation (the prediction).
* :func:`extract_answer` — for free model output: the last box, else the last ``<answer>…</answer>``, else a
  ``Final answer:`` / ``Answer:`` line, else the last non-empty line.

Why linear: a model turn can be megabytes of generated text and these run on the event loop of every rollout and
evaluation. Candidates are examined from the end of the text backwards in growing windows (the answer is almost
always near the end), and brace matching never rescans text: a candidate whose box does not close before the last
known unclosed candidate (or within ``MAX_BOXED_CHARS``) cannot be enclosed by a closing earlier one either, so the
scan limit only moves left. Pass only the model's own turns: a whole transcript would yield the system prompt's
example answer (the reference's "20c" bug).
"""

from __future__ import annotations

import re

MAX_BOXED_CHARS = 20_000  # a \boxed{} longer than this is not an answer (bounds every brace scan)

# A box that is not trivially empty: `\boxed{` / `\fbox{` not followed by `\s*}`; or `\boxed x` (space form).
_BOX_BRACE = re.compile(r"\\(?:boxed|fbox)\s*(\{)(?!\s*\})")
_BOX_SPACE = re.compile(r"\\boxed +(?![\s{$])")
_BRACES = re.compile(r"[{}]")
_EOL_OR_DOLLAR = re.compile(r"[$\n]")
_WINDOW = 8192
_OVERLAP = 256  # a candidate starting just before a window's end is matched with some text after it


def _windows(n: int):
    """(start, end) windows from the end of a text of length n backwards, doubling in size."""
    end, size = n, _WINDOW
    while end > 0:
        start = max(0, end - size)
        yield start, end
        end, size = start, size * 2


def _close_of(text: str, open_idx: int, limit: int) -> int:
    """Index of the brace closing ``text[open_idx] == '{'``, scanning no further than ``limit``; -1 if none."""
    depth = 0
    for m in _BRACES.finditer(text, open_idx, limit):
        if m.group() == "{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return m.start()
    return -1


def extract_boxed(text: str | None) -> str | None:
    """The stripped content of the last well-formed, non-empty box in ``text``, or None (see the module doc)."""
    if not text or "\\" not in text:
        return None
    n = len(text)
    # A candidate can only close at or before the last '}' of the text: everything after it is unclosed.
    limit = text.rfind("}") + 1
    for w_start, w_end in _windows(n):
        cands = [m for m in _BOX_SPACE.finditer(text, w_start, min(n, w_end + _OVERLAP)) if m.start() < w_end]
        if w_start < limit:  # brace boxes can only close before `limit`
            cands += [m for m in _BOX_BRACE.finditer(text, w_start, min(limit, w_end + _OVERLAP))
                      if m.start() < w_end]
            cands.sort(key=lambda m: m.start())
        for m in reversed(cands):
            if m.re is _BOX_SPACE:  # \boxed x: up to `$` or the end of the line
                s = m.end()
                stop = _EOL_OR_DOLLAR.search(text, s)
                content = text[s: stop.start() if stop else n].strip()
                if content:
                    return content[:MAX_BOXED_CHARS]
                continue
            o = m.start(1)
            if o >= limit:
                continue  # no '}' left after it: unclosed
            close = _close_of(text, o, min(limit, o + MAX_BOXED_CHARS + 2))
            if close == -1:
                limit = min(limit, o)  # unclosed (or too long): no earlier box enclosing it can close in time
                continue
            content = text[o + 1: close].strip()
            if content:
                return content
    return None


_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ANSWER_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
# One optional "is" between "answer" and the colon, and no two adjacent unbounded \s* (those backtrack
# quadratically on long runs of spaces; the possessive `*+` never backtracks); `.` stops at the end of the line.
_FINAL = re.compile(r"answer[ \t]*+(?:is[ \t]*+)?[:：][ \t]*+(\S.*)", re.IGNORECASE)  # "Final answer: x" too
_FINAL_LOWER = re.compile(r"answer[ \t]*+(?:is[ \t]*+)?[:：][ \t]*+(\S.*)")  # on lower-cased ASCII: a fast literal scan


def _last_match(pattern: re.Pattern, text: str, end: int) -> re.Match | None:
    """The last match of ``pattern`` that starts before ``end``, searching backwards in windows (cheap when the
    match is near the end). A match is re-run from its start on the whole text, so it is never cut by a window."""
    for w_start, w_end in _windows(end):
        last = None
        for m in pattern.finditer(text, w_start, min(end, w_end + _OVERLAP)):
            if m.start() < w_end:
                last = m
        if last is not None:
            return pattern.match(text, last.start(), end)
    return None


def extract_answer_tag(text: str) -> str | None:
    """The stripped content of the last ``<answer>…</answer>`` pair (the innermost one), or None."""
    if text.isascii():  # lower() keeps positions: two C-speed reverse searches
        low = text.lower()
        close_at = low.rfind("</answer>")
        open_at = low.rfind("<answer>", 0, close_at) if close_at != -1 else -1
        return None if open_at == -1 else text[open_at + len("<answer>"): close_at].strip()
    close = _last_match(_ANSWER_CLOSE, text, len(text))
    if close is None:
        return None
    opening = _last_match(_ANSWER_OPEN, text, close.start())
    if opening is None:
        return None
    return text[opening.end(): close.start()].strip()


def extract_answer(text: str | None) -> str:
    """Final answer from free model output: last ``\\boxed{}``, else last ``<answer>…</answer>``, else the last
    ``Final answer:``/``Answer:`` line, else the last non-empty line. Callers pass only the model's own text."""
    if not text:
        return ""
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if "answer" not in text.lower():  # both remaining rules need the word (a C-speed pre-check)
        body = text.rstrip()
        return body[body.rfind("\n") + 1:].strip()
    tag = extract_answer_tag(text)
    if tag is not None:
        return tag
    final = None
    if ":" in text or "：" in text:
        if text.isascii():  # same positions in the lower-cased copy
            m = _last_match(_FINAL_LOWER, text.lower(), len(text))
            final = _FINAL.match(text, m.start()) if m is not None else None
        else:
            final = _last_match(_FINAL, text, len(text))
    if final is not None:
        return final.group(1).strip()
    body = text.rstrip()
    return body[body.rfind("\n") + 1:].strip()
