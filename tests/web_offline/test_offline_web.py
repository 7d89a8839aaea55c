"""The offline web generator: determinism, internal consistency, ground truth, PDFs, caching."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from fathom.web.extract import extract_html, extract_pdf
from fathom.web.offline import OFFLINE_HOST, OfflineWeb, build_offline_web, ensure_offline_web
from fathom.web.offline.world import generate_world

SEED, N = 7, 60
HREF = re.compile(r'href="([^"]+)"')


def _norm(s: str) -> str:
    return " ".join(s.split())


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> OfflineWeb:
    return build_offline_web(SEED, N, tmp_path_factory.mktemp("site") / "w")


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_same_seed_same_bytes_other_seed_differs(web, tmp_path):
    again = build_offline_web(SEED, N, tmp_path / "again")
    assert _tree_digest(again.root) == _tree_digest(web.root)
    other = build_offline_web(SEED + 1, N, tmp_path / "other")
    assert {p["title"] for p in other.pages()} != {p["title"] for p in web.pages()}


def test_manifest_and_layout(web):
    m = web.manifest
    assert m["seed"] == SEED and m["n_pages"] == N and m["host"] == OFFLINE_HOST
    assert sum(m["entities"].values()) == N
    wiki = list((web.site_dir / "wiki").glob("*.html"))
    assert len(wiki) >= N  # entity pages + category indexes
    assert (web.site_dir / "index.html").is_file()
    pages = web.pages()
    assert len(pages) == m["files"]["html"] + m["files"]["pdf"]
    assert all(p["url"].startswith(f"http://{OFFLINE_HOST}/") for p in pages)
    assert len({p["url"] for p in pages}) == len(pages)


def test_every_link_resolves(web):
    n_links = 0
    for f in web.site_dir.rglob("*.html"):
        for href in HREF.findall(f.read_text()):
            if href.startswith("#"):
                continue
            assert href.startswith(f"http://{OFFLINE_HOST}/"), href
            assert web.url_to_path(href) is not None, f"{f.name} links to missing {href}"
            n_links += 1
    assert n_links > 10 * N


def test_every_page_reachable_from_home(web):
    seen, todo = set(), [f"http://{OFFLINE_HOST}/"]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        path = web.url_to_path(url)
        if path.suffix == ".html":
            todo.extend(h for h in HREF.findall(path.read_text()) if not h.startswith("#"))
    assert {p["url"] for p in web.pages()} <= seen


def test_facts_are_stated_on_their_pages(web):
    pages = {p["url"]: p["text"] for p in web.pages()}
    facts = web.facts()
    assert len(facts) > 5 * N
    extracted: dict[str, str] = {}
    for fact in facts:
        text = pages[fact["url"]]
        assert _norm(fact["fact"]) in _norm(text), fact
        assert fact["object"] in text, fact
        # what an agent sees after extraction holds the fact as well
        if fact["url"] not in extracted:
            path = web.url_to_path(fact["url"])
            doc = extract_pdf(path.read_bytes()) if path.suffix == ".pdf" else extract_html(path.read_bytes())
            extracted[fact["url"]] = _norm(doc.text)
        assert _norm(fact["object"]) in extracted[fact["url"]], fact


def test_many_facts_are_dated_after_2024(web):
    dated = [f for f in web.facts() if f["date"] and f["relation"] != "born"]  # events, appointments, releases
    recent = [f for f in dated if f["date"] > "2024-01-01"]
    assert len(recent) >= 0.5 * len(dated) and len(recent) >= 10


def test_world_is_internally_consistent():
    w = generate_world(11, 400)
    ents = w.entities
    by_kind = {k: w.by_kind(k) for k in ("country", "city", "company", "person", "work", "event", "university")}
    year = lambda p: int(p.attrs["born"][:4])
    for c in by_kind["company"]:
        age = c.attrs["founded"] - year(ents[c.rels["founder"]])
        assert 20 <= age <= 55, (c.name, age)
        assert ents[c.rels["chief_executive"]].rels["employer"] == c.id
    for u in by_kind["university"]:
        assert ents[u.rels["rector"]].rels["employer"] == u.id
    for country in by_kind["country"]:
        cities = [x for x in by_kind["city"] if x.rels["country"] == country.id]
        assert ents[country.rels["capital"]] in cities
        assert country.attrs["population"] > sum(x.attrs["population"] for x in cities)
    for work in by_kind["work"]:
        assert int(work.attrs["published"][:4]) - year(ents[work.rels["author"]]) >= 18
    for ev in by_kind["event"]:
        assert int(ev.attrs["date"][:4]) - year(ents[ev.rels["winner"]]) >= 12
        assert ents[ev.rels["venue"]].name not in ev.name  # the name does not give the venue away
    leaders = [e.rels[r] for e in ents.values() for r in ("chief_executive", "rector", "head_of_state", "mayor")
               if r in e.rels]
    assert len(leaders) == len(set(leaders))  # one top post per person
    assert len({e.name for e in ents.values()}) == len(ents)


@pytest.mark.parametrize("hops", [1, 2, 3])
def test_questions_follow_the_evidence(web, hops):
    pages = {p["url"]: p["text"] for p in web.pages()}
    qs = web.questions(12, hops=hops, seed=1)
    assert len(qs) == 12 and len({q.id for q in qs}) == 12 and len({q.question for q in qs}) == 12
    assert [q.model_dump() for q in qs] == [q.model_dump() for q in web.questions(12, hops=hops, seed=1)]
    for q in qs:
        assert len(q.hops) == hops
        assert q.answer == q.hops[-1]["object"]
        assert q.hops[0]["subject"] in q.question
        assert q.answer not in q.question
        for a, b in zip(q.hops, q.hops[1:]):
            assert b["subject"] == a["object"]  # the chain crosses pages
            assert b["url"] != a["url"]
        for hop in q.hops:
            assert _norm(hop["fact"]) in _norm(pages[hop["url"]])
        assert q.answer in pages[q.hops[-1]["url"]]


def test_annual_report_pdf(web):
    pdfs = list((web.site_dir / "files").glob("*.pdf"))
    assert pdfs
    doc = extract_pdf(pdfs[0].read_bytes())
    assert "Annual Report 2024" in doc.title
    assert "net income" in doc.text
    report_facts = [f for f in web.facts() if f["url"].endswith(".pdf")]
    assert report_facts and all(f["relation"] in ("net_income_2024", "rd_centre_staff") for f in report_facts)
    # the figure appears only in the PDF, never on an HTML page
    html_text = " ".join(p["text"] for p in web.pages() if p["kind"] == "html")
    income = next(f for f in report_facts if f["relation"] == "net_income_2024")
    assert _norm(income["fact"]) not in _norm(html_text)
    # and a page links to it
    assert any(income["url"] in f.read_text() for f in (web.site_dir / "wiki").glob("*.html"))


def test_cache_reuse_and_atomic_build(tmp_path, monkeypatch):
    monkeypatch.setenv("FATHOM_HOME", str(tmp_path))
    first = ensure_offline_web(3, 24)
    assert first.root == tmp_path / "offline-web" / "seed3-n24"
    stamp = (first.root / "manifest.json").stat().st_mtime_ns
    second = ensure_offline_web(3, 24)
    assert (second.root / "manifest.json").stat().st_mtime_ns == stamp  # reused, not rebuilt
    assert not [p for p in (tmp_path / "offline-web").iterdir() if p.name.startswith(".")]  # no temp leftovers
    # an outdated generator version is rebuilt in place
    m = json.loads((first.root / "manifest.json").read_text())
    m["version"] = "0"
    (first.root / "manifest.json").write_text(json.dumps(m))
    third = ensure_offline_web(3, 24)
    assert json.loads((third.root / "manifest.json").read_text())["version"] != "0"


def test_incomplete_site_is_rejected(tmp_path):
    (tmp_path / "half").mkdir()
    with pytest.raises(Exception, match="manifest"):
        OfflineWeb(tmp_path / "half")
    with pytest.raises(ValueError):
        build_offline_web(0, 5, tmp_path / "tiny")


def test_generation_scales(tmp_path):
    t0 = time.process_time()  # CPU time: robust to a busy machine
    web = build_offline_web(5, 3000, tmp_path / "big")
    elapsed = time.process_time() - t0
    assert web.manifest["files"]["html"] > 3000
    assert elapsed < 10, f"3000 pages took {elapsed:.1f}s of CPU (20k must stay well under a minute)"
