"""CorpusIndex: chunking, tokenizer, sources (docs, folder, JSONL), save/load, search quality."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from fathom.web.index import (
    CorpusFormatError,
    CorpusIndex,
    IndexFormatError,
    chunk_text,
    light_stem,
    list_source_files,
)
from fathom.web.offline import build_offline_web
from fathom.web.schemas import SearchHit

PYDOCS = Path("/usr/share/doc/python3.11/html")


# -- chunking ---------------------------------------------------------------------------------------------------

def test_chunk_short_text_is_one_passage():
    assert chunk_text("One paragraph.\n\nAnother one.", 1200) == ["One paragraph.\nAnother one."]


def test_chunk_long_text_on_boundaries_with_overlap():
    sentences = [f"Sentence {i} mentions item{i} once." for i in range(80)]
    text = "Intro paragraph.\n\n" + " ".join(sentences[:40]) + "\n\n" + " ".join(sentences[40:])
    chunks = chunk_text(text, chunk_chars=300, overlap_chars=60)
    assert len(chunks) > 5
    assert all(len(c) <= 300 for c in chunks)
    joined = " ".join(chunks)
    for i in range(80):  # nothing is lost
        assert f"item{i} once." in joined
    for c in chunks:  # boundaries fall between sentences, never inside one
        assert c.rstrip().endswith((".", "paragraph."))
    # each chunk after the first repeats the end of the previous one
    for prev, nxt in zip(chunks, chunks[1:]):
        first = re.split(r"(?<=\.)\s", nxt, maxsplit=1)[0]
        assert first in prev


def test_chunk_splits_a_giant_sentence():
    text = "word " * 1000
    chunks = chunk_text(text, chunk_chars=200, overlap_chars=0)
    assert all(len(c) <= 200 for c in chunks)
    assert sum(c.count("word") for c in chunks) == 1000


@pytest.mark.parametrize("word,stem", [("dumps", "dump"), ("indented", "indent"), ("cities", "city"),
                                       ("classes", "class"), ("indexes", "index"), ("pages", "page"),
                                       ("status", "status"), ("is", "is"), ("founded", "found"), ("3.11", "3.11")])
def test_light_stem(word, stem):
    assert light_stem(word) == stem


# -- building and searching -------------------------------------------------------------------------------------

DOCS = [
    {"id": "a", "title": "Harbour pilots", "url": "http://x.test/a", "text": "Harbour pilots guide ships into port."},
    {"id": "b", "title": "Glasshouses", "url": "http://x.test/b", "text": "Glasshouses grow tomatoes in winter."},
    {"id": "c", "title": "Long page", "url": "http://x.test/c",
     "text": "\n\n".join(f"Paragraph {i} about lighthouses and their keepers on the coast." for i in range(60))},
]


def test_search_one_hit_per_url_best_first():
    idx = CorpusIndex.build(DOCS, chunk_chars=200)
    assert len(idx) > 10  # the long page was chunked
    hits = idx.search("lighthouse keepers", top_k=5)
    assert [h.url for h in hits] == ["http://x.test/c"]  # many passages match, one hit per URL
    assert isinstance(hits[0], SearchHit) and hits[0].title == "Long page"
    assert "lighthouses" in hits[0].snippet and len(hits[0].snippet) <= 310
    hits = idx.search("ships port tomatoes", top_k=5)
    assert {h.url for h in hits} == {"http://x.test/a", "http://x.test/b"}
    assert idx.search("zzzunknownzzz") == [] and idx.search("the of and") == []


def test_save_load_roundtrip(tmp_path):
    idx = CorpusIndex.build(DOCS, chunk_chars=200)
    idx.save(tmp_path / "idx")
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["n_docs"] == 3 and meta["n_passages"] == len(idx) and meta["settings"]["chunk_chars"] == 200
    loaded = CorpusIndex.load(tmp_path / "idx")
    assert len(loaded) == len(idx)
    for q in ("lighthouse keepers", "ships", "tomatoes winter"):
        assert loaded.search(q) == idx.search(q)
    idx.save(tmp_path / "idx")  # overwriting an index replaces it atomically
    assert sorted(os.listdir(tmp_path)) == ["idx"]
    with pytest.raises(IndexFormatError, match="fathom corpus index"):
        CorpusIndex.load(tmp_path / "nothing")


def test_jsonl_source_and_malformed_lines(tmp_path):
    good = tmp_path / "dump.jsonl"
    good.write_text("\n".join([
        json.dumps({"id": "d1", "title": "Quartz", "contents": "Quartz clocks keep time."}),
        "",
        json.dumps({"id": 7, "text": "Pendulum clocks swing.", "url": "http://clocks.test/p"}),
    ]) + "\n")
    idx = CorpusIndex.from_source(good, base_url="http://dump.test/")
    assert [h.url for h in idx.search("quartz clocks")][0] == "http://dump.test/d1"
    assert idx.search("pendulum")[0].url == "http://clocks.test/p"
    assert CorpusIndex.from_source(good).search("quartz")[0].url == "doc:d1"

    cases = {
        '{"id": "x", "text": "ok"}\n{"id": "y", "text": "ok"}\n{"id": "z", "text": broken}\n': r"bad\.jsonl:3: invalid JSON",
        '{"id": "x", "text": "ok"}\n["a list"]\n': r":2: expected a JSON object",
        '{"title": "no id", "text": "t"}\n': r":1: missing or invalid 'id'",
        '{"id": "x", "title": "no text"}\n': r":1: missing 'text' or 'contents'",
    }
    for content, pattern in cases.items():
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        with pytest.raises(CorpusFormatError, match=pattern):
            CorpusIndex.from_source(bad)
    with pytest.raises(CorpusFormatError, match="no such file"):
        CorpusIndex.from_source(tmp_path / "missing.jsonl")


def test_folder_source_mixed_formats(tmp_path):
    from reportlab.pdfgen import canvas

    root = tmp_path / "site"
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "_static").mkdir()
    (root / "docs" / "a.html").write_text("<html><head><title>Otters</title></head><body><h1>Otters</h1>"
                                          "<p>Otters hold hands while sleeping on rivers and in the sea.</p></body></html>")
    (root / "docs" / "deep" / "b.md").write_text("# Beavers\n\nBeavers build dams across streams.\n")
    (root / "notes.txt").write_text("Badgers dig setts in woodland.\n")
    (root / "_static" / "skip.html").write_text("<html><body><p>Otters otters otters otters.</p></body></html>")
    (root / "empty.html").write_text("<html><body><script>1</script></body></html>")
    (root / "image.png").write_bytes(b"\x89PNG")
    c = canvas.Canvas(str(root / "docs" / "report.pdf"), invariant=1)
    c.drawString(72, 800, "Weasels hunt voles in meadows.")
    c.save()
    files = [p.relative_to(root).as_posix() for p in list_source_files(root)]
    assert files == ["empty.html", "notes.txt", "docs/a.html", "docs/report.pdf", "docs/deep/b.md"]

    idx = CorpusIndex.from_source(root, base_url="http://files.test/root")
    assert idx.meta["n_docs"] == 4 and len(idx.meta["skipped"]) == 1 and "empty.html" in idx.meta["skipped"][0]
    top = {q: idx.search(q, top_k=1)[0] for q in ("otters sleeping", "beavers dams", "badgers", "weasels voles")}
    assert top["otters sleeping"].url == "http://files.test/root/docs/a.html"
    assert top["otters sleeping"].title == "Otters"
    assert top["beavers dams"].url == "http://files.test/root/docs/deep/b.md"
    assert top["beavers dams"].title == "Beavers"
    assert top["badgers"].url == "http://files.test/root/notes.txt"
    assert top["weasels voles"].url == "http://files.test/root/docs/report.pdf"
    local = CorpusIndex.from_source(root)
    assert local.search("badgers")[0].url == (root / "notes.txt").resolve().as_uri()
    (tmp_path / "nothing").mkdir()
    with pytest.raises(CorpusFormatError, match="no .* files found"):
        CorpusIndex.from_source(tmp_path / "nothing")


# -- the offline web and real third-party docs ------------------------------------------------------------------

@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    web = build_offline_web(4, 150, tmp_path_factory.mktemp("atlas") / "w")
    return web, CorpusIndex.from_source(web.corpus_jsonl())


def test_offline_web_question_pages_rank_in_top5(atlas):
    web, idx = atlas
    for q in web.questions(30, hops=1, seed=2):
        urls = [h.url for h in idx.search(q.question, top_k=5)]
        assert q.hops[0]["url"] in urls, (q.question, q.hops[0]["url"], urls)
    qs = web.questions(30, hops=2, seed=2)
    found = sum(q.hops[0]["url"] in [h.url for h in idx.search(q.question, top_k=5)] for q in qs)
    assert found >= 0.9 * len(qs)
    # the second hop is found by searching for the first hop's answer with the rest of the question
    found = 0
    for q in qs:
        query = f"{q.hops[0]['object']} {q.question}"
        found += q.hops[1]["url"] in [h.url for h in idx.search(query, top_k=5)]
    assert found >= 0.8 * len(qs)


def test_offline_web_pdf_is_searchable(atlas):
    web, idx = atlas
    income = next(f for f in web.facts() if f["relation"] == "net_income_2024")
    hits = idx.search(f"{income['subject']} net income 2024", top_k=3)
    assert hits[0].url == income["url"] and hits[0].url.endswith(".pdf")


@pytest.mark.skipif(not (PYDOCS / "library" / "json.html").is_file(),
                    reason="Debian package python3.11-doc is not installed (apt-get install -y python3.11-doc); "
                           "CI installs it")
def test_python_docs_index(tmp_path):
    # a subset keeps the test fast (all 530 pages take ~1 min of extraction on one core; see `fathom corpus index`)
    lib = sorted((PYDOCS / "library").glob("*.html"))
    keep = {"json.html", "pickle.html", "marshal.html", "csv.html", "shelve.html", "tomllib.html", "re.html",
            "configparser.html", "textwrap.html", "pprint.html", "xml.dom.minidom.html", "string.html"}
    subset = [p for p in lib if p.name in keep] + lib[:24]
    root = tmp_path / "pydocs"
    (root / "library").mkdir(parents=True)
    for p in subset:
        (root / "library" / p.name).write_bytes(p.read_bytes())
    idx = CorpusIndex.from_source(root, base_url="https://docs.python.org/3.11", workers=2)
    assert idx.meta["n_docs"] == len({p.name for p in subset}) and not idx.meta["skipped"]
    hits = idx.search("json dumps indent", top_k=3)
    assert hits[0].url == "https://docs.python.org/3.11/library/json.html"
    assert hits[0].title == "json — JSON encoder and decoder"
    assert idx.search("pickle protocol unpickler", top_k=3)[0].url.endswith("library/pickle.html")
    assert idx.search("csv writer dialect delimiter", top_k=3)[0].url.endswith("library/csv.html")
    idx.save(tmp_path / "idx")
    assert CorpusIndex.load(tmp_path / "idx").search("json dumps indent", top_k=1)[0].url.endswith("json.html")


def test_query_tokenizer_matches_bm25s_corpus_tokenizer():
    import bm25s

    from fathom.web.index import IndexSettings, Tokenizer, make_stemmer

    texts = ["The JSON module's dumps() indents output; cities & classes.", "Über naïve café 3.11 Python's indexes"]
    for stemmer in ("light", "none"):
        tok = Tokenizer(IndexSettings(stemmer=stemmer))
        ref = bm25s.tokenize(texts, stopwords="en", stemmer=make_stemmer(stemmer), return_ids=False,
                             show_progress=False)
        assert [tok(t) for t in texts] == ref
    assert "the" not in Tokenizer(IndexSettings())(texts[0])
    tok = Tokenizer(IndexSettings())
    ids, vocab = tok.corpus(texts)
    inv = {v: k for k, v in vocab.items()}
    assert [[inv[i] for i in row] for row in ids] == [tok(t) for t in texts]
