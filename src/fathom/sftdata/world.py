"""The world source of the DeepResearch-SFT corpus (the embedded default).

* **question** — an open-ended research brief about one entity of the offline world and the entities it links to
  (:func:`plan_world_report`), e.g. "Write a research brief on Zorb Labs: its profile and its links to its
  founder, its headquarters and its chief executive.";
* **trace** — the expert search policy gathers the evidence through the real tool server: it is registered with a
  path of facts about the entity and about each related entity (search the subject, ``query_url`` its page for
  the fact), so the trace holds real search hits and real page readings;
* **teacher** — :func:`world_report` writes ``<think>plan</think>report`` deterministically from the trace: a claim
  is a world fact whose sentence appears **in the tool response of the page it is cited to**, so every claim is
  cited to a URL of the trace and nothing unread is claimed. The plan decomposes the question into sections
  S1..Sn (the entity, then one per related entity), maps each evidence item to its section, and states the insight
  strategy; the report has the Executive Summary, Main Body, S1..Sn, Recommendations, Conclusion and Sources used
  that the corpus filters (:mod:`fathom.sftdata.filters`) require.

Pure functions (world and trajectory in, text out).
"""

from __future__ import annotations

import hashlib
import random

from pydantic import BaseModel

from fathom.web.offline.questions import fact_of
from fathom.web.offline.world import ATTRIBUTES, RELATIONS, REPORT_ATTRS, Entity, World

WORLD_TEACHER = "world-report-teacher"
KIND_NOUN = {"country": "country", "city": "city", "company": "company", "university": "university",
             "person": "person", "work": "work", "event": "event"}


class WorldReportPlan(BaseModel):
    """One world report item: the entity, the question and the evidence path the expert walks."""

    entity_id: str
    question: str
    hops: list[dict]  # fact records (subject, relation, object, fact, url, ...) in visiting order
    related: list[str]  # relation names followed to related entities (their section order)


def _rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "big"))


def _label(rel: str) -> str:
    return rel.replace("_", " ")


def _infobox_row(f: dict) -> str:
    """How the page's infobox states a fact: ``| Label | value |``."""
    spec = RELATIONS.get(f["relation"]) or ATTRIBUTES.get(f["relation"])
    return f"| {spec.label} | {f['object']} |" if spec else "\0"


def plan_world_report(world: World, index: int, seed: int, *, max_related: int = 2, attrs_per_entity: int = 2
                      ) -> WorldReportPlan:
    """The item `index` of run `seed`: an entity with at least two relations, up to `attrs_per_entity` of its
    attributes, up to `max_related` relations (each followed to one attribute of the related entity)."""
    ents = sorted((e for e in world.entities.values() if len(e.rels) >= 2), key=lambda e: e.id)
    r = _rng("sft-world", world.seed, seed, index)
    e = r.choice(ents)
    attrs = [a for a in e.attrs if a in ATTRIBUTES]
    rels = sorted(e.rels)
    r.shuffle(attrs)
    r.shuffle(rels)
    rels = rels[:max_related]
    hops = [fact_of(world, e, a) for a in sorted(attrs[:attrs_per_entity])]
    hops += [fact_of(world, e, rel) for rel in rels]
    for rel in rels:
        other = world.entities[e.rels[rel]]
        other_attrs = sorted(a for a in other.attrs if a in ATTRIBUTES and a not in REPORT_ATTRS)
        if other_attrs:
            hops.append(fact_of(world, other, r.choice(other_attrs)))
    links = ", ".join(f"its {_label(rel)}" for rel in rels[:-1])
    links = f"{links} and its {_label(rels[-1])}" if links else f"its {_label(rels[-1])}"
    question = (f"Write a research brief on {e.name}, a {KIND_NOUN.get(e.kind, e.kind)} in the Atlas "
                f"encyclopedia: its profile and its links to {links}.")
    return WorldReportPlan(entity_id=e.id, question=question, hops=hops, related=rels)


# --------------------------------------------------------------------------------------------------- the teacher
def readings(traj) -> list[tuple[str, str]]:
    """``(url, tool response)`` of every page the agent read (``query_url`` / ``visit`` calls), in order."""
    out = []
    for rec in traj.tool_calls:
        url = rec.arguments.get("url") if rec.name in ("query_url", "visit", "read_url") else None
        if isinstance(url, str) and rec.result:
            out.append((url, rec.result))
    return out


def trace_claims(world: World, traj) -> list[dict]:
    """World facts stated in the trace: a fact counts when its sentence — or its infobox row
    (``| Occupation | engineer |``) — appears in the reading of its own page (cited to that page's URL); the claim is
    the fact's sentence. Deduplicated, in reading order."""
    from fathom.synth import normalize_url
    from fathom.web.offline.questions import entity_facts

    by_url: dict[str, list[dict]] = {}
    for ent in world.entities.values():
        for f in entity_facts(world, ent):
            by_url.setdefault(normalize_url(f["url"]), []).append(f)
    seen, out = set(), []
    for url, text in readings(traj):
        flat = " ".join(text.split())
        for f in by_url.get(normalize_url(url), []):
            if (f["fact"] in flat or _infobox_row(f) in flat) and f["fact"] not in seen:
                seen.add(f["fact"])
                out.append({**f, "cite": url})
    return out


