"""One turn of the search agent — parse → run calls → environment text → status — shared by inference
(:func:`fathom.agent.loop.run_agent`) and RL rollouts (:class:`fathom.rl.rollout.RolloutEngine`), so the text
appended after a model turn is produced by the same code on both paths.

The caller owns generation and its records (text on the inference path, token ids + ``env_mask`` in rollouts); a
:class:`TurnEngine` (one per trajectory) owns the rules::

    eng = TurnEngine(rules, schemas, count_tokens, prompt_tokens=count_tokens(prompt))
    while not eng.done:
        max_new = eng.max_new_tokens()                  # 0: the budget is spent (status "budget")
        if eng.done: break
        text, cut = <generate at most max_new tokens>   # cut: stopped at its token limit, not by <|im_end|>
        step = eng.model_turn(text, cut=cut)            # parses the calls; sets the status if the run ends here
        if eng.done: break
        records = await run_calls(tools, step.index, step.calls, rules)   # [] for a reminder (nudge) round
        env = eng.environment(records)                  # env.text is appended after the model's tokens

The rules (:class:`TurnRules`; ``AgentConfig`` and ``RolloutConfig`` map their knobs onto them):

* A turn with ``<tool_call>`` tags: every block is parsed (:func:`fathom.agent.parse.parse_tool_calls`); malformed
  blocks, calls beyond ``max_calls_per_turn``, timeouts and tool crashes become ``[error:<code>] message``
  observations in that call's ``<tool_response>``; results longer than ``max_result_chars`` are cut and marked
  with :data:`TRUNCATION_MARK`. All results come back as ONE user turn followed by the next generation prefix.
* A turn without tags ends the run ``answered`` when the model's turns hold a ``\\boxed{}`` answer; otherwise it
  gets a reminder (the nudge instruction as a user turn), at most ``max_nudges`` times, then ``no_answer``.
* A turn cut at its token limit is closed by the environment with ``<|im_end|>`` (before the user turn).
* Budget: ``used`` counts the transcript's tokens. A normal turn may generate
  ``min(max_tokens_per_turn, total - used - reserve - min_answer_tokens)`` tokens; when, after a round, fewer than
  ``min_answer_tokens + min_turn_tokens`` would remain, the force-answer instruction is appended to that round's
  user turn (tool results cut, longest first, until it fits) and one final turn is generated: ``answered`` if it
  boxes an answer, else ``budget``. No further calls are run after the forced turn.
* The ``max_turns``-th model turn's calls are still run and recorded (the synthesizer reads them) and their results
  appended (cut to the budget); the status is ``max_turns``.
* Environment text is never appended past the budget: when not even cut results fit, nothing is appended (the
  calls stay in the turn's records) and the run ends (``budget``, or ``max_turns`` on the last turn).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fathom.agent import format as fmt
from fathom.agent.parse import MAX_CALL_CHARS, ParsedCall, ParseError, extract_boxed, parse_tool_calls, split_tool_calls
from fathom.agent.tools import error_result
from fathom.agent.trajectory import ToolCallRecord, ToolResult

log = logging.getLogger(__name__)

EventCallback = Callable[[dict[str, Any]], None]
TRUNCATION_MARK = "\n[... truncated]"
OMITTED = "[result omitted: the token budget is exhausted]"


class CallableTools(Protocol):
    async def call(self, name: str, arguments: dict) -> ToolResult: ...


@dataclass(frozen=True)
class TurnRules:
    """The turn engine's settings. Not a user-facing config: ``AgentConfig.turn_rules`` and
    ``RolloutConfig.turn_rules`` build it from their own fields (see their help strings)."""

    max_turns: int = 32
    max_total_tokens: int = 40960
    max_tokens_per_turn: int = 8192
    min_answer_tokens: int = 512
    min_turn_tokens: int = 256
    reserve_tokens: int = 100
    max_nudges: int = 1
    max_calls_per_turn: int = 16
    max_call_chars: int = MAX_CALL_CHARS
    max_result_chars: int | None = 30_000
    max_parallel_calls: int = 8
    tool_timeout_s: float = 180.0


@dataclass(frozen=True)
class ModelStep:
    """What the engine made of one model turn: the calls to run (parsed or refused), or a reminder round."""

    index: int
    calls: list[ParsedCall | ParseError]
    nudge: bool = False
    forced: bool = False


@dataclass(frozen=True)
class EnvStep:
    """The environment's text after a model turn: ``close`` (``<|im_end|>`` when the turn was cut, else ``""``),
    then ``body`` (the user turn and the next ``<|im_start|>assistant\\n<think>`` prefix)."""

    close: str
    body: str
    tokens: int
    forced: bool = False
    tokens_left: int = 0

    @property
    def text(self) -> str:
        return self.close + self.body


def emit(on_event: EventCallback | None, event: dict[str, Any]) -> None:
    if on_event is None:
        return
    try:
        on_event(event)
    except Exception:  # a broken progress display must not break a run
        log.exception("on_event callback failed for %s", event.get("type"))


def cap_result(text: str, limit: int | None) -> str:
    return text if limit is None or len(text) <= limit else text[:limit] + TRUNCATION_MARK


async def run_calls(tools: CallableTools, turn: int, parsed: Sequence[ParsedCall | ParseError], rules: TurnRules,
                    on_event: EventCallback | None = None) -> list[ToolCallRecord]:
    """Execute one turn's calls concurrently (at most ``max_parallel_calls`` at a time), results in call order.
    Parse errors, calls beyond ``max_calls_per_turn``, timeouts and tool exceptions become error observations."""
    sem = asyncio.Semaphore(rules.max_parallel_calls)

    async def one(i: int, item: ParsedCall | ParseError) -> ToolCallRecord:
        if isinstance(item, ParseError):
            emit(on_event, {"type": "call_error", "turn": turn, "index": i, "code": item.code,
                            "message": item.message})
            return ToolCallRecord(turn=turn, index=i, name=item.name, arguments=item.arguments, raw=item.raw,
                                  result=item.observation, error=item.code)
        if i >= rules.max_calls_per_turn:
            res = error_result("too_many_calls", f"at most {rules.max_calls_per_turn} calls per round; this call "
                               "was not run")
            return ToolCallRecord(turn=turn, index=i, name=item.name, arguments=item.arguments, raw=item.raw,
                                  result=res.text, error=res.error)
        async with sem:
            emit(on_event, {"type": "call_start", "turn": turn, "index": i, "name": item.name,
                            "arguments": item.arguments})
            t0 = time.perf_counter()
            try:
                res = await asyncio.wait_for(tools.call(item.name, item.arguments), rules.tool_timeout_s)
            except TimeoutError:
                res = error_result("timeout", f"{item.name} did not finish within {rules.tool_timeout_s:g} s")
            except Exception as exc:  # a tool implementation bug is an observation, not a crash
                log.exception("tool %s failed", item.name)
                res = error_result("internal", f"{item.name} failed: {type(exc).__name__}: {exc}")
            latency = time.perf_counter() - t0
        text = cap_result(res.text, rules.max_result_chars)
        emit(on_event, {"type": "call_end", "turn": turn, "index": i, "name": item.name, "error": res.error,
                        "latency_s": latency, "chars": len(text)})
        return ToolCallRecord(turn=turn, index=i, name=item.name, arguments=item.arguments, raw=item.raw,
                              result=text, error=res.error, latency_s=latency)

    return list(await asyncio.gather(*(one(i, item) for i, item in enumerate(parsed))))


def fit_results(pairs: Sequence[tuple[str, str]], extra: str | None, budget_tokens: int,
                count: Callable[[str], int], close: str = "") -> tuple[str, int]:
    """The user turn for a round whose tool results are cut (longest first, deterministically) until
    ``close + body`` fits in ``budget_tokens``; if even that fails every result is replaced by a short note.
    Returns (body, tokens of close + body)."""
    pairs = list(pairs)
    for _ in range(24):
        body = fmt.user_turn(fmt.tool_results_content(pairs, extra))
        n = count(close + body)
        if n <= budget_tokens:
            return body, n
        longest = max(range(len(pairs)), key=lambda k: len(pairs[k][1]), default=None)
        if longest is None or len(pairs[longest][1]) <= 40:
            break
        raw, res = pairs[longest]
        pairs[longest] = (raw, res[: len(res) // 2] + TRUNCATION_MARK)
    pairs = [(raw, OMITTED) for raw, _ in pairs]
    body = fmt.user_turn(fmt.tool_results_content(pairs, extra))
    return body, count(close + body)


class TurnEngine:
    """The rules of one trajectory's turns (see the module doc). Pure bookkeeping: no I/O, no generation."""

    def __init__(self, rules: TurnRules, schemas: list[dict] | None, count: Callable[[str], int],
                 prompt_tokens: int):
        self.rules = rules
        self.schemas = schemas
        self.count = count
        self.used = prompt_tokens
        self.n_turns = 0
        self.nudges = 0
        self.forced = False
        self.status: str | None = None
        self._model_texts: list[str] = []
        self._step: ModelStep | None = None
        self._cut = False

    @property
    def done(self) -> bool:
        return self.status is not None

    @property
    def answer(self) -> str | None:
        """The last ``\\boxed{}`` of the model's turns (never of the prompt)."""
        return extract_boxed("".join(self._model_texts))

    def max_new_tokens(self) -> int:
        """New tokens the next turn may generate; 0 (and status ``budget``) when nothing is left."""
        r = self.rules
        room = r.max_total_tokens - self.used - r.reserve_tokens
        max_new = min(r.max_tokens_per_turn, room if self.forced else room - r.min_answer_tokens)
        if max_new < 1 and not self.forced and self.n_turns == 0:
            max_new = min(r.max_tokens_per_turn, room)  # tiny budget: no room for a forced turn, just answer
        if max_new < 1:
            self.status = "budget"
            return 0
        return max_new

    def model_turn(self, text: str, *, cut: bool, used: int | None = None) -> ModelStep:
        """Record one model turn (``text`` without its stop token) and decide what follows. ``used``: tokens of the
        transcript after the turn when the caller knows them exactly (server usage, token ids); otherwise the turn
        and its ``<|im_end|>`` are counted."""
        if self.done:
            raise RuntimeError(f"the trajectory already ended with status {self.status!r}")
        r = self.rules
        index = self.n_turns
        self.n_turns += 1
        self._model_texts.append(text)
        self._cut = cut
        if used is not None:
            self.used = used
        else:
            self.used += self.count(text) + (0 if cut else self.count(fmt.IM_END))
        if self.forced:
            self.status = "answered" if self.answer is not None else "budget"
            step = ModelStep(index, [], forced=True)
        elif split_tool_calls(text):
            step = ModelStep(index, parse_tool_calls(text, self.schemas, max_call_chars=r.max_call_chars))
        elif self.answer is not None:
            self.status = "answered"
            step = ModelStep(index, [])
        elif self.nudges >= r.max_nudges or self.n_turns >= r.max_turns:
            self.status = "no_answer"
            step = ModelStep(index, [])
        else:
            self.nudges += 1
            step = ModelStep(index, [], nudge=True)
        self._step = step
        return step

    def environment(self, records: Sequence[ToolCallRecord]) -> EnvStep:
        """The environment text after the last model turn, given its calls' records (in order; ``[]`` for a
        reminder round). Decides a forced answer or the ``max_turns`` end."""
        if self.done or self._step is None:
            raise RuntimeError("environment() follows a model_turn() that did not end the trajectory")
        r = self.rules
        pairs = [(rec.raw, rec.result) for rec in records]
        extra = fmt.nudge_instruction() if self._step.nudge else None
        close = fmt.IM_END if self._cut else ""
        body = fmt.user_turn(fmt.tool_results_content(pairs, extra))
        n = self.count(close + body)
        room = r.max_total_tokens - self.used - r.reserve_tokens
        left = room - n
        forced = False
        if self.n_turns >= r.max_turns:  # results still go into the record (and the synthesizer's trace)
            self.status = "max_turns"
            if left < 0:
                body, n = fit_results(pairs, extra, room, self.count, close)
        elif left - r.min_answer_tokens < r.min_turn_tokens:
            self.forced = forced = True
            body, n = fit_results(pairs, fmt.force_answer_instruction(), room - r.min_answer_tokens, self.count,
                                  close)
        if n > room:  # not even the cut results fit: nothing is appended, the transcript never exceeds the budget
            self.status = self.status or "budget"
            close, body, n = "", "", 0
        self.used += n
        self._step = None
        return EnvStep(close, body, n, forced=forced, tokens_left=left)
