"""The world question source of DuetQA (the embedded default): questions composed from the offline web's graph.

The offline world knows its facts and the evidence path of every question it composes
(:mod:`fathom.web.offline.questions`), so on one machine the paper's steps keep their meaning without a frontier
model:

* **generate** — a 1–3-hop question chained across entity pages (:func:`plan_world_questions`: hop level per item
  from the configured mix, deterministic and prefix-stable, so a resumed or enlarged run plans the same items);
* **obfuscate** — :func:`obfuscate_world_question` replaces the starting entity's name by an indirect descriptor
  built from its own facts (rule iii of method.md §1.3: "named entities become indirect descriptors"), softened
  where the world allows (a decade rather than a year) and kept only when it still names exactly one entity of
  its kind, never uses the relation the first hop follows and never mentions the answer; when no descriptor
  qualifies the question is kept as is. Which one happened is recorded (``entity_descriptor`` | ``none``);
* **verify** — the expert search policy (:class:`fathom.web.offline.expert.ExpertPolicy`) must reach the answer
  through the real tool server, and the no-search solver must fail (the runner does both).

Everything here is pure (world in, strings out).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Callable

from fathom.selfplay.text import normalize_answer
from fathom.web.offline.world import Entity, World, fmt_date

OBFUSCATION_KINDS = ("entity_descriptor", "none")


def _rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big"))


def hop_levels(n: int, mix: dict[int, float], seed: int) -> list[int]:
    """Hop count of item 0..n-1, drawn per item from (seed, index) only: item i's level does not depend on n."""
    levels = sorted(h for h, w in mix.items() if w > 0)
    weights = [mix[h] for h in levels]
    if not levels:
        raise ValueError("the hop mix needs at least one positive weight")
    return [_rng("duetqa-world-hops", seed, i).choices(levels, weights)[0] for i in range(n)]


def plan_world_questions(web, n: int, mix: dict[int, float], seed: int) -> list:
    """One `WorldQA` (or None when the world has no more questions of that level) per item index."""
    levels = hop_levels(n, mix, seed)
    need: dict[int, int] = {}
    for h in levels:
        need[h] = need.get(h, 0) + 1
    pools = {h: web.questions(k, hops=h, seed=seed) for h, k in need.items()}
    taken: dict[int, int] = {}
    out = []
    for h in levels:
        i = taken.get(h, 0)
        taken[h] = i + 1
        out.append(pools[h][i] if i < len(pools[h]) else None)
    return out


# --------------------------------------------------------------------------------------------------- obfuscation
def _decade(year: int) -> str:
    return f"the {year // 10 * 10}s"


def _century(year: int) -> str:
    c = year // 100 + 1
    suffix = "th" if 10 <= c % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(c % 10, "th")
    return f"the {c}{suffix} century"


def _year(iso_or_int) -> int:
    return int(str(iso_or_int)[:4])


def _a(noun_phrase: str) -> str:
    """The indefinite article for a noun phrase ("an agritech company", "a novel")."""
    return ("an " if noun_phrase[:1].lower() in "aeiou" else "a ") + noun_phrase


def _event_kind(e: Entity) -> str:
    return e.name.split(" ", 2)[2] if e.name.count(" ") >= 2 else "event"


# (facts used, phrase) per kind, softest first. A phrase function gets (world, entity) and returns the descriptor
# or raises KeyError when the entity lacks a fact.
Descriptor = tuple[tuple[str, ...], Callable[[World, Entity], str]]

