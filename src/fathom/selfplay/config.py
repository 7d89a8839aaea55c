"""Configuration of the DuetQA stage. The field descriptions are the documentation."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from fathom.config import RoleConfig

PACKAGE_DIR = Path(__file__).parent
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
    source: Literal["model", "truth"] = Field(
        default="model", description="model: the generator role writes candidates from what it found by search; "
        "truth: candidates come from the offline web's ground truth (OfflineWeb.questions), so every candidate "
        "has a known answer and the solvers are checked against it (test mode).")
    k_choices: list[int] = Field(default=[5, 6, 7], description="Number of themes sampled per item, uniformly.")
    cutoff: dt.date = Field(default=dt.date(2024, 1, 1), description="At least one hop must be dated on/after this.")
    themes_path: Path = Field(default=DEFAULT_THEMES, description="Theme bank (one theme per line, # comments).")
    seeds_path: Path = Field(default=DEFAULT_SEEDS, description="Seed bank JSONL {id, question, answer?, scaffold?}.")
    seed: int = Field(default=0, description="Random seed: item plans (themes, mode, seed question) derive from it.")

    m1: str = Field(default="local:smollm2", description="Search-enabled model M1: generator (even items), solver.")
    m2: str = Field(default="local:smollm2", description="Search-enabled model M2: generator (odd items), solver.")
    m3: str = Field(default="local:smollm2", description="No-search model M3: obfuscator and no-search solver.")
    judge: str = Field(default="local:smollm2", description="Answer judge (falls back to normalised matching).")
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

    @field_validator("m1", "m2", "m3", "judge")
    @classmethod
    def _role(cls, v: str) -> str:
        RoleConfig.parse(v)  # validates the spec early with a clear message
        return v

    def roles(self) -> dict[str, RoleConfig]:
        return {name: RoleConfig.parse(getattr(self, name)) for name in ("m1", "m2", "m3", "judge")}

    def public_dict(self) -> dict:
        """The config as recorded in the dataset card (role specs never hold secrets, only env var names)."""
        return self.model_dump(mode="json")
