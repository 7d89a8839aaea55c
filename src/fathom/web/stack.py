"""The offline research stack in one context manager: the generated site on loopback, its BM25 index and the tool
server configured to reach the site's virtual host.

    with offline_stack(seed=0, n_pages=120) as stack:
        ToolClient(stack.tools_url) ...          # search hits are http://atlas.fathom.test/... URLs the server can read
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fathom.web.settings import ToolServerSettings

log = logging.getLogger(__name__)


@dataclass
class OfflineStack:
    tools_url: str  # the tool server, http://127.0.0.1:PORT
    site_url: str  # the site's loopback address (its pages are addressed as http://atlas.fathom.test/...)
    web: Any  # fathom.web.offline.OfflineWeb
    index_dir: Path
    settings: ToolServerSettings


def _site_fingerprint(web) -> str:
    """Identity of a generated site (its manifest): derived data next to it is keyed by it."""
    return hashlib.sha256((Path(web.root) / "manifest.json").read_bytes()).hexdigest()[:12]


def ensure_offline_index(web, *, show_progress: bool = False) -> Path:
    """The site's CorpusIndex, built once from its corpus JSONL and saved next to the site."""
    from fathom.web.index import CorpusIndex

    out = Path(web.root) / f"index-{_site_fingerprint(web)}"
    if (out / "meta.json").is_file():
        return out
    log.info("indexing offline web %s", web.root)
    CorpusIndex.from_source(web.corpus_jsonl(), show_progress=show_progress).save(out)  # atomic
    return out


#: Reader of the embedded stack: no query LLM (an untrained 135M reader writes junk and falls back anyway), the one
#: best passage per page — what the expert's trajectories, the warm start, RAPO and evaluation all see.
EMBEDDED_READER: dict[str, Any] = {"query_llm": "none", "fallback_passages": 1}
#: Tool results the embedded policy sees are cut to this many characters (warm start, `cpu` RAPO and filter
#: presets, held-out evaluation, `fathom research` with a local policy).
EMBEDDED_RESULT_CHARS = 600


def offline_settings(web, index_dir: Path, site_url: str, *, query_llm: Any = EMBEDDED_READER["query_llm"],
                     cache_dir: Path | None = None, allow_hosts_extra: list[str] | None = None,
                     **overrides) -> ToolServerSettings:
    """Tool-server settings for the offline site served at `site_url` (loopback)."""
    from fathom.web.offline import OFFLINE_HOST

    port = urlsplit(site_url).port
    return ToolServerSettings(
        search_backend="local", index_dir=index_dir, query_llm=query_llm,
        allow_hosts=[OFFLINE_HOST, *(allow_hosts_extra or [])], host_overrides={OFFLINE_HOST: f"127.0.0.1:{port}"},
        cache_dir=cache_dir or Path(web.root) / f"tool-cache-{_site_fingerprint(web)}",
        **{"fallback_passages": EMBEDDED_READER["fallback_passages"], **overrides})


@contextlib.contextmanager
def offline_stack(*, seed: int = 0, n_pages: int = 120, query_llm: Any = EMBEDDED_READER["query_llm"],
                  cache_dir: Path | None = None, host: str = "127.0.0.1", tools_port: int = 0,
                  **settings_overrides) -> Iterator[OfflineStack]:
    """Generate (once) and serve the offline web, index it (once), and run the tool server on loopback."""
    from fathom.web.offline import ensure_offline_web, serve_offline_web
    from fathom.web.server import serve_in_thread

    web = ensure_offline_web(seed=seed, n_pages=n_pages)
    index_dir = ensure_offline_index(web)
    with serve_offline_web(web) as site_url:
        settings = offline_settings(web, index_dir, site_url, query_llm=query_llm, cache_dir=cache_dir,
                                    **settings_overrides)
        with serve_in_thread(settings, host=host, port=tools_port) as tools_url:
            yield OfflineStack(tools_url=tools_url, site_url=site_url, web=web, index_dir=index_dir,
                               settings=settings)