DESCRIPTORS: dict[str, list[Descriptor]] = {
    "country": [
        (("currency",), lambda w, e: f"the country whose currency is the {e.attrs['currency']}"),
        (("founded", "capital"), lambda w, e: f"the country founded in {_decade(e.attrs['founded'])} whose capital "
                                              f"is {w.name(e.rels['capital'])}"),
    ],
    "city": [
        (("country", "founded"), lambda w, e: f"a city in {w.name(e.rels['country'])} founded in "
                                              f"{_century(e.attrs['founded'])}"),
        (("country", "founded"), lambda w, e: f"a city in {w.name(e.rels['country'])} founded in {e.attrs['founded']}"),
        (("mayor",), lambda w, e: f"the city whose mayor is {w.name(e.rels['mayor'])}"),
    ],
    "company": [
        (("industry", "founded"), lambda w, e: f"{_a(e.attrs['industry'])} company founded in "
                                               f"{_decade(e.attrs['founded'])}"),
        (("industry", "founded"), lambda w, e: f"{_a(e.attrs['industry'])} company founded in {e.attrs['founded']}"),
        (("industry", "headquarters"), lambda w, e: f"{_a(e.attrs['industry'])} company headquartered in "
                                                    f"{w.name(e.rels['headquarters'])}"),
        (("founder",), lambda w, e: f"the company founded by {w.name(e.rels['founder'])}"),
    ],
    "university": [
        (("location", "founded"), lambda w, e: f"a university in {w.name(e.rels['location'])} founded in "
                                               f"{_century(e.attrs['founded'])}"),
        (("location", "founded"), lambda w, e: f"a university in {w.name(e.rels['location'])} founded in "
                                               f"{e.attrs['founded']}"),
        (("rector",), lambda w, e: f"the university whose rector is {w.name(e.rels['rector'])}"),
    ],
    "person": [
        (("occupation", "birthplace", "born"), lambda w, e: f"{_a(e.attrs['occupation'])} born in "
                                                           f"{w.name(e.rels['birthplace'])} in "
                                                           f"{_decade(_year(e.attrs['born']))}"),
        (("occupation", "birthplace", "born"), lambda w, e: f"{_a(e.attrs['occupation'])} born in "
                                                           f"{w.name(e.rels['birthplace'])} in {_year(e.attrs['born'])}"),
        (("occupation", "born"), lambda w, e: f"the {e.attrs['occupation']} born on "
                                              f"{fmt_date(dt.date.fromisoformat(e.attrs['born']))}"),
    ],
    "work": [
        (("genre", "author"), lambda w, e: f"{_a(e.attrs['genre'])} by {w.name(e.rels['author'])}"),
        (("genre", "author", "published"), lambda w, e: f"{_a(e.attrs['genre'])} by {w.name(e.rels['author'])} "
                                                        f"published in {_year(e.attrs['published'])}"),
        (("genre", "publisher", "published"), lambda w, e: f"{_a(e.attrs['genre'])} published by "
                                                           f"{w.name(e.rels['publisher'])} in "
                                                           f"{_year(e.attrs['published'])}"),
    ],
    "event": [
        (("venue", "date"), lambda w, e: f"{_a(_event_kind(e).lower())} held in {w.name(e.rels['venue'])} in "
                                         f"{_year(e.attrs['date'])}"),
        (("organiser", "date"), lambda w, e: f"{_a(_event_kind(e).lower())} organised by "
                                             f"{w.name(e.rels['organiser'])} in {_year(e.attrs['date'])}"),
        (("winner",), lambda w, e: f"the {_event_kind(e).lower()} won by {w.name(e.rels['winner'])}"),
    ],
}


def describe_entity(world: World, e: Entity, *, exclude: set[str] = frozenset(), forbid: list[str] = ()
                    ) -> str | None:
    """The softest descriptor of `e` that names exactly one entity of its kind, uses none of the facts in
    `exclude` and contains none of the strings in `forbid` (normalised); None when there is none."""
    forbidden = [normalize_answer(f) for f in forbid if normalize_answer(f)]
    peers = [x for x in world.entities.values() if x.kind == e.kind]
    for facts, phrase in DESCRIPTORS.get(e.kind, []):
        if exclude & set(facts):
            continue
        try:
            text = phrase(world, e)
        except (KeyError, ValueError):
            continue
        norm = normalize_answer(text)
        if any(f" {f} " in f" {norm} " for f in forbidden):
            continue
        same = 0
        for x in peers:
            try:
                same += phrase(world, x) == text
            except (KeyError, ValueError):
                continue
        if same == 1:
            return text
    return None


def obfuscate_world_question(world: World, qa) -> tuple[str, str, str | None]:
    """(question, kind, descriptor): the starting entity's name replaced by a unique indirect descriptor
    (``entity_descriptor``), or the question unchanged (``none``) when no descriptor qualifies."""
    first = qa.hops[0]
    start = next((e for e in world.entities.values() if e.name == first["subject"]), None)
    if start is None or qa.question.count(start.name) != 1:
        return qa.question, "none", None
    # the path's entities and the answer must stay hidden; the first hop's relation is what the question asks
    forbid = [qa.answer] + [h["object"] for h in qa.hops]
    desc = describe_entity(world, start, exclude={first["relation"]}, forbid=forbid)
    if desc is None:
        return qa.question, "none", None
    return qa.question.replace(start.name, desc), "entity_descriptor", desc
