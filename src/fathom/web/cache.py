"""Disk cache of searches, fetched pages and query-LLM readings.

Keys follow the reference's recommendation:

* search:     (provider, canonical query, top_k, gl, hl)
* page:       (canonical URL, fetcher chain)
* extraction: (sha256 of the canonical URL, canonical goal, model, prompt version)

Entries are JSON files ``<root>/<namespace>/<h[:2]>/<h>.json`` written atomically (temporary file in the same folder +
``os.replace``), so a crash never leaves a half-written entry under the final name. Each entry records its expiry;
an expired, unreadable or malformed entry is a miss. Permanent failures (404, non-HTML, blocked...) are cached as
*negative* entries with a short TTL so a hot bad URL is not refetched on every call.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

FORMAT_VERSION = 1


@functools.lru_cache(maxsize=1024)  # pure, and on the path of every cached call (as are the next ones)
def canonical_query(query: str) -> str:
    """Unicode-normalised, case-folded, whitespace-collapsed query."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


@functools.lru_cache(maxsize=1024)
def canonical_url(url: str) -> str:
    """Lower-case scheme and host, drop default ports, the fragment and an empty path's difference ('' == '/')."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", parts.query, ""))


def key_hash(key: Any) -> str:
    if isinstance(key, dict):  # the keys below: flat dicts of str/int values, memoised by value and type
        try:
            return _flat_key_hash(tuple(sorted((k, type(v), v) for k, v in key.items())))
        except TypeError:  # an unhashable (nested) value or a non-str key
            pass
    return _key_hash(key)


def _key_hash(key: Any) -> str:
    blob = json.dumps(key, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def _flat_key_hash(items: tuple) -> str:
    return _key_hash({k: v for k, _, v in items})


def search_key(provider: str, query: str, top_k: int, gl: str | None, hl: str | None) -> dict:
    return {"provider": provider, "q": canonical_query(query), "top_k": top_k, "gl": gl or "", "hl": hl or ""}


def page_key(url: str, fetcher: str) -> dict:
    return {"url": canonical_url(url), "fetcher": fetcher}


def extraction_key(url: str, goal: str, model: str, prompt_version: str) -> dict:
    return {"url_hash": _url_hash(url), "goal": _canonical_goal(goal), "model": model, "prompt_version": prompt_version}


@functools.lru_cache(maxsize=1024)
def _url_hash(url: str) -> str:
    return hashlib.sha256(canonical_url(url).encode()).hexdigest()


@functools.lru_cache(maxsize=1024)
def _canonical_goal(goal: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", goal).split())


@dataclass
class CacheEntry:
    value: Any
    negative: bool
    created: float
    expires: float | None


class DiskCache:
    """Namespaced JSON cache on disk with TTLs, negative entries and a small in-memory LRU in front."""

    def __init__(self, root: Path | str, *, enabled: bool = True, memory_items: int = 2048,
                 clock=time.time):
        self.root = Path(root)
        self.enabled = enabled
        self.memory_items = memory_items
        self._mem: OrderedDict[str, CacheEntry] = OrderedDict()
        self._clock = clock
        if enabled:
            self.root.mkdir(parents=True, exist_ok=True)

    def path(self, namespace: str, key: Any) -> Path:
        return self._path(namespace, key_hash(key))

    def _path(self, namespace: str, h: str) -> Path:
        return self.root / namespace / h[:2] / f"{h}.json"

    def _fresh(self, entry: CacheEntry) -> bool:
        return entry.expires is None or entry.expires > self._clock()

    def get(self, namespace: str, key: Any) -> CacheEntry | None:
        """The live entry for `key`, or None (missing, expired, unreadable or malformed)."""
        if not self.enabled:
            return None
        h = key_hash(key)
        mem_key = f"{namespace}/{h}"  # a memory hit builds no Path (the hot path of every cached call)
        entry = self._mem.get(mem_key)
        if entry is not None:
            if self._fresh(entry):
                self._mem.move_to_end(mem_key)
                return entry
            self._mem.pop(mem_key, None)
        try:
            raw = json.loads(self._path(namespace, h).read_bytes())
            if raw.get("v") != FORMAT_VERSION or raw.get("key") != json.loads(json.dumps(key)):
                return None
            entry = CacheEntry(value=raw["value"], negative=bool(raw.get("negative", False)),
                               created=float(raw["created"]),
                               expires=None if raw.get("expires") is None else float(raw["expires"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # missing or corrupt: a miss (a later put overwrites it atomically)
        if not self._fresh(entry):
            return None
        self._remember(mem_key, entry)
        return entry

    def put(self, namespace: str, key: Any, value: Any, *, ttl_s: float, negative: bool = False) -> None:
        """Write atomically. ``ttl_s == 0`` means no expiry."""
        if not self.enabled:
            return
        now = self._clock()
        entry = CacheEntry(value=value, negative=negative, created=now, expires=now + ttl_s if ttl_s > 0 else None)
        h = key_hash(key)
        p = self._path(namespace, h)
        p.parent.mkdir(parents=True, exist_ok=True)
        blob = json.dumps({"v": FORMAT_VERSION, "key": key, "negative": negative, "created": entry.created,
                           "expires": entry.expires, "value": value}, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(blob)
            os.replace(tmp, p)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._remember(f"{namespace}/{h}", entry)

    def _remember(self, mem_key: str, entry: CacheEntry) -> None:
        if self.memory_items <= 0:
            return
        self._mem[mem_key] = entry
        self._mem.move_to_end(mem_key)
        while len(self._mem) > self.memory_items:
            self._mem.popitem(last=False)

    def clear_memory(self) -> None:
        self._mem.clear()
