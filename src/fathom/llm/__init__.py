"""Clients for model roles: OpenAI-compatible endpoints and in-process local models, one interface."""

from fathom.llm.base import ChatMessage, Completion, LLMClient
from fathom.llm.factory import make_client

__all__ = ["ChatMessage", "Completion", "LLMClient", "make_client"]
