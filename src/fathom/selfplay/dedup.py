"""Exact (normalised text) and near-duplicate (MinHash LSH over word 3-grams) detection, and the leakage check
against benchmark questions.

MinHash signatures are computed for a whole batch in one numpy pass (`MinHasher`), and the LSH index is a plain
banded dict (`LSHIndex`); per-item `datasketch.MinHash` objects cost ~1 ms each in Python, which made indexing the
benchmark files (~10k questions) take tens of seconds.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections import defaultdict
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np

from fathom.selfplay.text import normalize_text, shingles

log = logging.getLogger(__name__)


_SHIFT = np.uint64(32)


class MinHasher:
    """Vectorised MinHash over word 3-gram shingles: 32-bit shingle hashes (crc32) through `num_perm` random
    multiply-shift hash functions h' = ((a*h + b) mod 2^64) >> 32 (no modulo, which is the slow part of the
    classic (a*h + b) mod p scheme in numpy). One numpy pass hashes a whole batch of texts."""

    def __init__(self, num_perm: int = 128, seed: int = 1):
        gen = np.random.RandomState(seed)
        self.num_perm = num_perm
        self.a = gen.randint(1, 2**63 - 1, size=num_perm, dtype=np.uint64) | np.uint64(1)  # odd multipliers
        self.b = gen.randint(0, 2**63 - 1, size=num_perm, dtype=np.uint64)

    def signatures(self, texts: list[str], batch: int = 256) -> np.ndarray:
        """(len(texts), num_perm) uint64 signatures."""
        sig = np.empty((len(texts), self.num_perm), dtype=np.uint64)
        for start in range(0, len(texts), batch):  # bounded memory: shingles of one batch x num_perm
            hashes: list[int] = []
            starts: list[int] = []
            for text in texts[start:start + batch]:
                starts.append(len(hashes))
                hashes.extend(zlib.crc32(s.encode("utf-8")) for s in (shingles(text) or {""}))
            h = np.asarray(hashes, dtype=np.uint64)[:, None]
            ph = h * self.a  # multiply-shift hashing (wraps mod 2^64); in place: small, cache-resident batches
            ph += self.b
            ph >>= _SHIFT
            sig[start:start + len(starts)] = np.minimum.reduceat(ph, np.asarray(starts), axis=0)
        return sig


class LSHIndex:
    """Banded LSH over MinHash signatures; bands/rows chosen by `datasketch`'s optimiser for the threshold.
    Each band is folded into one 64-bit key in numpy (for a whole batch at once); candidates are confirmed with
    the signature Jaccard estimate."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        from datasketch.lsh import _optimal_param

        self.threshold = threshold
        self.num_perm = num_perm
        self.bands, self.rows = _optimal_param(threshold, num_perm, 0.5, 0.5)
        gen = np.random.RandomState(7)
        self._mix = gen.randint(1, 2**63 - 1, size=self.rows, dtype=np.uint64) | np.uint64(1)
        self._buckets: list[dict[int, list[int]]] = [defaultdict(list) for _ in range(self.bands)]
        self._keys: list[str] = []
        self._sigs: list[np.ndarray] = []

    def band_keys(self, sigs: np.ndarray) -> np.ndarray:
        """(n, bands) uint64 keys of a (n, num_perm) signature matrix."""
        used = sigs[:, : self.bands * self.rows].reshape(len(sigs), self.bands, self.rows)
        return (used * self._mix).sum(axis=2, dtype=np.uint64)

    def query(self, sig: np.ndarray, keys: list[int]) -> str | None:
        """Key of the first indexed item whose estimated Jaccard with `sig` reaches the threshold."""
        seen: set[int] = set()
        for bucket, bk in zip(self._buckets, keys):
            for idx in bucket.get(bk, ()):
                if idx not in seen:
                    seen.add(idx)
                    if float(np.mean(sig == self._sigs[idx])) >= self.threshold:
                        return self._keys[idx]
        return None

    def insert(self, key: str, sig: np.ndarray, keys: list[int]) -> None:
        idx = len(self._keys)
        self._keys.append(key)
        self._sigs.append(sig)
        for bucket, bk in zip(self._buckets, keys):
            bucket[bk].append(idx)

    def __len__(self) -> int:
        return len(self._keys)


