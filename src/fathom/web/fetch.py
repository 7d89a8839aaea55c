"""Page fetchers, chosen by URL pattern from a pluggable registry.

A *fetcher* turns a URL into a `Page` (final URL, title, text) or raises a typed `ToolError`. The registry maps
URL patterns to a chain of fetcher names; the first fetcher of the chain that succeeds wins.

Built in:

* ``html`` / ``pdf`` — direct download with httpx: redirects followed by hand so that every hop passes the URL guard,
  the connection goes to the guard-checked address (DNS pinning; TLS still verifies the real host name), the body is
  streamed with a byte cap chosen by content type, and the content type decides the extractor (trafilatura for
  HTML, pypdf for PDF; anything else is ``unsupported_content``). The two differ only in the Accept header: the URL
  pattern is a hint, the response's content type is the truth.
* ``jina`` — Jina Reader (remote, optional, key from env), tried first or as a fallback (``jina_mode``).

Extension points: subclass `Fetcher`, ``registry.register(MyFetcher())`` and
``registry.route(r"^https?://(www\\.)?github\\.com/", ("github", "html"))``. Planned handlers: GitHub (README / raw
blobs via the API), Reddit (the ``.json`` API), YouTube (captions) — see `EXTENSION_ROUTES`.
"""

from __future__ import annotations

import abc
import asyncio
import re
from concurrent.futures import Executor
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel

from fathom.errors import ToolError
from fathom.web.cache import canonical_url
from fathom.web.guard import Target, UrlGuard
from fathom.web.settings import ToolServerSettings

REDIRECT_STATUS = {301, 302, 303, 307, 308}
HTML_TYPES = {"text/html", "application/xhtml+xml"}
PDF_TYPES = {"application/pdf", "application/x-pdf"}
SNIFF_TYPES = {"", "application/octet-stream", "binary/octet-stream", "application/download"}
PERMANENT_CODES = {"invalid_url", "blocked_url", "unsupported_content", "too_large", "empty_content"}

# Routes a deployment can enable once the matching fetchers exist (pattern -> chain); kept here as documentation.
EXTENSION_ROUTES: dict[str, tuple[str, ...]] = {
    r"^https?://(www\.)?github\.com/": ("github", "jina", "html"),
    r"^https?://(www\.|old\.)?reddit\.com/": ("reddit", "jina", "html"),
    r"^https?://(www\.)?(youtube\.com|youtu\.be)/": ("youtube", "jina"),
}


class Page(BaseModel):
    """A fetched and extracted page."""

    url: str  # final URL after redirects
    title: str = ""
    text: str
    content_type: str  # html | pdf | markdown
    fetcher: str


@dataclass
class Raw:
    url: str
    status: int
    kind: str  # html | pdf
    body: bytes
    content_type: str


@dataclass
class FetchContext:
    """What fetchers share: settings, the guard, one pooled HTTP client, the extraction executor."""

    settings: ToolServerSettings
    guard: UrlGuard
    http: httpx.AsyncClient
    extract_pool: Executor | None = None
    stats: dict[str, int] = field(default_factory=dict)


