"""The search agent loop: generate a turn, run its tool calls concurrently, append the results, repeat.

One model turn is generated with raw prompt text (``policy.complete``) so the prompt bytes are exactly the trained
format (:mod:`fathom.agent.format`). Everything after generation — parsing the calls, running them, the environment
text appended after the turn, reminders, the forced answer and the final status — is the shared turn engine
(:mod:`fathom.agent.turn`), the very code RL rollouts use; see its doc for the rules. This module adds what only
inference has: server usage as the token count, per-step retries (a generation that still fails after
``step_retries`` retries ends the run with status ``error``; never restarts the trajectory) and progress events.
"""

from __future__ import annotations

import asyncio
import logging
import time

from pydantic import BaseModel, Field

from fathom.agent import format as fmt
from fathom.agent.tools import Tools
from fathom.agent.trajectory import Segment, Trajectory, Turn
from fathom.agent.turn import TRUNCATION_MARK, EventCallback, TurnEngine, TurnRules, run_calls
from fathom.agent.turn import emit as _emit
from fathom.errors import LLMError
from fathom.llm.base import Completion, LLMClient

log = logging.getLogger(__name__)

__all__ = ["TRUNCATION_MARK", "AgentConfig", "EventCallback", "run_agent"]


class AgentConfig(BaseModel):
    """Sampling, budget and robustness settings of the search agent (defaults follow the released model)."""

    max_turns: int = Field(default=32, ge=1, description="Maximum model turns (the paper trains with 32 steps).")
    max_total_tokens: int = Field(default=40960, ge=64,
                                  description="Token budget of the whole transcript (prompt + all turns + results); "
                                  "the released model's context length.")
    max_tokens_per_turn: int = Field(default=8192, ge=1, description="Cap on new tokens in one model turn.")
    temperature: float = Field(default=0.6, ge=0.0, description="Sampling temperature (released eval: 0.6).")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling.")
    repetition_penalty: float | None = Field(default=1.05, description="Repetition penalty (None: server default).")
    min_answer_tokens: int = Field(default=512, ge=1,
                                   description="Tokens kept in reserve for the forced final answer.")
    min_turn_tokens: int = Field(default=256, ge=1,
                                 description="If a further normal turn would get fewer new tokens than this, the "
                                 "loop forces the final answer instead.")
    reserve_tokens: int = Field(default=100, ge=0, description="Safety margin against token-count drift.")
    step_retries: int = Field(default=2, ge=0, description="Retries of one generation step on LLMError.")
    retry_backoff_s: float = Field(default=0.5, ge=0.0, description="Backoff before retry n is backoff * 2**n.")
    template: str = Field(default="fathom", description="System prose: 'fathom' (ours) or a path to a text file "
                          "(e.g. the released prose) with a {func_schemas} field.")
    seed: int | None = Field(default=None, description="Sampling seed (turn i uses seed + i).")
    max_parallel_calls: int = Field(default=8, ge=1, description="Tool calls of one turn run concurrently, this many "
                                    "at a time.")
    max_calls_per_turn: int = Field(default=16, ge=1, description="Calls beyond this in one turn get an error.")
    tool_timeout_s: float = Field(default=180.0, gt=0, description="Timeout of one tool call (cancelled after).")
    max_result_chars: int = Field(default=30_000, ge=100, description="Tool result text longer than this is cut.")
    max_call_chars: int = Field(default=8_000, ge=100, description="A tool call longer than this is refused.")
    max_nudges: int = Field(default=1, ge=0, description="Reminders sent when a turn has neither a tool call nor a "
                            "boxed answer, before the loop gives up with status no_answer.")

    def turn_rules(self, context_length: int | None = None) -> TurnRules:
        """The shared turn engine's settings (the budget is capped by the policy's context length)."""
        return TurnRules(max_turns=self.max_turns,
                         max_total_tokens=min(self.max_total_tokens, context_length or self.max_total_tokens),
                         max_tokens_per_turn=self.max_tokens_per_turn, min_answer_tokens=self.min_answer_tokens,
                         min_turn_tokens=self.min_turn_tokens, reserve_tokens=self.reserve_tokens,
                         max_nudges=self.max_nudges, max_calls_per_turn=self.max_calls_per_turn,
                         max_call_chars=self.max_call_chars, max_result_chars=self.max_result_chars,
                         max_parallel_calls=self.max_parallel_calls, tool_timeout_s=self.tool_timeout_s)


