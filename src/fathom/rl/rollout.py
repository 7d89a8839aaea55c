"""Multi-turn tool rollouts in the Fathom format, token-exact, for TRL's ``rollout_func``.

One rollout is the released model's transcript (``fathom.agent.format``): the prompt ends in
``<|im_start|>assistant\\n<think>``; the policy generates a turn until ``<|im_end|>`` (its EOS) or the per-turn
limit; the tool calls of that turn (``fathom.agent.parse``) run against the tool server (``fathom.agent`` tools:
HTTP in real runs, the offline stack in smoke runs, any :class:`Tools` in tests); their results come back as ONE
user turn of ``<tool_response>`` blocks followed by the next ``<|im_start|>assistant\\n<think>`` prefix; and so on
until a turn without a call, ``max_tool_steps`` tool rounds, or the total token budget.

Token ids are the ground truth: the policy is conditioned on exactly the ids it generated plus the tokenised
environment text, and the same ids go to the trainer. ``env_mask`` is 1 on the policy's tokens and 0 on every
environment token (tool responses, generation prefixes, the ``<|im_end|>`` added after a cut turn), so tool output
never enters the loss (ReCall's ``result_mask``). Every rollout also yields a :class:`fathom.agent.trajectory.
Trajectory` (``prompt + segments == transcript``) that rewards, labellers and logs read.

Generation: the trainer's own model with ``transformers.generate`` (batched over all live rollouts, left padded),
or TRL's vLLM engine when the trainer runs with ``use_vllm``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field

from fathom.agent.format import build_prompt, preset_schemas, strip_stop
from fathom.agent.trajectory import Segment, ToolResult, Trajectory, Turn
from fathom.agent.turn import TurnEngine, TurnRules, run_calls

log = logging.getLogger(__name__)


class Tools(Protocol):
    """The agent's tool interface (``fathom.agent``): ``await tools.call(name, arguments) -> ToolResult``."""

    async def call(self, name: str, arguments: dict) -> ToolResult: ...


class RolloutConfig(BaseModel):
    """Horizon and sampling of training rollouts (paper: ≤ 32 tool steps, 8,192 tokens per step, 40,960 total,
    temperature 1.4, top-p 1.0)."""

    max_tool_steps: int = Field(default=32, ge=0, description="Maximum tool rounds per rollout: a rollout has at "
                                "most max_tool_steps + 1 model turns; the calls of the last one are still run and "
                                "recorded, status max_turns.")
    max_tokens_per_turn: int = Field(default=8192, ge=1, description="Maximum tokens the policy generates per turn.")
    max_total_tokens: int = Field(default=40960, ge=16,
                                  description="Budget of the whole transcript (prompt + all turns + tool responses).")
    temperature: float = Field(default=1.4, gt=0, description="Sampling temperature of training rollouts.")
    top_p: float = Field(default=1.0, gt=0, le=1, description="Nucleus sampling mass.")
    repetition_penalty: float | None = Field(default=None, description="Optional repetition penalty (None = off).")
    preset: str = Field(default="fathom", description="Tool preset: 'fathom' (search_urls, query_url) or 'legacy'.")
    template: str = Field(default="fathom", description="System prompt template: 'fathom' or a path.")
    tool_timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one tool call.")
    max_tool_result_chars: int | None = Field(default=None, ge=16,
                                              description="Truncate each tool result to this many characters "
                                                          "(None = as the server returns it; small in CPU smoke runs).")
    max_nudges: int = Field(default=0, ge=0, description="Reminders sent when a turn has neither a tool call nor a "
                            "boxed answer (0: such a turn ends the rollout, status no_answer).")
    min_answer_tokens: int | None = Field(default=None, ge=0, description="Tokens kept in reserve for the forced "
                                          "final answer (None: min(512, max_tokens_per_turn)).")
    min_turn_tokens: int | None = Field(default=None, ge=1, description="When a further normal turn would get "
                                        "fewer new tokens than this, the answer is forced instead (None: min(256, "
                                        "max_tokens_per_turn)).")
    max_calls_per_turn: int = Field(default=16, ge=1, description="Calls beyond this in one turn get an error.")
    max_parallel_calls: int = Field(default=1, ge=1, description="Calls of one turn run this many at a time (1: in "
                                    "order, like the reference executor); rollouts always run concurrently.")

    def turn_rules(self) -> TurnRules:
        """The shared turn engine's settings. Token counts are exact (token ids), so no reserve is kept."""
        per_turn = self.max_tokens_per_turn
        return TurnRules(
            max_turns=self.max_tool_steps + 1, max_total_tokens=self.max_total_tokens, max_tokens_per_turn=per_turn,
            min_answer_tokens=min(512, per_turn) if self.min_answer_tokens is None else self.min_answer_tokens,
            min_turn_tokens=min(256, per_turn) if self.min_turn_tokens is None else self.min_turn_tokens,
            reserve_tokens=0, max_nudges=self.max_nudges, max_calls_per_turn=self.max_calls_per_turn,
            max_result_chars=self.max_tool_result_chars, max_parallel_calls=self.max_parallel_calls,
            tool_timeout_s=self.tool_timeout_s)