class Deduper:
    """Stream texts in; `add` returns None for a new text or ``(reason, key_of_the_earlier_text)``.
    `add_batch` signs a whole batch in one numpy pass (much faster than one text at a time)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        self.threshold = threshold
        self.num_perm = num_perm
        self.hasher = MinHasher(num_perm)
        self._exact: dict[str, str] = {}
        self._lsh = LSHIndex(threshold, num_perm)

    def _sign(self, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
        sigs = self.hasher.signatures(texts)
        return sigs, self._lsh.band_keys(sigs).tolist()

    def check(self, text: str) -> tuple[str, str] | None:
        sigs, keys = self._sign([text])
        return self._check(normalize_text(text), sigs[0], keys[0])

    def _check(self, norm: str, sig, keys) -> tuple[str, str] | None:
        if norm in self._exact:
            return "exact_duplicate", self._exact[norm]
        other = self._lsh.query(sig, keys)
        return ("near_duplicate", other) if other is not None else None

    def add(self, key: str, text: str) -> tuple[str, str] | None:
        return self.add_batch([(key, text)])[0]

    def add_batch(self, items: list[tuple[str, str]]) -> list[tuple[str, str] | None]:
        sigs, keys = self._sign([t for _, t in items])
        out = []
        for (key, text), sig, bk in zip(items, sigs, keys):
            norm = normalize_text(text)
            hit = self._check(norm, sig, bk)
            if hit is None:
                self._exact[norm] = key
                self._lsh.insert(key, sig, bk)
            out.append(hit)
        return out


def dedup(items: Iterable[tuple[str, str]], *, threshold: float = 0.8, num_perm: int = 128,
          batch: int = 4096) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """(kept keys in order, {dropped key: (reason, kept key it duplicates)}). First occurrence wins."""
    d = Deduper(threshold, num_perm)
    kept: list[str] = []
    dropped: dict[str, tuple[str, str]] = {}
    items = list(items)
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        for (key, _), hit in zip(chunk, d.add_batch(chunk)):
            if hit is None:
                kept.append(key)
            else:
                dropped[key] = hit
    return kept, dropped


def exact_dedup(items: Iterable[tuple[str, str]]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Baseline: normalised exact matching only."""
    seen: dict[str, str] = {}
    kept, dropped = [], {}
    for key, text in items:
        n = normalize_text(text)
        if n in seen:
            dropped[key] = ("exact_duplicate", seen[n])
        else:
            seen[n] = key
            kept.append(key)
    return kept, dropped


def default_benchmarks_dir() -> Path | None:
    env = os.environ.get("FATHOM_BENCHMARKS_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "data" / "benchmarks"
        if cand.is_dir():
            return cand
    return None


def benchmark_files(folder: Path) -> list[tuple[Path, list[tuple[str, str]]]]:
    """Every ``*.jsonl`` evaluation file of `folder` with its ``(file-stem:id, question)`` rows (the question under
    `question`, `prompt` or `Question`); unparseable lines are skipped and counted in a warning."""
    out = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        rows, bad = [], 0
        with open(path, encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                q = row.get("question") or row.get("prompt") or row.get("Question")
                if isinstance(q, str) and q.strip():
                    rows.append((f"{path.stem}:{row.get('id', n)}", q))
        if bad:
            log.warning("%s: %d unparseable line(s) skipped", path, bad)
        out.append((path, rows))
    return out


class LeakageIndex:
    """Benchmark questions indexed for exact and near-duplicate lookup (a generated question that matches one
    would leak evaluation data into training)."""

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        self._d = Deduper(threshold, num_perm)
        self.files: list[str] = []
        self.size = 0

    @classmethod
    def from_dir(cls, folder: Path | None, *, threshold: float = 0.8, num_perm: int = 128) -> "LeakageIndex":
        idx = cls(threshold, num_perm)
        if folder is None or not Path(folder).is_dir():
            log.warning("no benchmark folder found (%s): the leakage check is empty", folder)
            return idx
        for path, rows in benchmark_files(folder):
            idx.add_many(rows)
            idx.files.append(path.name)
        return idx

    def add_many(self, rows: list[tuple[str, str]]) -> None:
        for start in range(0, len(rows), 4096):
            self._d.add_batch(rows[start:start + 4096])
        self.size += len(rows)

    def match(self, question: str) -> str | None:
        """Key of a benchmark question this one (near-)duplicates, else None."""
        hit = self._d.check(question)
        return hit[1] if hit else None

    def check(self, question: str) -> tuple[str, str] | None:
        """``("exact_duplicate" | "near_duplicate", key)`` of the indexed question this one matches, else None."""
        return self._d.check(question)


@lru_cache(maxsize=4)
def _cached_leakage(folder: str, stamp: tuple, threshold: float, num_perm: int) -> LeakageIndex:
    return LeakageIndex.from_dir(Path(folder), threshold=threshold, num_perm=num_perm)


def leakage_index(folder: Path | None, *, threshold: float = 0.8, num_perm: int = 128) -> LeakageIndex:
    """`LeakageIndex.from_dir`, cached per process (keyed by the files' names, sizes and mtimes)."""
    if folder is None or not Path(folder).is_dir():
        return LeakageIndex.from_dir(folder, threshold=threshold, num_perm=num_perm)
    stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(folder).glob("*.jsonl")))
    return _cached_leakage(str(folder), stamp, threshold, num_perm)
