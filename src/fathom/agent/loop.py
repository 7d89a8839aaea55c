"""The search agent loop: generate a turn, run its tool calls concurrently, append the results, repeat.

One model turn is generated with raw prompt text (``policy.complete``) so the prompt bytes are exactly the trained
format (:mod:`fathom.agent.format`). The loop ends when

* a turn has no tool call: ``answered`` if the model's turns contain a ``\\boxed{}`` answer, else ``no_answer``
  (after ``max_nudges`` reminders);
* the token budget runs low: the forced-answer instruction is appended to the last user turn and one final turn is
  generated (``answered`` if it boxes an answer, else ``budget``);
* ``max_turns`` model turns were generated (``max_turns``);
* a generation still fails after ``step_retries`` retries (``error``; never restarts the trajectory).

Budget: ``used`` counts the tokens of the transcript so far (the policy's ``count_tokens`` and the server's usage).
A normal turn may generate ``min(max_tokens_per_turn, budget - used - reserve - min_answer_tokens)`` tokens, so the
room for the forced answer is always kept; after each round of tool results, if fewer than
``min_answer_tokens + min_turn_tokens`` would remain, the loop forces the answer (truncating tool results if even
they do not fit).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from fathom.agent import format as fmt
from fathom.agent.parse import ParseError, extract_boxed, parse_tool_calls, split_tool_calls
from fathom.agent.tools import Tools, error_result
from fathom.agent.trajectory import Segment, ToolCallRecord, ToolResult, Trajectory, Turn
from fathom.errors import LLMError
from fathom.llm.base import Completion, LLMClient

log = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]
TRUNCATION_MARK = "\n[... truncated]"


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


class _State:
    """Mutable bookkeeping of one run (kept out of the public record types)."""

    def __init__(self, traj: Trajectory, used: int):
        self.traj = traj
        self.used = used
        self.nudges = 0

    def add(self, role: str, text: str, tokens: int | None = None, count: Callable[[str], int] | None = None):
        if not text:
            return
        self.traj.segments.append(Segment(role=role, text=text))
        if tokens is None and count is not None:
            tokens = count(text)
        self.used += tokens or 0


def _emit(on_event: EventCallback | None, event: dict[str, Any]) -> None:
    if on_event is None:
        return
    try:
        on_event(event)
    except Exception:  # a broken progress display must not break a run
        log.exception("on_event callback failed for %s", event.get("type"))


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + TRUNCATION_MARK


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


async def _run_calls(tools: Tools, turn: int, parsed: list, cfg: AgentConfig,
                     on_event: EventCallback | None) -> list[ToolCallRecord]:
    """Execute the turn's valid calls concurrently (bounded); parse errors become error observations."""
    sem = asyncio.Semaphore(cfg.max_parallel_calls)

    async def one(i: int, item) -> ToolCallRecord:
        if isinstance(item, ParseError):
            res = ToolResult(text=item.observation, error=item.code)
            _emit(on_event, {"type": "call_error", "turn": turn, "index": i, "code": item.code,
                             "message": item.message})
            return ToolCallRecord(turn=turn, index=i, name=item.name, arguments=item.arguments, raw=item.raw,
                                  result=res.text, error=res.error)
        if i >= cfg.max_calls_per_turn:
            res = error_result("too_many_calls", f"at most {cfg.max_calls_per_turn} calls per round; this call "
                               "was not run")
            return ToolCallRecord(turn=turn, index=i, name=item.name, arguments=item.arguments, raw=item.raw,
                                  result=res.text, error=res.error)
        async with sem:
            _emit(on_event, {"type": "call_start", "turn": turn, "index": i, "name": item.name,
                             "arguments": item.arguments})
            t0 = time.perf_counter()
            try:
                res = await asyncio.wait_for(tools.call(item.name, item.arguments), cfg.tool_timeout_s)
            except TimeoutError:
                res = error_result("timeout", f"{item.name} did not finish within {cfg.tool_timeout_s:g} s")
            except Exception as exc:  # a tool implementation bug is an observation, not a crash
                log.exception("tool %s failed", item.name)
                res = error_result("internal", f"{item.name} failed: {type(exc).__name__}: {exc}")
            latency = time.perf_counter() - t0
        text = _cap(res.text, cfg.max_result_chars)
        _emit(on_event, {"type": "call_end", "turn": turn, "index": i, "name": item.name, "error": res.error,
                         "latency_s": latency, "chars": len(text)})
        return ToolCallRecord(turn=turn, index=i, name=item.name, arguments=item.arguments, raw=item.raw,
                              result=text, error=res.error, latency_s=latency)

    return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(parsed))))


