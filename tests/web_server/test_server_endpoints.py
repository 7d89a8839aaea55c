"""The tool server end to end: uvicorn on loopback, called through ToolClient and raw HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from fathom.errors import ConfigError
from fathom.web.backends import SearchBackend
from fathom.web.client import ToolClient
from fathom.web.schemas import SearchHit
from fathom.web.server import ToolService, create_app, serve_in_thread
from fathom.web.settings import ToolServerSettings

GOOD_READING = """Rationale: The page's second paragraph reports the first ascent.
Evidence:
- The first recorded ascent of Mount Veyra was made on 14 March 2026 by the climber Ada Lindqvist
Summary: Ada Lindqvist made the first ascent of Mount Veyra on 14 March 2026."""
GOAL = "Who made the first ascent of Mount Veyra, and when?"


class ListBackend(SearchBackend):
    """A tiny in-memory search backend (term overlap) that counts its calls."""

    provider = "list:test"

    def __init__(self, docs: list[SearchHit]):
        self.docs = docs
        self.calls = 0

    async def search(self, query, top_k, *, gl=None, hl=None):
        self.calls += 1
        q = set(query.lower().split())
        scored = [(len(q & set((d.title + " " + d.snippet).lower().split())), i) for i, d in enumerate(self.docs)]
        return [self.docs[i] for s, i in sorted(scored, key=lambda x: (-x[0], x[1])) if s > 0][:top_k]


DOCS = [SearchHit(url="http://site.test/page.html", title="Mount Veyra", snippet="dormant volcano first ascent"),
        SearchHit(url="http://site.test/doc.pdf", title="Survey report", snippet="tremors under the volcano")]


@contextlib.contextmanager
def tool_server(site, tmp_path, backend=None, **kw):
    settings = ToolServerSettings(host_overrides=site.override, cache_dir=tmp_path / "cache",
                                  **{"query_llm": "none", "fetch_timeout_s": 3.0, **kw})
    svc = ToolService(settings, backend=backend or ListBackend(DOCS))
    with serve_in_thread(create_app(settings, service=svc)) as url:
        yield url, svc


async def test_search_and_cache(site, tmp_path):
    backend = ListBackend(DOCS)
    with tool_server(site, tmp_path, backend) as (url, _):
        async with ToolClient(url) as c:
            r1 = await c.search("volcano first ascent", top_k=5)
            r2 = await c.search("  Volcano   FIRST ascent ", top_k=5)
            r3 = await c.search("volcano first ascent", top_k=1)
    assert r1.error is None and [h.url for h in r1.hits] == ["http://site.test/page.html", "http://site.test/doc.pdf"]
    assert not r1.cache_hit and r2.cache_hit and r2.hits == r1.hits
    assert not r3.cache_hit and len(r3.hits) == 1
    assert backend.calls == 2 and r1.backend == "list"


async def test_query_url_with_llm_reading_and_cache(site, tmp_path, llm_stub):
    llm_stub.state["content"] = GOOD_READING
    with tool_server(site, tmp_path, query_llm=llm_stub.role()) as (url, _):
        async with ToolClient(url) as c:
            r = await c.query_url("http://site.test/page.html", GOAL)
            again = await c.query_url("http://site.test/page.html#section", " Who made the first ascent of Mount "
                                                                            "Veyra, and when? ")
    assert r.error is None and r.extraction == "llm" and r.fetcher == "html"
    assert r.evidence == ["The first recorded ascent of Mount Veyra was made on 14 March 2026 by the climber "
                          "Ada Lindqvist"]
    assert r.summary.startswith("Ada Lindqvist") and r.rationale
    assert again.cache_hit and again.evidence == r.evidence
    assert len(llm_stub.state["requests"]) == 1
    sent = llm_stub.state["requests"][0]["messages"][-1]["content"]
    assert GOAL in sent and "Ada Lindqvist" in sent and "Copyright" not in sent  # extracted text, not raw HTML


async def test_query_llm_failure_falls_back_to_relevant_passages(site, tmp_path, llm_stub):
    llm_stub.state["status"] = 500
    with tool_server(site, tmp_path, query_llm=llm_stub.role()) as (url, _):
        async with ToolClient(url) as c:
            r = await c.query_url("http://site.test/page.html", GOAL)
            metrics = (await c._http.get("/metrics")).text
    assert r.error is None and r.extraction == "fallback"
    assert "14 March 2026" in r.evidence[0] and "Ada Lindqvist" in r.evidence[0]
    assert llm_stub.state["requests"]  # the model was really asked
    assert 'fathom_tools_readings_total{extraction="fallback"} 1.0' in metrics


async def test_junk_llm_output_and_llm_timeout_fall_back(site, tmp_path, llm_stub):
    llm_stub.state["content"] = "Hello! I am SmolLM. Evidence: bananas are yellow and grow on trees in Ecuador."
    with tool_server(site, tmp_path, query_llm=llm_stub.role()) as (url, _):
        async with ToolClient(url) as c:
            r = await c.query_url("http://site.test/page.html", GOAL)
    assert r.extraction == "fallback" and "Ada Lindqvist" in r.evidence[0]
    llm_stub.state.update(content=GOOD_READING, delay=3.0)
    with tool_server(site, tmp_path / "b", query_llm=llm_stub.role(), query_llm_timeout_s=0.5) as (url, _):
        async with ToolClient(url) as c:
            t0 = time.perf_counter()
            r = await c.query_url("http://site.test/page.html", GOAL)
    assert r.extraction == "fallback" and time.perf_counter() - t0 < 2.5


async def test_tool_errors_are_typed(site, tmp_path):
    with tool_server(site, tmp_path) as (url, _):
        async with ToolClient(url) as c:
            cases = {
                "ftp://site.test/x": "invalid_url",
                "http://127.0.0.1:1/": "blocked_url",
                "http://169.254.169.254/latest/meta-data/": "blocked_url",
                "http://site.test/to-loopback": "blocked_url",
                "http://site.test/missing": "http_status",
                "http://site.test/image.png": "unsupported_content",
                "http://site.test/empty.html": "empty_content",
            }
            for target, code in cases.items():
                r = await c.query_url(target, "anything")
                assert r.error is not None and r.error.code == code, (target, r.error)
                assert r.extraction == "none" and not r.evidence
                v = await c.visit(target)
                assert v.error is not None and v.error.code == code
            metrics = (await c._http.get("/metrics")).text
    assert 'fathom_tools_fetch_errors_total{code="http_status"}' in metrics
    assert 'fathom_tools_cache_total{kind="page",result="negative"}' in metrics  # the second 404 came from cache


async def test_visit_text_truncation_and_pdf(site, tmp_path):
    with tool_server(site, tmp_path) as (url, _):
        async with ToolClient(url) as c:
            v = await c.visit("http://site.test/redirect", max_chars=100)
            pdf = await c.visit("http://site.test/doc.pdf")
            again = await c.visit("http://site.test/doc.pdf")
    assert v.error is None and v.url == "http://site.test/page.html" and v.title == "Mount Veyra"
    assert len(v.text) == 100 and v.truncated
    assert pdf.fetcher == "pdf" and "212 small tremors" in pdf.text and not pdf.truncated
    assert again.cache_hit


async def test_request_deadline_cancels_slow_work(site, tmp_path):
    with tool_server(site, tmp_path, request_timeout_s=0.5, fetch_timeout_s=30, read_timeout_s=30) as (url, svc):
        async with ToolClient(url) as c:
            t0 = time.perf_counter()
            r = await c.visit("http://site.test/slow")
            dt = time.perf_counter() - t0
            await asyncio.sleep(0.1)
            health = await c.health()
    assert r.error is not None and r.error.code == "timeout" and r.error.retryable
    assert dt < 1.5
    assert health["status"] == "ok"
    assert not svc._flights  # the cancelled fetch is gone, nothing left running


async def test_global_concurrency_limit(site, tmp_path):
    with tool_server(site, tmp_path, max_concurrency=2) as (url, _):
        async with ToolClient(url) as c:
            t0 = time.perf_counter()
            rs = await asyncio.gather(*(c.visit(f"http://site.test/sleep?s=0.4&n={i}") for i in range(6)))
            dt = time.perf_counter() - t0
    assert all(r.error is None for r in rs)
    assert dt >= 1.2  # 6 fetches of 0.4 s through 2 slots take at least 3 rounds


async def test_identical_concurrent_calls_share_one_fetch_and_reading(site, tmp_path, llm_stub):
    llm_stub.state.update(content=GOOD_READING, delay=0.3)
    with tool_server(site, tmp_path, query_llm=llm_stub.role()) as (url, _):
        async with ToolClient(url) as c:
            rs = await asyncio.gather(*(c.query_url("http://site.test/sleep?s=0.3", GOAL) for _ in range(8)))
    assert all(r.extraction == "llm" for r in rs)
    assert len(llm_stub.state["requests"]) == 1


async def test_execute_legacy_contract(site, tmp_path):
    with tool_server(site, tmp_path) as (url, _):
        async with httpx.AsyncClient(base_url=url) as h:
            env = "from search_api import search_urls, query_url"
            r = (await h.post("/execute", json={"env": env, "call": "search_urls('volcano ascent', top_k=2)"})).json()
            assert r["error"] is None and r["result"].startswith("### 1. Mount Veyra\n**URL**: http://site.test/page.html")
            r = (await h.post("/execute", json={"env": env, "call": f"query_url(url='http://site.test/page.html', "
                                                                     f"goal={GOAL!r})"})).json()
            assert r["error"] is None and r["result"].startswith("The useful information in http://site.test/page.html")
            assert "Ada Lindqvist" in r["result"]
            r = (await h.post("/execute", json={"env": "from search_api import web_search, web_visit",
                                                "call": "web_visit('http://site.test/page.html')"})).json()
            assert r["error"] is None and r["result"].startswith("# Mount Veyra")
            r = (await h.post("/execute", json={"env": env, "call": "__import__('os').system('touch /tmp/pwned')"}))
            assert r.status_code == 200
            body = r.json()
            assert body["error"] and body["error"] == body["result"] and "bad_request" in body["error"]
            r = (await h.post("/execute", json={"env": "import os", "call": "search_urls('x')"})).json()
            assert "bad_request" in r["error"]
            r = (await h.post("/execute", json={"env": env, "call": "query_url('http://10.0.0.1/', 'x')"})).json()
            assert "blocked_url" in r["error"]
            r = (await h.post("/execute", json={"call": "web_visit('http://site.test/slow')", "timeout": 1})).json()
            assert "timeout" in r["error"]


async def test_malformed_requests_are_4xx_and_health_metrics(site, tmp_path):
    with tool_server(site, tmp_path) as (url, _):
        async with httpx.AsyncClient(base_url=url) as h:
            assert (await h.post("/v1/search", json={"query": "x", "top_k": 0})).status_code == 422
            assert (await h.post("/v1/search", json={})).status_code == 422
            assert (await h.post("/v1/query_url", json={"url": "http://a.org"})).status_code == 422
            assert (await h.post("/v1/search", content=b"not json")).status_code == 422
            await h.post("/v1/search", json={"query": "volcano"})
            await h.post("/v1/search", json={"query": "volcano"})
            health = (await h.get("/healthz")).json()
            metrics = (await h.get("/metrics")).text
    assert health["status"] == "ok" and health["search_backend"] == "list:test" and "html" in health["fetchers"]
    assert 'fathom_tools_requests_total{endpoint="search",outcome="ok"} 2.0' in metrics
    assert 'fathom_tools_cache_total{kind="search",result="hit"} 1.0' in metrics
    assert "fathom_tools_request_seconds_bucket" in metrics and "fathom_tools_in_flight" in metrics


async def test_serper_backend_through_a_loopback_stub(site, tmp_path, serper_stub, monkeypatch):
    monkeypatch.setenv("TEST_SERPER_KEY", "sk-test")
    serper_stub.state["fail_times"] = 1  # one 429, then success (retried)
    settings = ToolServerSettings(search_backend="serper", serper_api_key_env="TEST_SERPER_KEY",
                                  serper_url=serper_stub.url, serper_gl="us", serper_hl="en", query_llm="none",
                                  cache_dir=tmp_path / "c")
    with serve_in_thread(settings) as url:
        async with ToolClient(url) as c:
            r = await c.search("veyra volcano", top_k=3)
            again = await c.search("Veyra  volcano", top_k=3)
    assert r.error is None and r.backend == "serper" and len(r.hits) == 3
    assert r.hits[0].url == "https://example.org/1" and r.hits[0].title == "Result 1 for veyra volcano"
    assert again.cache_hit
    reqs = serper_stub.state["requests"]
    assert len(reqs) == 2 and reqs[-1]["key"] == "sk-test"
    assert reqs[-1]["body"] == {"q": "veyra volcano", "num": 3, "gl": "us", "hl": "en"}


def test_missing_keys_are_clear_startup_errors(monkeypatch):
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="SERPER_API_KEY"):
        create_app(ToolServerSettings(search_backend="serper", query_llm="none"))
    monkeypatch.delenv("NO_SUCH_QUERY_KEY", raising=False)
    with pytest.raises(ConfigError, match="NO_SUCH_QUERY_KEY"):
        create_app(ToolServerSettings(query_llm="http://127.0.0.1:9/v1#m@NO_SUCH_QUERY_KEY"))
    monkeypatch.delenv("JINA_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="JINA_API_KEY"):
        ToolServerSettings(jina_mode="fallback", query_llm="none").check()
    with pytest.raises(ConfigError, match="index_dir"):
        create_app(ToolServerSettings(search_backend="local", query_llm="none"))


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("FATHOM_TOOLS_SEARCH_BACKEND", "serper")
    monkeypatch.setenv("FATHOM_TOOLS_ALLOW_HOSTS", '["Atlas.Fathom.Test"]')
    monkeypatch.setenv("FATHOM_TOOLS_HOST_OVERRIDES", '{"atlas.fathom.test": "127.0.0.1:8080"}')
    monkeypatch.setenv("FATHOM_TOOLS_QUERY_LLM", "none")
    s = ToolServerSettings()
    assert s.search_backend == "serper" and s.allow_hosts == ["atlas.fathom.test"]
    assert s.host_overrides == {"atlas.fathom.test": "127.0.0.1:8080"} and s.query_role is None
    with pytest.raises(ValueError):
        ToolServerSettings(host_overrides={"a.test": "127.0.0.1"})


async def test_slow_reading_falls_back_within_the_call_deadline(site, tmp_path, llm_stub):
    """A reading slower than the whole call's deadline still yields the fallback, not a timeout error."""
    llm_stub.state.update(content=GOOD_READING, delay=3.0)
    with tool_server(site, tmp_path, query_llm=llm_stub.role(), query_llm_timeout_s=30, request_timeout_s=1.5) as (
            url, _):
        async with ToolClient(url) as c:
            t0 = time.perf_counter()
            r = await c.query_url("http://site.test/page.html", GOAL)
            dt = time.perf_counter() - t0
    assert r.error is None and r.extraction == "fallback" and "Ada Lindqvist" in r.evidence[0]
    assert dt < 1.6


def test_startup_objects_frozen_while_serving(site, tmp_path):
    """After start-up the server moves what is alive out of the collector's reach (the full collections that
    requests trigger under load then do not walk the index and the app: issue 13's search p99); unfrozen at exit."""
    import gc

    with tool_server(site, tmp_path) as (url, _):
        assert gc.get_freeze_count() > 0
        assert httpx.post(f"{url}/v1/search", json={"query": "volcano"}).status_code == 200
    assert gc.get_freeze_count() == 0
    with tool_server(site, tmp_path, gc_freeze=False) as (url, _):
        assert gc.get_freeze_count() == 0
