"""Decontamination: no evaluation question in training data (issue 8 item 5).

A training question is dropped when it overlaps any evaluation set:

* the benchmark files (``data/benchmarks/*.jsonl``: SimpleQA, FRAMES, WebWalker, MuSiQue, GPQA, MedQA), and
* the held-out offline-web evaluation: questions of the held-out world (seed :data:`HELDOUT_WORLD_SEED`, the
  world the gate evaluates on) **and its entity names** — the held-out set is defined as disjoint in entities from
  every training question, so a training question that names a held-out entity is contaminated even when its
  wording differs.

Overlap is tested in this order, and the first test that fires is the recorded reason:

``exact``   normalised exact match (NFKC, lowercase, punctuation dropped);
``near``    MinHash Jaccard estimate of word 3-gram shingles ≥ ``near_threshold``
            (:class:`fathom.selfplay.dedup.LeakageIndex`, the DuetQA leakage check) and at least one shared
            *content word*;
``ngram``   a shared word ``ngram``-gram that holds a content word and occurs in at most ``max_ngram_df``
            evaluation questions;
``entity``  the question names an entity of the held-out world.

*Content words* are words outside the offline world's question templates (and not bare numbers or decades): two
world questions built from one template ("What is the area, in square kilometres, of X?") share most of their
3-grams and long n-grams whatever X is, which is not contamination; sharing X is.

Entry points: :class:`Decontaminator` (the DuetQA stage checks each candidate with it), :func:`decontaminate_rows`,
:func:`decontaminate_folder` (the KFP-ready step: in folder -> out folder) and ``fathom decontaminate``.
"""

from __future__ import annotations

import json
import logging
import re
import zlib
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from fathom.errors import ConfigError, EmptyStageError
from fathom.selfplay.dedup import LeakageIndex, benchmark_files, default_benchmarks_dir
from fathom.selfplay.text import normalize_text

log = logging.getLogger(__name__)

#: World seed of the held-out offline-web evaluation (the gate's questions); training worlds use other seeds.
HELDOUT_WORLD_SEED = 1000
HELDOUT_PREFIX = "offline-heldout"
REASONS = ("exact", "near", "ngram", "entity")


class DecontamConfig(BaseModel):
    """What counts as an evaluation set and how overlap is tested (field descriptions are the documentation)."""

    benchmarks_dir: Path | None = Field(default=None, description="Folder of evaluation *.jsonl files "
                                        "({id, question, answer}); default $FATHOM_BENCHMARKS_DIR or the repo's "
                                        "data/benchmarks.")
    heldout_world: bool = Field(default=True, description="Also decontaminate against the held-out offline-web "
                                "evaluation (its questions and entity names).")
    heldout_world_seed: int = Field(default=HELDOUT_WORLD_SEED, description="World seed of the held-out evaluation.")
    heldout_world_pages: int = Field(default=120, ge=12, description="Size of the held-out world.")
    heldout_questions_per_hop: int = Field(default=300, ge=0, description="Held-out questions indexed per hop "
                                           "level (question seed 0).")
    heldout_hops: list[int] = Field(default=[1, 2, 3], description="Hop levels of the held-out questions.")
    near_threshold: float = Field(default=0.8, gt=0, le=1, description="MinHash Jaccard (word 3-grams) at/above "
                                  "which a question near-duplicates an evaluation question.")
    num_perm: int = Field(default=128, ge=16, description="MinHash permutations.")
    ngram: int = Field(default=8, ge=3, description="Length (words) of the shared n-gram test; 0 disables it.")
    max_ngram_df: int = Field(default=3, ge=1, description="An n-gram found in more evaluation questions than this "
                              "is a template and does not count as overlap.")
    entity_names: bool = Field(default=True, description="Drop questions that name a held-out world entity.")


_NUMBERish = re.compile(r"\d+(st|nd|rd|th|s)?")


@lru_cache(maxsize=1)
def template_vocabulary() -> frozenset[str]:
    """Words of the offline world's question templates, relation phrases, descriptors and name parts shared by
    every world (title nouns, company suffixes): not content."""
    from fathom.web.offline import world as w

    texts: list[str] = []
    for spec in w.RELATIONS.values():
        texts += [spec.sentence, spec.np, spec.question, spec.label]
    for spec in w.ATTRIBUTES.values():
        texts += [spec.sentence, spec.question, spec.label]
    texts += (w.INDUSTRIES + w.OCCUPATIONS + w.GENRES + w.EVENT_KINDS + w.MONTHS + w.WORK_NOUNS + w.WORK_ADJ
              + w.COMPANY_SUFFIX + ["University", "Institute of Technology"])
    texts.append("a an the in of by on whose born founded published held organised won century company city "
                 "country university who what which where when how many much")
    words: set[str] = set()
    for t in texts:
        words.update(normalize_text(re.sub(r"\{\w\}", " ", t)).split())
    return frozenset(words)


def content_words(words: list[str]) -> set[str]:
    vocab = template_vocabulary()
    return {x for x in words if x not in vocab and not _NUMBERish.fullmatch(x)}


