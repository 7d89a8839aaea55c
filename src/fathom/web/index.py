"""A local BM25 search index over passages (bm25s), the search backend of the offline stack.

Sources: documents as dicts ({id, title?, url?, text|contents}), a folder of HTML/Markdown/PDF/text files (walked
recursively) or a JSONL dump. Long documents are cut into passages of about `chunk_chars` characters on paragraph
and sentence boundaries with a small overlap; each passage is indexed with its document title in front.
`search` returns one hit per URL (its best passage gives the snippet), best first.

On disk (``save``/``load``)::

    <dir>/meta.json        format version, counts, chunking and tokenizer settings
    <dir>/passages.jsonl   {doc_id, url, title, text} in index order
    <dir>/bm25/            the bm25s index (sparse score matrix + vocabulary)

Tokenizer: bm25s' regex tokenizer, lower-cased, English stopwords removed (bm25s' list), and a stemmer:
``light`` (a small built-in English suffix stripper, no dependency; the default), ``snowball`` (PyStemmer, if
installed) or ``none``. The choice is recorded in meta.json and reused when the index is loaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from fnmatch import fnmatch
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import quote

import numpy as np
from pydantic import BaseModel, Field

from fathom.errors import ConfigError, FathomError, ToolError
from fathom.web.schemas import SearchHit

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
DEFAULT_EXCLUDE = (".*", "_*", "__pycache__")  # hidden and underscore folders (Sphinx _sources/_static, ...)
SOURCE_SUFFIXES = {".html", ".htm", ".xhtml", ".md", ".markdown", ".txt", ".text", ".pdf"}
StemmerName = Literal["light", "snowball", "none"]


class CorpusFormatError(FathomError, ValueError):
    """A corpus source is malformed (the message names the file and line)."""


class IndexFormatError(FathomError):
    """An index folder is missing, incomplete or of an unknown format."""


class Passage(BaseModel):
    doc_id: str
    url: str
    title: str
    text: str


class IndexSettings(BaseModel):
    """How documents become passages and tokens."""

    chunk_chars: int = Field(default=1200, ge=100, le=100_000,
                             description="Target passage length in characters (paragraph/sentence boundaries).")
    overlap_chars: int = Field(default=150, ge=0, le=2000,
                               description="Characters of the previous passage repeated at the start of the next.")
    stemmer: StemmerName = Field(default="light", description="Token stemmer: light (built-in), snowball "
                                 "(PyStemmer) or none.")
    stopwords: str = Field(default="en", description="bm25s stopword list name ('en', 'de', ...) or '' for none.")
    k1: float = Field(default=1.5, gt=0, description="BM25 term-frequency saturation.")
    b: float = Field(default=0.75, ge=0, le=1, description="BM25 length normalisation.")
    method: str = Field(default="lucene", description="bm25s scoring variant (lucene, robertson, atire, bm25l, bm25+).")


# ---------------------------------------------------------------------------------------------------------------
# Chunking (pure)

_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+(?=[\"'(\[]?[A-Z0-9])")


def _split_long(text: str, limit: int) -> list[str]:
    """Split one paragraph into pieces <= limit: at sentence ends, then at spaces, then hard."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    for sent in _SENTENCE_END.split(text):
        while len(sent) > limit:
            cut = sent.rfind(" ", 0, limit)
            cut = cut if cut > limit // 2 else limit
            pieces.append(sent[:cut].strip())
            sent = sent[cut:].strip()
        if sent:
            pieces.append(sent)
    # re-pack sentences into pieces up to the limit
    out: list[str] = []
    for p in pieces:
        if out and len(out[-1]) + 1 + len(p) <= limit:
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


def _tail(text: str, n: int) -> str:
    """The last ~n characters of text, starting at a word boundary (sentence boundary if one is close)."""
    if n <= 0 or not text:
        return ""
    if len(text) <= n:
        return text
    start = len(text) - n
    m = _SENTENCE_END.search(text, start)
    if m and m.end() < len(text) - n // 3:
        return text[m.end():]
    sp = text.find(" ", start)
    return text[sp + 1:] if sp >= 0 else text[start:]


