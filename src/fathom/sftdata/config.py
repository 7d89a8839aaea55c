"""Configuration of the DeepResearch-SFT corpus stage. The field descriptions are the documentation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from fathom.config import RoleConfig
from fathom.selfplay.config import DEFAULT_THEMES, EXPERT_SPEC, AgentBudget, check_role_spec, is_expert

DEFAULT_OPEN_SEEDS = Path(__file__).parent / "seeds.jsonl"


class ReportFilterConfig(BaseModel):
    """Checks on the teacher's output; a rejected item is kept in rejected.jsonl with its reasons."""

    min_words: int = Field(default=150, ge=0, description="Minimum words in the report (the paper targets 2,000; "
                           "raise it for a strong teacher).")
    require_sections: bool = Field(default=True, description="Executive Summary, Main Body, Recommendations, "
                                   "Conclusion and Sources used must be present.")
    require_plan: bool = Field(default=True, description="A non-empty <think> plan must precede the report.")
    require_plan_sections: bool = Field(default=True, description="Every section S1..Sn named in the plan must "
                                        "appear as a report heading.")
    require_citations: bool = Field(default=True, description="At least one inline citation.")
    citations_in_trace: bool = Field(default=True, description="Every cited/listed URL must be in the trace.")
    sources_equal_cited: bool = Field(default=True, description="'Sources used' must equal the set of cited URLs.")


class SFTCorpusConfig(BaseModel):
    n: int = Field(default=4, ge=1, description="Items to plan (ids sft-<seed>-000000..n-1).")
    source: Literal["auto", "model", "world"] = Field(
        default="auto", description="model: the paper's recipe on endpoints — open-ended seeds rewritten across "
        "themes, a search-agent trace, an LLM teacher. world: an open-ended brief on one offline-web entity and "
        "its linked entities; the expert search policy gathers the evidence through the tool server and (with "
        "teacher `expert:offline-web`) a deterministic world teacher writes the plan and the report from the "
        "trace's readings, every claim cited to the page that states it. auto (default): world when the policy "
        "is the expert, model otherwise.")
    seeds_path: Path = Field(default=DEFAULT_OPEN_SEEDS, description="Open-ended seed questions JSONL {id, question}.")
    themes_path: Path = Field(default=DEFAULT_THEMES, description="Theme bank used to rewrite the seeds.")
    themes_per_item: int = Field(default=1, ge=0, le=3, description="Themes sampled to steer each rewrite.")
    seed: int = Field(default=0, description="Random seed of the item plans.")
    policy: str = Field(default=EXPERT_SPEC, description="Search agent that collects the trace: "
                        "`expert:offline-web` (the offline web's expert, world source) or a model role "
                        "(local:<model> | URL#model[@KEY_ENV]).")
    teacher: str = Field(default=EXPERT_SPEC, description="Teacher that writes <think>plan</think>report: "
                         "`expert:offline-web` (the deterministic world report teacher; world source only) or a "
                         "model role.")
    rewriter: str | None = Field(default=None, description="Model that rewrites seed questions across themes "
                                 "(model source; default: the teacher). A failed rewrite falls back to a template.")
    world_related: int = Field(default=2, ge=1, le=4, description="world source: linked entities per brief.")
    world_attrs: int = Field(default=2, ge=1, le=4, description="world source: attributes of the brief's own "
                             "entity in its profile.")
    world_claims: int | None = Field(default=None, ge=1, description="world source: facts stated per report "
                                     "section, the planned ones first (None: every fact the readings state).")
    expert_max_result_chars: int = Field(default=600, ge=100, description="Tool results shown to the expert are "
                                         "cut to this many characters.")
    synth_template: str = Field(default="default", description="Synthesizer system prompt template.")
    role_concurrency: int = Field(default=4, ge=1, description="Requests in flight per role.")
    max_in_flight: int = Field(default=2, ge=1, description="Items processed concurrently.")
    agent: AgentBudget = Field(default_factory=AgentBudget)
    tools_preset: str = Field(default="fathom", description="Tool preset of the search agent.")
    rewrite_max_tokens: int = Field(default=48, ge=8, description="Tokens for the rewritten question.")
    teacher_max_tokens: int = Field(default=256, ge=16, description="Tokens for the plan + report.")
    teacher_max_prompt_tokens: int | None = Field(default=4096, description="Cut tool responses in the trace so "
                                                  "the teacher prompt fits (None: no cut).")
    teacher_temperature: float = Field(default=0.4, ge=0.0, description="Teacher sampling temperature.")
    max_items: int | None = Field(default=None, ge=1, description="Budget: items processed in this run.")
    max_tokens: int | None = Field(default=None, ge=1, description="Budget: total model tokens in this run.")
    max_errors: int = Field(default=20, ge=1, description="Abort after this many infrastructure failures.")
    filters: ReportFilterConfig = Field(default_factory=ReportFilterConfig)
    offline_seed: int = Field(default=0, description="Offline web seed (embedded stack).")
    offline_pages: int = Field(default=120, ge=10, description="Offline web size (embedded stack).")

    @field_validator("policy", "teacher")
    @classmethod
    def _role(cls, v: str) -> str:
        return check_role_spec(v, expert_ok=True)

    @field_validator("rewriter")
    @classmethod
    def _rewriter(cls, v: str | None) -> str | None:
        return None if v is None else check_role_spec(v, expert_ok=False)

    def resolved_source(self) -> str:
        if self.source != "auto":
            return self.source
        return "world" if is_expert(self.policy) else "model"

    def roles(self) -> dict[str, RoleConfig]:
        """The model roles (the expert and the world teacher are not models)."""
        specs = {"policy": self.policy, "teacher": self.teacher,
                 "rewriter": self.rewriter or (None if is_expert(self.teacher) else self.teacher)}
        return {k: RoleConfig.parse(v) for k, v in specs.items() if v is not None and not is_expert(v)}

    def describe_roles(self) -> dict[str, str]:
        return {k: (v if is_expert(v) else RoleConfig.parse(v).describe())
                for k, v in (("policy", self.policy), ("teacher", self.teacher))}