def _ngrams(words: list[str], n: int) -> set[int]:
    """Hashes of the word n-grams that hold at least one content word."""
    vocab = template_vocabulary()
    is_content = [x not in vocab and not _NUMBERish.fullmatch(x) for x in words]
    return {zlib.crc32(" ".join(words[i:i + n]).encode()) for i in range(len(words) - n + 1)
            if any(is_content[i:i + n])}


def read_eval_questions(folder: Path | None) -> list[tuple[str, str]]:
    """``(file-stem:id, question)`` of every evaluation file in `folder` (bad lines are skipped and counted)."""
    if folder is None or not Path(folder).is_dir():
        log.warning("no benchmark folder found (%s): decontaminating against the held-out world only", folder)
        return []
    return [row for _, file_rows in benchmark_files(Path(folder)) for row in file_rows]


def heldout_world_questions(cfg: DecontamConfig) -> tuple[list[tuple[str, str]], list[str]]:
    """(``(key, question)`` of the held-out world's questions, its entity names). Pure: the world is generated in
    memory from its seed (nothing is written)."""
    from fathom.web.offline.questions import make_questions
    from fathom.web.offline.world import generate_world

    world = generate_world(cfg.heldout_world_seed, cfg.heldout_world_pages)
    qs: list[tuple[str, str]] = []
    for h in cfg.heldout_hops:
        if cfg.heldout_questions_per_hop:
            qs += [(f"{HELDOUT_PREFIX}:{q.id}", q.question)
                   for q in make_questions(world, cfg.heldout_questions_per_hop, hops=h, seed=0)]
    return qs, sorted(e.name for e in world.entities.values())


class Decontaminator:
    """The evaluation sets indexed once; :meth:`match` tests one training question."""

    def __init__(self, cfg: DecontamConfig | None = None):
        self.cfg = cfg = cfg or DecontamConfig()
        folder = cfg.benchmarks_dir or default_benchmarks_dir()
        rows = read_eval_questions(folder)
        self.sets: Counter[str] = Counter(k.split(":", 1)[0] for k, _ in rows)
        names: list[str] = []
        if cfg.heldout_world:
            held, names = heldout_world_questions(cfg)
            rows += held
            self.sets[HELDOUT_PREFIX] += len(held)
        self.size = len(rows)
        self.index = LeakageIndex(cfg.near_threshold, cfg.num_perm)
        self.index.add_many(rows)
        self._df: dict[int, int] = {}
        self._first: dict[int, str] = {}
        self._content: dict[str, set[str]] = {}
        for key, q in rows:
            words = normalize_text(q).split()
            self._content[key] = content_words(words)
            if cfg.ngram:
                for g in _ngrams(words, cfg.ngram):
                    self._df[g] = self._df.get(g, 0) + 1
                    self._first.setdefault(g, key)
        self._names = None
        self.n_entities = 0
        if cfg.entity_names and names:
            norm = sorted({normalize_text(n) for n in names if normalize_text(n)}, key=len, reverse=True)
            self.n_entities = len(norm)
            self._names = re.compile(r"(?<!\w)(" + "|".join(re.escape(n) for n in norm) + r")(?!\w)")

    def match(self, question: str) -> tuple[str, str] | None:
        """``(reason, evaluation key)`` of the first overlap (reasons: exact, near, ngram, entity), else None."""
        norm = normalize_text(question)
        words = norm.split()
        hit = self.index.check(question)
        if hit is not None:
            if hit[0] == "exact_duplicate":
                return "exact", hit[1]
            if content_words(words) & self._content.get(hit[1], set()):
                return "near", hit[1]
        if self.cfg.ngram:
            for g in _ngrams(words, self.cfg.ngram):
                df = self._df.get(g, 0)
                if 0 < df <= self.cfg.max_ngram_df:
                    return "ngram", self._first[g]
        if self._names is not None:
            m = self._names.search(norm)
            if m:
                return "entity", f"{HELDOUT_PREFIX}:entity:{m.group(1)}"
        return None

    def describe(self) -> dict[str, Any]:
        return {"evaluation_questions": self.size, "by_set": dict(self.sets), "heldout_entities": self.n_entities}


@lru_cache(maxsize=4)
def _cached(cfg_json: str, stamp: tuple) -> Decontaminator:
    return Decontaminator(DecontamConfig.model_validate_json(cfg_json))


def decontaminator(cfg: DecontamConfig | None = None) -> Decontaminator:
    """:class:`Decontaminator`, cached per process (keyed by the config and the evaluation files' sizes/mtimes)."""
    cfg = cfg or DecontamConfig()
    folder = cfg.benchmarks_dir or default_benchmarks_dir()
    stamp: tuple = ()
    if folder is not None and Path(folder).is_dir():
        stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(Path(folder).glob("*.jsonl")))
    return _cached(cfg.model_copy(update={"benchmarks_dir": folder}).model_dump_json(), stamp)


def _question(row: dict) -> str:
    q = row.get("question", row.get("prompt"))
    if isinstance(q, list):  # conversational rows: the last user message
        q = next((m.get("content") for m in reversed(q) if m.get("role") == "user"), None)
    return q if isinstance(q, str) else ""


