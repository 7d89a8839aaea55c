"""The steerable step-level reward of stage 2 (method.md §3, Eqs. 7–8).

Every tool call of a rollout gets one label:

* ``search_urls`` (or legacy ``web_search``): **UniqueSearch** (a semantically new query) or **RedundantSearch**
  (very similar to an earlier query);
* ``query_url`` (or legacy ``web_visit``): **Exploration** (first query for a fact / of a new URL),
  **Verification** (a cross-source check of an already explored fact on a *new* URL, at most ``B_v`` per claim)
  or **RedundantQuery** (checks beyond ``B_v``, or a repeat of an already queried (URL, goal) pair).

Tallies (Eq. 7): ``ρ = (n_redS + n_redQ) / T``, ``Δ_S = n_uniqS − n_redS``, ``Δ_Q = n_uniqQ − n_redQ`` with
``n_uniqQ = n_explore + n_verify`` and ``ρ = 0`` when ``T = 0``. Reward (Eq. 8)::

    correct:  r = 0.1·R_format + max(1 − ρ, 0.5)
    wrong:    r = 0.1·R_format + c1·min(1, Δ_S / C_S) + c2·min(1, Δ_Q / C_Q)

Labellers: :class:`HeuristicLabeller` (deterministic, offline, used in tests) and :class:`LLMLabeller` (a role,
temperature 0, JSON output contract; falls back to the heuristic on any parse failure). Both enforce ``B_v``
after labelling by counting Verification labels per claim.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

log = logging.getLogger(__name__)


class Label(str, Enum):
    UNIQUE_SEARCH = "UniqueSearch"
    REDUNDANT_SEARCH = "RedundantSearch"
    EXPLORATION = "Exploration"
    VERIFICATION = "Verification"
    REDUNDANT_QUERY = "RedundantQuery"


SEARCH_LABELS = {Label.UNIQUE_SEARCH, Label.REDUNDANT_SEARCH}
QUERY_LABELS = {Label.EXPLORATION, Label.VERIFICATION, Label.REDUNDANT_QUERY}
SEARCH_TOOLS = {"search_urls", "web_search"}
QUERY_TOOLS = {"query_url", "web_visit"}


class StepRewardConfig(BaseModel):
    """Knobs of Eq. 8 (paper settings as defaults)."""

    c1: float = Field(default=0.2, description="Weight of search novelty credit for wrong rollouts (Eq. 8).")
    c2: float = Field(default=0.2, description="Weight of query novelty credit for wrong rollouts (Eq. 8).")
    C_S: float = Field(default=8.0, gt=0, description="Saturation cap on creditable unique searches (Δ_S).")
    C_Q: float = Field(default=16.0, gt=0, description="Saturation cap on creditable unique queries (Δ_Q).")
    B_v: int = Field(default=1, ge=0, description="Verification budget per claim; further checks are redundant.")
    format_weight: float = Field(default=0.1, ge=0, description="Weight of R_format (0.1 in Eq. 8).")
    correct_floor: float = Field(default=0.5, description="Minimum answer credit of a correct rollout: max(1−ρ, ·).")
    similarity: float = Field(default=0.6, gt=0, le=1,
                              description="Heuristic labeller: token-set Jaccard at or above which two queries "
                                          "(or two goals) are the same query / claim.")


@dataclass(frozen=True)
class CallInfo:
    """What a labeller needs of one tool call: ``tool`` name, ``query`` (searches), ``url`` and ``goal`` (queries)."""

    idx: int
    tool: str
    query: str = ""
    url: str = ""
    goal: str = ""

    @classmethod
    def from_call(cls, idx: int, name: str, arguments: dict) -> CallInfo:
        args = arguments or {}
        return cls(idx=idx, tool=name, query=str(args.get("query", "") or ""), url=str(args.get("url", "") or ""),
                   goal=str(args.get("goal", "") or ""))

    @property
    def kind(self) -> str | None:
        if self.tool in SEARCH_TOOLS:
            return "search"
        if self.tool in QUERY_TOOLS:
            return "query"
        return None


@dataclass(frozen=True)
class LabelledCall:
    idx: int
    tool: str
    label: Label
    claim_id: int | None = None


@dataclass(frozen=True)
class Tally:
    """Eq. 7 counts and aggregates."""

    n_uniq_s: int = 0
    n_red_s: int = 0
    n_explore: int = 0
    n_verify: int = 0
    n_red_q: int = 0

    @property
    def n_uniq_q(self) -> int:
        return self.n_explore + self.n_verify

    @property
    def total(self) -> int:  # T
        return self.n_uniq_s + self.n_red_s + self.n_uniq_q + self.n_red_q

    @property
    def rho(self) -> float:
        """Redundancy ratio; 0 when there is no tool call."""
        return (self.n_red_s + self.n_red_q) / self.total if self.total else 0.0

    @property
    def delta_s(self) -> int:
        return self.n_uniq_s - self.n_red_s

    @property
    def delta_q(self) -> int:
        return self.n_uniq_q - self.n_red_q

    def as_dict(self) -> dict[str, float]:
        return {"UniqueSearch": self.n_uniq_s, "RedundantSearch": self.n_red_s, "Exploration": self.n_explore,
                "Verification": self.n_verify, "RedundantQuery": self.n_red_q, "T": self.total, "rho": self.rho}


def tally(labels: Iterable[LabelledCall | Label]) -> Tally:
    counts = {lab: 0 for lab in Label}
    for item in labels:
        counts[item.label if isinstance(item, LabelledCall) else Label(item)] += 1
    return Tally(counts[Label.UNIQUE_SEARCH], counts[Label.REDUNDANT_SEARCH], counts[Label.EXPLORATION],
                 counts[Label.VERIFICATION], counts[Label.REDUNDANT_QUERY])


def step_reward(correct: bool, format_r: float, t: Tally, cfg: StepRewardConfig = StepRewardConfig()) -> float:
    """Eq. 8. Correct: ``w·R_format + max(1 − ρ, 0.5)``; wrong: ``w·R_format + c1·min(1, Δ_S/C_S) +
    c2·min(1, Δ_Q/C_Q)`` (Δ not clipped below 0: redundant spam earns negative credit)."""
    base = cfg.format_weight * float(format_r)
    if correct:
        return base + max(1.0 - t.rho, cfg.correct_floor)
    return base + cfg.c1 * min(1.0, t.delta_s / cfg.C_S) + cfg.c2 * min(1.0, t.delta_q / cfg.C_Q)


def enforce_verification_budget(labels: Sequence[LabelledCall], B_v: int) -> list[LabelledCall]:
    """Turn Verification labels beyond ``B_v`` per ``claim_id`` (in call order) into RedundantQuery."""
    seen: dict[int | None, int] = {}
    out: list[LabelledCall] = []
    for lab in labels:
        if lab.label is Label.VERIFICATION:
            n = seen.get(lab.claim_id, 0)
            seen[lab.claim_id] = n + 1
            if n >= B_v:
                lab = LabelledCall(lab.idx, lab.tool, Label.REDUNDANT_QUERY, lab.claim_id)
        out.append(lab)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Heuristic labeller

_STOP = {"the", "a", "an", "of", "in", "on", "for", "to", "and", "or", "is", "are", "was", "were", "what", "which",
         "who", "whom", "when", "where", "how", "did", "does", "do", "with", "by", "at", "from", "about", "find"}


def query_tokens(text: str) -> frozenset[str]:
    """Normalised content tokens of a query or goal (lower case, alphanumeric, stop words dropped)."""
    toks = re.findall(r"[a-z0-9]+", text.lower())
    return frozenset(t for t in toks if t not in _STOP) or frozenset(toks)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def normalize_url(url: str) -> str:
    """Scheme-less, lower-cased host, no fragment, no trailing slash: two spellings of one page compare equal."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip().lower()
    host = parts.netloc.lower().removeprefix("www.")
    return urlunsplit(("", host, parts.path.rstrip("/") or "/", parts.query, "")).lstrip("/")


