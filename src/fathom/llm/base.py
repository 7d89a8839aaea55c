"""The interface every model role implements."""

from __future__ import annotations

import abc
from typing import TypedDict

from pydantic import BaseModel


class ChatMessage(TypedDict):
    role: str
    content: str


class Completion(BaseModel):
    """One generation. Token counts are exact for local models and from server usage for remote ones."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"  # stop | length | error
    latency_s: float = 0.0


class LLMClient(abc.ABC):
    """Async model client. `complete` takes raw prompt text (exact bytes); `chat` takes messages."""

    model: str

    @abc.abstractmethod
    async def complete(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
        repetition_penalty: float | None = None,
    ) -> Completion: ...

    @abc.abstractmethod
    async def chat(
        self,
        messages: list[ChatMessage],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: list[str] | None = None,
        seed: int | None = None,
    ) -> Completion: ...

    @abc.abstractmethod
    def count_tokens(self, text: str) -> int:
        """Number of tokens of `text` (no special tokens added)."""

    @property
    def context_length(self) -> int | None:
        """Maximum context in tokens if known."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    async def __aenter__(self) -> "LLMClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
