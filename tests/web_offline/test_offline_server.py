"""The offline web served over real loopback HTTP."""

from __future__ import annotations

import httpx
import pytest

from fathom.web.extract import extract_html, extract_pdf
from fathom.web.offline import OFFLINE_HOST, build_offline_web, serve_offline_web


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    web = build_offline_web(2, 30, tmp_path_factory.mktemp("srv") / "w")
    with serve_offline_web(web) as base:
        yield web, base


def test_serves_pages_pdfs_and_404(served):
    web, base = served
    assert base.startswith("http://127.0.0.1:")
    headers = {"Host": OFFLINE_HOST}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        home = client.get("/")
        assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
        assert "Atlas" in home.text
        page = next(p for p in web.pages() if p["kind"] == "html" and "/wiki/" in p["url"])
        path = page["url"].removeprefix(f"http://{OFFLINE_HOST}")
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
        assert extract_html(r.content, url=page["url"]).title.startswith(page["title"])
        assert client.get(path + ".html").status_code == 200
        pdf = next(p for p in web.pages() if p["kind"] == "pdf")
        r = client.get(pdf["url"].removeprefix(f"http://{OFFLINE_HOST}"))
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
        assert "net income" in extract_pdf(r.content).text
        assert client.head(path).status_code == 200
        for bad in ("/wiki/No_Such_Page", "/wiki/../manifest.json", "/world.json", "/files/x.txt",
                    "/site/index.html"):
            assert client.get(bad).status_code == 404, bad
        assert client.get("/healthz").text == "ok"


def test_server_stops_on_exit(tmp_path):
    web = build_offline_web(2, 12, tmp_path / "w")
    with serve_offline_web(web) as base:
        assert httpx.get(base + "/", timeout=5).status_code == 200
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/", timeout=2)
