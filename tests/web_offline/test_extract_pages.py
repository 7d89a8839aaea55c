"""Extraction on real third-party HTML (Debian's python3.11-doc), on generated PDFs, and on bad input."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fathom.errors import ToolError
from fathom.web.extract import (
    _lxml_text,
    _lxml_tree,
    extract_document,
    extract_html,
    extract_markdown,
    extract_pdf,
    extract_plain,
    sniff_kind,
)

PYDOCS = Path("/usr/share/doc/python3.11/html")
needs_pydocs = pytest.mark.skipif(not (PYDOCS / "library" / "json.html").is_file(),
                                  reason="Debian package python3.11-doc is not installed "
                                         "(apt-get install -y python3.11-doc); CI installs it")


@needs_pydocs
def test_python_docs_json_page():
    doc = extract_html((PYDOCS / "library" / "json.html").read_bytes(), url="file:///library/json.html")
    assert doc.content_type == "html"
    assert doc.title == "json — JSON encoder and decoder"
    assert "¶" not in doc.text and "¶" not in doc.title
    assert "json.dumps" in doc.text and "indent" in doc.text
    assert "RFC 7159" in doc.text
    # navigation chrome is not the main text
    assert "Table of Contents" not in doc.text[:200]


@needs_pydocs
@pytest.mark.parametrize("rel", ["library/functions.html", "tutorial/introduction.html", "reference/datamodel.html",
                                 "whatsnew/3.11.html", "genindex-A.html"])
def test_python_docs_various_pages(rel):
    doc = extract_html((PYDOCS / rel).read_bytes())
    assert doc.title and len(doc.text) > 500
    assert "¶" not in doc.text


def _pdf(pages: list[str], title: str | None = "Test report") -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4, invariant=1)
    if title:
        c.setTitle(title)
    for text in pages:
        y = 800
        for line in text.split("\n"):
            c.drawString(72, y, line)
            y -= 14
        c.showPage()
    c.save()
    return buf.getvalue()


def test_pdf_text_title_and_caps():
    data = _pdf([f"Page {i} says hello number {i}." for i in range(1, 6)])
    doc = extract_pdf(data)
    assert doc.content_type == "pdf" and doc.title == "Test report" and not doc.truncated
    assert "Page 1 says hello" in doc.text and "Page 5 says hello" in doc.text
    capped = extract_pdf(data, max_pages=2)
    assert capped.truncated and "Page 2" in capped.text and "Page 3" not in capped.text
    short = extract_pdf(data, max_chars=40)
    assert short.truncated and len(short.text) <= 40
    assert extract_pdf(_pdf(["First line is the title"], title=None)).title == "First line is the title"


def test_pdf_errors_are_typed():
    with pytest.raises(ToolError) as e:
        extract_pdf(b"<html>not a pdf</html>")
    assert e.value.code == "unsupported_content"
    with pytest.raises(ToolError) as e:
        extract_pdf(b"%PDF-1.4\n garbage garbage")
    assert e.value.code == "unsupported_content"
    with pytest.raises(ToolError) as e:
        extract_pdf(_pdf([""]))  # a page without text (like a scanned image)
    assert e.value.code == "empty_content"


def test_html_errors_and_fallback():
    with pytest.raises(ToolError) as e:
        extract_html(b"   ")
    assert e.value.code == "empty_content"
    with pytest.raises(ToolError) as e:
        extract_html("<html><body><script>var x = 1;</script></body></html>")
    assert e.value.code == "empty_content"
    # trafilatura keeps nothing of a bare list page; the lxml fallback does
    html = "<html><head><title>Menu</title></head><body><ul><li>Alpha bravo</li><li>Charlie delta</li></ul></body></html>"
    tree = _lxml_tree(html)
    assert _lxml_text(tree) == "Alpha bravo\nCharlie delta"
    doc = extract_html(html)
    assert doc.title == "Menu" and "Alpha bravo" in doc.text and "Charlie delta" in doc.text
    # permalink signs are stripped, entities decoded, cp1252 bytes decoded
    doc = extract_html("<html><body><h1>Title¶</h1><p>Caf\xe9 &amp; cr\xe8me are great, really great indeed."
                       "</p></body></html>".encode("cp1252"))
    assert doc.title == "Title" and "Café & crème" in doc.text and "¶" not in doc.text


def test_markdown_text_and_dispatch():
    md = extract_markdown(b"Intro line\n\n# The Title\n\nBody text.\n")
    assert md.title == "The Title" and md.content_type == "markdown"
    assert extract_plain("  first line  \nsecond").title == "first line"
    assert sniff_kind(content_type="application/pdf; qs=1") == "pdf"
    assert sniff_kind(name="http://x/a/b.HTML?q=1") == "html"
    assert sniff_kind(data=b"%PDF-1.7 ...") == "pdf"
    assert sniff_kind(data=b"<!DOCTYPE html><html>") == "html"
    assert extract_document(b"# T\n\nx", name="a.md").content_type == "markdown"
    with pytest.raises(ToolError) as e:
        extract_document(b"\x89PNG\r\n", content_type="image/png", name="a.png")
    assert e.value.code == "unsupported_content"
    with pytest.raises(ToolError) as e:
        extract_plain("\n \n")
    assert e.value.code == "empty_content"