def _fit_results(pairs: list[tuple[str, str]], extra: str, budget_tokens: int,
                 count: Callable[[str], int]) -> tuple[str, int]:
    """Env text for a forced round whose tool results are cut (longest first, deterministically) until the turn
    fits in ``budget_tokens``. Returns (env text, its token count)."""
    pairs = list(pairs)
    for _ in range(24):
        env = fmt.user_turn(fmt.tool_results_content(pairs, extra))
        n = count(env)
        if n <= budget_tokens:
            return env, n
        longest = max(range(len(pairs)), key=lambda k: len(pairs[k][1]), default=None)
        if longest is None or len(pairs[longest][1]) <= 40:
            break
        raw, res = pairs[longest]
        pairs[longest] = (raw, res[: len(res) // 2] + TRUNCATION_MARK)
    pairs = [(raw, "[result omitted: the token budget is exhausted]") for raw, _ in pairs]
    env = fmt.user_turn(fmt.tool_results_content(pairs, extra))
    return env, count(env)


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
    st = _State(traj, count(prompt))
    budget = min(cfg.max_total_tokens, policy.context_length or cfg.max_total_tokens)
    forced = False
    status: str | None = None

    for turn_idx in range(cfg.max_turns):
        room = budget - st.used - cfg.reserve_tokens
        max_new = min(cfg.max_tokens_per_turn, room if forced else room - cfg.min_answer_tokens)
        if max_new < 1 and not forced and turn_idx == 0:
            max_new = min(cfg.max_tokens_per_turn, room)  # tiny budget: no room for a forced turn, just answer
        if max_new < 1:
            status = "budget"
            break
        _emit(on_event, {"type": "turn_start", "turn": turn_idx, "max_new_tokens": max_new, "forced": forced,
                         "used_tokens": st.used})
        c, retries, err, gen_latency = await _generate(policy, traj.transcript, max_new, cfg, turn_idx, on_event)
        if c is None:
            traj.error = f"generation failed after {retries + 1} attempts: {err}"
            status = "error"
            break
        text = fmt.strip_stop(c.text)
        cut = c.finish_reason == "length"
        turn = Turn(index=turn_idx, text=text, prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                    latency_s=gen_latency, finish_reason=c.finish_reason, forced=forced, retries=retries)
        traj.turns.append(turn)
        if c.prompt_tokens > 0:
            st.used = c.prompt_tokens + c.completion_tokens
        else:
            st.used += count(text)
        st.add("model", text, tokens=0)
        if cut:
            st.add("env", fmt.IM_END, count=count)
        else:
            st.add("model", fmt.IM_END, count=count)

        if forced:
            turn_end = {"type": "turn_end", "turn": turn_idx, "n_calls": 0, "text": text,
                        "completion_tokens": c.completion_tokens, "latency_s": gen_latency}
            _emit(on_event, turn_end)
            status = "answered" if extract_boxed(traj.model_text) else "budget"
            break

        has_tags = bool(split_tool_calls(text))
        if not has_tags:
            _emit(on_event, {"type": "turn_end", "turn": turn_idx, "n_calls": 0, "text": text,
                             "completion_tokens": c.completion_tokens, "latency_s": gen_latency})
            if extract_boxed(traj.model_text) is not None:
                status = "answered"
                break
            if st.nudges >= cfg.max_nudges or turn_idx + 1 >= cfg.max_turns:
                status = "no_answer"
                break
            st.nudges += 1
            pairs: list[tuple[str, str]] = []
            content_extra = fmt.nudge_instruction()
        else:
            parsed = parse_tool_calls(text, tools.schemas, max_call_chars=cfg.max_call_chars)
            t_tools = time.perf_counter()
            turn.calls = await _run_calls(tools, turn_idx, parsed, cfg, on_event)
            turn.tool_latency_s = time.perf_counter() - t_tools
            _emit(on_event, {"type": "turn_end", "turn": turn_idx, "n_calls": len(turn.calls), "text": text,
                             "completion_tokens": c.completion_tokens, "latency_s": gen_latency,
                             "tool_latency_s": turn.tool_latency_s})
            pairs = [(rec.raw, rec.result) for rec in turn.calls]
            content_extra = None

        if turn_idx + 1 >= cfg.max_turns:  # results still go into the record (and the synthesizer's trace)
            st.add("env", fmt.user_turn(fmt.tool_results_content(pairs, content_extra)), count=count)
            status = "max_turns"
            break
        env = fmt.user_turn(fmt.tool_results_content(pairs, content_extra))
        n_env = count(env)
        left_after = budget - st.used - n_env - cfg.reserve_tokens
        if left_after - cfg.min_answer_tokens < cfg.min_turn_tokens:
            forced = True
            _emit(on_event, {"type": "force_answer", "turn": turn_idx, "tokens_left": left_after})
            env, n_env = _fit_results(pairs, fmt.force_answer_instruction(),
                                      budget - st.used - cfg.reserve_tokens - cfg.min_answer_tokens, count)
        st.add("env", env, tokens=n_env)
    else:  # pragma: no cover - the loop always breaks with a status
        status = "max_turns"

    traj.answer = extract_boxed(traj.model_text)
    traj.status = status or "error"  # type: ignore[assignment]
    traj.completion_tokens = sum(t.completion_tokens for t in traj.turns)
    traj.prompt_tokens = max(0, st.used - traj.completion_tokens)
    traj.latency_s = time.perf_counter() - t_start
    _emit(on_event, {"type": "done", "status": traj.status, "answer": traj.answer, "error": traj.error,
                     "turns": len(traj.turns), "tool_calls": len(traj.tool_calls), "latency_s": traj.latency_s})
    return traj
