"""Configuration of the DuetQA stage. The field descriptions are the documentation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from fathom.config import RoleConfig

#: Role spec of the offline web's expert search policy (fathom.web.offline.expert.ExpertPolicy): a search solver
#: that walks a world question's evidence path through the real tool server. Valid for M1/M2 (and the SFT policy).
EXPERT_SPEC = "expert:offline-web"
PACKAGE_DIR = Path(__file__).parent


def is_expert(spec: str | None) -> bool:
    return isinstance(spec, str) and spec.strip().startswith("expert:")


def check_role_spec(v: str, *, expert_ok: bool) -> str:
    """Validate a role spec early with a clear message (`expert:offline-web` only where `expert_ok`)."""
    if is_expert(v):
        if not expert_ok:
            raise ValueError(f"{v!r}: the expert is a search policy; it cannot play this role")
        if v.strip() != EXPERT_SPEC:
            raise ValueError(f"unknown expert {v!r}: the only one is {EXPERT_SPEC!r}")
        return v.strip()
    RoleConfig.parse(v)
    return v
DEFAULT_THEMES = PACKAGE_DIR / "themes.txt"
DEFAULT_SEEDS = PACKAGE_DIR / "seeds.jsonl"


class AgentBudget(BaseModel):
    """Budget of one search-agent run (generator gathering, M1/M2 solving). Small defaults keep embedded CPU runs
    short; cluster configs raise them (the released model uses 32+ turns and a 40k-token context)."""

    max_turns: int = Field(default=2, ge=1, description="Maximum model turns per agent run.")
    max_tokens_per_turn: int = Field(default=64, ge=8, description="New tokens per model turn.")
    max_total_tokens: int = Field(default=2560, ge=256, description="Token budget of one whole transcript.")
    min_answer_tokens: int = Field(default=32, ge=1, description="Tokens kept in reserve for the forced answer.")
    temperature: float = Field(default=0.6, ge=0.0, description="Sampling temperature.")
    tool_timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one tool call.")
    max_result_chars: int = Field(default=4000, ge=100, description="Tool results longer than this are cut.")

    def agent_config(self, seed: int | None = None):
        from fathom.agent import AgentConfig

        return AgentConfig(max_turns=self.max_turns, max_tokens_per_turn=self.max_tokens_per_turn,
                           max_total_tokens=self.max_total_tokens, min_answer_tokens=self.min_answer_tokens,
                           min_turn_tokens=min(self.max_tokens_per_turn, 64), reserve_tokens=16,
                           temperature=self.temperature, tool_timeout_s=self.tool_timeout_s,
                           max_result_chars=self.max_result_chars, seed=seed)


class FilterConfig(BaseModel):
    """Candidate checks (before obfuscation, so rejected candidates cost no solver calls) and dataset filters."""

    min_question_chars: int = Field(default=24, ge=1, description="Shorter questions are rejected.")
    max_question_chars: int = Field(default=1200, ge=1, description="Longer questions are rejected.")
    max_answer_words: int = Field(default=8, ge=1, description="Answers must be short entities/values (EM-gradable).")
    max_answer_chars: int = Field(default=80, ge=1, description="Character cap on answers.")
    min_hops: int = Field(default=2, ge=1, description="Minimum number of recorded hops.")
    require_post_cutoff: bool = Field(default=True, description="At least one hop must be dated on/after the cutoff.")
    require_hop_urls_in_trace: bool = Field(default=True, description="Model-generated hops must cite URLs the "
                                            "generator actually explored (no invented sources).")
    min_distinct_urls: int = Field(default=2, ge=0, description="Distinct source URLs across hops.")
    min_distinct_domains: int = Field(default=1, ge=0, description="Distinct source domains across hops (raise to 2+ "
                                      "on the live web; the offline web is one host).")
    near_dup_threshold: float = Field(default=0.8, gt=0.0, le=1.0,
                                      description="MinHash Jaccard estimate at/above which two questions are "
                                      "near-duplicates (word 3-gram shingles).")
    num_perm: int = Field(default=128, ge=16, description="MinHash permutations.")
    leakage_check: bool = Field(default=True, description="Reject questions that (near-)duplicate a benchmark "
                                "question or whose answer+question match one.")
    benchmarks_dir: Path | None = Field(default=None, description="Folder of benchmark *.jsonl files "
                                        "(default: $FATHOM_BENCHMARKS_DIR or the repo's data/benchmarks).")


class DuetQAConfig(BaseModel):
    """Everything the DuetQA stage needs besides the output folder and the tool endpoint."""

    n: int = Field(default=8, ge=1, description="Candidates to plan (item ids dq-<seed>-000000..n-1).")
    mode: Literal["mixture", "seeded", "both"] = Field(
        default="both", description="mixture: chain facts gathered for k sampled themes; seeded: rewrite a seed "
        "question's scaffold with new facts; both: each item draws its mode (seeded_fraction).")
    seeded_fraction: float = Field(default=0.5, ge=0.0, le=1.0, description="P(seeded) when mode='both'.")
    source: Literal["auto", "model", "world", "truth"] = Field(
        default="auto", description="Where candidates come from. model: the paper's self-play — the generator role "
        "(M1/M2, real endpoints) gathers facts by search across sampled themes and writes the question, M3 "
        "obfuscates it. world: the offline web's graph composes a 1–3-hop question (hop mix `world_hops`), a "
        "deterministic world-grounded obfuscator replaces the starting entity by a unique descriptor of its facts, "
        "and the search solvers (the expert `expert:offline-web` on the embedded default) must reach the answer "
        "through the tool server while M3 without search fails. truth: test mode — the world's 2-hop questions "
        "verbatim, verified by the configured LLM roles. auto (default): world when both search roles are the "
        "expert, model otherwise.")
    world_hops: dict[int, float] = Field(default={1: 0.2, 2: 0.5, 3: 0.3}, description="world source: mix of "
                                         "question hop counts (weights; each item draws its level from (seed, "
                                         "index), so resumed or enlarged runs plan the same items).")
    expert_max_result_chars: int = Field(default=600, ge=100, description="Tool results shown to the expert "
                                         "solver are cut to this many characters (the warm start's setting).")
    k_choices: list[int] = Field(default=[5, 6, 7], description="Number of themes sampled per item, uniformly.")
    cutoff: dt.date = Field(default=dt.date(2024, 1, 1), description="At least one hop must be dated on/after this.")
    themes_path: Path = Field(default=DEFAULT_THEMES, description="Theme bank (one theme per line, # comments).")
    seeds_path: Path = Field(default=DEFAULT_SEEDS, description="Seed bank JSONL {id, question, answer?, scaffold?}.")
    seed: int = Field(default=0, description="Random seed: item plans (themes, mode, seed question) derive from it.")

    m1: str = Field(default=EXPERT_SPEC, description="Search-enabled model M1: generator (even items) and solver "
                    "(model source); search solver (world/truth). `expert:offline-web` is the offline web's expert "
                    "search policy (a solver only); with both M1 and M2 the expert, source=auto picks the world "
                    "source. Any other spec: local:<model> or URL#model[@KEY_ENV].")
    m2: str = Field(default=EXPERT_SPEC, description="Search-enabled model M2: generator (odd items), solver "
                    "(see m1).")
    m3: str = Field(default="local:smollm2", description="No-search model M3: obfuscator and no-search solver.")
    judge: str = Field(default="local:smollm2", description="Answer judge (falls back to normalised matching). "
                       "In the world source the answers are printed verbatim on the site, so a local judge is not "
                       "asked: matching decides (an endpoint judge is still asked about non-matching answers).")
    role_concurrency: int = Field(default=4, ge=1, description="Requests in flight per role.")
    max_in_flight: int = Field(default=4, ge=1, description="Items processed concurrently.")

    agent: AgentBudget = Field(default_factory=AgentBudget, description="Budget of each search-agent run.")
    tools_preset: str = Field(default="fathom", description="Tool preset of the search agents.")
    compose_max_tokens: int = Field(default=128, ge=16, description="Generator: tokens for the JSON candidate.")
    obfuscate_max_tokens: int = Field(default=96, ge=16, description="Obfuscator: tokens for the rewrite.")
    no_search_max_tokens: int = Field(default=48, ge=8, description="M3 no-search answer tokens.")
    judge_max_tokens: int = Field(default=256, ge=1, description="Judge reply tokens (rationale + grade line).")
    evidence_chars: int = Field(default=3000, ge=200, description="Characters of gathered evidence shown to the "
                                "generator when composing the question.")

    max_items: int | None = Field(default=None, ge=1, description="Budget: items processed in this run (others "
                                  "stay pending for the next run).")
    max_tokens: int | None = Field(default=None, ge=1, description="Budget: total model tokens (prompt + "
                                   "completion, all roles) in this run; no new item starts once reached.")
    max_errors: int = Field(default=20, ge=1, description="Abort the run after this many items failed on "
                            "infrastructure errors (they are retried by the next run).")

    filters: FilterConfig = Field(default_factory=FilterConfig)
    offline_seed: int = Field(default=0, description="Offline web seed (embedded stack / truth mode).")
    offline_pages: int = Field(default=120, ge=10, description="Offline web size (embedded stack / truth mode).")

    @field_validator("k_choices")
    @classmethod
    def _k(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v):
            raise ValueError("k_choices must be a non-empty list of positive ints")
        return v

    @field_validator("m1", "m2")
    @classmethod
    def _search_role(cls, v: str) -> str:
        return check_role_spec(v, expert_ok=True)

    @field_validator("m3", "judge")
    @classmethod
    def _role(cls, v: str) -> str:
        return check_role_spec(v, expert_ok=False)

    @field_validator("world_hops")
    @classmethod
    def _hops(cls, v: dict[int, float]) -> dict[int, float]:
        if not v or any(h < 1 or h > 3 for h in v) or any(w < 0 for w in v.values()) or sum(v.values()) <= 0:
            raise ValueError("world_hops: hop levels 1..3 with non-negative weights, at least one positive")
        return v

    def resolved_source(self) -> str:
        """The source this config runs (``auto`` resolved)."""
        if self.source != "auto":
            return self.source
        return "world" if is_expert(self.m1) and is_expert(self.m2) else "model"

    def roles(self) -> dict[str, RoleConfig]:
        """The model roles (endpoints or local models); expert solvers are not model roles."""
        return {name: RoleConfig.parse(getattr(self, name)) for name in ("m1", "m2", "m3", "judge")
                if not is_expert(getattr(self, name))}

    def describe_roles(self) -> dict[str, str]:
        return {name: (getattr(self, name) if is_expert(getattr(self, name))
                       else RoleConfig.parse(getattr(self, name)).describe()) for name in ("m1", "m2", "m3", "judge")}

    def public_dict(self) -> dict:
        """The config as recorded in the dataset card (role specs never hold secrets, only env var names)."""
        return self.model_dump(mode="json")
