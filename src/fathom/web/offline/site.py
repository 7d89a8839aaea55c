"""Generate an offline web site on disk (streaming writes, atomic creation) and open it with its ground truth.

Layout of a generated site folder (``fathom_home()/offline-web/seed<S>-n<N>/``)::

    manifest.json      version, seed, n_pages, host, counts   (written last: its presence means "complete")
    world.json         the world model (entities, relations, dates, numbers)
    corpus.jsonl       {id, title, url, text, kind} of every page and PDF (the text the pages hold)
    facts.jsonl        {subject, relation, object, date, url, fact} of every fact
    site/index.html    home page                 -> http://atlas.fathom.test/
    site/wiki/<slug>.html                        -> http://atlas.fathom.test/wiki/<slug>
    site/files/<name>.pdf                        -> http://atlas.fathom.test/files/<name>.pdf
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import uuid
from functools import cached_property
from pathlib import Path

from fathom.config import fathom_home
from fathom.errors import FathomError
from fathom.web.offline import render
from fathom.web.offline.questions import WorldQA, entity_facts, make_questions
from fathom.web.offline.world import WORLD_VERSION, World, generate_world, plan_counts

log = logging.getLogger(__name__)

GENERATOR_VERSION = f"{WORLD_VERSION}.3"  # bump when rendering changes: cached sites are rebuilt
_SLUG = re.compile(r"^[A-Za-z0-9_()\-]+$")
_PDF = re.compile(r"^[A-Za-z0-9_()\-]+\.pdf$")


class OfflineWebError(FathomError):
    """A generated site is missing or incomplete."""


def default_site_dir(seed: int, n_pages: int) -> Path:
    return fathom_home() / "offline-web" / f"seed{seed}-n{n_pages}"


class OfflineWeb:
    """A generated site on disk and its ground truth."""

    def __init__(self, root: Path):
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise OfflineWebError(f"{self.root} is not a generated offline web (no manifest.json); "
                                  "run `fathom web build` first")
        self.manifest: dict = json.loads(manifest.read_text())
        self.seed: int = int(self.manifest["seed"])
        self.n_pages: int = int(self.manifest["n_pages"])
        self.base_url: str = render.SITE_URL
        self.host: str = render.OFFLINE_HOST

    def __repr__(self) -> str:
        return f"OfflineWeb(root={str(self.root)!r}, seed={self.seed}, n_pages={self.n_pages})"

    @property
    def site_dir(self) -> Path:
        return self.root / "site"

    @property
    def home_url(self) -> str:
        return f"{self.base_url}/"

    @cached_property
    def world(self) -> World:
        return World.from_json(json.loads((self.root / "world.json").read_text()))

    def corpus_jsonl(self) -> Path:
        """{id, title, url, text, kind} of every page (HTML pages and PDFs)."""
        return self.root / "corpus.jsonl"

    def pages(self) -> list[dict]:
        with self.corpus_jsonl().open() as f:
            return [json.loads(line) for line in f if line.strip()]

    def facts(self) -> list[dict]:
        """{subject, relation, object, date, url, fact, subject_id, object_id} of every fact on the site."""
        with (self.root / "facts.jsonl").open() as f:
            return [json.loads(line) for line in f if line.strip()]

    def questions(self, n: int, *, hops: int = 2, seed: int = 0) -> list[WorldQA]:
        """`n` ground-truth questions chaining `hops` facts across pages (deterministic for `seed`)."""
        return make_questions(self.world, n, hops=hops, seed=seed)

    def resolve_path(self, path: str) -> tuple[Path, str] | None:
        """Map a URL path (``/``, ``/wiki/<slug>``, ``/files/<name>.pdf``) to (file, media type); None if unknown."""
        path = path.split("?", 1)[0].split("#", 1)[0].lstrip("/")
        if path in ("", "index.html", "wiki", "wiki/"):
            f, mt = self.site_dir / "index.html", "text/html; charset=utf-8"
        elif path.startswith("wiki/"):
            slug = path[5:].removesuffix(".html")
            if not _SLUG.match(slug):
                return None
            f, mt = self.site_dir / "wiki" / f"{slug}.html", "text/html; charset=utf-8"
        elif path.startswith("files/"):
            name = path[6:]
            if not _PDF.match(name):
                return None
            f, mt = self.site_dir / "files" / name, "application/pdf"
        else:
            return None
        return (f, mt) if f.is_file() else None

    def url_to_path(self, url: str) -> Path | None:
        prefix = self.base_url
        if not url.startswith(prefix):
            return None
        hit = self.resolve_path(url[len(prefix):] or "/")
        return hit[0] if hit else None


def _valid(root: Path) -> bool:
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("version") == GENERATOR_VERSION


def _write_site(world: World, tmp: Path, show_progress: bool) -> dict:
    from rich.progress import Progress

    site = tmp / "site"
    (site / "wiki").mkdir(parents=True)
    (site / "files").mkdir()
    backrefs = render.build_backrefs(world)
    counts = {"html": 0, "pdf": 0}
    with (tmp / "corpus.jsonl").open("w") as corpus, (tmp / "facts.jsonl").open("w") as facts, \
            Progress(disable=not show_progress, transient=True) as progress:
        task = progress.add_task("rendering pages", total=len(world.entities))

        def emit(page: render.Page, path: Path, kind: str = "html") -> None:
            path.write_text(render.page_html(page), encoding="utf-8")
            corpus.write(json.dumps({"id": page.slug or "index", "title": page.title, "url": page.url,
                                     "text": render.page_text(page), "kind": kind}, ensure_ascii=False) + "\n")
            counts[kind] += 1

        emit(render.home_page(world), site / "index.html")
        for page in render.index_pages(world):
            emit(page, site / "wiki" / f"{page.slug}.html")
        for e in world.entities.values():
            emit(render.entity_page(world, e, backrefs), site / "wiki" / f"{e.id}.html")
            for fact in entity_facts(world, e):
                facts.write(json.dumps(fact, ensure_ascii=False) + "\n")
            if e.report:
                (site / "files" / render.report_slug(e)).write_bytes(render.report_pdf(world, e))
                title = f"{e.name} Annual Report {e.report['year']}"
                corpus.write(json.dumps({"id": render.report_slug(e), "title": title, "url": render.report_url(e),
                                         "text": render.report_text(world, e), "kind": "pdf"},
                                        ensure_ascii=False) + "\n")
                counts["pdf"] += 1
            progress.advance(task)
    (tmp / "world.json").write_text(json.dumps(world.to_json(), ensure_ascii=False))
    return counts


def build_offline_web(seed: int = 0, n_pages: int = 120, out: Path | None = None, *, force: bool = False,
                      show_progress: bool = False) -> OfflineWeb:
    """Generate the site for (`seed`, `n_pages`) into `out` (default: the cache), unless a complete one is there.

    The site is written to a temporary sibling folder and renamed into place, so readers never see half a site
    and concurrent builders do not corrupt each other (the first rename wins)."""
    if n_pages < 12:
        raise ValueError(f"n_pages must be >= 12 (got {n_pages})")
    target = Path(out) if out is not None else default_site_dir(seed, n_pages)
    if not force and _valid(target):
        return OfflineWeb(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    try:
        world = generate_world(seed, n_pages)
        counts = _write_site(world, tmp, show_progress)
        manifest = {
            "version": GENERATOR_VERSION, "seed": seed, "n_pages": n_pages, "host": render.OFFLINE_HOST,
            "base_url": render.SITE_URL, "entities": plan_counts(n_pages), "files": counts,
            "build_seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if target.exists():
            if not force and _valid(target):  # someone else finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return OfflineWeb(target)
            stale = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if _valid(target):  # lost a race against a concurrent builder: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
                return OfflineWeb(target)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("offline web seed=%s n=%s built in %.1fs at %s", seed, n_pages, time.perf_counter() - t0, target)
    return OfflineWeb(target)


def ensure_offline_web(seed: int = 0, n_pages: int = 120) -> OfflineWeb:
    """The cached site for (`seed`, `n_pages`), generated on first use."""
    return build_offline_web(seed, n_pages)
