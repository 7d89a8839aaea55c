"""Page text extraction: HTML (trafilatura, lxml fallback), PDF (pypdf), Markdown / plain text passthrough.

Pure functions over bytes or strings: no I/O, no network. Failures raise `fathom.errors.ToolError` with code
``empty_content`` (the document has no readable text) or ``unsupported_content`` (not a format we read, or a
document the parser cannot open), so the tool server can hand them to the agent as typed errors.
"""

from __future__ import annotations

import io
import logging
import re
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field

from fathom.errors import ToolError

log = logging.getLogger(__name__)

ContentType = Literal["html", "pdf", "markdown", "text"]

PERMALINK_SIGNS = ("¶", "\u00b6", "#\u00b6")  # Sphinx/MkDocs header permalinks
_WS_RUN = re.compile(r"[ \t\u00a0]+")
_BLANK_RUNS = re.compile(r"\n{3,}")


class ExtractedDoc(BaseModel):
    """The readable text of one document."""

    title: str = Field(default="", description="Document title ('' when none was found).")
    text: str = Field(description="Main text, paragraphs separated by newlines.")
    content_type: ContentType = Field(description="What the input was parsed as.")
    truncated: bool = Field(default=False, description="True when page or character caps cut the text.")


def _clean(text: str) -> str:
    for sign in PERMALINK_SIGNS:
        text = text.replace(sign, "")
    lines = [_WS_RUN.sub(" ", line).strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _as_text(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    for enc in ("utf-8", "cp1252"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("utf-8", errors="replace")


def _lxml_tree(html: str):
    import lxml.html
    from lxml import etree

    try:
        return lxml.html.document_fromstring(html)
    except (etree.ParserError, ValueError):
        return None


def _lxml_title(tree) -> str:
    if tree is None:
        return ""
    for xp in ("//h1", "//title", "//meta[@property='og:title']/@content"):
        nodes = tree.xpath(xp)
        if nodes:
            node = nodes[0]
            title = _clean(node if isinstance(node, str) else node.text_content())
            if title:
                return title
    return ""


def _lxml_text(tree) -> str:
    """Fallback: visible text of the body without scripts, styles and navigation chrome."""
    if tree is None:
        return ""
    for bad in tree.xpath("//script|//style|//noscript|//template|//nav|//header|//footer"):
        bad.drop_tree()
    blocks: list[str] = []
    for el in tree.iter("p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "td", "th", "pre", "dt", "dd", "caption"):
        # only leaf-ish blocks: skip elements containing other blocks we will visit anyway
        if el.tag in ("li", "td", "dd") and el.xpath(".//p|.//li|.//table"):
            continue
        txt = _clean(el.text_content())
        if txt:
            blocks.append(txt)
    if not blocks:
        body = tree.find("body")
        return _clean((body if body is not None else tree).text_content())
    return "\n".join(blocks)


def extract_html(html: str | bytes, url: str | None = None) -> ExtractedDoc:
    """Main text and title of an HTML page (trafilatura, tables kept; lxml text if trafilatura finds nothing)."""
    import trafilatura

    source = _as_text(html)
    if not source.strip():
        raise ToolError("empty_content", f"empty HTML document{f' at {url}' if url else ''}")
    text = ""
    try:
        # with_metadata=False: trafilatura's metadata pass (htmldate) can take seconds on some pages; the title
        # comes from lxml below instead
        doc = trafilatura.bare_extraction(source, url=url, with_metadata=False, include_tables=True,
                                          include_comments=False, favor_recall=True)
    except Exception as exc:  # noqa: BLE001 - trafilatura raises assorted parser errors on broken markup
        log.debug("trafilatura failed on %s: %s", url, exc)
        doc = None
    if doc is not None:
        text = _clean(getattr(doc, "text", "") or "")
    tree = _lxml_tree(source)
    title = _lxml_title(tree)
    if not text:
        text = _lxml_text(tree)
    if not text:
        raise ToolError("empty_content", f"no readable text in HTML document{f' at {url}' if url else ''}")
    return ExtractedDoc(title=title, text=text, content_type="html")


def extract_pdf(data: bytes, *, max_pages: int = 40, max_chars: int = 40_000) -> ExtractedDoc:
    """Text of a PDF, page by page, capped at `max_pages` pages and `max_chars` characters."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.lstrip()[:5].startswith(b"%PDF"):
        raise ToolError("unsupported_content", "not a PDF document (missing %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        n_pages = len(reader.pages)
        title = ""
        try:
            meta = reader.metadata
            title = _clean(str(meta.title)) if meta is not None and meta.title else ""
            if title.lower() in _PLACEHOLDER_TITLES:
                title = ""
        except Exception:  # noqa: BLE001 - broken info dictionaries are common; the title is optional
            title = ""
        parts: list[str] = []
        total = 0
        truncated = n_pages > max_pages
        for page in reader.pages[:max_pages]:
            page_text = _clean(page.extract_text() or "")
            if not page_text:
                continue
            parts.append(page_text)
            total += len(page_text) + 2
            if total >= max_chars:
                truncated = True
                break
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ToolError("unsupported_content", f"unreadable PDF: {exc}") from exc
    text = "\n\n".join(parts)
    if len(text) > max_chars:
        text, truncated = text[:max_chars], True
    if not text.strip():
        raise ToolError("empty_content", f"PDF has no extractable text ({n_pages} pages; scanned images?)")
    if not title:
        title = text.split("\n", 1)[0][:200]
    return ExtractedDoc(title=title, text=text, content_type="pdf", truncated=truncated)


_PLACEHOLDER_TITLES = {"untitled", "untitled document", "no title", "title", "document"}
_MD_TITLE = re.compile(r"^\s{0,3}#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def extract_markdown(data: str | bytes) -> ExtractedDoc:
    """Markdown passthrough; the title is the first level-1 heading."""
    text = _clean(_as_text(data))
    if not text:
        raise ToolError("empty_content", "empty Markdown document")
    m = _MD_TITLE.search(text)
    return ExtractedDoc(title=m.group(1).strip() if m else "", text=text, content_type="markdown")


def extract_plain(data: str | bytes) -> ExtractedDoc:
    """Plain text passthrough; the title is the first non-empty line (at most 200 characters)."""
    text = _clean(_as_text(data))
    if not text:
        raise ToolError("empty_content", "empty text document")
    return ExtractedDoc(title=text.split("\n", 1)[0][:200], text=text, content_type="text")


_SUFFIX_KIND: dict[str, ContentType] = {
    ".html": "html", ".htm": "html", ".xhtml": "html", ".pdf": "pdf",
    ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".rst": "text",
}


def sniff_kind(*, content_type: str | None = None, name: str | None = None, data: bytes | str | None = None
               ) -> ContentType | None:
    """Guess the document kind from a Content-Type header, a file/URL name, or the first bytes."""
    if content_type:
        ct = content_type.split(";", 1)[0].strip().lower()
        if ct in ("text/html", "application/xhtml+xml"):
            return "html"
        if ct == "application/pdf":
            return "pdf"
        if ct in ("text/markdown", "text/x-markdown"):
            return "markdown"
        if ct == "text/plain":
            return "text"
    if name:
        kind = _SUFFIX_KIND.get(PurePosixPath(name.split("?", 1)[0].split("#", 1)[0]).suffix.lower())
        if kind:
            return kind
    if data is not None:
        head = (data[:512] if isinstance(data, bytes) else data[:512].encode("utf-8", "ignore")).lstrip().lower()
        if head.startswith(b"%pdf"):
            return "pdf"
        if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
            return "html"
    return None


def extract_document(data: str | bytes, *, content_type: str | None = None, name: str | None = None,
                     url: str | None = None, max_pages: int = 40, max_chars: int = 40_000) -> ExtractedDoc:
    """Dispatch on the document kind (Content-Type, then name/URL suffix, then the leading bytes)."""
    kind = sniff_kind(content_type=content_type, name=name or url, data=data)
    if kind == "html":
        return extract_html(data, url=url)
    if kind == "pdf":
        if isinstance(data, str):
            raise ToolError("unsupported_content", "PDF content must be bytes")
        return extract_pdf(data, max_pages=max_pages, max_chars=max_chars)
    if kind == "markdown":
        return extract_markdown(data)
    if kind == "text":
        return extract_plain(data)
    raise ToolError("unsupported_content",
                    f"cannot extract text from {content_type or name or url or 'this document'}")
