"""Issue 9 against the tool server on loopback: body limit (413), one typed error body for every malformed request,
the URL guard before the cache, and schemathesis over the server's own OpenAPI schema."""

from __future__ import annotations

import contextlib
import json

import httpx
import pytest
from test_server_endpoints import DOCS, ListBackend  # noqa: E402 - sibling test module (rootdir on sys.path)

from fathom.web.server import ToolService, create_app, serve_in_thread
from fathom.web.settings import ToolServerSettings


async def _no_dns(host: str, port: int) -> list[str]:
    return ["203.0.113.7"]  # TEST-NET: refused by the guard, and no real DNS lookup leaves the machine


@contextlib.contextmanager
def server(tmp_path, **kw):
    settings = ToolServerSettings(cache_dir=tmp_path / "cache", query_llm="none", fetch_timeout_s=3.0, **kw)
    svc = ToolService(settings, backend=ListBackend(DOCS))
    svc.guard.resolver = _no_dns
    with serve_in_thread(create_app(settings, service=svc)) as url:
        yield url, svc


def _typed(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"]["code"] == code and body["error"]["message"]
    return body


BAD_BODIES = [
    (b'{"query": NaN}', "NaN"),
    (b'{"query": "x", "top_k": Infinity}', "Infinity"),
    (b'{"query": "\\ud800"}', "surrogate"),
    (b'{"query": "x", "top_k": ' + b"9" * 5000 + b"}", "cannot be read"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b"not json", "not JSON"),
]


@pytest.mark.parametrize("body,why", BAD_BODIES)
async def test_malformed_bodies_are_typed_422(tmp_path, body, why):
    with server(tmp_path, max_body_bytes=1_000_000) as (url, _):
        async with httpx.AsyncClient(base_url=url) as h:
            for path in ("/v1/search", "/v1/query_url", "/v1/visit", "/execute"):
                b = _typed(await h.post(path, content=body, headers={"content-type": "application/json"}), 422,
                           "bad_request")
                assert why in b["error"]["message"]


async def test_validation_errors_use_the_same_body_without_echoing_input(tmp_path):
    with server(tmp_path) as (url, _):
        async with httpx.AsyncClient(base_url=url) as h:
            b = _typed(await h.post("/v1/search", json={"query": "x", "top_k": 0}), 422, "bad_request")
            assert b["detail"][0]["loc"] == ["body", "top_k"] and "input" not in b["detail"][0]
            _typed(await h.post("/execute", json={"call": "search_urls('x')", "timeout": 10**400}), 422, "bad_request")
            _typed(await h.post("/execute", json={"call": "search_urls('x')", "timeout": -1}), 422, "bad_request")
            _typed(await h.post("/v1/query_url", json={"url": "http://a.test/", "goal": "x" * 5000}), 422,
                   "bad_request")
            _typed(await h.get("/nowhere"), 404, "not_found")
            _typed(await h.get("/v1/search"), 405, "method_not_allowed")
            r = await h.post("/execute", json={"call": "search_urls('x', top_k=0)"})  # clamped, as the reference
            assert r.status_code == 200 and r.json()["error"] is None
            r = await h.post("/execute", json={"call": "search_urls(" + "[" * 500 + "]" * 500 + ")"})
            assert r.status_code == 200 and "bad_request" in r.json()["error"]


async def test_body_limit_is_413(tmp_path):
    with server(tmp_path, max_body_bytes=10_000) as (url, _):
        async with httpx.AsyncClient(base_url=url) as h:
            big = json.dumps({"query": "x" * 20_000}).encode()
            b = _typed(await h.post("/v1/search", content=big, headers={"content-type": "application/json"}), 413,
                       "too_large")
            assert "10000" in b["error"]["message"]

            async def chunks():  # no Content-Length: counted while streaming
                for _ in range(20):
                    yield b" " * 1000

            _typed(await h.post("/v1/search", content=chunks(), headers={"content-type": "application/json"}), 413,
                   "too_large")
            assert (await h.post("/v1/search", json={"query": "volcano"})).status_code == 200


async def test_bad_port_and_broken_ipv6_are_invalid_url(tmp_path):
    with server(tmp_path) as (url, _):
        async with httpx.AsyncClient(base_url=url) as h:
            for bad in ("http://a.test:99999/", "http://[::1", "http://a.test:port/"):
                for path, body in (("/v1/visit", {"url": bad}), ("/v1/query_url", {"url": bad, "goal": "g"})):
                    r = await h.post(path, json=body)
                    assert r.status_code == 200 and r.json()["error"]["code"] == "invalid_url", (bad, r.text)


async def test_cached_page_is_not_served_once_its_host_is_refused(site, tmp_path):
    """A page fetched (and cached) while 127.0.0.1 was allowed is refused after the allow-list drops it."""
    page = f"http://127.0.0.1:{site.port}/page.html"
    with server(tmp_path, allow_hosts=["127.0.0.1"]) as (url, _):
        async with httpx.AsyncClient(base_url=url) as h:
            r = (await h.post("/v1/visit", json={"url": page})).json()
            assert r["error"] is None and "Mount Veyra" in r["text"]
            assert (await h.post("/v1/visit", json={"url": page})).json()["cache_hit"] is True
            r = (await h.post("/v1/query_url", json={"url": page, "goal": "first ascent"})).json()
            assert r["error"] is None
    with server(tmp_path) as (url, _):  # same cache folder, no allow-list
        async with httpx.AsyncClient(base_url=url) as h:
            r = (await h.post("/v1/visit", json={"url": page})).json()
            assert r["error"]["code"] == "blocked_url" and r["text"] == "" and not r["cache_hit"]
            r = (await h.post("/v1/query_url", json={"url": page, "goal": "first ascent"})).json()
            assert r["error"]["code"] == "blocked_url" and not r["cache_hit"] and r["summary"] == ""


# ---------------------------------------------------------------------------------------------------------------
# schemathesis over the server's own OpenAPI schema (generated valid and invalid requests, loopback only)

schemathesis = pytest.importorskip("schemathesis")
EXAMPLES = 15  # per operation and generation mode: the suite stays fast on 2 cores


def test_openapi_contract_with_schemathesis(tmp_path):
    """Valid and invalid requests generated from the server's own /openapi.json: never a 5xx; every answer matches
    its documented status codes and schemas (4xx bodies included)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    with server(tmp_path, max_body_bytes=200_000) as (url, _):
        api = schemathesis.openapi.from_url(f"{url}/openapi.json")
        seen = {"calls": 0, "4xx": 0}
        for result in api.get_all_operations():
            op = result.ok()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                @given(case=op.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                          suppress_health_check=list(HealthCheck))
                def check(case):
                    response = case.call(base_url=url, timeout=30)
                    seen["calls"] += 1
                    assert response.status_code < 500, response.text[:500]
                    if response.status_code >= 400:
                        seen["4xx"] += 1
                        assert response.json()["error"]["code"] in ("bad_request", "too_large", "not_found",
                                                                    "method_not_allowed")
                    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                                             content_type_conformance, response_schema_conformance])

                try:
                    check()
                except Unsatisfiable:  # no invalid request exists for an operation without inputs (GET /healthz)
                    assert mode is GenerationMode.NEGATIVE and op.method.upper() == "GET"
    assert seen["calls"] >= 40 and seen["4xx"] > 0
