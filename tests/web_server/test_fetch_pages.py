"""Fetchers against a real loopback website: HTML, PDF, redirects (each hop guarded), caps, content types,
timeouts, HTTP errors, routing and the Jina Reader fetcher."""

from __future__ import annotations

import time

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse

from fathom.errors import ToolError
from fathom.web.fetch import FetchContext, default_registry, make_http_client
from fathom.web.guard import UrlGuard
from fathom.web.server import serve_in_thread
from fathom.web.settings import ToolServerSettings


def make_ctx(site, **kw) -> FetchContext:
    s = ToolServerSettings(host_overrides=site.override, cache_enabled=False, query_llm="none",
                           html_cap_bytes=kw.pop("html_cap_bytes", 100_000), fetch_timeout_s=kw.pop("fetch_timeout_s", 2.0),
                           read_timeout_s=kw.pop("read_timeout_s", 1.0), **kw)
    return FetchContext(settings=s, guard=UrlGuard(s.allow_hosts, s.host_overrides), http=make_http_client(s))


async def fetch(site, path, **kw):
    ctx = make_ctx(site, **kw)
    try:
        return await default_registry(ctx.settings).fetch(site.vurl + path, ctx)
    finally:
        await ctx.http.aclose()


async def fetch_err(site, path, **kw) -> ToolError:
    with pytest.raises(ToolError) as e:
        await fetch(site, path, **kw)
    return e.value


async def test_html_page(site):
    page = await fetch(site, "/page.html")
    assert page.fetcher == "html" and page.content_type == "html"
    assert page.title == "Mount Veyra"
    assert "14 March 2026" in page.text and "Ada Lindqvist" in page.text
    assert page.url == "http://site.test/page.html"


async def test_virtual_host_header_is_sent(site):
    page = await fetch(site, "/echo-host")
    assert "Host header was site.test" in page.text


async def test_pdf_by_url_and_by_sniffing(site):
    page = await fetch(site, "/doc.pdf")
    assert page.fetcher == "pdf" and "212 small tremors" in page.text
    sniffed = await fetch(site, "/download")  # application/octet-stream carrying a PDF
    assert sniffed.fetcher == "pdf" and "212 small tremors" in sniffed.text


async def test_redirects_followed_relative_and_absolute(site):
    assert (await fetch(site, "/redirect")).url == "http://site.test/page.html"
    assert "Ada Lindqvist" in (await fetch(site, "/redirect-abs")).text


@pytest.mark.parametrize("path", ["/to-loopback", "/to-metadata", "/to-localhost", "/to-mapped"])
async def test_redirect_into_private_network_is_blocked(site, path):
    err = await fetch_err(site, path)
    assert err.code == "blocked_url"


async def test_redirect_to_non_http_scheme_and_loops(site):
    assert (await fetch_err(site, "/to-file")).code == "invalid_url"
    err = await fetch_err(site, "/loop", max_redirects=3)
    assert err.code == "fetch_failed" and "redirects" in err.message


async def test_oversize_with_and_without_content_length(site):
    err = await fetch_err(site, "/big.html", html_cap_bytes=50_000)
    assert err.code == "too_large"
    err = await fetch_err(site, "/big-stream.html", html_cap_bytes=50_000)
    assert err.code == "too_large"
    page = await fetch(site, "/big-stream.html", html_cap_bytes=1_000_000)  # under the cap it is read
    assert page.fetcher == "html"


@pytest.mark.parametrize("path", ["/image.png", "/data.json"])
async def test_wrong_content_type(site, path):
    assert (await fetch_err(site, path)).code == "unsupported_content"


async def test_slow_endpoint_times_out_promptly(site):
    t0 = time.perf_counter()
    err = await fetch_err(site, "/slow", fetch_timeout_s=0.5, read_timeout_s=5.0)
    assert err.code == "timeout" and err.retryable
    assert time.perf_counter() - t0 < 2.0


async def test_http_errors(site):
    err = await fetch_err(site, "/missing")
    assert err.code == "http_status" and "404" in err.message and not err.retryable
    err = await fetch_err(site, "/flaky")
    assert err.code == "http_status" and err.retryable


async def test_empty_page(site):
    assert (await fetch_err(site, "/empty.html")).code == "empty_content"


async def test_connection_refused_is_fetch_failed():
    s = ToolServerSettings(host_overrides={"down.test": "127.0.0.1:9"}, query_llm="none", fetch_timeout_s=2)
    ctx = FetchContext(settings=s, guard=UrlGuard(s.allow_hosts, s.host_overrides), http=make_http_client(s))
    with pytest.raises(ToolError) as e:
        await default_registry(s).fetch("http://down.test/x", ctx)
    await ctx.http.aclose()
    assert e.value.code == "fetch_failed" and e.value.retryable


def test_routing_by_url_pattern():
    reg = default_registry(ToolServerSettings(query_llm="none"))
    assert reg.chain_for("https://a.org/paper.pdf") == ("pdf",)
    assert reg.chain_for("https://a.org/paper.PDF?dl=1") == ("pdf",)
    assert reg.chain_for("https://a.org/pdf-guide.html") == ("html",)
    assert reg.chain_for("https://a.org/") == ("html",)


def test_routing_with_jina(monkeypatch):
    monkeypatch.setenv("JINA_API_KEY", "k")
    first = default_registry(ToolServerSettings(query_llm="none", jina_mode="first"))
    assert first.chain_for("https://a.org/") == ("jina", "html")
    assert first.chain_for("https://a.org/x.pdf") == ("jina", "pdf")
    fb = default_registry(ToolServerSettings(query_llm="none", jina_mode="fallback"))
    assert fb.chain_for("https://a.org/") == ("html", "jina")


def jina_stub(seen: list):
    app = FastAPI()

    @app.get("/{target:path}")
    async def read(target: str, request: Request):
        seen.append((request.url.path, request.headers.get("authorization")))
        return PlainTextResponse("Title: Mount Veyra\nURL Source: http://site.test/page.html\n\nMarkdown Content:\n"
                                 "# Mount Veyra\n\nA dormant volcano, first climbed on 14 March 2026.")

    return app


async def test_jina_fallback_after_direct_failure(site, monkeypatch):
    monkeypatch.setenv("JINA_API_KEY", "secret-key")
    seen: list = []
    with serve_in_thread(jina_stub(seen)) as jurl:
        page = await fetch(site, "/missing", jina_mode="fallback", jina_url=jurl + "/")
        assert page.fetcher == "jina" and page.title == "Mount Veyra"
        assert page.text.startswith("# Mount Veyra") and "14 March 2026" in page.text
        path, auth = seen[0]
        assert auth == "Bearer secret-key"
        assert "site.test" in path  # the target URL travels quoted in the path
        # a blocked URL never reaches the remote fetcher
        with pytest.raises(ToolError) as e:
            ctx = make_ctx(site, jina_mode="first", jina_url=jurl + "/")
            await default_registry(ctx.settings).fetch("http://10.0.0.1/", ctx)
        assert e.value.code == "blocked_url" and len(seen) == 1