class HeuristicLabeller:
    """Deterministic labeller for offline runs and tests.

    * search: RedundantSearch when the query's token set has Jaccard ≥ ``similarity`` with an earlier query.
    * query: the goal text is the claim (goals with Jaccard ≥ ``similarity`` share a claim). A repeat of an
      already queried (URL, claim) pair is RedundantQuery; a new claim is Exploration; an explored claim on a URL
      not visited before is Verification (≤ ``B_v`` per claim, then RedundantQuery); an explored claim on an
      already visited URL is RedundantQuery (not a cross-source check).
    * calls to other tools are not labelled (they do not count in T)."""

    def __init__(self, cfg: StepRewardConfig = StepRewardConfig()):
        self.cfg = cfg

    def label(self, question: str, calls: Sequence[CallInfo]) -> list[LabelledCall]:
        sim = self.cfg.similarity
        queries: list[frozenset[str]] = []
        claims: list[frozenset[str]] = []
        visited: set[str] = set()
        pairs: set[tuple[str, int]] = set()
        out: list[LabelledCall] = []
        for c in calls:
            if c.kind == "search":
                toks = query_tokens(c.query)
                redundant = any(jaccard(toks, q) >= sim for q in queries)
                queries.append(toks)
                out.append(LabelledCall(c.idx, c.tool, Label.REDUNDANT_SEARCH if redundant else Label.UNIQUE_SEARCH))
            elif c.kind == "query":
                url = normalize_url(c.url)
                goal = query_tokens(c.goal or question)
                claim = next((i for i, g in enumerate(claims) if jaccard(goal, g) >= sim), None)
                if claim is None:
                    claims.append(goal)
                    claim = len(claims) - 1
                    label = Label.EXPLORATION
                elif (url, claim) in pairs or url in visited:
                    label = Label.REDUNDANT_QUERY
                else:
                    label = Label.VERIFICATION
                visited.add(url)
                pairs.add((url, claim))
                out.append(LabelledCall(c.idx, c.tool, label, claim))
        return enforce_verification_budget(out, self.cfg.B_v)

    async def alabel(self, question: str, calls: Sequence[CallInfo]) -> list[LabelledCall]:
        return self.label(question, calls)


