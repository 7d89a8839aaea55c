"""The offline stack (site + index + tool server), the `fathom serve tools` command, and the embedded query LLM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import pytest

from fathom.web.backends import SearchBackend
from fathom.web.client import ToolClient
from fathom.web.schemas import QueryUrlRequest
from fathom.web.server import ToolService
from fathom.web.settings import ToolServerSettings


@pytest.fixture
def fathom_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.getbasetemp() / "fathom-home"  # shared by this session's stack tests
    monkeypatch.setenv("FATHOM_HOME", str(home))
    return home


async def test_offline_stack_answers_from_the_site(fathom_home, tmp_path):
    from fathom.web.stack import offline_stack

    with offline_stack(seed=3, n_pages=30, query_llm="none", cache_dir=tmp_path / "cache") as stack:
        assert stack.index_dir.parent == stack.web.root and (stack.index_dir / "meta.json").is_file()
        qa = stack.web.questions(1, hops=2, seed=1)[0]
        hop = qa.hops[-1]
        async with ToolClient(stack.tools_url) as c:
            assert (await c.health())["status"] == "ok"
            hits = await c.search(hop["fact"], top_k=5)
            assert hits.error is None and hop["url"] in [h.url for h in hits.hits]
            r = await c.query_url(hop["url"], hop["fact"])
            assert r.error is None and r.fetcher == "html" and r.extraction == "fallback"
            assert any(str(hop["object"]) in e for e in r.evidence), r.evidence
            v = await c.visit(hop["url"])
            assert v.error is None and str(hop["object"]) in v.text
            # the site's loopback address itself stays blocked: only the virtual host is allowed
            blocked = await c.visit(stack.site_url + "/")
            assert blocked.error is not None and blocked.error.code == "blocked_url"
    # a second stack reuses the site and its index
    with offline_stack(seed=3, n_pages=30, query_llm="none", cache_dir=tmp_path / "cache") as again:
        assert again.index_dir == stack.index_dir


def test_serve_tools_command_serves_until_interrupted(tmp_path):
    from fathom.web.index import CorpusIndex

    CorpusIndex.build([{"id": "a", "url": "http://a.test/a", "title": "Alpha", "text": "alpha beta gamma " * 20},
                       {"id": "b", "url": "http://a.test/b", "title": "Beta", "text": "delta epsilon " * 20}]
                      ).save(tmp_path / "idx")
    env = {**os.environ, "FATHOM_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen([sys.executable, "-m", "fathom.cli", "serve", "tools", "--port", "0", "--index",
                             str(tmp_path / "idx"), "--query-llm", "none", "--cache-dir", str(tmp_path / "c")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else url
        assert httpx.get(url + "/healthz").json()["status"] == "ok"
        hits = httpx.post(url + "/v1/search", json={"query": "epsilon", "top_k": 3}).json()["hits"]
        assert hits[0]["url"] == "http://a.test/b"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def test_serve_tools_missing_key_is_a_clear_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SERPER_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "fathom.cli", "serve", "tools", "--serper", "--query-llm", "none"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "SERPER_API_KEY" in out.stderr


class NoSearch(SearchBackend):
    provider = "none"

    async def search(self, query, top_k, *, gl=None, hl=None):
        return []


@pytest.mark.slow
async def test_embedded_query_llm_reads_a_page(site, tmp_path, embedded_model_dir):
    """SmolLM2 reads a real page for a goal; whatever it writes, the agent gets grounded evidence."""
    settings = ToolServerSettings(host_overrides=site.override, cache_dir=tmp_path / "c", query_llm="local:smollm2",
                                  query_llm_max_tokens=64, query_llm_timeout_s=100,
                                  request_timeout_s=110)
    async with ToolService(settings, backend=NoSearch()) as svc:
        r = await svc.query_url(QueryUrlRequest(url="http://site.test/page.html",
                                                goal="When was the first ascent of Mount Veyra?"))
    assert r.error is None and r.extraction in ("llm", "fallback") and r.evidence
    if r.extraction == "fallback":
        assert "14 March 2026" in r.evidence[0]
    else:  # a parsed reading: its evidence is grounded in the page by construction
        assert any(w in " ".join(r.evidence) for w in ("Veyra", "ascent", "2026"))