@dataclass
class Rollout:
    """One finished rollout: ``prompt_ids`` + ``completion_ids`` is the transcript; ``env_mask`` (same length as
    ``completion_ids``) is 1 on policy tokens and 0 on environment tokens."""

    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    trajectory: Trajectory
    logprobs: list[float] | None = None

    def to_entry(self) -> dict[str, Any]:
        """A JSON-serialisable copy (what the replay buffer stores)."""
        return {"prompt_ids": list(self.prompt_ids), "completion_ids": list(self.completion_ids),
                "env_mask": list(self.env_mask), "logprobs": self.logprobs,
                "trajectory": self.trajectory.model_dump(mode="json")}

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Rollout:
        return cls(list(entry["prompt_ids"]), list(entry["completion_ids"]), list(entry["env_mask"]),
                   Trajectory.model_validate(entry["trajectory"]), entry.get("logprobs"))


# ---------------------------------------------------------------------------------------------------------------
# An event loop thread for the (async) tools, so the synchronous rollout_func can call them.


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rollout-tools", daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable, timeout: float | None = None):
        fut: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]
        return fut.result(timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------------------------
# Turn generators: contexts (token ids) in, new token ids out (ending with EOS when the policy stopped).

TurnGenerator = Callable[[list[list[int]], list[int]], tuple[list[list[int]], list[list[float]] | None]]


def transformers_generator(model, tokenizer, *, temperature: float, top_p: float,
                           repetition_penalty: float | None = None, eos_ids: Sequence[int] | None = None,
                           context=None, reuse_cache: bool = True) -> TurnGenerator:
    """Batched ``model.generate`` over left-padded contexts; each row is cut after its first EOS.
    ``context`` is an optional context-manager factory yielding the model to use (e.g. TRL's unwrap helper).
    ``reuse_cache``: every turn encodes only what the environment appended since the row's previous turn (and a
    new row only what it does not share with a cached one, e.g. past the system prompt) —
    :class:`fathom.llm.kvcache.PrefixCacheGenerator`. The cache lives as long as this generator (one RAPO step:
    the weights do not change within it); single-process only (ZeRO-3 forwards are collective)."""
    import contextlib

    import torch

    from fathom.llm.kvcache import PrefixCacheGenerator

    eos = list(eos_ids or _eos_ids(tokenizer))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    caches: dict[int, PrefixCacheGenerator] = {}

    def generate(contexts: list[list[int]], max_new: list[int]):
        kwargs: dict[str, Any] = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0,
                                  "eos_token_id": eos, "pad_token_id": pad_id}
        if repetition_penalty:
            kwargs["repetition_penalty"] = repetition_penalty
        cm = context() if context is not None else contextlib.nullcontext(model)
        with cm as m, torch.no_grad():
            if reuse_cache:
                gen = caches.setdefault(id(m), PrefixCacheGenerator(m, pad_id=pad_id))
                new_rows = gen.generate(contexts, max(max_new), **kwargs)
            else:
                width = max(len(c) for c in contexts)
                ids = torch.full((len(contexts), width), pad_id, dtype=torch.long)
                att = torch.zeros((len(contexts), width), dtype=torch.long)
                for i, c in enumerate(contexts):
                    ids[i, width - len(c):] = torch.tensor(c, dtype=torch.long)
                    att[i, width - len(c):] = 1
                dev = next(m.parameters()).device
                out = m.generate(input_ids=ids.to(dev), attention_mask=att.to(dev), max_new_tokens=max(max_new),
                                 use_cache=True, **kwargs)
                new_rows = out[:, width:].tolist()
        rows: list[list[int]] = []
        for i, row in enumerate(new_rows):
            cut = next((j + 1 for j, t in enumerate(row) if t in eos), len(row))
            rows.append(row[: min(cut, max_new[i])])
        return rows, None

    return generate


