"""Text renderings of tool results (reference layouts)."""

from __future__ import annotations

from fathom.web.render import render_error, render_query_url, render_search, render_visit
from fathom.web.schemas import QueryUrlResponse, SearchHit, SearchResponse, ToolErrorInfo, VisitResponse


def test_render_search_reference_layout():
    resp = SearchResponse(query="q", hits=[SearchHit(url="http://a", title="A", snippet="sa"),
                                           SearchHit(url="http://b", title="B", snippet="sb")])
    assert render_search(resp) == ("### 1. A\n**URL**: http://a\n\n**Snippet**: sa\n"
                                   "\n---\n\n"
                                   "### 2. B\n**URL**: http://b\n\n**Snippet**: sb\n")


def test_render_search_empty_and_error():
    assert render_search(SearchResponse(query="zz")) == "No results found. (query: zz)"
    err = SearchResponse(query="q", error=ToolErrorInfo(code="search_failed", message="backend\ndown"))
    assert render_search(err) == "[error:search_failed] backend down"


def test_render_query_url_reference_layout():
    resp = QueryUrlResponse(url="http://a", goal="g", rationale="why", evidence=["e1", " ", "e2"], summary="s")
    assert render_query_url(resp) == ("The useful information in http://a for goal \u201cg\u201d:\n\n"
                                      "Rationale:\nwhy\n\nEvidence:\ne1\ne2\n\nSummary:\ns")
    blocked = QueryUrlResponse(url="http://10.0.0.1", goal="g",
                               error=ToolErrorInfo(code="blocked_url", message="private address"))
    assert render_query_url(blocked) == "[error:blocked_url] private address"


def test_render_visit_and_error():
    assert render_visit(VisitResponse(url="u", title="T", text="body", truncated=True)) == \
        "# T\n\nbody\n\n[page truncated]"
    assert render_visit(VisitResponse(url="u", text="")) == "(empty page)"
    assert render_error(ToolErrorInfo(code="timeout", message="slow")) == "[error:timeout] slow"
