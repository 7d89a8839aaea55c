"""The world model behind the offline web: fictional entities, typed relations, dated facts, numbers.

Everything is derived from one integer seed through `random.Random`, so a world is reproducible bit for bit.
Names are built from syllables so that no model can know the answers without reading the site.

Consistency rules the generator keeps (tests check them):

* every relation is functional (a subject has one object), so a relation phrase names exactly one entity;
* a company's founder was 22–55 years old at its founding; its chief executive works for it;
* a country's population exceeds the sum of its cities'; its capital is one of its cities;
* a work's author was at least 18 when it came out; an event's winner is a person born before it.

This module is pure: it builds the `World` in memory and knows how to state each fact in one sentence.
Rendering to HTML/PDF lives in `render.py`, questions in `questions.py`.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from dataclasses import dataclass, field
from typing import Any

WORLD_VERSION = 1
CUTOFF = dt.date(2024, 1, 1)  # "recent" facts are dated after this (beyond small models' training data)

_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr",
           "tr", "th", "sh", "st", "vel", "qu", "sk", "fr", "pl", "cl", "y"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ou", "ei", "y"]
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "m", "x", "nd", "rk", "st"]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
INDUSTRIES = ["shipbuilding", "textiles", "optics", "software", "aerospace", "pharmaceuticals", "publishing",
              "agritech", "robotics", "mining", "logistics", "ceramics", "energy storage", "cartography"]
OCCUPATIONS = ["engineer", "novelist", "economist", "architect", "chemist", "historian", "cartographer",
               "composer", "physician", "linguist", "astronomer", "entrepreneur", "sculptor", "diplomat"]
GENRES = ["novel", "memoir", "poetry collection", "history", "field guide", "treatise", "essay collection"]
WORK_NOUNS = ["Orchard", "Lantern", "Harbour", "Cartographer", "Winter", "Atlas", "Tide", "Meridian", "Archive",
              "Glasshouse", "Compass", "Foundry", "Observatory", "Ledger", "Canal", "Tapestry"]
WORK_ADJ = ["Silent", "Hollow", "Last", "Amber", "Northern", "Distant", "Quiet", "Iron", "Painted", "Sunken",
            "Second", "Burning", "Patient", "Invisible"]
EVENT_KINDS = ["Regatta", "Summit", "Book Fair", "Symposium", "Marathon", "Film Festival", "Chess Open",
               "Robotics Challenge", "Music Prize", "Science Fair"]
COMPANY_SUFFIX = ["Industries", "Labs", "Dynamics", "Holdings", "Works", "Systems", "Press", "Foundry",
                  "Instruments", "Logistics"]
CITY_SUFFIX = ["", "", "", "port", "ford", "haven", "holt", "mere", "gard", "wick"]
COUNTRY_SUFFIX = ["ia", "ria", "land", "or", "enne", "istan", "ava"]


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_date(d: dt.date) -> str:
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def slugify(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_")


@dataclass
class Entity:
    id: str  # slug, unique; the page is /wiki/<id>
    kind: str  # country | city | company | university | person | work | event
    name: str
    attrs: dict[str, Any] = field(default_factory=dict)  # raw values (int, str, date iso)
    rels: dict[str, str] = field(default_factory=dict)  # relation -> entity id (functional)
    rel_dates: dict[str, str] = field(default_factory=dict)  # relation -> iso date it took effect
    report: dict[str, Any] | None = None  # annual-report figures (companies with a PDF)

    def to_json(self) -> dict:
        return {"id": self.id, "kind": self.kind, "name": self.name, "attrs": self.attrs, "rels": self.rels,
                "rel_dates": self.rel_dates, "report": self.report}

    @classmethod
    def from_json(cls, d: dict) -> Entity:
        return cls(id=d["id"], kind=d["kind"], name=d["name"], attrs=d.get("attrs", {}), rels=d.get("rels", {}),
                   rel_dates=d.get("rel_dates", {}), report=d.get("report"))


# ---------------------------------------------------------------------------------------------------------------
# Relations and attributes: how each is phrased (a sentence on the page, a noun phrase and a question in questions)

@dataclass(frozen=True)
class RelSpec:
    subject_kind: tuple[str, ...]
    sentence: str  # {s} subject name, {o} object name, {d} date
    np: str  # noun phrase naming the object from the subject: "the founder of {s}"
    question: str  # question asking for the object
    label: str  # infobox label


RELATIONS: dict[str, RelSpec] = {
    "country": RelSpec(("city",), "{s} is a city in {o}.", "the country in which {s} lies",
                       "In which country is {s}?", "Country"),
    "capital": RelSpec(("country",), "The capital of {s} is {o}.", "the capital of {s}",
                       "What is the capital of {s}?", "Capital"),
    "head_of_state": RelSpec(("country",), "{o} has been head of state of {s} since {d}.",
                             "the head of state of {s}", "Who is the head of state of {s}?", "Head of state"),
    "mayor": RelSpec(("city",), "{o} has been mayor of {s} since {d}.", "the mayor of {s}",
                     "Who is the mayor of {s}?", "Mayor"),
    "founder": RelSpec(("company",), "{s} was founded by {o}.", "the founder of {s}", "Who founded {s}?",
                       "Founder"),
    "headquarters": RelSpec(("company",), "{s} is headquartered in {o}.", "the city where {s} is headquartered",
                            "In which city is {s} headquartered?", "Headquarters"),
    "chief_executive": RelSpec(("company",), "{o} was appointed chief executive of {s} on {d}.",
                               "the chief executive of {s}", "Who is the chief executive of {s}?",
                               "Chief executive"),
    "location": RelSpec(("university",), "{s} is located in {o}.", "the city where {s} is located",
                        "In which city is {s} located?", "Location"),
    "rector": RelSpec(("university",), "{o} became rector of {s} on {d}.", "the rector of {s}",
                      "Who is the rector of {s}?", "Rector"),
    "birthplace": RelSpec(("person",), "{s} was born in {o}.", "the birthplace of {s}",
                          "In which city was {s} born?", "Born in"),
    "employer": RelSpec(("person",), "{s} works for {o}.", "the employer of {s}",
                        "Which organisation employs {s}?", "Employer"),
    "alma_mater": RelSpec(("person",), "{s} studied at {o}.", "the university where {s} studied",
                          "At which university did {s} study?", "Alma mater"),
    "author": RelSpec(("work",), "{s} was written by {o}.", "the author of {s}", "Who wrote {s}?", "Author"),
    "publisher": RelSpec(("work",), "{s} was published by {o}.", "the publisher of {s}",
                         "Which company published {s}?", "Publisher"),
    "venue": RelSpec(("event",), "{s} was held in {o}.", "the host city of {s}", "In which city was {s} held?",
                     "Venue"),
    "organiser": RelSpec(("event",), "{s} was organised by {o}.", "the organiser of {s}",
                         "Which organisation organised {s}?", "Organiser"),
    "winner": RelSpec(("event",), "{s} was won by {o}.", "the winner of {s}", "Who won {s}?", "Winner"),
}


@dataclass(frozen=True)
class AttrSpec:
    sentence: str  # {s} subject, {v} formatted value
    question: str  # {s} noun phrase
    label: str
    unit: str = ""  # appended to the formatted number ("people", "km²"...), part of the answer


ATTRIBUTES: dict[str, AttrSpec] = {
    "population": AttrSpec("{s} has a population of {v}.", "What is the population of {s}?", "Population"),
    "area_km2": AttrSpec("{s} covers an area of {v} square kilometres.", "What is the area, in square kilometres, of {s}?",
                         "Area (km²)"),
    "founded": AttrSpec("{s} was founded in {v}.", "In what year was {s} founded?", "Founded"),
    "elevation_m": AttrSpec("{s} lies at an elevation of {v} metres.", "What is the elevation, in metres, of {s}?",
                            "Elevation (m)"),
    "currency": AttrSpec("The currency of {s} is the {v}.", "What is the currency of {s}?", "Currency"),
    "industry": AttrSpec("{s} operates in the {v} industry.", "In which industry does {s} operate?", "Industry"),
    "employees": AttrSpec("{s} employs {v} people.", "How many people does {s} employ?", "Employees"),
    "revenue": AttrSpec("{s} reported annual revenue of {v}.", "What annual revenue did {s} report?", "Revenue"),
    "students": AttrSpec("{s} enrols {v} students.", "How many students does {s} enrol?", "Students"),
    "born": AttrSpec("{s} was born on {v}.", "On what date was {s} born?", "Born"),
    "occupation": AttrSpec("{s} is by profession: {v}.", "What is the profession of {s}?", "Occupation"),
    "genre": AttrSpec("{s} belongs to the genre: {v}.", "What kind of work is {s}?", "Genre"),
    "published": AttrSpec("{s} was first published on {v}.", "On what date was {s} first published?",
                          "Published"),
    "pages": AttrSpec("{s} runs to {v} pages.", "How many pages does {s} have?", "Pages"),
    "copies_sold": AttrSpec("{s} has sold {v} copies.", "How many copies has {s} sold?", "Copies sold"),
    "date": AttrSpec("{s} took place on {v}.", "On what date did {s} take place?", "Date"),
    "attendance": AttrSpec("{s} drew an attendance of {v}.", "How many people attended {s}?", "Attendance"),
    # figures that appear only in a company's annual report (PDF)
    "net_income_2024": AttrSpec("In 2024, {s} recorded a net income of {v}.",
                                "What net income did {s} record in 2024, according to its annual report?",
                                "Net income 2024"),
    "rd_centre_staff": AttrSpec("The new research centre of {s} employs {v} staff.",
                                "How many staff does the new research centre of {s} employ?", "Research centre staff"),
}

# attributes whose value is a date (stored iso) / an int that prints with thousands separators / a plain year
DATE_ATTRS = {"born", "published", "date"}
YEAR_ATTRS = {"founded"}
REPORT_ATTRS = {"net_income_2024", "rd_centre_staff"}


@dataclass
class World:
    seed: int
    entities: dict[str, Entity]
    currencies: dict[str, str]  # country id -> currency name

    def by_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.kind == kind]

    def name(self, eid: str) -> str:
        return self.entities[eid].name

    def country_of(self, e: Entity) -> Entity | None:
        city = None
        if e.kind == "city":
            city = e
        elif "headquarters" in e.rels:
            city = self.entities[e.rels["headquarters"]]
        elif "location" in e.rels:
            city = self.entities[e.rels["location"]]
        elif "venue" in e.rels:
            city = self.entities[e.rels["venue"]]
        elif "birthplace" in e.rels:
            city = self.entities[e.rels["birthplace"]]
        if e.kind == "country":
            return e
        return self.entities[city.rels["country"]] if city is not None else None

    def format_attr(self, e: Entity, attr: str) -> str:
        """The exact string the site prints for an attribute (and the answer to a question about it)."""
        value = e.report[attr] if attr in REPORT_ATTRS else e.attrs[attr]
        if attr in DATE_ATTRS:
            return fmt_date(dt.date.fromisoformat(value))
        if attr in YEAR_ATTRS:
            return str(value)
        if attr in ("revenue", "net_income_2024"):
            country = self.country_of(e)
            cur = self.currencies[country.id] if country else "crowns"
            return f"{value / 10:.1f} million {cur}s"
        if isinstance(value, int):
            return fmt_int(value)
        return str(value)

    def rel_date(self, e: Entity, rel: str) -> str | None:
        iso = e.rel_dates.get(rel)
        return fmt_date(dt.date.fromisoformat(iso)) if iso else None

    def rel_sentence(self, e: Entity, rel: str) -> str:
        spec = RELATIONS[rel]
        return spec.sentence.format(s=e.name, o=self.name(e.rels[rel]), d=self.rel_date(e, rel) or "")

    def attr_sentence(self, e: Entity, attr: str) -> str:
        return ATTRIBUTES[attr].sentence.format(s=e.name, v=self.format_attr(e, attr))

    def to_json(self) -> dict:
        return {"version": WORLD_VERSION, "seed": self.seed, "currencies": self.currencies,
                "entities": [e.to_json() for e in self.entities.values()]}

    @classmethod
    def from_json(cls, d: dict) -> World:
        ents = [Entity.from_json(x) for x in d["entities"]]
        return cls(seed=d["seed"], entities={e.id: e for e in ents}, currencies=d["currencies"])


# ---------------------------------------------------------------------------------------------------------------
# Generation

class _Names:
    """Unique fictional names from syllables."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self, min_syl: int = 2, max_syl: int = 3) -> str:
        r = self.rng
        syl = "".join(r.choice(_ONSETS) + r.choice(_VOWELS) for _ in range(r.randint(min_syl, max_syl)))
        return (syl + r.choice(_CODAS)).capitalize()

    def unique(self, make) -> str:
        for _ in range(1000):
            name = make()
            if name not in self.used and slugify(name) not in self.used:
                self.used.add(name)
                self.used.add(slugify(name))
                return name
        raise RuntimeError("name space exhausted")  # pragma: no cover - 30^3 x 10^3 names