def vllm_generator(trainer) -> TurnGenerator:
    """TRL's vLLM engine (colocate or server mode). Its ``max_completion_length`` is the per-turn limit; sampling
    settings come from the trainer's config. In server mode ``generate`` is a collective call: every process must
    call it the same number of times (see :meth:`RolloutEngine.generate`, which keeps ranks in step)."""

    def generate(contexts: list[list[int]], max_new: list[int]):
        _, completion_ids, logprobs, _ = trainer.vllm_generation.generate(prompts=contexts, images=None,
                                                                          num_generations=1)
        rows, lps = [], []
        for c, lp, m in zip(completion_ids, logprobs, max_new):
            rows.append(list(c)[:m])
            lps.append([x[0] for x in lp][:m])
        return rows, lps

    return generate


def _eos_ids(tokenizer) -> list[int]:
    ids = []
    for tok in ("<|im_end|>", "<|endoftext|>"):
        tid = tokenizer.convert_tokens_to_ids(tok)
        if isinstance(tid, int) and tid >= 0 and tid != tokenizer.unk_token_id:
            ids.append(tid)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


# ---------------------------------------------------------------------------------------------------------------


@dataclass
class _State:
    question: str
    prompt: str
    prompt_ids: list[int]
    ctx: list[int]
    engine: TurnEngine
    completion: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)

    @property
    def done(self) -> bool:
        return self.engine.done

    def append(self, ids: list[int], policy: bool, logprobs: list[float] | None) -> None:
        self.completion += ids
        self.mask += [1 if policy else 0] * len(ids)
        self.ctx += ids
        if logprobs is not None:
            self.logprobs += logprobs