class DecontamResult(BaseModel):
    total: int
    kept: int
    dropped: int
    by_reason: dict[str, int]
    by_set: dict[str, int]
    evaluation: dict[str, Any]


def decontaminate_rows(rows: list[dict], deco: Decontaminator) -> tuple[list[dict], list[dict], DecontamResult]:
    """(kept rows, dropped rows with ``decontam_reason`` and ``decontam_match``, counts). Rows have a
    ``question`` or ``prompt``; a row without one is an error (never a silent skip)."""
    kept, dropped = [], []
    by_reason: Counter[str] = Counter()
    by_set: Counter[str] = Counter()
    for i, r in enumerate(rows):
        q = _question(r)
        if not q.strip():
            raise ConfigError(f"row {i} ({r.get('id')!r}) has no question/prompt to decontaminate")
        hit = deco.match(q)
        if hit is None:
            kept.append(r)
            continue
        reason, key = hit
        by_reason[reason] += 1
        by_set[key.split(":", 1)[0]] += 1
        dropped.append({**r, "decontam_reason": reason, "decontam_match": key})
    res = DecontamResult(total=len(rows), kept=len(kept), dropped=len(dropped), by_reason=dict(by_reason),
                         by_set=dict(by_set), evaluation=deco.describe())
    return kept, dropped, res


def card_section(res: DecontamResult, cfg: DecontamConfig) -> str:
    """The dataset card's "Decontamination" section."""
    lines = ["## Decontamination", "",
             (f"{res.dropped} of {res.total} training questions overlapped an evaluation set and were dropped "
              f"({res.kept} kept). Tests: normalised exact match, MinHash Jaccard ≥ {cfg.near_threshold} of word "
              f"3-grams, a shared word {cfg.ngram}-gram found in ≤ {cfg.max_ngram_df} evaluation questions, and "
              "held-out world entity names."), "",
             "| reason | dropped |", "|---|---:|"]
    lines += [f"| {r} | {res.by_reason.get(r, 0)} |" for r in REASONS]
    lines += ["", "| evaluation set | indexed questions | training questions dropped |", "|---|---:|---:|"]
    sets = dict(res.evaluation.get("by_set", {}))
    for name in sorted(set(sets) | set(res.by_set)):
        lines.append(f"| {name} | {sets.get(name, 0)} | {res.by_set.get(name, 0)} |")
    if res.evaluation.get("heldout_entities"):
        lines.append(f"\nHeld-out world: seed {cfg.heldout_world_seed}, {res.evaluation['heldout_entities']} entity "
                     "names checked.")
    return "\n".join(lines) + "\n"


def _row_file(in_path: Path) -> Path:
    if in_path.is_file():
        return in_path
    for cand in (in_path / "rl.jsonl", in_path / "rl" / "rl.jsonl"):
        if cand.is_file():
            return cand
    jsonls = sorted(in_path.glob("*.jsonl"))
    named = [p for p in jsonls if p.stem not in ("candidates", "rejected", "dropped")]
    if len(named) == 1:
        return named[0]
    raise ConfigError(f"{in_path}: expected rl.jsonl, rl/rl.jsonl or exactly one rows *.jsonl "
                      f"(found {[p.name for p in jsonls]})")


def decontaminate_folder(in_path: str | Path, out_dir: str | Path, cfg: DecontamConfig | None = None
                         ) -> DecontamResult:
    """The decontamination step: rows from `in_path` (a JSONL file or a stage folder holding ``rl.jsonl``,
    ``rl/rl.jsonl`` or one ``*.jsonl``) -> ``OUT/<same name>.jsonl`` (kept rows, columns unchanged),
    ``OUT/decontam/dropped.jsonl`` (with the reason and the matched evaluation question),
    ``OUT/decontam/stats.json`` and ``OUT/README.md`` (the input's card, if any, plus a Decontamination section).
    Raises :class:`~fathom.errors.EmptyStageError` when nothing is left."""
    from fathom.datasets_io import write_jsonl, write_text_atomic

    cfg = cfg or DecontamConfig()
    in_path, out = Path(in_path), Path(out_dir)
    src = _row_file(in_path)
    rows = []
    for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{src}:{n}: not JSON ({exc.msg})") from exc
    kept, dropped, res = decontaminate_rows(rows, decontaminator(cfg))
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(kept, out / src.name)
    write_jsonl(dropped, out / "decontam" / "dropped.jsonl")
    write_text_atomic(out / "decontam" / "stats.json", res.model_dump_json(indent=2))
    card_in = next((p for p in (src.parent / "README.md", in_path / "README.md") if p.is_file()), None)
    card = card_in.read_text(encoding="utf-8").rstrip() + "\n\n" if card_in else "# Decontaminated training rows\n\n"
    write_text_atomic(out / "README.md", card + card_section(res, cfg))
    if not kept:
        raise EmptyStageError("decontaminate", {"input": res.total, "kept": 0}, res.by_reason, out_dir=str(out),
                              hint="every training question overlaps an evaluation set" if rows else
                              f"{src} holds no rows")
    return res
