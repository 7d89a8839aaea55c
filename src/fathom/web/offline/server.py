"""Serve a generated site over HTTP. Routing is by path only: requests arrive with ``Host: atlas.fathom.test``
(the tool server maps that virtual host onto our loopback port) or with the loopback address itself."""

from __future__ import annotations

import html
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from fathom.errors import FathomError
from fathom.web.offline.site import OfflineWeb


def create_site_app(web: OfflineWeb) -> Starlette:
    """A tiny Starlette app serving the site's HTML (text/html) and PDFs (application/pdf); 404 otherwise."""

    async def page(request: Request) -> Response:
        hit = web.resolve_path(request.url.path)
        if hit is None:
            return HTMLResponse(
                f"<!DOCTYPE html><html><head><title>Not found</title></head><body><h1>Not found</h1>"
                f"<p>No page at {html.escape(request.url.path)}.</p></body></html>", status_code=404)
        path, media_type = hit
        return FileResponse(path, media_type=media_type)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/{path:path}", page, methods=["GET", "HEAD"]),
    ])


@contextmanager
def serve_offline_web(web: OfflineWeb, host: str = "127.0.0.1", port: int = 0, *,
                      startup_timeout: float = 15.0) -> Iterator[str]:
    """Run the site server (uvicorn) in a background thread; yields its base URL ``http://127.0.0.1:PORT``."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(create_site_app(web), log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"offline-web:{bound_port}")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise FathomError(f"offline web server did not start on {host}:{bound_port}")
        time.sleep(0.01)
    netloc = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{netloc}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
