"""Render the world as encyclopedia pages: HTML (infobox, prose, cross-links) and annual-report PDFs.

A page is first built as a list of *blocks* (heading, paragraph of text/link segments, infobox rows, list); the
same blocks render to HTML (what the server sends) and to plain text (what the corpus JSONL and the ground truth
hold), so the fact sentences the ground truth cites are verbatim in both.
"""

from __future__ import annotations

import datetime as dt
import html
import io
import random
from dataclasses import dataclass, field

from fathom.web.offline.world import (
    ATTRIBUTES,
    DATE_ATTRS,
    RELATIONS,
    REPORT_ATTRS,
    Entity,
    World,
    fmt_date,
    fmt_int,
)

OFFLINE_HOST = "atlas.fathom.test"
SITE_URL = f"http://{OFFLINE_HOST}"
SITE_NAME = "Atlas"
INDEX_PAGE_SIZE = 500

Link = tuple[str, str]  # (text, url)
Segment = str | Link

KIND_TITLES = {
    "country": "Countries", "city": "Cities", "university": "Universities", "company": "Companies",
    "person": "People", "work": "Works", "event": "Events",
}
KIND_ORDER = ["country", "city", "university", "company", "person", "work", "event"]

# attributes shown on each kind's page, in order (relations come from the entity itself)
KIND_ATTRS = {
    "country": ["population", "area_km2", "founded", "currency"],
    "city": ["population", "area_km2", "founded", "elevation_m"],
    "university": ["founded", "students"],
    "company": ["founded", "industry", "employees", "revenue"],
    "person": ["born", "occupation"],
    "work": ["genre", "published", "pages", "copies_sold"],
    "event": ["date", "attendance"],
}
KIND_RELS = {
    "country": ["capital", "head_of_state"],
    "city": ["country", "mayor"],
    "university": ["location", "rector"],
    "company": ["founder", "headquarters", "chief_executive"],
    "person": ["birthplace", "alma_mater", "employer"],
    "work": ["author", "publisher"],
    "event": ["venue", "organiser", "winner"],
}
KIND_NOUN = {
    "country": "a sovereign state", "city": "a city", "university": "a university", "company": "a company",
    "person": "a", "work": "a", "event": "an event",
}


def page_url(slug: str) -> str:
    return f"{SITE_URL}/wiki/{slug}"


def report_slug(e: Entity) -> str:
    return f"{e.id}_Annual_Report_{e.report['year']}.pdf" if e.report else ""


def report_url(e: Entity) -> str:
    return f"{SITE_URL}/files/{report_slug(e)}"


def index_slug(kind: str, page: int) -> str:
    base = f"Index_of_{KIND_TITLES[kind].lower()}"
    return base if page == 1 else f"{base}_{page}"


@dataclass
class Page:
    slug: str  # path under /wiki/ (or '' for the home page)
    url: str
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def p(self, *segments: Segment) -> None:
        self.blocks.append(("p", list(segments)))

    def ul(self, items: list[list[Segment]]) -> None:
        if items:
            self.blocks.append(("ul", items))

    def infobox(self, rows: list[tuple[str, list[Segment]]]) -> None:
        self.blocks.append(("infobox", rows))


# ---------------------------------------------------------------------------------------------------------------
# Text and HTML from blocks

def _seg_text(segs: list[Segment]) -> str:
    return "".join(s if isinstance(s, str) else s[0] for s in segs)


def _seg_html(segs: list[Segment]) -> str:
    return "".join(html.escape(s, quote=False) if isinstance(s, str)
                   else f'<a href="{html.escape(s[1])}">{html.escape(s[0], quote=False)}</a>' for s in segs)


def page_text(page: Page) -> str:
    lines = [page.title, ""]
    for kind, body in page.blocks:
        if kind == "h2":
            lines += [body, ""]
        elif kind == "p":
            lines += [_seg_text(body), ""]
        elif kind == "ul":
            lines += [f"- {_seg_text(item)}" for item in body] + [""]
        elif kind == "infobox":
            lines += [f"{label}: {_seg_text(v)}" for label, v in body] + [""]
    return "\n".join(lines).strip() + "\n"


