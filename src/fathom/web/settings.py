"""Settings of the search tool server (`fathom serve tools`). Every field can be set from the environment with the
prefix ``FATHOM_TOOLS_`` (e.g. ``FATHOM_TOOLS_SEARCH_BACKEND=serper``, ``FATHOM_TOOLS_ALLOW_HOSTS='["a.test"]'``).

Secrets are never fields: the settings hold the *names* of the environment variables that carry API keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fathom.config import RoleConfig, fathom_home
from fathom.errors import ConfigError

NO_LLM = "none"


class ToolServerSettings(BaseSettings):
    """Configuration of the tool server: search backend, fetching, the query LLM, cache, guard and limits."""

    model_config = SettingsConfigDict(env_prefix="FATHOM_TOOLS_", extra="forbid")

    # --- search -------------------------------------------------------------------------------------------------
    search_backend: Literal["local", "serper"] = Field(
        default="local", description="`local`: a saved CorpusIndex (`index_dir`); `serper`: Google via serper.dev.")
    index_dir: Path | None = Field(
        default=None, description="Folder of a saved `fathom.web.index.CorpusIndex` (needed by the local backend).")
    serper_api_key_env: str = Field(
        default="SERPER_API_KEY", description="Name of the environment variable holding the Serper key.")
    serper_url: str = Field(
        default="https://google.serper.dev/search", description="Serper search endpoint (a setting so tests can stub it).")
    serper_gl: str | None = Field(default=None, description="Serper country code (`gl`), e.g. `us`.")
    serper_hl: str | None = Field(default=None, description="Serper interface language (`hl`), e.g. `en`.")
    search_timeout_s: float = Field(default=15.0, gt=0, description="Timeout of one search backend request.")
    search_retries: int = Field(default=2, ge=0, description="Retries of a failed remote search (429/5xx/transport).")

    # --- query LLM ------------------------------------------------------------------------------------------------
    query_llm: RoleConfig | str = Field(
        default="local:smollm2",
        description="Role that reads a page for a goal (`local:<model>`, `http://host/v1#model[@KEY_ENV]`), "
        "or `none` to always use the deterministic passage-ranking fallback.")
    query_llm_max_tokens: int = Field(default=512, ge=16, description="Maximum tokens of one reading.")
    query_llm_timeout_s: float = Field(default=90.0, gt=0, description="Timeout of one reading (then: fallback).")
    query_llm_attempts: int = Field(
        default=1, ge=1, le=5, description="Readings tried before falling back when the output does not parse.")
    page_chars: int = Field(
        default=15_000, ge=500, description="Page text given to the query LLM is clipped to this many characters.")
    fallback_passages: int = Field(default=3, ge=1, le=20, description="Evidence passages of the fallback reading.")

    # --- fetching -------------------------------------------------------------------------------------------------
    connect_timeout_s: float = Field(default=5.0, gt=0, description="TCP/TLS connect timeout of a page fetch.")
    read_timeout_s: float = Field(default=10.0, gt=0, description="Timeout between two received chunks.")
    fetch_timeout_s: float = Field(
        default=20.0, gt=0, description="Total time one fetcher may take (all redirects, download, extraction).")
    html_cap_bytes: int = Field(
        default=3_000_000, ge=1_000, description="HTML bodies larger than this are refused (too_large).")
    pdf_cap_bytes: int = Field(default=32_000_000, ge=1_000, description="PDF bodies larger than this are refused.")
    pdf_max_pages: int = Field(default=40, ge=1, description="PDF pages extracted.")
    pdf_max_chars: int = Field(default=40_000, ge=1_000, description="PDF characters extracted.")
    max_redirects: int = Field(default=5, ge=0, description="Redirect hops followed (each one is checked by the guard).")
    user_agent: str = Field(
        default="Mozilla/5.0 (compatible; fathom-tools/0.1; +https://github.com/fathom-pipelines)",
        description="User-Agent of page fetches.")
    jina_mode: Literal["off", "first", "fallback"] = Field(
        default="off", description="Jina Reader remote fetcher: `off`, tried `first`, or as `fallback` after direct.")
    jina_url: str = Field(default="https://r.jina.ai/", description="Jina Reader endpoint prefix.")
    jina_api_key_env: str = Field(default="JINA_API_KEY", description="Environment variable with the Jina key.")

    # --- URL guard ------------------------------------------------------------------------------------------------
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts allowed even if they resolve to private/loopback addresses: exact names, `*.suffix` "
        "wildcards or CIDR blocks (e.g. the offline web `atlas.fathom.test`).")
    host_overrides: dict[str, str] = Field(
        default_factory=dict,
        description="Virtual host -> `ip:port` to connect to instead (like curl --resolve); the original Host header "
        "is sent. An overridden host is trusted (it is the operator's own mapping).")

    # --- cache ----------------------------------------------------------------------------------------------------
    cache_enabled: bool = Field(default=True, description="Disk cache of searches, pages and readings.")
    cache_dir: Path | None = Field(default=None, description="Cache folder (default: FATHOM_HOME/tool-cache).")
    search_ttl_s: float = Field(default=7 * 86400, ge=0, description="Search results TTL (0 = forever).")
    page_ttl_s: float = Field(default=86400, ge=0, description="Fetched page TTL (0 = forever).")
    extraction_ttl_s: float = Field(default=7 * 86400, ge=0, description="Query-LLM reading TTL (0 = forever).")
    negative_ttl_s: float = Field(
        default=300, ge=0, description="TTL of cached permanent failures (404, non-HTML, too large, blocked).")
    cache_memory_items: int = Field(default=2048, ge=0, description="Hot entries also kept in memory.")

    # --- server limits --------------------------------------------------------------------------------------------
    max_concurrency: int = Field(
        default=64, ge=1, description="Tool calls doing real work (fetch, search, LLM) at once, server-wide.")
    request_timeout_s: float = Field(
        default=120.0, gt=0, description="Hard deadline of one tool call, including waiting for a slot.")
    visit_max_chars: int = Field(default=40_000, ge=100, description="Cap of legacy `web_visit` text.")
    legacy_max_call_chars: int = Field(default=16_000, ge=100, description="Longest `/execute` call accepted.")
    max_body_bytes: int = Field(
        default=1_000_000, ge=1_000, description="Largest request body accepted; a larger one is answered 413.")
    gc_freeze: bool = Field(
        default=True, description="After start-up, move every object then alive (the index, the app, imported "
        "modules) out of the garbage collector's reach with gc.freeze(): the full collections that requests trigger "
        "under load then no longer walk them, which is what the search p99 at 64 clients was made of.")

    @field_validator("allow_hosts")
    @classmethod
    def _lower_hosts(cls, v: list[str]) -> list[str]:
        return [h.strip().lower().rstrip(".") for h in v if h.strip()]

    @field_validator("host_overrides")
    @classmethod
    def _check_overrides(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for host, target in v.items():
            addr, sep, port = target.rpartition(":")
            if not sep or not port.isdigit() or not addr:
                raise ValueError(f"host_overrides[{host!r}] = {target!r}: expected 'ip:port'")
            out[host.strip().lower().rstrip(".")] = target
        return out

    @property
    def query_role(self) -> RoleConfig | None:
        """The query LLM role, or None when readings are disabled (`query_llm='none'`)."""
        if isinstance(self.query_llm, str) and self.query_llm.strip().lower() == NO_LLM:
            return None
        return RoleConfig.parse(self.query_llm)

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else fathom_home() / "tool-cache"

    def check(self) -> None:
        """Start-up checks of the environment: the keys of every enabled remote service (named when missing)."""
        if self.search_backend == "serper" and not os.environ.get(self.serper_api_key_env):
            raise ConfigError(
                f"search_backend=serper needs a Serper API key in the environment variable {self.serper_api_key_env} "
                "(it is not set)")
        if self.jina_mode != "off" and not os.environ.get(self.jina_api_key_env):
            raise ConfigError(
                f"jina_mode={self.jina_mode} needs a Jina key in the environment variable {self.jina_api_key_env}")
        role = self.query_role
        if role is not None:
            role.api_key()  # raises ConfigError naming the variable
