"""Disk cache: keys, TTL, negative entries, atomic writes, corrupt entries are misses."""

from __future__ import annotations

import json
import threading

from fathom.web.cache import (
    DiskCache,
    canonical_query,
    canonical_url,
    extraction_key,
    key_hash,
    page_key,
    search_key,
)


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_canonical_forms():
    assert canonical_query("  Who  FOUNDED\tOrlen? ") == "who founded orlen?"
    assert canonical_url("HTTP://Example.COM:80/a?b=1#frag") == "http://example.com/a?b=1"
    assert canonical_url("https://example.com") == "https://example.com/"
    assert canonical_url("https://example.com:8443/x") == "https://example.com:8443/x"
    assert key_hash(search_key("serper", "A  b", 10, None, None)) == key_hash(search_key("serper", "a b", 10, "", ""))
    assert key_hash(search_key("serper", "a b", 10, "us", None)) != key_hash(search_key("serper", "a b", 10, None, None))
    assert key_hash(search_key("serper", "a b", 5, None, None)) != key_hash(search_key("serper", "a b", 10, None, None))
    assert page_key("http://A.org/x#y", "html") == page_key("http://a.org/x", "html")
    assert page_key("http://a.org/x", "html") != page_key("http://a.org/x", "jina+html")
    k1 = extraction_key("http://a.org/x", "find  the date", "m", "v1")
    assert k1 == extraction_key("http://A.org/x#f", "find the date", "m", "v1")
    assert k1 != extraction_key("http://a.org/x", "find the date", "m", "v2")
    assert k1 != extraction_key("http://a.org/x", "find the date", "other", "v1")


def test_ttl_and_no_expiry(tmp_path):
    clock = Clock()
    c = DiskCache(tmp_path, clock=clock, memory_items=0)
    c.put("search", {"q": "a"}, [1, 2], ttl_s=60)
    c.put("search", {"q": "forever"}, [3], ttl_s=0)
    assert c.get("search", {"q": "a"}).value == [1, 2]
    clock.t += 59
    assert c.get("search", {"q": "a"}) is not None
    clock.t += 2
    assert c.get("search", {"q": "a"}) is None
    clock.t += 10**7
    assert c.get("search", {"q": "forever"}).value == [3]


def test_memory_layer_respects_ttl(tmp_path):
    clock = Clock()
    c = DiskCache(tmp_path, clock=clock, memory_items=10)
    c.put("page", "k", {"text": "x"}, ttl_s=5)
    assert c.get("page", "k").value == {"text": "x"}
    clock.t += 6
    assert c.get("page", "k") is None


def test_negative_entries(tmp_path):
    clock = Clock()
    c = DiskCache(tmp_path, clock=clock)
    c.put("page", "bad", {"code": "http_status", "message": "HTTP 404"}, ttl_s=30, negative=True)
    e = c.get("page", "bad")
    assert e.negative and e.value["code"] == "http_status"
    clock.t += 31
    assert c.get("page", "bad") is None


def test_namespaces_do_not_collide(tmp_path):
    c = DiskCache(tmp_path)
    c.put("search", "k", 1, ttl_s=0)
    assert c.get("page", "k") is None


def test_corrupt_entries_are_misses_and_are_overwritten(tmp_path):
    c = DiskCache(tmp_path, memory_items=0)
    c.put("page", "k", {"v": 1}, ttl_s=0)
    p = c.path("page", "k")
    for garbage in (b"", b"{", b"\x00\xff\xfe", b"[]", b'{"v": 1}', json.dumps({"v": 99, "key": "k"}).encode(),
                    json.dumps({"v": 1, "key": "other", "created": 0, "value": 1}).encode(),
                    json.dumps({"v": 1, "key": "k", "created": "x", "value": 1}).encode()):
        p.write_bytes(garbage)
        assert c.get("page", "k") is None, garbage
    c.put("page", "k", {"v": 2}, ttl_s=0)
    assert c.get("page", "k").value == {"v": 2}


def test_atomic_writes_leave_no_temporaries_and_readers_never_see_partial_entries(tmp_path):
    c = DiskCache(tmp_path, memory_items=0)
    big = {"text": "y" * 200_000}
    errors: list = []
    stop = threading.Event()

    def writer(i: int):
        for j in range(30):
            c.put("page", "hot", {**big, "w": i, "j": j}, ttl_s=0)

    def reader():
        while not stop.is_set():
            e = c.get("page", "hot")
            if e is not None and len(e.value["text"]) != 200_000:
                errors.append("partial")

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    files = [p.name for p in (tmp_path / "page").rglob("*")]
    assert not [f for f in files if f.startswith(".tmp-")]
    assert c.get("page", "hot").value["text"] == big["text"]


def test_disabled_cache(tmp_path):
    c = DiskCache(tmp_path / "none", enabled=False)
    c.put("page", "k", 1, ttl_s=0)
    assert c.get("page", "k") is None
    assert not (tmp_path / "none").exists()