class RolloutEngine:
    """Runs batches of multi-turn rollouts. ``tools_factory`` is called once, inside the engine's event loop (so
    async HTTP clients bind to it); ``schemas`` default to the preset's."""

    def __init__(self, tools_factory: Callable[[], Tools], cfg: RolloutConfig = RolloutConfig(),
                 schemas: list[dict] | None = None):
        self.cfg = cfg
        self.schemas = schemas or preset_schemas(cfg.preset)
        self._loop = _LoopThread()
        self.tools: Tools = self._loop.run(self._make(tools_factory))
        self.stats: dict[str, float] = {}

    @staticmethod
    async def _make(factory):
        return factory()

    def close(self) -> None:
        tools = self.tools
        close = getattr(tools, "aclose", None)
        if close is not None:
            try:
                self._loop.run(close(), timeout=10)
            except Exception:  # closing is best effort
                pass
        self._loop.close()

    async def _run_rounds(self, pending: list[tuple[_State, Turn, list]], rules: TurnRules):
        """The calls of every pending rollout's last turn, all rollouts concurrently."""
        return await asyncio.gather(*(run_calls(self.tools, turn.index, calls, rules) for _, turn, calls in pending))

    # -- the loop -------------------------------------------------------------------------------------------
    def generate(self, questions: Sequence[str], tokenizer, generate_turn: TurnGenerator,
                 *, keep_in_step: Callable[[bool], bool] | None = None) -> list[Rollout]:
        """Roll out every question once (pass a question G times for a group). ``keep_in_step(local_active)``
        returns whether any rank still has live rollouts (multi-process vLLM server mode); by default the loop
        ends when the local rollouts are done."""
        cfg = self.cfg
        rules = cfg.turn_rules()
        eos = set(_eos_ids(tokenizer))

        def count(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False).input_ids)

        states: list[_State] = []
        for q in questions:
            prompt = build_prompt(q, self.schemas, cfg.template)
            ids = list(tokenizer(prompt, add_special_tokens=False).input_ids)
            states.append(_State(q, prompt, ids, list(ids), TurnEngine(rules, self.schemas, count, len(ids))))
        n_turns = 0
        while True:
            live = [s for s in states if not s.done]
            budgets = [s.engine.max_new_tokens() for s in live]
            live, budgets = [s for s in live if not s.done], [b for b in budgets if b > 0]
            if keep_in_step is not None:
                if not keep_in_step(bool(live)):
                    break
            elif not live:
                break
            if live:
                rows, lps = generate_turn([s.ctx for s in live], budgets)
            else:  # other ranks are still generating: join their collective calls with a throwaway context
                generate_turn([list(states[0].prompt_ids[:8]) or [0]], [1])
                rows, lps = [], None
            n_turns += 1
            pending: list[tuple[_State, Turn, list]] = []
            for k, (s, new) in enumerate(zip(live, rows)):
                s.append(new, True, lps[k] if lps is not None else None)
                raw = tokenizer.decode(new, skip_special_tokens=False)
                stopped = bool(new) and new[-1] in eos
                text = strip_stop(raw)
                s.segments.append(Segment(role="model", text=raw))
                turn = Turn(index=len(s.turns), text=text, completion_tokens=len(new),
                            prompt_tokens=len(s.ctx) - len(new), finish_reason="stop" if stopped else "length",
                            forced=s.engine.forced)
                s.turns.append(turn)
                step = s.engine.model_turn(text, cut=not stopped, used=len(s.ctx))
                if not s.done:
                    pending.append((s, turn, step.calls))
            if pending:
                records = self._loop.run(self._run_rounds(pending, rules))
                for (s, turn, _), recs in zip(pending, records):
                    turn.calls = recs
                    env = s.engine.environment(recs)
                    if not env.text:
                        continue
                    env_ids = list(tokenizer(env.text, add_special_tokens=False).input_ids)
                    s.append(env_ids, False, [0.0] * len(env_ids) if lps is not None else None)
                    s.engine.used = len(s.ctx)  # token ids are the ground truth
                    s.segments.append(Segment(role="env", text=env.text))
        out = []
        for s in states:
            traj = Trajectory(question=s.question, prompt=s.prompt, segments=s.segments, turns=s.turns,
                              answer=s.engine.answer, status=s.engine.status or "error",  # type: ignore[arg-type]
                              prompt_tokens=len(s.prompt_ids), completion_tokens=sum(s.mask),
                              latency_s=time.perf_counter() - s.t0, template=cfg.template, preset=cfg.preset)
            out.append(Rollout(s.prompt_ids, s.completion, s.mask, traj, s.logprobs if s.logprobs else None))
        self.stats = {"turn_rounds": n_turns}
        return out

    # -- TRL --------------------------------------------------------------------------------------------------
    def rollout_func(self, prompts: list, trainer) -> dict[str, Any]:
        """TRL 1.16 ``rollout_func(prompts, trainer)``: ``prompts`` holds one entry per rollout (each prompt
        already repeated ``num_generations`` times); returns ``prompt_ids``, ``completion_ids``, ``logprobs``,
        ``env_mask`` and ``rollouts`` (the :class:`Rollout` objects, read by the RAPO trainer)."""
        questions = [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        tok = trainer.processing_class
        if getattr(trainer, "use_vllm", False):
            gen = vllm_generator(trainer)
            keep = _collective_keep(trainer) if trainer.accelerator.num_processes > 1 else None
        else:
            from trl.models import unwrap_model_for_generation

            def ctx():
                return unwrap_model_for_generation(
                    trainer.model_wrapped, trainer.accelerator,
                    gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                    gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs)

            gen = transformers_generator(None, tok, temperature=self.cfg.temperature, top_p=self.cfg.top_p,
                                         repetition_penalty=self.cfg.repetition_penalty, context=ctx,
                                         reuse_cache=trainer.accelerator.num_processes == 1)
            # ZeRO-3 gathers parameters collectively inside generate: keep ranks in step there too.
            keep = _collective_keep(trainer) if trainer.accelerator.num_processes > 1 else None
        rollouts = self.generate(questions, tok, gen, keep_in_step=keep)
        logprobs = [r.logprobs for r in rollouts]
        return {"prompt_ids": [r.prompt_ids for r in rollouts],
                "completion_ids": [r.completion_ids for r in rollouts],
                "logprobs": logprobs if all(lp is not None for lp in logprobs) else None,
                "env_mask": [r.env_mask for r in rollouts],
                "rollouts": rollouts}


def _collective_keep(trainer) -> Callable[[bool], bool]:
    import torch

    def keep(local_active: bool) -> bool:
        flag = torch.tensor([1.0 if local_active else 0.0], device=trainer.accelerator.device)
        return bool(trainer.accelerator.reduce(flag, reduction="sum").item() > 0)

    return keep


# ---------------------------------------------------------------------------------------------------------------
# Tool backends


def http_tools_factory(tools_url: str, preset: str = "fathom") -> Callable[[], Tools]:
    """The tool server over HTTP (``fathom.web.client.ToolClient`` + the agent's ``HttpTools``)."""

    def make() -> Tools:
        from fathom.web.client import ToolClient

        try:
            from fathom.agent.tools import HttpTools  # type: ignore[import-not-found]
        except ImportError:  # pragma: no cover - older layout
            from fathom.agent import HttpTools  # type: ignore[attr-defined,no-redef]
        return HttpTools(ToolClient(tools_url), preset=preset)

    return make


class StubTools:
    """A deterministic in-process backend (tests, benchmarks): ``search_urls`` returns canned hits for the query,
    ``query_url`` echoes the goal with a fact from ``facts`` when the URL is known."""

    def __init__(self, facts: dict[str, str] | None = None, latency_s: float = 0.0):
        self.facts = facts or {}
        self.latency_s = latency_s
        self.calls: list[tuple[str, dict]] = []

    async def call(self, name: str, arguments: dict) -> ToolResult:
        self.calls.append((name, dict(arguments)))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if name in ("search_urls", "web_search"):
            q = str(arguments.get("query", ""))
            hits = [f"### {i + 1}. Result about {q}\n**URL**: http://atlas.fathom.test/{i}\n\n**Snippet**: {q} ..."
                    for i in range(2)]
            return ToolResult(text="\n---\n\n".join(hits))
        if name in ("query_url", "web_visit"):
            url = str(arguments.get("url", ""))
            fact = self.facts.get(url, "no relevant information")
            return ToolResult(text=f"The useful information in {url} for goal “{arguments.get('goal', '')}”:\n\n{fact}")
        return ToolResult(text=f"[error:unknown_tool] {name}", error="unknown_tool")