def chunk_text(text: str, chunk_chars: int = 1200, overlap_chars: int = 150) -> list[str]:
    """Cut text into passages of at most ~chunk_chars, packing whole paragraphs (lines) and splitting long ones at
    sentence boundaries; each passage after the first starts with ~overlap_chars of the previous one."""
    if chunk_chars <= 0:
        raise ValueError("chunk_chars must be positive")
    overlap_chars = min(overlap_chars, chunk_chars // 3)
    paras = [p.strip() for p in re.split(r"\n\s*\n|\n", text) if p.strip()]
    units: list[str] = []
    for p in paras:
        units.extend(_split_long(p, chunk_chars - overlap_chars))
    chunks: list[str] = []
    cur: list[str] = []
    cur_len = 0
    fresh = 0  # units in `cur` that are not the overlap carried over from the previous chunk
    for u in units:
        if fresh and cur_len + 1 + len(u) > chunk_chars:
            chunks.append("\n".join(cur))
            tail = _tail(chunks[-1].replace("\n", " "), overlap_chars)
            if tail and len(tail) + 1 + len(u) > chunk_chars:
                tail = ""
            cur, cur_len = ([tail], len(tail) + 1) if tail else ([], 0)
            fresh = 0
        cur.append(u)
        cur_len += len(u) + 1
        fresh += 1
    if fresh:
        chunks.append("\n".join(cur))
    return chunks


# ---------------------------------------------------------------------------------------------------------------
# Tokenization

_LIGHT_RULES = (("sses", "ss"), ("ies", "y"), ("ied", "y"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", ""),
                ("es", ""), ("s", ""))


def light_stem(word: str) -> str:
    """A small, conservative English suffix stripper (plural/verb endings); deterministic and dependency-free.
    Examples: dumps->dump, indented->indent, cities->city, classes->class, running->runn, is->is."""
    if len(word) <= 3 or not word.isalpha():
        return word
    for suffix, repl in _LIGHT_RULES:
        if word.endswith(suffix):
            stem = word[: len(word) - len(suffix)] + repl
            if suffix == "s" and word.endswith(("ss", "us", "is")):
                return word
            if suffix == "es" and not word.endswith(("ches", "shes", "xes", "zes", "oes")):
                continue  # "indexes"->"index" but "pages" -> rule "s" -> "page"
            return stem if len(stem) >= 3 else word
    return word


@lru_cache(maxsize=500_000)
def _light_stem_cached(word: str) -> str:
    return light_stem(word)


def make_stemmer(name: StemmerName) -> Callable[[list[str]], list[str]] | None:
    if name == "none":
        return None
    if name == "light":
        return lambda words: [_light_stem_cached(w) for w in words]
    if name == "snowball":
        try:
            import Stemmer  # PyStemmer
        except ImportError as exc:
            raise ConfigError("stemmer 'snowball' needs PyStemmer (pip install PyStemmer); "
                              "or use --stemmer light") from exc
        return Stemmer.Stemmer("english").stemWords
    raise ConfigError(f"unknown stemmer {name!r} (light, snowball, none)")


class Tokenizer:
    """The tokenization of `bm25s.tokenize` (its regex, lower-case, its stopword lists, a stemmer), producing the
    same tokens (a test pins the equivalence) with less per-call overhead (no progress bars, cached stems)."""

    TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # bm25s' default

    def __init__(self, settings: IndexSettings):
        from bm25s.tokenization import _infer_stopwords

        self.stem = make_stemmer(settings.stemmer)
        self.stopwords = list(_infer_stopwords(settings.stopwords)) if settings.stopwords else []
        self._stopset = frozenset(self.stopwords)
        self._split = re.compile(self.TOKEN_PATTERN).findall

    def corpus(self, texts: list[str], show_progress: bool = False):
        """bm25s.Tokenized (token ids per text + the token vocabulary), the input of `bm25s.BM25.index`."""
        from bm25s.tokenization import Tokenized
        from rich.progress import Progress

        vocab: dict[str, int] = {}  # stem -> id
        word_ids: dict[str, int] = {}  # surface word -> stem id, or -1 for a stopword (one lookup per token)
        stopset, stem, split = self._stopset, self.stem, self._split
        ids: list[list[int]] = []
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("tokenizing passages", total=len(texts))
            for i, text in enumerate(texts):
                row = []
                for w in split(text.lower()):
                    tid = word_ids.get(w)
                    if tid is None:
                        if w in stopset:
                            tid = -1
                        else:
                            key = stem([w])[0] if stem is not None else w
                            tid = vocab.setdefault(key, len(vocab))
                        word_ids[w] = tid
                    if tid >= 0:
                        row.append(tid)
                ids.append(row)
                if show_progress and i % 1000 == 0:
                    progress.update(task, completed=i)
        return Tokenized(ids=ids, vocab=vocab)

    def __call__(self, text: str) -> list[str]:
        """Tokens of one text, exactly as `corpus` would produce them (as strings)."""
        words = [w for w in self._split(text.lower()) if w not in self._stopset]
        if self.stem is None or not words:
            return words
        return self.stem(words)


# ---------------------------------------------------------------------------------------------------------------
# Sources

def _doc_url(doc_id: str, base_url: str | None) -> str:
    if doc_id.startswith(("http://", "https://", "file://")):
        return doc_id
    if base_url:
        return base_url.rstrip("/") + "/" + quote(doc_id.lstrip("/"))
    return f"doc:{doc_id}"


def iter_jsonl_docs(path: Path, base_url: str | None = None) -> Iterator[dict]:
    """Documents from a JSONL dump: one {id, title?, url?, contents|text} object per line."""
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusFormatError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(row, dict):
                raise CorpusFormatError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            if "id" not in row or not isinstance(row["id"], (str, int)) or row["id"] == "":
                raise CorpusFormatError(f"{path}:{lineno}: missing or invalid 'id' (a non-empty string or int)")
            text = row.get("text", row.get("contents"))
            if not isinstance(text, str):
                raise CorpusFormatError(f"{path}:{lineno}: missing 'text' or 'contents' string (id={row['id']!r})")
            doc_id = str(row["id"])
            title = row.get("title") or ""
            if not isinstance(title, str):
                raise CorpusFormatError(f"{path}:{lineno}: 'title' must be a string (id={doc_id!r})")
            url = row.get("url") or _doc_url(doc_id, base_url)
            if not isinstance(url, str):
                raise CorpusFormatError(f"{path}:{lineno}: 'url' must be a string (id={doc_id!r})")
            yield {"id": doc_id, "title": title, "url": url, "text": text}


def _excluded(rel: Path, exclude: Iterable[str]) -> bool:
    return any(fnmatch(part, pat) for part in rel.parts[:-1] for pat in exclude) or \
        any(fnmatch(rel.name, pat) for pat in exclude if pat.startswith("."))


def list_source_files(root: Path, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> list[Path]:
    """Indexable files under root (recursive, sorted), skipping excluded folders."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not any(fnmatch(d, pat) for pat in exclude))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in SOURCE_SUFFIXES and not _excluded(p.relative_to(root), exclude):
                out.append(p)
    return out


def extract_file(path: Path, rel: str, base_url: str | None) -> dict:
    """One file as a document dict (raises ToolError when it holds no readable text)."""
    from fathom.web.extract import extract_document

    url = base_url.rstrip("/") + "/" + quote(rel) if base_url else Path(path).resolve().as_uri()
    doc = extract_document(Path(path).read_bytes(), name=str(path), url=url, max_pages=400, max_chars=2_000_000)
    return {"id": rel, "title": doc.title or Path(rel).stem, "url": url, "text": doc.text}


def _extract_file_safe(args: tuple[str, str, str | None]) -> dict | str:
    path, rel, base_url = args
    try:
        return extract_file(Path(path), rel, base_url)
    except ToolError as exc:
        return f"{rel}: {exc}"
    except OSError as exc:
        return f"{rel}: cannot read ({exc})"


def iter_folder_docs(root: Path, base_url: str | None = None, *, exclude: Iterable[str] = DEFAULT_EXCLUDE,
                     workers: int = 1, show_progress: bool = False, skipped: list[str] | None = None
                     ) -> Iterator[dict]:
    """Documents from a folder of HTML/Markdown/PDF/text files. Unreadable or empty files are reported in
    `skipped` (and logged), never dropped silently."""
    from rich.progress import Progress

    root = Path(root)
    files = list_source_files(root, exclude)
    if not files:
        raise CorpusFormatError(f"{root}: no {', '.join(sorted(SOURCE_SUFFIXES))} files found")
    jobs = [(str(p), p.relative_to(root).as_posix(), base_url) for p in files]
    with Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task(f"extracting {len(jobs)} files", total=len(jobs))
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(max_workers=workers) as pool:
                results: Iterable[dict | str] = pool.map(_extract_file_safe, jobs, chunksize=8)
                yield from _collect(results, progress, task, skipped)
        else:
            yield from _collect(map(_extract_file_safe, jobs), progress, task, skipped)


def _collect(results, progress, task, skipped):
    for res in results:
        progress.advance(task)
        if isinstance(res, str):
            log.warning("skipped %s", res)
            if skipped is not None:
                skipped.append(res)
            continue
        yield res


# ---------------------------------------------------------------------------------------------------------------
# The index

class CorpusIndex:
    """BM25 over passages; `search` returns one `SearchHit` per URL."""

    def __init__(self, retriever, passages: list[Passage] | None, settings: IndexSettings, meta: dict | None = None,
                 *, columns: dict[str, list[str]] | None = None):
        self._bm25 = retriever
        self.settings = settings
        self.meta = meta or {}
        if columns is None:
            passages = passages or []
            columns = {"doc_id": [p.doc_id for p in passages], "url": [p.url for p in passages],
                       "title": [p.title for p in passages], "text": [p.text for p in passages]}
        self._cols = columns
        self._tokenize = Tokenizer(settings)

    def __len__(self) -> int:
        return len(self._cols["text"])

    def __repr__(self) -> str:
        return f"CorpusIndex(passages={len(self)}, docs={self.meta.get('n_docs')})"

    def passage(self, i: int) -> Passage:
        return Passage(doc_id=self._cols["doc_id"][i], url=self._cols["url"][i], title=self._cols["title"][i],
                       text=self._cols["text"][i])

    # -- building --------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, docs: Iterable[dict], *, chunk_chars: int = 1200, show_progress: bool = False,
              settings: IndexSettings | None = None, source: str = "", skipped: list[str] | None = None,
              **overrides) -> CorpusIndex:
        """Index documents {id, title?, url?, text|contents}: chunk, tokenize, BM25."""
        import bm25s
        from rich.progress import Progress

        settings = (settings or IndexSettings()).model_copy(update={"chunk_chars": chunk_chars, **overrides})
        t0 = time.perf_counter()
        cols: dict[str, list[str]] = {"doc_id": [], "url": [], "title": [], "text": []}
        index_texts: list[str] = []
        n_docs = 0
        total = len(docs) if hasattr(docs, "__len__") else None  # type: ignore[arg-type]
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task("chunking documents", total=total)
            for doc in docs:
                text = doc.get("text", doc.get("contents"))
                if not isinstance(text, str) or "id" not in doc:
                    raise CorpusFormatError(f"document #{n_docs + 1} needs 'id' and 'text' (got keys {sorted(doc)})")
                doc_id = str(doc["id"])
                title = str(doc.get("title") or "")
                url = str(doc.get("url") or _doc_url(doc_id, None))
                n_docs += 1
                for chunk in chunk_text(text, settings.chunk_chars, settings.overlap_chars):
                    cols["doc_id"].append(doc_id)
                    cols["url"].append(url)
                    cols["title"].append(title)
                    cols["text"].append(chunk)
                    index_texts.append(f"{title}\n{chunk}" if title else chunk)
                progress.advance(task)
        if not index_texts:
            raise CorpusFormatError("no passages to index (all documents were empty)")
        t_chunk = time.perf_counter()
        tokens = Tokenizer(settings).corpus(index_texts, show_progress=show_progress)
        del index_texts
        t_tok = time.perf_counter()
        retriever = bm25s.BM25(k1=settings.k1, b=settings.b, method=settings.method)
        retriever.index(tokens, show_progress=show_progress)
        t_index = time.perf_counter()
        meta = {"format": INDEX_FORMAT, "n_passages": len(cols["text"]), "n_docs": n_docs, "source": source,
                "settings": settings.model_dump(), "build_seconds": round(t_index - t0, 3),
                "timings": {"read_and_chunk": round(t_chunk - t0, 3), "tokenize": round(t_tok - t_chunk, 3),
                            "bm25_index": round(t_index - t_tok, 3)},
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "skipped": skipped or []}
        return cls(retriever, None, settings, meta, columns=cols)

    @classmethod
    def from_source(cls, src: Path, *, base_url: str | None = None, workers: int = 1,
                    exclude: Iterable[str] = DEFAULT_EXCLUDE, show_progress: bool = False, **kw) -> CorpusIndex:
        """Index a folder of HTML/Markdown/PDF/text files (recursive) or a JSONL dump."""
        src = Path(src)
        if not src.exists():
            raise CorpusFormatError(f"{src}: no such file or folder")
        skipped: list[str] = []
        if src.is_dir():
            docs: Iterable[dict] = iter_folder_docs(src, base_url, exclude=tuple(exclude), workers=workers,
                                                    show_progress=show_progress, skipped=skipped)
        elif src.suffix.lower() in (".jsonl", ".ndjson"):
            docs = iter_jsonl_docs(src, base_url)
        else:
            raise CorpusFormatError(f"{src}: expected a folder or a .jsonl file")
        return cls.build(docs, show_progress=show_progress, source=str(src), skipped=skipped, **kw)

    # -- persistence -----------------------------------------------------------------------------------------

    def save(self, out_dir: Path) -> None:
        """Write the index folder atomically (a temporary sibling renamed into place)."""
        out_dir = Path(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            self._bm25.save(str(tmp / "bm25"), show_progress=False)
            with (tmp / "passages.jsonl").open("w", encoding="utf-8") as f:
                for i in range(len(self)):
                    f.write(json.dumps({k: self._cols[k][i] for k in ("doc_id", "url", "title", "text")},
                                       ensure_ascii=False) + "\n")
            (tmp / "meta.json").write_text(json.dumps(self.meta, indent=2))
            if out_dir.exists():
                old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(out_dir, old)
                os.rename(tmp, out_dir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, out_dir: Path, *, mmap: bool = False) -> CorpusIndex:
        import bm25s

        out_dir = Path(out_dir)
        meta_path = out_dir / "meta.json"
        if not meta_path.is_file():
            raise IndexFormatError(f"{out_dir} is not a corpus index (no meta.json); build one with `fathom corpus index`")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != INDEX_FORMAT:
            raise IndexFormatError(f"{out_dir}: index format {meta.get('format')} is not supported "
                              f"(expected {INDEX_FORMAT}); rebuild it")
        settings = IndexSettings.model_validate(meta["settings"])
        retriever = bm25s.BM25.load(str(out_dir / "bm25"), mmap=mmap, load_corpus=False, show_progress=False)
        cols: dict[str, list[str]] = {"doc_id": [], "url": [], "title": [], "text": []}
        with (out_dir / "passages.jsonl").open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                for k in cols:
                    cols[k].append(row[k])
        if len(cols["text"]) != meta["n_passages"]:
            raise IndexFormatError(f"{out_dir}: passages.jsonl has {len(cols['text'])} rows, meta.json says "
                              f"{meta['n_passages']}; the index is incomplete, rebuild it")
        return cls(retriever, None, settings, meta, columns=cols)

    # -- search ----------------------------------------------------------------------------------------------

    def query_tokens(self, query: str) -> list[str]:
        return self._tokenize(query)

    def search_passages(self, query: str, top_k: int = 10, *, per_url: bool = True) -> list[tuple[int, float]]:
        """(passage index, score) best first; with per_url only the best passage of each URL."""
        tokens = [t for t in self.query_tokens(query) if t in self._bm25.vocab_dict]
        if not tokens or len(self) == 0:
            return []
        scores = np.asarray(self._bm25.get_scores(tokens))
        n = len(scores)
        want = top_k
        m = min(n, max(top_k * 4, 32))
        while True:
            cand = np.argpartition(-scores, m - 1)[:m] if m < n else np.arange(n)
            cand = cand[np.argsort(-scores[cand], kind="stable")]
            out: list[tuple[int, float]] = []
            seen: set[str] = set()
            for i in cand:
                s = float(scores[i])
                if s <= 0:
                    break
                url = self._cols["url"][i]
                if per_url and url in seen:
                    continue
                seen.add(url)
                out.append((int(i), s))
                if len(out) == want:
                    return out
            if m >= n or float(scores[cand[-1]]) <= 0:
                return out
            m = min(n, m * 4)

    def search(self, query: str, top_k: int = 10) -> list[SearchHit]:
        """Best passages for the query, one per URL, as search hits (snippet ~300 chars of the passage)."""
        qset = set(self.query_tokens(query))
        return [SearchHit(url=self._cols["url"][i], title=self._cols["title"][i],
                          snippet=self._snippet(self._cols["text"][i], qset))
                for i, _score in self.search_passages(query, top_k)]

    def _snippet(self, text: str, qset: set[str], max_chars: int = 300) -> str:
        flat = " ".join(text.split())
        if len(flat) <= max_chars:
            return flat
        sents = _SENTENCE_END.split(flat)
        best_score, pos, best_pos = -1, 0, 0
        for sent in sents:
            score = len(qset.intersection(self._tokenize(sent))) if qset else 0
            if score > best_score:
                best_score, best_pos = score, flat.find(sent, pos)
            pos += len(sent) + 1
        start = max(0, best_pos)
        if len(flat) - start < max_chars:  # show a full window: move back if the best sentence is near the end
            start = max(0, len(flat) - max_chars)
            sp = flat.find(" ", start)
            start = sp + 1 if 0 < start and sp >= 0 else start
        window = flat[start:start + max_chars]
        if start + max_chars < len(flat):
            cut = window.rfind(" ")
            window = (window[:cut] if cut > max_chars // 2 else window) + " …"
        return ("… " if start > 0 else "") + window
