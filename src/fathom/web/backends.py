"""Search backends: the local BM25 index (offline) and Serper (Google)."""

from __future__ import annotations

import abc
import asyncio
import hashlib
import logging
import os
import random
from pathlib import Path

import httpx

from fathom.errors import ConfigError, ToolError
from fathom.web.schemas import SearchHit
from fathom.web.settings import ToolServerSettings

log = logging.getLogger(__name__)


class SearchBackend(abc.ABC):
    """`provider` identifies the backend *and its data* in cache keys."""

    provider: str = "base"

    @abc.abstractmethod
    async def search(self, query: str, top_k: int, *, gl: str | None = None, hl: str | None = None) -> list[SearchHit]:
        """Ranked hits or ToolError(search_failed|timeout)."""

    async def aclose(self) -> None:  # noqa: B027
        pass


def _index_fingerprint(index_dir: Path) -> str:
    h = hashlib.sha256(str(index_dir.resolve()).encode())
    for p in sorted(index_dir.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(index_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


class LocalIndexBackend(SearchBackend):
    """A saved `fathom.web.index.CorpusIndex` (BM25 over passages, one hit per URL)."""

    def __init__(self, index_dir: Path | str):
        from fathom.web.index import CorpusIndex

        self.index_dir = Path(index_dir)
        if not self.index_dir.is_dir():
            raise ConfigError(f"search index folder {self.index_dir} does not exist (build it with `fathom corpus index`)")
        self.index = CorpusIndex.load(self.index_dir)
        self.provider = f"local:{_index_fingerprint(self.index_dir)}"

    async def search(self, query: str, top_k: int, *, gl: str | None = None, hl: str | None = None) -> list[SearchHit]:
        try:
            return list(self.index.search(query, top_k=top_k))[:top_k]
        except Exception as exc:  # noqa: BLE001
            raise ToolError("search_failed", f"local index search failed: {type(exc).__name__}: {exc}") from None


class SerperBackend(SearchBackend):
    """``POST {serper_url} {"q", "num", "gl", "hl"}`` with ``X-API-KEY`` from the environment; retries 429/5xx."""

    provider = "serper"

    def __init__(self, settings: ToolServerSettings, *, transport: httpx.AsyncBaseTransport | None = None):
        key = os.environ.get(settings.serper_api_key_env)
        if not key:
            raise ConfigError(f"the Serper search backend needs an API key in the environment variable "
                              f"{settings.serper_api_key_env} (it is not set)")
        self.settings = settings
        self._http = httpx.AsyncClient(
            headers={"X-API-KEY": key, "Content-Type": "application/json"},
            timeout=httpx.Timeout(settings.search_timeout_s, connect=settings.connect_timeout_s),
            trust_env=False, transport=transport)

    async def search(self, query: str, top_k: int, *, gl: str | None = None, hl: str | None = None) -> list[SearchHit]:
        s = self.settings
        body: dict = {"q": query, "num": top_k}
        if gl or s.serper_gl:
            body["gl"] = gl or s.serper_gl
        if hl or s.serper_hl:
            body["hl"] = hl or s.serper_hl
        attempt = 0
        while True:
            try:
                resp = await self._http.post(s.serper_url, json=body)
                if resp.status_code == 200:
                    data = resp.json()
                    break
                retryable = resp.status_code in (408, 429) or resp.status_code >= 500
                err = ToolError("search_failed", f"Serper returned HTTP {resp.status_code}: {resp.text[:200]}",
                                retryable=retryable)
            except httpx.TimeoutException:
                err = ToolError("timeout", "Serper request timed out", retryable=True)
            except (httpx.HTTPError, ValueError) as exc:
                err = ToolError("search_failed", f"Serper request failed: {type(exc).__name__}: {exc}", retryable=True)
            if not err.retryable or attempt >= s.search_retries:
                raise err
            await asyncio.sleep(min(4.0, 0.4 * 2**attempt) * (1 + 0.3 * random.random()))
            attempt += 1
        hits = []
        for item in (data.get("organic") or []) if isinstance(data, dict) else []:
            if not isinstance(item, dict) or not item.get("link"):
                continue
            hits.append(SearchHit(url=str(item["link"]), title=str(item.get("title") or ""),
                                  snippet=str(item.get("snippet") or "")))
        return hits[:top_k]

    async def aclose(self) -> None:
        await self._http.aclose()


def make_backend(settings: ToolServerSettings) -> SearchBackend:
    if settings.search_backend == "serper":
        return SerperBackend(settings)
    if settings.index_dir is None:
        raise ConfigError("the local search backend needs index_dir (a folder written by `fathom corpus index`)")
    return LocalIndexBackend(settings.index_dir)