async def _generate(policy: LLMClient, prompt: str, max_new: int, cfg: AgentConfig, turn: int,
                    on_event: EventCallback | None) -> tuple[Completion | None, int, str | None, float]:
    """One generation step with per-step retries. Returns (completion, retries, error message, latency)."""
    t0 = time.perf_counter()
    err: str | None = None
    for attempt in range(cfg.step_retries + 1):
        try:
            c = await policy.complete(prompt, max_tokens=max_new, temperature=cfg.temperature, top_p=cfg.top_p,
                                      stop=list(fmt.STOP_STRINGS), repetition_penalty=cfg.repetition_penalty,
                                      seed=None if cfg.seed is None else cfg.seed + turn)
            return c, attempt, None, time.perf_counter() - t0
        except LLMError as exc:
            err = str(exc)
            if attempt < cfg.step_retries:
                _emit(on_event, {"type": "retry", "turn": turn, "attempt": attempt + 1, "error": err})
                await asyncio.sleep(cfg.retry_backoff_s * 2**attempt)
    return None, cfg.step_retries, err, time.perf_counter() - t0


async def run_agent(question: str, policy: LLMClient, tools: Tools, config: AgentConfig | None = None, *,
                    on_event: EventCallback | None = None) -> Trajectory:
    """Run the search agent on one question and return its full trajectory (never raises for model/tool
    failures: they end in a status)."""
    cfg = config or AgentConfig()
    t_start = time.perf_counter()
    count = policy.count_tokens
    prompt = fmt.build_prompt(question, tools.schemas, cfg.template)
    traj = Trajectory(question=question, prompt=prompt, template=cfg.template,
                      template_version=fmt.TEMPLATE_VERSION if cfg.template == "fathom" else "custom",
                      template_sha=fmt.template_sha(cfg.template), preset=getattr(tools, "preset", ""),
                      policy=getattr(policy, "model", ""))
    rules = cfg.turn_rules(policy.context_length)
    eng = TurnEngine(rules, tools.schemas, count, count(prompt))

    def add(role: str, text: str) -> None:
        if text:
            traj.segments.append(Segment(role=role, text=text))  # type: ignore[arg-type]

    while not eng.done:
        turn_idx, forced = eng.n_turns, eng.forced
        max_new = eng.max_new_tokens()
        if eng.done:
            break
        _emit(on_event, {"type": "turn_start", "turn": turn_idx, "max_new_tokens": max_new, "forced": forced,
                         "used_tokens": eng.used})
        c, retries, err, gen_latency = await _generate(policy, traj.transcript, max_new, cfg, turn_idx, on_event)
        if c is None:
            traj.error = f"generation failed after {retries + 1} attempts: {err}"
            eng.status = "error"
            break
        text = fmt.strip_stop(c.text)
        cut = c.finish_reason == "length"
        turn = Turn(index=turn_idx, text=text, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                    latency_s=gen_latency, finish_reason=c.finish_reason, forced=forced, retries=retries)
        traj.turns.append(turn)
        add("model", text)
        if not cut:
            add("model", fmt.IM_END)
        usage = c.prompt_tokens + c.completion_tokens if c.prompt_tokens > 0 else None
        step = eng.model_turn(text, cut=cut, used=usage)
        end = {"type": "turn_end", "turn": turn_idx, "n_calls": len(step.calls), "text": text,
               "completion_tokens": c.completion_tokens, "latency_s": gen_latency}
        if step.calls:
            t_tools = time.perf_counter()
            turn.calls = await run_calls(tools, turn_idx, step.calls, rules, on_event)
            turn.tool_latency_s = time.perf_counter() - t_tools
            end["tool_latency_s"] = turn.tool_latency_s
        _emit(on_event, end)
        if eng.done:
            break
        env = eng.environment(turn.calls)
        if env.forced:
            _emit(on_event, {"type": "force_answer", "turn": turn_idx, "tokens_left": env.tokens_left})
        add("env", env.close)
        add("env", env.body)

    traj.answer = eng.answer
    traj.status = eng.status or "error"  # type: ignore[assignment]
    traj.completion_tokens = sum(t.completion_tokens for t in traj.turns)
    traj.prompt_tokens = max(0, eng.used - traj.completion_tokens)
    traj.latency_s = time.perf_counter() - t_start
    _emit(on_event, {"type": "done", "status": traj.status, "answer": traj.answer, "error": traj.error,
                     "turns": len(traj.turns), "tool_calls": len(traj.tool_calls), "latency_s": traj.latency_s})
    return traj