# ---------------------------------------------------------------------------------------------------------------
# LLM labeller

LABELLER_PROMPT = """You label the tool calls of a web research agent. Tools: search_urls(query) searches the web;
query_url(url, goal) reads one page for an information goal.
Labels:
- UniqueSearch: a search_urls query that is semantically new (new entities or facts).
- RedundantSearch: a search_urls query very similar to an earlier one.
- Exploration: a query_url that reads a new URL for a fact not yet looked up.
- Verification: a query_url that cross-checks an already looked-up fact on a NEW URL.
- RedundantQuery: a query_url that repeats an earlier (URL, goal) or re-checks a fact beyond what is useful.
Give every fact (claim) an integer claim_id; calls about the same fact share it.

Question: {question}
Calls (in order):
{calls}

Answer with only a JSON array, one object per call, in order:
[{{"idx": 0, "tool": "search_urls", "label": "UniqueSearch", "claim_id": null}}, ...]
JSON:"""


def _extract_json_array(text: str) -> list | None:
    start, end = text.find("["), text.rfind("]")
    if start == -1 or end <= start:
        return None
    try:
        value = json.loads(text[start: end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def parse_labels(text: str, calls: Sequence[CallInfo]) -> list[LabelledCall] | None:
    """Validate an LLM answer against the contract: one object per labelled call, in order, with a label allowed
    for that call's tool. Returns None on any violation (the caller falls back to the heuristic)."""
    items = _extract_json_array(text)
    wanted = [c for c in calls if c.kind is not None]
    if items is None or len(items) != len(wanted):
        return None
    out: list[LabelledCall] = []
    for call, item in zip(wanted, items):
        if not isinstance(item, dict):
            return None
        try:
            label = Label(item.get("label"))
        except ValueError:
            return None
        allowed = SEARCH_LABELS if call.kind == "search" else QUERY_LABELS
        if label not in allowed:
            return None
        claim = item.get("claim_id")
        if claim is not None and not isinstance(claim, int):
            try:
                claim = int(claim)
            except (TypeError, ValueError):
                claim = None
        out.append(LabelledCall(call.idx, call.tool, label, claim))
    return out


class LLMLabeller:
    """The GPT-4.1-style judge of §3.4: one request per rollout at temperature 0, JSON array out, ``B_v`` enforced
    after parsing. Any failure (timeout, bad JSON, wrong count, label not allowed for the tool) falls back to the
    heuristic labeller for that rollout and is counted in ``fallbacks``."""

    def __init__(self, client, cfg: StepRewardConfig = StepRewardConfig(), *, max_tokens: int = 1024,
                 timeout_s: float = 120.0):
        self.client = client
        self.cfg = cfg
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.fallback = HeuristicLabeller(cfg)
        self.calls = 0
        self.fallbacks = 0

    def render(self, question: str, calls: Sequence[CallInfo]) -> str:
        lines = []
        for c in calls:
            if c.kind == "search":
                lines.append(json.dumps({"idx": c.idx, "tool": c.tool, "query": c.query}, ensure_ascii=False))
            elif c.kind == "query":
                lines.append(json.dumps({"idx": c.idx, "tool": c.tool, "url": c.url, "goal": c.goal},
                                        ensure_ascii=False))
        return LABELLER_PROMPT.format(question=question, calls="\n".join(lines))

    async def alabel(self, question: str, calls: Sequence[CallInfo]) -> list[LabelledCall]:
        import asyncio

        if not any(c.kind for c in calls):
            return []
        parsed = None
        try:
            self.calls += 1
            out = await asyncio.wait_for(self.client.complete(self.render(question, calls), max_tokens=self.max_tokens,
                                                              temperature=0.0), timeout=self.timeout_s)
            parsed = parse_labels(out.text, calls)
        except Exception as exc:
            log.warning("step labeller failed (%s); using the heuristic labeller", exc)
        if parsed is None:
            self.fallbacks += 1
            return self.fallback.label(question, calls)
        return enforce_verification_budget(parsed, self.cfg.B_v)


def make_labeller(role: str | None, cfg: StepRewardConfig = StepRewardConfig()):
    """``None``/``"heuristic"`` → :class:`HeuristicLabeller`; a role string → :class:`LLMLabeller`."""
    if role in (None, "", "heuristic"):
        return HeuristicLabeller(cfg)
    from fathom.config import RoleConfig
    from fathom.llm import make_client

    return LLMLabeller(make_client(RoleConfig.parse(role)), cfg)