def _sentence(f: dict) -> str:
    return f"{f['fact'].rstrip('.')}. [{f['cite']}]"


def _section_claims(claims: list[dict], subject_id: str, planned: set[str], cap: int | None) -> list[dict]:
    """The claims about one entity, the planned facts first (reading order kept within each group), at most `cap`."""
    own = [c for c in claims if c["subject_id"] == subject_id]
    if cap is None:
        return own
    keep = {id(c) for c in sorted(own, key=lambda c: c["fact"] not in planned)[:cap]}
    return [c for c in own if id(c) in keep]


def world_report(world: World, plan: WorldReportPlan, traj, *, claims_per_section: int | None = None) -> str:
    """``<think>plan</think>report`` for `plan`'s question, built only from claims found in `traj`; with
    `claims_per_section`, each section states at most that many (the planned facts first) — a shorter report, as the
    embedded synthesizer's corpus uses to keep CPU training rows short."""
    e = world.entities[plan.entity_id]
    planned = {h["fact"] for h in plan.hops}
    claims = trace_claims(world, traj)
    sections: list[tuple[str, Entity, str, list[dict]]] = [
        (f"Profile of {e.name}", e, "profile", _section_claims(claims, e.id, planned, claims_per_section))]
    for rel in plan.related:
        other = world.entities[e.rels[rel]]
        own = _section_claims(claims, other.id, planned, claims_per_section)
        sections.append((f"{other.name}, the {_label(rel)}", other, rel, own))
    sections = [s for s in sections if s[3]]
    cited = list(dict.fromkeys(c["cite"] for s in sections for c in s[3]))
    # ----- plan
    p = ["Question decomposition (sections of the report):"]
    for i, (title, _ent, _rel, _facts) in enumerate(sections, 1):
        p.append(f"- S{i}: {title}")
    p += ["", "Evidence map:", "| Section | Item (URLs) | Content | Confidence |", "|---|---|---|---|"]
    for i, (_t, _ent, _rel, facts) in enumerate(sections, 1):
        for f in facts:
            p.append(f"| S{i} | {f['cite']} | {f['fact']} | High |")
    missing = [h for h in plan.hops if h["fact"] not in {c["fact"] for c in claims}]
    p += ["", "Omitted as irrelevant: search snippets that only repeat what the page readings state."]
    if missing:
        p.append("Not found in the trace (not claimed): " + "; ".join(
            f"the {h['relation'].replace('_', ' ')} of {h['subject']}" for h in missing) + ".")
    p += ["", "Insight strategy:",
          "- Anchor every statement in the page reading of the entity it is about.",
          f"- Link {e.name} to each related entity and profile that entity in its own section.",
          "- Put dated facts in time order when there are several.",
          "- Derive recommendations only from what the evidence shows or leaves open."]
    # ----- report
    r = ["# Executive Summary", ""]
    summary = [c for s in sections for c in s[3]][:8]
    r += [f"- {_sentence(c)}" for c in summary]
    related_names = [s[0] for s in sections[1:]]
    r += ["", "## Main Body", "",
          f"This brief covers {e.name}, a {KIND_NOUN.get(e.kind, e.kind)}, and "
          + (f"{len(related_names)} entit{'y' if len(related_names) == 1 else 'ies'} linked to it "
             f"({'; '.join(related_names)})" if related_names else "no linked entity the search could confirm")
          + f", from {len(cited)} page reading{'s' if len(cited) != 1 else ''} of the Atlas encyclopedia. "
          "Each section follows the plan's decomposition and cites the page that states each fact.", ""]
    for i, (title, ent, rel, facts) in enumerate(sections, 1):
        r += [f"## S{i}: {title}", ""]
        if rel != "profile":
            link = next((c for c in claims if c["subject_id"] == e.id and c["relation"] == rel), None)
            if link is not None:
                r.append(f"The link from {e.name}: {_sentence(link)}")
        r += [_sentence(c) for c in facts]
        dated = sorted((c for c in facts if c.get("date")), key=lambda c: c["date"])
        if len(dated) >= 2:
            r.append(f"In time order, the dated facts run from {dated[0]['date']} to {dated[-1]['date']}.")
        r.append("")
    r += ["## Recommendations", ""]
    r.append(f"- Treat the facts above as established for {e.name}: each is stated on the cited page.")
    if missing:
        r.append("- Search further before relying on what the trace did not confirm: "
                 + "; ".join(f"the {h['relation'].replace('_', ' ')} of {h['subject']}" for h in missing) + ".")
    r.append("- Re-check dated facts (appointments, publications, events) against the cited pages when they matter, "
             "since they can change.")
    r += ["", "## Conclusion", "",
          f"The search confirmed {len(claims)} fact{'s' if len(claims) != 1 else ''} about {e.name} and its linked "
          f"entities from {len(cited)} page{'s' if len(cited) != 1 else ''}. "
          f"The profile of {e.name} and its links are each grounded in the page that states them. "
          + ("Some planned facts were not found in the readings and are left open. " if missing else
             "Every planned fact was found in the readings. ")
          + "The sources below are exactly the pages cited.", "",
          "## Sources used", ""]
    r += cited
    return "<think>\n" + "\n".join(p) + "\n</think>\n" + "\n".join(r) + "\n"
