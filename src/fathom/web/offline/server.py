"""Serve a generated site over HTTP. Routing is by path only: requests arrive with ``Host: atlas.fathom.test``
(the tool server maps that virtual host onto our loopback port) or with the loopback address itself."""

from __future__ import annotations

import html

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from fathom.serving import serve_in_thread
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


def serve_offline_web(web: OfflineWeb, host: str = "127.0.0.1", port: int = 0, *,
                      startup_timeout: float = 15.0):
    """Run the site server (uvicorn) in a background thread; a context manager yielding ``http://127.0.0.1:PORT``."""
    return serve_in_thread(create_site_app(web), host, port, ready_timeout_s=startup_timeout, name="offline-web")