def make_http_client(settings: ToolServerSettings) -> httpx.AsyncClient:
    """The shared client: no automatic redirects (the guard checks each hop), no proxies from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
        limits=httpx.Limits(max_connections=max(16, settings.max_concurrency * 2), max_keepalive_connections=32),
    )


def _connect_url(target: Target) -> str:
    parts = urlsplit(target.url)
    host = f"[{target.connect_host}]" if ":" in target.connect_host else target.connect_host
    return urlunsplit((target.scheme, f"{host}:{target.connect_port}", parts.path or "/", parts.query, ""))


def _kind_of(content_type: str) -> str | None:
    if content_type in HTML_TYPES:
        return "html"
    if content_type in PDF_TYPES:
        return "pdf"
    if content_type in SNIFF_TYPES:
        return "sniff"
    return None


def _sniff(body: bytes) -> str | None:
    head = body[:1024].lstrip().lower()
    if head.startswith(b"%pdf"):
        return "pdf"
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "html"
    return None


async def guarded_get(url: str, ctx: FetchContext, *, accept: str) -> Raw:
    """GET with manual, guard-checked redirects and a streamed, capped body. Raises ToolError."""
    s = ctx.settings
    current = url
    for _hop in range(s.max_redirects + 1):
        target = await ctx.guard.check(current)
        headers = {"Host": target.host_header, "User-Agent": s.user_agent, "Accept": accept,
                   "Accept-Encoding": "gzip, deflate"}
        ext = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            async with ctx.http.stream("GET", _connect_url(target), headers=headers, extensions=ext) as resp:
                if resp.status_code in REDIRECT_STATUS:
                    loc = resp.headers.get("location")
                    if not loc:
                        raise ToolError("fetch_failed", f"HTTP {resp.status_code} without Location from {current}")
                    current = urljoin(current, loc.strip())
                    continue
                if resp.status_code >= 400:
                    raise ToolError("http_status", f"HTTP {resp.status_code} from {current}",
                                    retryable=resp.status_code in (408, 425, 429) or resp.status_code >= 500)
                ctype = resp.headers.get("content-type", "").split(";", 1)[0].strip().lower()
                kind = _kind_of(ctype)
                if kind is None:
                    raise ToolError("unsupported_content",
                                    f"{current} is {ctype or 'of unknown type'}; only HTML and PDF pages are read")
                cap = s.html_cap_bytes if kind == "html" else s.pdf_cap_bytes
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > cap:
                    raise ToolError("too_large", f"{current} is {int(declared):,} bytes (cap {cap:,})")
                chunks, size = [], 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > cap:
                        raise ToolError("too_large", f"{current} is larger than the {cap:,}-byte cap")
                    chunks.append(chunk)
                body = b"".join(chunks)
                if kind == "sniff":
                    kind = _sniff(body)
                    if kind is None:
                        raise ToolError("unsupported_content", f"{current} is {ctype or 'untyped'} binary content")
                    if kind == "html" and size > s.html_cap_bytes:
                        raise ToolError("too_large", f"{current} is larger than the {s.html_cap_bytes:,}-byte cap")
                return Raw(url=current, status=resp.status_code, kind=kind, body=body, content_type=ctype)
        except httpx.TimeoutException as exc:
            raise ToolError("timeout", f"{current}: {type(exc).__name__}", retryable=True) from None
        except httpx.HTTPError as exc:
            raise ToolError("fetch_failed", f"{current}: {type(exc).__name__}: {exc}", retryable=True) from None
    raise ToolError("fetch_failed", f"more than {s.max_redirects} redirects starting at {url}")


async def _in_pool(ctx: FetchContext, fn, *args):
    return await asyncio.get_running_loop().run_in_executor(ctx.extract_pool, fn, *args)


class Fetcher(abc.ABC):
    """Turns a URL into a Page or raises ToolError. Stateless; shared state lives in FetchContext."""

    name: str = "base"

    @abc.abstractmethod
    async def fetch(self, url: str, ctx: FetchContext) -> Page: ...


class DirectFetcher(Fetcher):
    """Direct HTTP download + local extraction (HTML via trafilatura, PDF via pypdf)."""

    def __init__(self, name: str = "html", accept: str = "text/html,application/xhtml+xml,application/pdf;q=0.9"):
        self.name = name
        self.accept = accept

    async def fetch(self, url: str, ctx: FetchContext) -> Page:
        raw = await guarded_get(url, ctx, accept=self.accept)
        s = ctx.settings
        try:
            if raw.kind == "pdf":
                from fathom.web.extract import extract_pdf

                doc = await _in_pool(ctx, lambda: extract_pdf(raw.body, max_pages=s.pdf_max_pages,
                                                              max_chars=s.pdf_max_chars))
            else:
                from fathom.web.extract import extract_html

                doc = await _in_pool(ctx, extract_html, raw.body, raw.url)
        except ToolError:
            raise
        except Exception as exc:  # a broken document: typed error, never a 500
            raise ToolError("fetch_failed", f"cannot extract {raw.kind} text from {raw.url}: {exc}") from None
        text = (doc.text or "").strip()
        if not text:
            raise ToolError("empty_content", f"no readable text in {raw.url}")
        return Page(url=raw.url, title=doc.title or "", text=text, content_type=raw.kind, fetcher=raw.kind)


class JinaFetcher(Fetcher):
    """Jina Reader: ``GET {jina_url}{quoted canonical url}`` with the key from the environment; returns markdown."""

    name = "jina"

    async def fetch(self, url: str, ctx: FetchContext) -> Page:
        import os

        s = ctx.settings
        key = os.environ.get(s.jina_api_key_env)
        if not key:
            raise ToolError("fetch_failed", f"Jina Reader needs {s.jina_api_key_env} in the environment")
        endpoint = s.jina_url.rstrip("/") + "/" + quote(canonical_url(url), safe="")
        try:
            resp = await ctx.http.get(endpoint, headers={"Authorization": f"Bearer {key}", "Accept": "text/plain",
                                                         "User-Agent": s.user_agent})
        except httpx.TimeoutException:
            raise ToolError("timeout", f"Jina Reader timed out on {url}", retryable=True) from None
        except httpx.HTTPError as exc:
            raise ToolError("fetch_failed", f"Jina Reader: {type(exc).__name__}: {exc}", retryable=True) from None
        if resp.status_code != 200:
            raise ToolError("http_status", f"Jina Reader returned HTTP {resp.status_code} for {url}",
                            retryable=resp.status_code == 429 or resp.status_code >= 500)
        body = resp.text[: s.html_cap_bytes]
        if len(body) < 200 and re.search(r"403|forbidden|error", body, re.I):
            raise ToolError("fetch_failed", f"Jina Reader could not read {url}: {body.strip()[:150]}")
        title, text = "", body
        m = re.match(r"\s*Title:\s*(.*)\n", body)
        if m:
            title = m.group(1).strip()
            mc = re.search(r"^Markdown Content:\s*\n", body, re.M)
            text = body[mc.end():] if mc else body[m.end():]
        text = text.strip()
        if not text:
            raise ToolError("empty_content", f"Jina Reader returned no text for {url}")
        return Page(url=url, title=title, text=text, content_type="markdown", fetcher="jina")


@dataclass
class Route:
    pattern: re.Pattern
    chain: tuple[str, ...]


class FetcherRegistry:
    """Fetchers by name and URL-pattern routes to chains of them; the first matching route wins."""

    def __init__(self, default_chain: tuple[str, ...] = ("html",)):
        self.fetchers: dict[str, Fetcher] = {}
        self.routes: list[Route] = []
        self.default_chain = default_chain

    def register(self, fetcher: Fetcher) -> None:
        self.fetchers[fetcher.name] = fetcher

    def route(self, pattern: str, chain: tuple[str, ...], *, first: bool = True) -> None:
        r = Route(re.compile(pattern, re.I), tuple(chain))
        self.routes.insert(0, r) if first else self.routes.append(r)

    def chain_for(self, url: str) -> tuple[str, ...]:
        for r in self.routes:
            if r.pattern.search(url):
                chain = r.chain
                break
        else:
            chain = self.default_chain
        return tuple(n for n in chain if n in self.fetchers)

    async def fetch(self, url: str, ctx: FetchContext) -> Page:
        """Guard-check `url`, then try its chain; each fetcher gets `fetch_timeout_s`. Raises the primary error."""
        await ctx.guard.check(url)  # bad or blocked URLs never reach any fetcher (remote ones included)
        chain = self.chain_for(url)
        if not chain:
            raise ToolError("fetch_failed", f"no fetcher is configured for {url}")
        errors: list[tuple[str, ToolError]] = []
        for name in chain:
            try:
                async with asyncio.timeout(ctx.settings.fetch_timeout_s):
                    return await self.fetchers[name].fetch(url, ctx)
            except TimeoutError:
                err = ToolError("timeout", f"{name} fetch of {url} exceeded {ctx.settings.fetch_timeout_s:g}s",
                                retryable=True)
            except ToolError as exc:
                err = exc
            if err.code == "blocked_url":  # a redirect into a private network: stop, do not try other routes
                raise err
            errors.append((name, err))
        primary = errors[0][1]
        if len(errors) > 1:
            others = "; ".join(f"{n}: {e.code}" for n, e in errors[1:])
            raise ToolError(primary.code, f"{primary.message} (also tried {others})", retryable=primary.retryable)
        raise primary


def default_registry(settings: ToolServerSettings) -> FetcherRegistry:
    base = ("html",)
    if settings.jina_mode == "first":
        base = ("jina", "html")
    elif settings.jina_mode == "fallback":
        base = ("html", "jina")
    pdf_chain = tuple("pdf" if n == "html" else n for n in base)
    reg = FetcherRegistry(default_chain=base)
    reg.register(DirectFetcher("html"))
    reg.register(DirectFetcher("pdf", accept="application/pdf,text/html;q=0.8"))
    if settings.jina_mode != "off":
        reg.register(JinaFetcher())
    reg.route(r"^[^?#]*\.pdf([?#]|$)", pdf_chain)
    return reg


def chain_id(registry: FetcherRegistry, url: str) -> str:
    """Cache identity of the fetchers a URL goes through."""
    return "+".join(registry.chain_for(url)) or "none"