def _anchor(text: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")


def page_html(page: Page) -> str:
    out = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(page.title)} — {SITE_NAME}</title>",
        f'<link rel="canonical" href="{html.escape(page.url)}">',
        ("<style>body{font-family:serif;max-width:60em;margin:auto}.infobox{float:right;border:1px solid #aaa;"
         "margin:0 0 1em 1em}.infobox th{text-align:left;padding-right:1em}</style>"),
        "</head>", "<body>",
        f'<header><nav><a href="{SITE_URL}/">{SITE_NAME} — the free fictional encyclopedia</a> · '
        + " · ".join(f'<a href="{page_url(index_slug(k, 1))}">{KIND_TITLES[k]}</a>' for k in KIND_ORDER)
        + "</nav></header>",
        '<main><article>', f'<h1 id="title">{html.escape(page.title)}</h1>',
    ]
    for kind, body in page.blocks:
        if kind == "h2":
            a = _anchor(body)
            out.append(f'<h2 id="{a}">{html.escape(body)}<a class="headerlink" href="#{a}" title="Permalink">¶</a></h2>')
        elif kind == "p":
            out.append(f"<p>{_seg_html(body)}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_seg_html(item)}</li>" for item in body) + "</ul>")
        elif kind == "infobox":
            rows = "".join(f"<tr><th>{html.escape(label)}</th><td>{_seg_html(v)}</td></tr>" for label, v in body)
            out.append(f'<table class="infobox"><caption>{html.escape(page.title)}</caption>{rows}</table>')
    out += ["</article></main>",
            (f"<footer><p>{SITE_NAME} is a generated website of fictional places, people and organisations. "
             "Any resemblance to real entities is coincidental.</p></footer>"), "</body>", "</html>", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------------
# Entity pages

def _sentence(world: World, e: Entity, template: str, rel: str | None = None, value: str = "",
              date: str = "") -> list[Segment]:
    """A fact sentence with the subject as plain text and the object (for relations) as a link."""
    obj: Segment = value
    if rel is not None:
        target = world.entities[e.rels[rel]]
        obj = (target.name, page_url(target.id))
    segs: list[Segment] = []
    rest = template
    while rest:
        i = rest.find("{")
        if i < 0:
            segs.append(rest)
            break
        segs.append(rest[:i])
        j = rest.index("}", i)
        key = rest[i + 1:j]
        segs.append({"s": e.name, "o": obj, "v": value, "d": date}[key])
        rest = rest[j + 1:]
    return [s for s in segs if s != ""]


def rel_segments(world: World, e: Entity, rel: str) -> list[Segment]:
    return _sentence(world, e, RELATIONS[rel].sentence, rel=rel, date=world.rel_date(e, rel) or "")


def attr_segments(world: World, e: Entity, attr: str) -> list[Segment]:
    return _sentence(world, e, ATTRIBUTES[attr].sentence, value=world.format_attr(e, attr))


_FILLER = {
    "country": ["{s} is known for its {adj} coastline and its {adj2} mountain passes.",
                "The national assembly of {s} meets twice a year."],
    "city": ["The old town of {s} grew around a {adj} market square.",
             "{s} is served by a regional railway and a {adj2} river port."],
    "university": ["{s} is organised into faculties of arts, sciences and engineering.",
                   "Its library holds a {adj} collection of regional maps."],
    "company": ["{s} is privately held and describes its culture as {adj}.",
                "Its products are exported to several neighbouring countries."],
    "person": ["Colleagues describe {s} as {adj} and {adj2}.",
               "{s} has given public lectures on the history of the region."],
    "work": ["Critics called {s} {adj} and {adj2}.", "A second edition of {s} is in preparation."],
    "event": ["The programme of {s} included workshops and a {adj} closing ceremony.",
              "Tickets for {s} sold out weeks in advance."],
}
_ADJ = ["quiet", "ambitious", "meticulous", "celebrated", "unusual", "windswept", "remarkable", "modest",
        "influential", "lively", "austere", "colourful"]


REVERSE_LABELS = {  # how the page of a relation's object describes the subject pointing at it
    "country": "city", "capital": "capital of", "head_of_state": "head of state of", "mayor": "mayor of",
    "founder": "founded", "headquarters": "headquartered here", "chief_executive": "chief executive of",
    "location": "located here", "rector": "rector of", "birthplace": "born here", "employer": "employee",
    "alma_mater": "alumnus", "author": "work", "publisher": "published work", "venue": "held here",
    "organiser": "organised event", "winner": "won",
}


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def entity_page(world: World, e: Entity, backrefs: dict[str, list[tuple[str, str]]]) -> Page:
    """The encyclopedia page of one entity. `backrefs[e.id]` lists (relation, subject id) pointing at `e`."""
    r = random.Random(f"{world.seed}/{e.id}")
    page = Page(slug=e.id, url=page_url(e.id), title=e.name)
    # lead
    if e.kind == "person":
        lead = [f"{e.name} (born {world.format_attr(e, 'born')}) is {_a(e.attrs['occupation'])}"]
        if "birthplace" in e.rels:
            city = world.entities[e.rels["birthplace"]]
            lead += [" from ", (city.name, page_url(city.id))]
        lead.append(".")
    elif e.kind == "work":
        author = world.entities[e.rels["author"]]
        lead = [f"{e.name} is {_a(e.attrs['genre'])} by ", (author.name, page_url(author.id)), "."]
    elif e.kind == "city":
        country = world.entities[e.rels["country"]]
        lead = [f"{e.name} is a city in ", (country.name, page_url(country.id)), "."]
    elif e.kind == "event":
        lead = [f"The {e.name} was an event held on {world.format_attr(e, 'date')}."]
    else:
        lead = [f"{e.name} is {KIND_NOUN[e.kind]}."]
    page.p(*lead)

    # infobox: every attribute and relation, values as on the rest of the page
    rows: list[tuple[str, list[Segment]]] = []
    for attr in KIND_ATTRS[e.kind]:
        if attr in e.attrs:
            rows.append((ATTRIBUTES[attr].label, [world.format_attr(e, attr)]))
    for rel in KIND_RELS[e.kind]:
        if rel in e.rels:
            t = world.entities[e.rels[rel]]
            rows.append((RELATIONS[rel].label, [(t.name, page_url(t.id))]))
    page.infobox(rows)

    # prose: one section of fact sentences plus a little filler
    page.h2("Overview")
    for attr in KIND_ATTRS[e.kind]:
        if attr in e.attrs:
            page.p(*attr_segments(world, e, attr))
    page.h2("History" if e.kind in ("country", "city", "university", "company") else "Details")
    for rel in KIND_RELS[e.kind]:
        if rel in e.rels:
            page.p(*rel_segments(world, e, rel))
    adj, adj2 = r.sample(_ADJ, 2)
    page.p(" ".join(t.format(s=e.name, adj=adj, adj2=adj2) for t in _FILLER[e.kind]))

    # reverse links: what points here
    refs = backrefs.get(e.id, [])
    if refs:
        page.h2("Related")
        items: list[list[Segment]] = []
        for rel, sid in refs[:40]:
            s = world.entities[sid]
            items.append([(s.name, page_url(s.id)), f" ({REVERSE_LABELS.get(rel, rel)})"])
        page.ul(items)
    if e.report:
        page.h2("Publications")
        page.p(f"{e.name} publishes an annual report. ",
               (f"{e.name} Annual Report {e.report['year']} (PDF)", report_url(e)), ".")
    return page


def build_backrefs(world: World) -> dict[str, list[tuple[str, str]]]:
    refs: dict[str, list[tuple[str, str]]] = {}
    for e in world.entities.values():
        for rel, oid in e.rels.items():
            refs.setdefault(oid, []).append((rel, e.id))
    return refs


def index_pages(world: World) -> list[Page]:
    """One index per kind (paginated) listing every entity page."""
    pages = []
    for kind in KIND_ORDER:
        ents = sorted(world.by_kind(kind), key=lambda e: e.name)
        n = max(1, (len(ents) + INDEX_PAGE_SIZE - 1) // INDEX_PAGE_SIZE)
        for i in range(n):
            slug = index_slug(kind, i + 1)
            title = f"Index of {KIND_TITLES[kind].lower()}" + (f" (page {i + 1})" if i else "")
            page = Page(slug=slug, url=page_url(slug), title=title)
            page.p(f"{len(ents)} articles in this category.")
            page.ul([[(e.name, page_url(e.id))] for e in ents[i * INDEX_PAGE_SIZE:(i + 1) * INDEX_PAGE_SIZE]])
            if n > 1:
                page.p(*[x for j in range(n) for x in ((f"page {j + 1}", page_url(index_slug(kind, j + 1))), " ")])
            pages.append(page)
    return pages


def home_page(world: World) -> Page:
    page = Page(slug="", url=f"{SITE_URL}/", title=f"{SITE_NAME}: the free fictional encyclopedia")
    page.p(f"Welcome to {SITE_NAME}, an encyclopedia of {len(world.entities)} articles about fictional countries, "
           "cities, organisations, people, works and events.")
    page.h2("Browse")
    page.ul([[(KIND_TITLES[k], page_url(index_slug(k, 1))), f" ({len(world.by_kind(k))} articles)"]
             for k in KIND_ORDER])
    events = sorted(world.by_kind("event"), key=lambda e: e.attrs["date"], reverse=True)[:15]
    page.h2("Recent events")
    page.ul([[(e.name, page_url(e.id)), f" — {world.format_attr(e, 'date')}"] for e in events])
    reports = [e for e in world.entities.values() if e.report]
    page.h2("Annual reports")
    page.ul([[(f"{e.name} Annual Report {e.report['year']}", report_url(e)), " (PDF)"] for e in reports[:50]])
    return page


# ---------------------------------------------------------------------------------------------------------------
# Annual report PDF

def report_paragraphs(world: World, e: Entity) -> tuple[str, list[str]]:
    """Title and paragraphs of a company's annual report (the text the PDF holds)."""
    rep = e.report
    assert rep is not None
    ceo = world.entities[e.rels["chief_executive"]]
    city = world.entities[rep["rd_centre_city"]]
    opened = fmt_date(dt.date.fromisoformat(rep["rd_centre_opened"]))
    title = f"{e.name} Annual Report {rep['year']}"
    paras = [
        f"Letter from the chief executive, {ceo.name}.",
        (f"{rep['year']} was a year of steady progress for {e.name}, a company active in the "
         f"{e.attrs['industry']} industry."),
        world.attr_sentence(e, "net_income_2024"),
        f"On {opened}, {e.name} opened a new research centre in {city.name}.",
        world.attr_sentence(e, "rd_centre_staff"),
        world.attr_sentence(e, "employees"),
        world.attr_sentence(e, "revenue"),
        "The board thanks employees, customers and shareholders for their continued trust.",
    ]
    return title, paras


def report_pdf(world: World, e: Entity) -> bytes:
    """The annual report as a small PDF (reportlab); deterministic bytes for a given world."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table

    title, paras = report_paragraphs(world, e)
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, title=title, author=e.name, subject="Annual report",
                            creator=SITE_NAME, invariant=1)
    styles = getSampleStyleSheet()
    story = [Paragraph(html.escape(title), styles["Title"]), Spacer(1, 12)]
    story += [Paragraph(html.escape(p), styles["BodyText"]) for p in paras]
    story += [Spacer(1, 12), Paragraph("Key figures", styles["Heading2"]),
              Table([["Employees", fmt_int(e.attrs["employees"])],
                     ["Revenue", world.format_attr(e, "revenue")],
                     ["Net income", world.format_attr(e, "net_income_2024")]])]
    doc.build(story)
    return buf.getvalue()


def report_text(world: World, e: Entity) -> str:
    title, paras = report_paragraphs(world, e)
    return title + "\n\n" + "\n\n".join(paras) + "\n"


__all__ = [
    "DATE_ATTRS",
    "OFFLINE_HOST",
    "REPORT_ATTRS",
    "SITE_URL",
    "Page",
    "build_backrefs",
    "entity_page",
    "home_page",
    "index_pages",
    "page_html",
    "page_text",
    "page_url",
    "report_pdf",
    "report_slug",
    "report_text",
    "report_url",
]