def _rand_date(r: random.Random, start: dt.date, end: dt.date) -> dt.date:
    return start + dt.timedelta(days=r.randint(0, (end - start).days))


def _appointment_date(r: random.Random) -> dt.date:
    """When someone took up a post: mostly recent (after CUTOFF), sometimes years before."""
    if r.random() < 0.65:
        return _rand_date(r, CUTOFF, dt.date(2026, 6, 30))
    return _rand_date(r, dt.date(2012, 1, 1), CUTOFF - dt.timedelta(days=1))


def plan_counts(n_pages: int) -> dict[str, int]:
    """How many entities of each kind make up `n_pages` entity pages (>= 12)."""
    n = max(12, n_pages)
    counts = {
        "country": max(2, n // 40),
        "city": max(3, n * 12 // 100),
        "university": max(1, n * 4 // 100),
        "company": max(2, n * 10 // 100),
        "work": max(1, n * 12 // 100),
        "event": max(1, n * 12 // 100),
    }
    counts["person"] = n - sum(counts.values())
    return counts


def generate_world(seed: int, n_pages: int) -> World:
    """Build a consistent world of `n_pages` entities (one page each) from `seed`."""
    r = random.Random(f"fathom-offline-web/{WORLD_VERSION}/{seed}")
    names = _Names(r)
    counts = plan_counts(n_pages)
    ents: dict[str, Entity] = {}

    def add(kind: str, name: str) -> Entity:
        e = Entity(id=slugify(name), kind=kind, name=name)
        ents[e.id] = e
        return e

    # countries and their currencies
    countries = [add("country", names.unique(lambda: names.word(2, 2) + r.choice(COUNTRY_SUFFIX)))
                 for _ in range(counts["country"])]
    currencies = {}
    for c in countries:
        currencies[c.id] = f"{c.name.removesuffix('a')}an {r.choice(['crown', 'mark', 'florin', 'thaler', 'dinar', 'lira'])}"
        c.attrs["currency"] = currencies[c.id]
        c.attrs["area_km2"] = r.randint(20_000, 900_000)
        c.attrs["founded"] = r.randint(1650, 1990)

    # cities: each country gets at least one, first is the capital
    cities = []
    for i in range(counts["city"]):
        country = countries[i % len(countries)]
        city = add("city", names.unique(lambda: names.word(2, 3) + r.choice(CITY_SUFFIX)))
        city.rels["country"] = country.id
        city.attrs["population"] = int(r.lognormvariate(11.5, 1.0)) + 2_000
        city.attrs["founded"] = r.randint(900, 1900)
        city.attrs["elevation_m"] = r.randint(0, 2400)
        city.attrs["area_km2"] = r.randint(12, 1800)
        cities.append(city)
        if "capital" not in country.rels:
            country.rels["capital"] = city.id
    for c in countries:
        pop = sum(x.attrs["population"] for x in cities if x.rels["country"] == c.id)
        c.attrs["population"] = pop + r.randint(pop // 2 + 1, pop * 3 + 10)

    # people (birth dates 1930..2004)
    people = []
    for _ in range(counts["person"]):
        p = add("person", names.unique(lambda: f"{names.word(1, 2)} {names.word(2, 3)}"))
        p.attrs["born"] = _rand_date(r, dt.date(1930, 1, 1), dt.date(2004, 12, 31)).isoformat()
        p.attrs["occupation"] = r.choice(OCCUPATIONS)
        p.rels["birthplace"] = r.choice(cities).id
        people.append(p)

    def born_year(p: Entity) -> int:
        return int(p.attrs["born"][:4])

    # universities
    unis = []
    for _ in range(counts["university"]):
        city = r.choice(cities)
        # named after no city: "In which city is X located?" must need the page
        name = names.unique(lambda: f"{names.word(2, 3)} {r.choice(['University', 'Institute of Technology'])}")
        u = add("university", name)
        u.rels["location"] = city.id
        u.attrs["founded"] = r.randint(1400, 1995)
        u.attrs["students"] = r.randint(800, 60_000)
        unis.append(u)
    for p in people:
        if born_year(p) <= 1998 and r.random() < 0.8:
            p.rels["alma_mater"] = r.choice(unis).id

    # companies: founder first, founding year from the founder's life
    companies = []
    founders = [p for p in people if born_year(p) <= 1995] or people
    for _ in range(counts["company"]):
        c = add("company", names.unique(lambda: f"{names.word(2, 3)} {r.choice(COMPANY_SUFFIX)}"))
        founder = r.choice(founders)
        c.rels["founder"] = founder.id
        c.attrs["founded"] = min(2023, born_year(founder) + r.randint(22, 55))
        c.rels["headquarters"] = r.choice(cities).id
        c.attrs["industry"] = r.choice(INDUSTRIES)
        c.attrs["employees"] = int(r.lognormvariate(6.5, 1.4)) + 5
        c.attrs["revenue"] = max(3, int(c.attrs["employees"] * r.uniform(0.8, 3.0)))  # tenths of a million
        companies.append(c)
    orgs = companies + unis

    # employment: most adults work somewhere; executives are chosen among employees
    for p in people:
        if born_year(p) <= 2002 and r.random() < 0.85:
            p.rels["employer"] = r.choice(orgs).id
    staff: dict[str, list[Entity]] = {}
    for p in people:
        if "employer" in p.rels:
            staff.setdefault(p.rels["employer"], []).append(p)
    taken: set[str] = set()  # one top post per person keeps the relation phrases unambiguous both ways
    elders = [p for p in people if born_year(p) <= 1990]
    r.shuffle(elders)
    elders_by_cutoff: dict[int, list[Entity]] = {}

    def free_elder(max_year: int) -> Entity:
        """A person born by `max_year` holding no top post yet (any person if the world is too small)."""
        if max_year not in elders_by_cutoff:
            elders_by_cutoff[max_year] = [p for p in elders if born_year(p) <= max_year]
        pool = elders_by_cutoff[max_year]
        while pool and pool[-1].id in taken:
            pool.pop()
        return pool[-1] if pool else r.choice(people)

    def pick_leader(org: Entity) -> Entity:
        pool = [p for p in staff.get(org.id, []) if p.id not in taken and born_year(p) <= 1990]
        if pool:
            leader = r.choice(pool)
        else:
            leader = free_elder(1990)
            old = leader.rels.get("employer")
            if old and leader in staff.get(old, []):
                staff[old].remove(leader)
            leader.rels["employer"] = org.id
            staff.setdefault(org.id, []).append(leader)
        taken.add(leader.id)
        return leader

    for c in companies:
        c.rels["chief_executive"] = pick_leader(c).id
        c.rel_dates["chief_executive"] = _appointment_date(r).isoformat()
    for u in unis:
        u.rels["rector"] = pick_leader(u).id
        u.rel_dates["rector"] = _appointment_date(r).isoformat()
    for c in countries:
        hos = free_elder(1980)
        taken.add(hos.id)
        c.rels["head_of_state"] = hos.id
        c.rel_dates["head_of_state"] = _appointment_date(r).isoformat()
    for city in cities:
        if r.random() < 0.7:
            mayor = free_elder(1990)
            taken.add(mayor.id)
            city.rels["mayor"] = mayor.id
            city.rel_dates["mayor"] = _appointment_date(r).isoformat()

    # works: author at least 18 at publication; many published after 2024
    publishers = [c for c in companies if c.attrs["industry"] == "publishing"] or companies
    writers = [p for p in people if born_year(p) <= 2000] or people
    titles = [
        lambda: f"The {r.choice(WORK_ADJ)} {r.choice(WORK_NOUNS)} of {names.word(2, 3)}",
        lambda: f"{names.word(2, 3)} and the {r.choice(WORK_NOUNS)}",
        lambda: f"A {r.choice(WORK_ADJ)} {r.choice(WORK_NOUNS)} in {names.word(2, 3)}",
    ]
    for _ in range(counts["work"]):
        w = add("work", names.unique(lambda: r.choice(titles)()))
        author = r.choice(writers)
        w.rels["author"] = author.id
        earliest = dt.date(born_year(author) + 18, 1, 1)
        start = max(earliest, dt.date(2024, 1, 2) if r.random() < 0.6 else dt.date(1960, 1, 1))
        w.attrs["published"] = _rand_date(r, start, max(start, dt.date(2026, 9, 30))).isoformat()
        w.rels["publisher"] = r.choice(publishers).id
        w.attrs["genre"] = r.choice(GENRES)
        w.attrs["pages"] = r.randint(80, 960)
        w.attrs["copies_sold"] = int(r.lognormvariate(9.5, 1.3)) + 300

    # events: mostly 2024-2026; the winner was at least 12 on the day
    for _ in range(counts["event"]):
        venue = r.choice(cities)
        day = _rand_date(r, dt.date(2024, 1, 10) if r.random() < 0.8 else dt.date(2005, 1, 1), dt.date(2026, 10, 31))
        # the name must not give the venue away (questions ask for it)
        ev = add("event", names.unique(lambda year=day.year: f"{year} {names.word(2, 2)} {r.choice(EVENT_KINDS)}"))
        ev.attrs["date"] = day.isoformat()
        ev.rels["venue"] = venue.id
        ev.rels["organiser"] = r.choice(orgs).id
        ev.attrs["attendance"] = int(r.lognormvariate(8.0, 1.0)) + 40
        winner = r.choice(people)
        while born_year(winner) > day.year - 12:  # people are born by 2004, so this ends quickly
            winner = r.choice(people)
        ev.rels["winner"] = winner.id

    # annual reports (PDF) for a handful of companies: figures that appear nowhere else on the site
    n_reports = max(1, min(len(companies) // 4, 100))
    for c in r.sample(companies, n_reports):
        c.report = {
            "year": 2024,
            "net_income_2024": max(1, int(c.attrs["revenue"] * r.uniform(0.03, 0.25))),
            "rd_centre_staff": r.randint(12, 900),
            "rd_centre_city": r.choice(cities).id,
            "rd_centre_opened": _rand_date(r, dt.date(2024, 2, 1), dt.date(2024, 12, 15)).isoformat(),
        }
    return World(seed=seed, entities=ents, currencies=currencies)
