"""Per-role accounting (calls, tokens, tool calls, errors), per-role concurrency limits and the token budget.

`AccountedClient` wraps any `LLMClient`; `AccountedTools` wraps any agent `Tools`. Both count into a shared
`Usage` keyed by role name, so the dataset card can say what each role cost.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

from fathom.llm.base import Completion, LLMClient


class Usage:
    def __init__(self):
        self.roles: dict[str, dict[str, int]] = defaultdict(
            lambda: {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "tool_calls": 0, "errors": 0})

    def add(self, role: str, **counts: int) -> None:
        r = self.roles[role]
        for k, v in counts.items():
            r[k] = r.get(k, 0) + int(v)

    @property
    def total_tokens(self) -> int:
        return sum(r["prompt_tokens"] + r["completion_tokens"] for r in self.roles.values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {k: dict(v) for k, v in self.roles.items()}

    def merge(self, other: dict[str, dict[str, int]]) -> None:
        for role, counts in other.items():
            self.add(role, **counts)


class AccountedClient(LLMClient):
    """Counts every call of `inner` under `role` and bounds the requests in flight for that role."""

    def __init__(self, inner: LLMClient, role: str, usage: Usage, limit: "int | asyncio.Semaphore"):
        self.inner = inner
        self.role = role
        self.usage = usage
        self.model = inner.model
        # several task wrappers of one role share the role's semaphore
        self._sem = asyncio.Semaphore(limit) if isinstance(limit, int) else limit

    def _record(self, out: Completion) -> Completion:
        self.usage.add(self.role, calls=1, prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens)
        return out

    async def complete(self, prompt, **kw) -> Completion:
        async with self._sem:
            try:
                return self._record(await self.inner.complete(prompt, **kw))
            except Exception:
                self.usage.add(self.role, errors=1)
                raise

    async def chat(self, messages, **kw) -> Completion:
        async with self._sem:
            try:
                return self._record(await self.inner.chat(messages, **kw))
            except Exception:
                self.usage.add(self.role, errors=1)
                raise

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    @property
    def context_length(self):
        return self.inner.context_length

    @property
    def tokenizer(self):  # LocalClient exposes its tokenizer; keep it reachable
        return getattr(self.inner, "tokenizer", None)


class AccountedTools:
    """Counts tool calls (and tool errors) of one role."""

    def __init__(self, inner, role: str, usage: Usage):
        self.inner = inner
        self.role = role
        self.usage = usage
        self.schemas = inner.schemas

    async def call(self, name: str, arguments: dict):
        res = await self.inner.call(name, arguments)
        self.usage.add(self.role, tool_calls=1, tool_errors=1 if res.error else 0)
        return res
