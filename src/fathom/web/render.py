"""The text a search agent sees as a tool result, rendered from the tool server's typed responses.

The formats follow the reference tool functions the released model was trained against:

* search (reference ``url_hits_to_markdown``): one block per hit,
  ``"### {i}. {title}\\n**URL**: {url}\\n\\n**Snippet**: {snippet}\\n"``, blocks joined by ``"\\n---\\n\\n"``;
* query_url (reference ``query_text``): ``"The useful information in {url} for goal “{goal}”:\\n\\n"
  "Rationale:\\n…\\n\\nEvidence:\\n…\\n\\nSummary:\\n…"``;
* visit (reference ``web_visit``): the page text itself (here with its title as a heading);
* tool-level errors: a short ``"[error:<code>] message"`` line, which the model can read and react to.

Everything here is a pure function of the response object.
"""

from __future__ import annotations

from fathom.web.schemas import QueryUrlResponse, SearchResponse, ToolErrorInfo, VisitResponse

NO_RESULTS = "No results found."
HIT_SEPARATOR = "\n---\n\n"


def render_error(err: ToolErrorInfo) -> str:
    """``[error:<code>] message`` (one line; newlines in the message are flattened)."""
    message = " ".join(err.message.split())
    return f"[error:{err.code}] {message}"


def render_search(resp: SearchResponse) -> str:
    """Markdown list of hits, reference layout; an error or an empty result is a short line."""
    if resp.error is not None:
        return render_error(resp.error)
    if not resp.hits:
        return f"{NO_RESULTS} (query: {resp.query})"
    blocks = [
        f"### {i}. {hit.title or hit.url}\n**URL**: {hit.url}\n\n**Snippet**: {hit.snippet}\n"
        for i, hit in enumerate(resp.hits, start=1)
    ]
    return HIT_SEPARATOR.join(blocks)


def render_query_url(resp: QueryUrlResponse) -> str:
    """Goal-conditioned reading of one page, reference layout (rationale, evidence lines, summary)."""
    if resp.error is not None:
        return render_error(resp.error)
    evidence = "\n".join(e.strip() for e in resp.evidence if e.strip()) or "(none)"
    return (
        f"The useful information in {resp.url} for goal \u201c{resp.goal}\u201d:\n\n"
        f"Rationale:\n{resp.rationale.strip() or '(none)'}\n\n"
        f"Evidence:\n{evidence}\n\n"
        f"Summary:\n{resp.summary.strip() or '(none)'}"
    )


def render_visit(resp: VisitResponse) -> str:
    """The page text with its title as a heading; a note when the server truncated it."""
    if resp.error is not None:
        return render_error(resp.error)
    body = resp.text.strip() or "(empty page)"
    head = f"# {resp.title.strip()}\n\n" if resp.title.strip() else ""
    tail = "\n\n[page truncated]" if resp.truncated else ""
    return f"{head}{body}{tail}"
