"""Ground truth of an offline world: its facts, and single- or multi-hop questions chained across pages.

A question with ``hops=h`` starts at a named entity, follows ``h-1`` functional relations (each on the page of
the entity it leaves) and asks for one attribute or relation of the entity it reaches, e.g. (3 hops)

    "In which city was the chief executive of the publisher of The Amber Atlas of Kreno born?"

Every hop records the sentence that states it, the page it is on and its date (when the fact has one), so a
grader can check both the answer and the evidence path. Names are fictional: the questions cannot be answered
without reading the site.
"""

from __future__ import annotations

import hashlib
import random

from pydantic import BaseModel, Field

from fathom.web.offline.render import page_url, report_url
from fathom.web.offline.world import ATTRIBUTES, DATE_ATTRS, RELATIONS, REPORT_ATTRS, Entity, World


class WorldQA(BaseModel):
    """One ground-truth question about the offline web."""

    id: str = Field(description="Stable id (hash of the question text).")
    question: str
    answer: str = Field(description="Exactly as printed on the site (numbers with thousands separators).")
    hops: list[dict] = Field(description="Evidence path, in order: {fact, url, date, subject, relation, object}.")


def _fact_date(world: World, e: Entity, relation: str) -> str | None:
    if relation in RELATIONS:
        return e.rel_dates.get(relation)
    if relation in DATE_ATTRS:
        return e.attrs[relation]
    if relation == "rd_centre_staff" and e.report:
        return e.report["rd_centre_opened"]
    if relation == "net_income_2024":
        return "2024-12-31"
    return None


def fact_of(world: World, e: Entity, relation: str) -> dict:
    """The ground-truth record of one attribute or relation of `e` (the page that states it, its sentence)."""
    if relation in RELATIONS:
        obj = world.name(e.rels[relation])
        text = world.rel_sentence(e, relation)
    else:
        obj = world.format_attr(e, relation)
        text = world.attr_sentence(e, relation)
    url = report_url(e) if relation in REPORT_ATTRS else page_url(e.id)
    return {"subject": e.name, "relation": relation, "object": obj, "date": _fact_date(world, e, relation),
            "url": url, "fact": text, "subject_id": e.id,
            "object_id": e.rels.get(relation) if relation in RELATIONS else None}


def entity_facts(world: World, e: Entity) -> list[dict]:
    out = [fact_of(world, e, a) for a in e.attrs]
    out += [fact_of(world, e, r) for r in e.rels]
    if e.report:
        out += [fact_of(world, e, a) for a in sorted(REPORT_ATTRS)]
    return out


def _final_options(e: Entity, visited: set[str]) -> list[str]:
    opts = [a for a in e.attrs if a in ATTRIBUTES]
    if e.report:
        opts += sorted(REPORT_ATTRS)
    opts += [r for r, o in e.rels.items() if o not in visited]
    return opts


def make_questions(world: World, n: int, *, hops: int = 2, seed: int = 0, max_attempts: int | None = None
                   ) -> list[WorldQA]:
    """`n` distinct questions of exactly `hops` facts each (fewer if the world is too small to have them)."""
    if hops < 1:
        raise ValueError("hops must be >= 1")
    r = random.Random(f"fathom-offline-questions/{world.seed}/{hops}/{seed}")
    ents = list(world.entities.values())
    out: list[WorldQA] = []
    seen: set[str] = set()
    attempts = max_attempts or max(200, 60 * n)
    for _ in range(attempts):
        if len(out) >= n:
            break
        start = r.choice(ents)
        cur, visited, path = start, {start.id}, []
        ok = True
        for _h in range(hops - 1):
            rels = [rel for rel, o in cur.rels.items() if o not in visited]
            if not rels:
                ok = False
                break
            rel = r.choice(rels)
            path.append((cur, rel))
            cur = world.entities[cur.rels[rel]]
            visited.add(cur.id)
        if not ok:
            continue
        finals = _final_options(cur, visited)
        if not finals:
            continue
        final = r.choice(finals)
        np = start.name
        for _e, rel in path:
            np = RELATIONS[rel].np.format(s=np)
        template = RELATIONS[final].question if final in RELATIONS else ATTRIBUTES[final].question
        question = template.format(s=np)
        if question in seen:
            continue
        seen.add(question)
        hop_facts = [fact_of(world, e, rel) for e, rel in path] + [fact_of(world, cur, final)]
        qid = "atlas-" + hashlib.sha1(f"{world.seed}|{question}".encode()).hexdigest()[:12]
        out.append(WorldQA(id=qid, question=question, answer=hop_facts[-1]["object"],
                           hops=[{k: f[k] for k in ("fact", "url", "date", "subject", "relation", "object")}
                                 for f in hop_facts]))
    return out
