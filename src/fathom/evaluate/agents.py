"""Agents under evaluation: small adapters behind one interface (``EvalAgent.answer(question) -> AgentOutput``).

Registered adapters:

* ``fathom`` (alias ``fathom-search``): the Fathom search agent (``fathom.agent.run_agent``) with the ``fathom``
  tool preset (search_urls + query_url);
* ``legacy`` (aliases ``ii-search``, ``jan-nano``): the same loop with the ``legacy`` preset (web_search +
  web_visit), the format II-Search-4B and Jan-Nano were trained on;
* ``no-search``: closed-book baseline (reference ``eval_nosearch.py`` prompt, answer in ``\\boxed{}``);
* ``zerosearch``, ``r1-searcher``, ``search-o1``: tag-format search agents (``<search>…</search>`` style) over the
  same tool server, see ``TAG_FORMATS``.

Add a baseline by decorating a factory with ``@register_agent("name", needs_tools=...)``; the factory receives
an ``AgentSettings`` and returns an object with ``async answer(question)`` and ``async aclose()``.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, Field

from fathom.evaluate.graders import extract_answer
from fathom.llm.local import LocalDtype

log = logging.getLogger(__name__)


class AgentSettings(BaseModel):
    """How the agent under evaluation is built (one per run)."""

    agent: str = Field(default="fathom", description="Registered agent adapter name (see `list_agents()`).")
    policy: str = Field(default="local:smollm2", description="Policy role: local:<model> or URL#model[@KEY_ENV].")
    local_dtype: LocalDtype = Field(
        default="fp32", description="Precision of a local: policy (an endpoint serves its own): fp32 (greedy answers "
        "do not depend on batching), bf16, or auto (bf16 where the CPU computes it natively; fathom.llm.local).")
    tools_url: str | None = Field(default=None, description="Tool server base URL (None: the runner starts the "
                                  "in-process offline stack for agents that need tools).")
    max_turns: int = Field(default=32, ge=1, description="Maximum model turns per question.")
    max_tokens_per_turn: int = Field(default=8192, ge=1, description="Generation cap of one turn.")
    max_total_tokens: int = Field(default=40960, ge=64, description="Context budget of one trajectory.")
    temperature: float = Field(default=0.6, ge=0, description="Sampling temperature (paper: 0.6).")
    seed: int | None = Field(default=None, description="Sampling seed (None: unseeded).")
    template: str = Field(default="fathom", description="Prompt template of the search agent.")
    max_result_chars: int = Field(default=30_000, ge=100, description="Tool results are cut to this many "
                                  "characters (the embedded policy is trained with 600).")


class AgentOutput(BaseModel):
    """What the harness records of one agent run."""

    answer: str | None = Field(default=None, description="Extracted final answer (None: no answer given).")
    status: str = Field(default="answered", description="answered | max_turns | budget | error (agent's view).")
    error: str | None = None
    turns: int = 0
    tool_calls: int = 0
    tool_call_names: dict[str, int] = Field(default_factory=dict)
    tool_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    transcript: str | None = None
    calls: list[dict[str, Any]] = Field(default_factory=list, description="[{turn, name, arguments, error}]")


class EvalAgent(Protocol):
    name: str

    async def answer(self, question: str) -> AgentOutput: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class AgentSpec:
    name: str
    factory: Callable[[AgentSettings], EvalAgent]
    needs_tools: bool
    description: str


AGENTS: dict[str, AgentSpec] = {}
ALIASES: dict[str, str] = {}


def register_agent(name: str, *, needs_tools: bool, description: str = "", aliases: tuple[str, ...] = ()):
    """Decorator registering an agent factory under ``name`` (and aliases)."""

    def deco(factory: Callable[[AgentSettings], EvalAgent]):
        AGENTS[name] = AgentSpec(name, factory, needs_tools, description or (factory.__doc__ or "").strip())
        for a in aliases:
            ALIASES[a] = name
        return factory

    return deco


def agent_spec(name: str) -> AgentSpec:
    key = ALIASES.get(name, name)
    if key not in AGENTS:
        names = sorted(list(AGENTS) + list(ALIASES))
        raise ValueError(f"unknown agent {name!r}; registered: {', '.join(names)}")
    return AGENTS[key]


def list_agents() -> list[AgentSpec]:
    return list(AGENTS.values())


def make_agent(settings: AgentSettings) -> EvalAgent:
    spec = agent_spec(settings.agent)
    if spec.needs_tools and not settings.tools_url:
        raise ValueError(f"agent {spec.name!r} needs a tool server URL")
    return spec.factory(settings)


# ---------------------------------------------------------------------------------------------------------------
# Fathom search agent (fathom / legacy presets)

def output_from_trajectory(traj) -> AgentOutput:
    """Map a ``fathom.agent.Trajectory`` onto the harness record."""
    calls = list(traj.tool_calls)
    names = Counter(c.name for c in calls)
    return AgentOutput(
        answer=traj.answer, status=traj.status, error=traj.error, turns=len(traj.turns), tool_calls=len(calls),
        tool_call_names=dict(names), tool_errors=sum(1 for c in calls if c.error),
        prompt_tokens=traj.prompt_tokens, completion_tokens=traj.completion_tokens, latency_s=traj.latency_s,
        transcript=traj.transcript,
        calls=[{"turn": c.turn, "name": c.name, "arguments": c.arguments, "error": c.error} for c in calls],
    )


class SearchAgent:
    """``fathom.agent.run_agent`` over the tool server with a tool preset."""

    def __init__(self, settings: AgentSettings, preset: str):
        from fathom.agent import AgentConfig, HttpTools
        from fathom.llm import make_client
        from fathom.web.client import ToolClient

        self.name = settings.agent
        self.settings = settings
        self.policy = make_client(settings.policy, local_dtype=settings.local_dtype)
        self.tool_client = ToolClient(settings.tools_url or "")
        self.tools = HttpTools(self.tool_client, preset=preset)
        wanted = {"max_turns": settings.max_turns, "max_tokens_per_turn": settings.max_tokens_per_turn,
                  "max_total_tokens": settings.max_total_tokens, "temperature": settings.temperature,
                  "seed": settings.seed, "template": settings.template,
                  "max_result_chars": settings.max_result_chars,
                  # short embedded runs: keep the answer reserve within one turn's cap
                  "min_answer_tokens": min(512, settings.max_tokens_per_turn),
                  "min_turn_tokens": max(1, min(256, settings.max_tokens_per_turn // 2))}
        fields = getattr(AgentConfig, "model_fields", {})
        self.config = AgentConfig(**{k: v for k, v in wanted.items() if k in fields})

    async def answer(self, question: str) -> AgentOutput:
        from fathom.agent import run_agent

        traj = await run_agent(question, self.policy, self.tools, self.config)
        return output_from_trajectory(traj)

    async def aclose(self) -> None:
        await self.tool_client.aclose()
        await self.policy.aclose()


@register_agent("fathom", needs_tools=True, aliases=("fathom-search",),
                description="Fathom search agent, tools search_urls + query_url (the released format).")
def _fathom(settings: AgentSettings) -> EvalAgent:
    return SearchAgent(settings, "fathom")


@register_agent("legacy", needs_tools=True, aliases=("ii-search", "jan-nano"),
                description="ReCall loop with the legacy web_search + web_visit preset (II-Search-4B, Jan-Nano).")
def _legacy(settings: AgentSettings) -> EvalAgent:
    return SearchAgent(settings, "legacy")


# ---------------------------------------------------------------------------------------------------------------
# Closed-book baseline

NO_SEARCH_SYSTEM = "Please answer the following question. Provide your final answer as \\boxed{YOUR_ANSWER}."
NO_SEARCH_USER = "Q: {q}\nA:"


class NoSearchAgent:
    """Closed-book baseline: one chat turn, answer extracted from ``\\boxed{}`` (or answer tags / last line)."""

    def __init__(self, settings: AgentSettings):
        from fathom.llm import make_client

        self.name = "no-search"
        self.settings = settings
        self.client = make_client(settings.policy, local_dtype=settings.local_dtype)

    async def answer(self, question: str) -> AgentOutput:
        messages = [{"role": "system", "content": NO_SEARCH_SYSTEM},
                    {"role": "user", "content": NO_SEARCH_USER.format(q=question)}]
        comp = await self.client.chat(messages, max_tokens=self.settings.max_tokens_per_turn,
                                      temperature=self.settings.temperature, seed=self.settings.seed)
        ans = extract_answer(comp.text) or None
        return AgentOutput(answer=ans, status="answered" if ans else "budget", turns=1,
                           prompt_tokens=comp.prompt_tokens, completion_tokens=comp.completion_tokens,
                           latency_s=comp.latency_s, transcript=comp.text)

    async def aclose(self) -> None:
        await self.client.aclose()


@register_agent("no-search", needs_tools=False, aliases=("nosearch", "closed-book"),
                description="Closed-book baseline: one answer, no tools.")
def _no_search(settings: AgentSettings) -> EvalAgent:
    return NoSearchAgent(settings)


# ---------------------------------------------------------------------------------------------------------------
# Tag-format search agents (ZeroSearch, R1-Searcher, search-o1 style)

@dataclass(frozen=True)
class TagFormat:
    """A search-in-the-text protocol: the model writes ``query_open q query_close``; the harness appends
    ``result_open docs result_close`` and lets it continue; the answer is in ``answer_open … answer_close``."""

    system: str
    query_open: str
    query_close: str
    result_open: str
    result_close: str
    answer_open: str = "<answer>"
    answer_close: str = "</answer>"
    top_k: int = 5


_TAG_INSTR = ("Answer the question. Think step by step. Whenever you need facts, search by writing "
              "{qo} your query {qc}; results are returned between {ro} and {rc}. Search as often as needed. "
              "Give the final answer between {ao} and {ac}, e.g. {ao} Beijing {ac}.")


def _fmt(qo, qc, ro, rc, ao="<answer>", ac="</answer>", top_k=5) -> TagFormat:
    return TagFormat(_TAG_INSTR.format(qo=qo, qc=qc, ro=ro, rc=rc, ao=ao, ac=ac), qo, qc, ro, rc, ao, ac, top_k)


TAG_FORMATS: dict[str, TagFormat] = {
    "zerosearch": _fmt("<search>", "</search>", "<information>", "</information>"),
    "r1-searcher": _fmt("<|begin_of_query|>", "<|end_of_query|>", "<|begin_of_documents|>", "<|end_of_documents|>",
                        top_k=3),
    "search-o1": _fmt("<|begin_search_query|>", "<|end_search_query|>", "<|begin_search_result|>",
                      "<|end_search_result|>", top_k=10),
}


class TagSearchAgent:
    """One generation stream with search queries in tags, answered from the tool server's search endpoint."""

    def __init__(self, settings: AgentSettings, fmt: TagFormat):
        from fathom.llm import make_client
        from fathom.web.client import ToolClient

        self.name = settings.agent
        self.settings = settings
        self.fmt = fmt
        self.client = make_client(settings.policy, local_dtype=settings.local_dtype)
        self.tool_client = ToolClient(settings.tools_url or "")

    def _prefix(self, question: str) -> str:
        render = getattr(self.client, "render_chat", None)
        messages = [{"role": "system", "content": self.fmt.system}, {"role": "user", "content": question}]
        if render is not None:
            return render(messages)
        return (f"<|im_start|>system\n{self.fmt.system}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
                "<|im_start|>assistant\n")

    async def _search(self, query: str) -> tuple[str, str | None]:
        resp = await self.tool_client.search(query, top_k=self.fmt.top_k)
        if resp.error is not None:
            return f"[error:{resp.error.code}] {resp.error.message}", resp.error.code
        docs = [f"Doc {i}: Title: {h.title}\nURL: {h.url}\nSnippet: {h.snippet}" for i, h in enumerate(resp.hits, 1)]
        return "\n".join(docs) or "No results found.", None

    async def answer(self, question: str) -> AgentOutput:
        f, s = self.fmt, self.settings
        t0 = time.perf_counter()
        text = self._prefix(question)
        prompt_len = self.client.count_tokens(text)
        out = AgentOutput(status="max_turns", prompt_tokens=0)
        generated = ""
        for turn in range(s.max_turns):
            budget = s.max_total_tokens - prompt_len - self.client.count_tokens(generated)
            if budget < 16:
                out.status = "budget"
                break
            comp = await self.client.complete(text + generated, max_tokens=min(s.max_tokens_per_turn, budget),
                                              temperature=s.temperature, stop=[f.query_close], seed=s.seed)
            out.turns += 1
            out.prompt_tokens += comp.prompt_tokens
            out.completion_tokens += comp.completion_tokens
            generated += comp.text
            m = re.search(re.escape(f.query_open) + r"(.*)$", comp.text, re.DOTALL)
            if m and f.answer_open not in comp.text and comp.finish_reason != "length":
                query = m.group(1).strip()[:500] or question
                result, err = await self._search(query)
                out.tool_calls += 1
                out.tool_call_names["search"] = out.tool_call_names.get("search", 0) + 1
                out.tool_errors += err is not None
                out.calls.append({"turn": turn, "name": "search", "arguments": {"query": query}, "error": err})
                generated += f"{f.query_close}\n{f.result_open}\n{result}\n{f.result_close}\n"
                continue
            out.status = "answered"
            break
        answers = re.findall(re.escape(f.answer_open) + r"(.*?)" + re.escape(f.answer_close), generated, re.DOTALL)
        out.answer = answers[-1].strip() if answers else (extract_answer(generated) or None)
        if out.status == "answered" and not answers:
            out.status = "answered" if out.answer else "budget"
        out.transcript = text + generated
        out.latency_s = time.perf_counter() - t0
        return out

    async def aclose(self) -> None:
        await self.tool_client.aclose()
        await self.client.aclose()


def _register_tag_agents() -> None:
    for name, fmt in TAG_FORMATS.items():
        register_agent(name, needs_tools=True, description=f"{name}-style tag-format search agent over the tool "
                       "server's search endpoint.")(lambda settings, _fmt=fmt: TagSearchAgent(settings, _fmt))


_register_tag_agents()
