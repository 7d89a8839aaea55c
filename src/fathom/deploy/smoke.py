"""Smoke test of a deployed release: the calls a client makes first, with a verdict per call.

* policy ``/v1/completions`` with a raw ChatML prompt of a fixed question (the search agent's route);
* optionally the policy's and the synthesizer's ``/v1/chat/completions``;
* the tool server's ``GET /healthz``.

Each check has its own timeout and never raises: a :class:`SmokeReport` says what passed, with latencies, and is
what the release pipeline uses to decide on a rollback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
from pydantic import BaseModel, Field

from fathom.config import RoleConfig

QUESTION = "What is the capital of France?"
# ChatML: the turn format of both released models (Qwen3) and of the embedded SmolLM2.
RAW_PROMPT = "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


class SmokeCheck(BaseModel):
    name: str
    ok: bool
    latency_s: float = 0.0
    detail: str = ""


class SmokeReport(BaseModel):
    checks: list[SmokeCheck] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def metrics(self) -> dict[str, float]:
        out = {"smoke_ok": float(self.ok)}
        for c in self.checks:
            out[f"{c.name}_ok"] = float(c.ok)
            out[f"{c.name}_latency_s"] = round(c.latency_s, 3)
        return out

    def summary(self) -> str:
        lines = [f"{'PASS' if c.ok else 'FAIL'} {c.name} ({c.latency_s:.2f}s) {c.detail}" for c in self.checks]
        return "\n".join(lines + [f"smoke test {'passed' if self.ok else 'FAILED'}"])


async def _check(name: str, fn: Callable[[], Awaitable[str]], timeout_s: float) -> SmokeCheck:
    t0 = time.perf_counter()
    try:
        detail = await asyncio.wait_for(fn(), timeout_s)
        return SmokeCheck(name=name, ok=True, latency_s=time.perf_counter() - t0, detail=detail)
    except AssertionError as exc:
        return SmokeCheck(name=name, ok=False, latency_s=time.perf_counter() - t0, detail=str(exc))
    except Exception as exc:  # noqa: BLE001 - a smoke test reports every failure instead of raising
        return SmokeCheck(name=name, ok=False, latency_s=time.perf_counter() - t0,
                          detail=f"{type(exc).__name__}: {exc}"[:500])


def _role(spec: RoleConfig | str, timeout_s: float) -> RoleConfig:
    role = RoleConfig.parse(spec)
    if role.is_local:
        raise ValueError(f"smoke tests call endpoints; {role.model} is an in-process role")
    return role.model_copy(update={"timeout_s": timeout_s, "max_retries": 1, "concurrency": 2})


async def run_smoke(policy: RoleConfig | str | None = None, *, tools_url: str | None = None,
                    synthesizer: RoleConfig | str | None = None, chat: bool = True, question: str = QUESTION,
                    expect: str | None = None, max_tokens: int = 16, timeout_s: float = 120.0,
                    agent_question: str | None = None, agent_tools_url: str | None = None,
                    agent_max_result_chars: int = 30_000) -> SmokeReport:
    """Call each configured endpoint once. `expect` (case-insensitive substring) is checked in the policy's raw
    completion when given; otherwise any non-empty completion passes. With `agent_question` and a tool server
    (`agent_tools_url`), the deployed policy also runs the search agent once, as a user would: it must call a
    tool and give a boxed answer."""
    from fathom.llm.openai import OpenAIClient

    report = SmokeReport()
    if policy is not None:
        client = OpenAIClient(_role(policy, timeout_s))
        try:
            async def completion() -> str:
                c = await client.complete(RAW_PROMPT.format(question=question), max_tokens=max_tokens,
                                          temperature=0.0, stop=["<|im_end|>"])
                assert c.text.strip(), f"empty completion (finish_reason={c.finish_reason})"
                assert c.completion_tokens > 0, "no completion tokens reported"
                if expect:
                    assert expect.lower() in c.text.lower(), f"expected {expect!r} in {c.text!r}"
                return repr(c.text.strip()[:80])

            report.checks.append(await _check("policy_completions", completion, timeout_s))
            if agent_question and agent_tools_url:
                async def agent() -> str:
                    from fathom.agent import AgentConfig, HttpTools, run_agent
                    from fathom.web.client import ToolClient

                    async with ToolClient(agent_tools_url) as tc:
                        traj = await run_agent(agent_question, client, HttpTools(tc),
                                               AgentConfig(max_turns=8, max_total_tokens=4096, max_tokens_per_turn=160,
                                                           temperature=0.0, max_result_chars=agent_max_result_chars))
                    assert traj.tool_calls, f"no tool call ({traj.status})"
                    assert traj.answer is not None, f"no boxed answer ({traj.status})"
                    return f"{len(traj.tool_calls)} tool call(s), answer {traj.answer!r} to {agent_question!r}"

                report.checks.append(await _check("agent_answer", agent, timeout_s * 4))
            if chat:
                async def chat_call() -> str:
                    c = await client.chat([{"role": "user", "content": question}], max_tokens=max_tokens)
                    assert c.text.strip(), f"empty chat reply (finish_reason={c.finish_reason})"
                    return repr(c.text.strip()[:80])

                report.checks.append(await _check("policy_chat", chat_call, timeout_s))
        finally:
            await client.aclose()
    if synthesizer is not None:
        synth = OpenAIClient(_role(synthesizer, timeout_s))
        try:
            async def synth_call() -> str:
                c = await synth.chat([{"role": "user", "content": f"Write one sentence answering: {question}"}],
                                     max_tokens=max_tokens)
                assert c.text.strip(), "empty synthesizer reply"
                return repr(c.text.strip()[:80])

            report.checks.append(await _check("synthesizer_chat", synth_call, timeout_s))
        finally:
            await synth.aclose()
    if tools_url is not None:
        async def healthz() -> str:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0)) as http:
                r = await http.get(f"{tools_url.rstrip('/')}/healthz")
            assert r.status_code == 200, f"HTTP {r.status_code}: {r.text[:200]}"
            return r.text[:120]

        report.checks.append(await _check("tools_healthz", healthz, min(timeout_s, 30.0)))
    return report


def smoke_test(*args, **kwargs) -> SmokeReport:
    """Synchronous wrapper of :func:`run_smoke`."""
    return asyncio.run(run_smoke(*args, **kwargs))
