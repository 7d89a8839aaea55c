"""Loopback fixtures of the tool-server tests: a small website with every kind of page a fetcher meets, an
OpenAI-compatible query-LLM stub and a Serper stub, all served by real uvicorn servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse

from fathom.web.server import serve_in_thread

SITE_HOST = "site.test"

ARTICLE = """<!doctype html><html><head><title>Mount Veyra</title></head><body>
<nav>Home | About | Contact</nav>
<article><h1>Mount Veyra</h1>
<p>Mount Veyra is a dormant volcano on the island of Kestrel. It rises 2,417 metres above sea level and last
erupted in 1893, when ash fell on the harbour town of Orlen for eleven days.</p>
<p>The first recorded ascent of Mount Veyra was made on 14 March 2026 by the climber Ada Lindqvist, who reached
the summit crater after a nine-hour climb from the northern ridge.</p>
<p>The mountain is home to the Veyra pika, a small mammal found nowhere else. Park rangers count about 340
animals each spring.</p>
<p>Orlen's harbour exports basalt from quarries on the lower slopes; the trade employed 1,200 people in 2025.</p>
</article><footer>Copyright the Atlas</footer></body></html>"""


def make_pdf(text_lines: list[str]) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    y = 800
    for line in text_lines:
        c.drawString(60, y, line)
        y -= 18
    c.showPage()
    c.save()
    return buf.getvalue()


PDF_BYTES = make_pdf(["Annual report of the Kestrel Geological Survey.",
                      "Seismic stations recorded 212 small tremors under Mount Veyra in 2025.",
                      "No eruption is expected within the next decade."])


def site_app(port_box: dict) -> FastAPI:
    app = FastAPI()

    @app.get("/page.html")
    async def page():
        return HTMLResponse(ARTICLE)

    @app.get("/doc.pdf")
    async def pdf():
        return Response(PDF_BYTES, media_type="application/pdf")

    @app.get("/download")
    async def octet():
        return Response(PDF_BYTES, media_type="application/octet-stream")

    @app.get("/redirect")
    async def redirect():
        return RedirectResponse("/page.html", status_code=302)

    @app.get("/redirect-abs")
    async def redirect_abs():
        return RedirectResponse(f"http://{SITE_HOST}/page.html", status_code=301)

    @app.get("/loop")
    async def loop():
        return RedirectResponse("/loop", status_code=302)

    @app.get("/to-loopback")
    async def to_loopback():  # the loopback address itself is not on the allow list
        return RedirectResponse(f"http://127.0.0.1:{port_box['port']}/page.html", status_code=302)

    @app.get("/to-metadata")
    async def to_metadata():
        return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=307)

    @app.get("/to-localhost")
    async def to_localhost():
        return RedirectResponse(f"http://localhost:{port_box['port']}/page.html", status_code=302)

    @app.get("/to-mapped")
    async def to_mapped():
        return RedirectResponse("http://[::ffff:10.0.0.1]/", status_code=302)

    @app.get("/to-file")
    async def to_file():
        return RedirectResponse("file:///etc/passwd", status_code=302)

    @app.get("/big.html")
    async def big():
        return HTMLResponse("<html><body>" + "<p>filler text " * 20_000 + "</body></html>")

    @app.get("/big-stream.html")
    async def big_stream():
        async def gen():
            yield b"<html><body>"
            for _ in range(200):
                yield b"<p>" + b"x" * 1000 + b"</p>"

        return StreamingResponse(gen(), media_type="text/html")  # no Content-Length: the stream cap must act

    @app.get("/image.png")
    async def image():
        return Response(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, media_type="image/png")

    @app.get("/data.json")
    async def data():
        return JSONResponse({"a": 1})

    @app.get("/slow")
    async def slow():
        await asyncio.sleep(3)
        return HTMLResponse(ARTICLE)

    @app.get("/sleep")
    async def sleep(s: float = 0.3, n: int = 0):
        await asyncio.sleep(s)
        return HTMLResponse(ARTICLE.replace("Mount Veyra</h1>", f"Mount Veyra {n}</h1>"))

    @app.get("/empty.html")
    async def empty():
        return HTMLResponse("<html><body></body></html>")

    @app.get("/missing")
    async def missing():
        return PlainTextResponse("not here", status_code=404)

    @app.get("/flaky")
    async def flaky():
        return PlainTextResponse("down", status_code=503)

    @app.get("/echo-host")
    async def echo_host(request: Request):
        return HTMLResponse(f"<html><head><title>host</title></head><body><article><p>The request Host header "
                            f"was {request.headers.get('host')} and this paragraph is long enough to be kept by the "
                            "extractor as main content of the page.</p></article></body></html>")

    return app


@dataclass
class Site:
    url: str  # http://127.0.0.1:PORT
    port: int
    host: str = SITE_HOST

    @property
    def vurl(self) -> str:  # the virtual-host base URL fetched by the tool server
        return f"http://{self.host}"

    @property
    def override(self) -> dict[str, str]:
        return {self.host: f"127.0.0.1:{self.port}"}


@pytest.fixture(scope="session")
def site():
    box: dict = {}
    with serve_in_thread(site_app(box)) as url:
        box["port"] = int(url.rsplit(":", 1)[1])
        yield Site(url=url, port=box["port"])


@dataclass
class LLMStub:
    url: str
    state: dict = field(default_factory=dict)

    def role(self, **kw) -> dict:
        return {"model": "stub-reader", "base_url": self.url + "/v1", "max_retries": 0, "timeout_s": 10, **kw}


def llm_stub_app(state: dict) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        state.setdefault("requests", []).append(body)
        if state.get("status", 200) != 200:
            return PlainTextResponse("boom", status_code=state["status"])
        if state.get("delay"):
            await asyncio.sleep(state["delay"])
        return JSONResponse({"id": "x", "object": "chat.completion", "model": body.get("model"),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": state.get("content", "")}}],
                             "usage": {"prompt_tokens": 10, "completion_tokens": 10}})

    return app


@pytest.fixture
def llm_stub():
    state: dict = {}
    with serve_in_thread(llm_stub_app(state)) as url:
        yield LLMStub(url=url, state=state)


@dataclass
class SerperStub:
    url: str
    state: dict


def serper_stub_app(state: dict) -> FastAPI:
    app = FastAPI()

    @app.post("/search")
    async def search(request: Request):
        body = json.loads(await request.body())
        state.setdefault("requests", []).append({"body": body, "key": request.headers.get("x-api-key")})
        if state.get("fail_times", 0) > 0:
            state["fail_times"] -= 1
            return PlainTextResponse("rate limited", status_code=429)
        n = int(body.get("num", 10))
        return JSONResponse({"searchParameters": body, "organic": [
            {"title": f"Result {i} for {body['q']}", "link": f"https://example.org/{i}", "snippet": f"snippet {i}",
             "position": i} for i in range(1, n + 1)]})

    return app


@pytest.fixture
def serper_stub():
    state: dict = {}
    with serve_in_thread(serper_stub_app(state)) as url:
        yield SerperStub(url=url + "/search", state=state)
