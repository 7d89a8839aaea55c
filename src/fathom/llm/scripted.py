"""A deterministic in-process LLM client for tests, benchmarks and stub endpoints.

`ScriptedClient(responder)` answers every request with ``responder(prompt_text) -> str`` (or cycles through a list
of canned strings). Served over HTTP with `fathom.llm.server.create_openai_app`, it is an instant
OpenAI-compatible stub model on loopback.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

from fathom.llm.base import ChatMessage, Completion, LLMClient


class ScriptedClient(LLMClient):
    def __init__(self, responder: "Callable[[str], str] | Sequence[str]", model: str = "scripted"):
        if callable(responder):
            self._respond = responder
        else:
            cycle = itertools.cycle(list(responder))
            self._respond = lambda _prompt: next(cycle)
        self.model = model
        self.calls: list[str] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def complete(self, prompt, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None,
                       repetition_penalty=None) -> Completion:
        self.calls.append(prompt)
        text = self._respond(prompt)
        finish = "stop"
        for s in stop or []:
            if s in text:
                text = text[: text.index(s)]
        words = text.split(" ")
        if len(words) > max_tokens:
            text, finish = " ".join(words[:max_tokens]), "length"
        return Completion(text=text, prompt_tokens=self.count_tokens(prompt),
                          completion_tokens=self.count_tokens(text), finish_reason=finish)

    async def chat(self, messages: list[ChatMessage], *, max_tokens, temperature=0.0, top_p=1.0, stop=None,
                   seed=None) -> Completion:
        prompt = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return await self.complete(prompt + "<|im_start|>assistant\n", max_tokens=max_tokens, stop=stop)
