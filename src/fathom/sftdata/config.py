"""Configuration of the DeepResearch-SFT corpus stage. The field descriptions are the documentation."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from fathom.config import RoleConfig
from fathom.selfplay.config import DEFAULT_THEMES, AgentBudget

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
    seeds_path: Path = Field(default=DEFAULT_OPEN_SEEDS, description="Open-ended seed questions JSONL {id, question}.")
    themes_path: Path = Field(default=DEFAULT_THEMES, description="Theme bank used to rewrite the seeds.")
    themes_per_item: int = Field(default=1, ge=0, le=3, description="Themes sampled to steer each rewrite.")
    seed: int = Field(default=0, description="Random seed of the item plans.")
    policy: str = Field(default="local:smollm2", description="Search agent that collects the trace.")
    teacher: str = Field(default="local:smollm2", description="Teacher that writes <think>plan</think>report.")
    rewriter: str | None = Field(default=None, description="Model that rewrites seed questions across themes "
                                 "(default: the teacher). A failed rewrite falls back to a template.")
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

    @field_validator("policy", "teacher", "rewriter")
    @classmethod
    def _role(cls, v: str | None) -> str | None:
        if v is not None:
            RoleConfig.parse(v)
        return v

    def roles(self) -> dict[str, RoleConfig]:
        return {"policy": RoleConfig.parse(self.policy), "teacher": RoleConfig.parse(self.teacher),
                "rewriter": RoleConfig.parse(self.rewriter or self.teacher)}
