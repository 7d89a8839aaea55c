"""Build a client from a role spec."""

from __future__ import annotations

from fathom.config import RoleConfig
from fathom.llm.base import LLMClient


def make_client(role: "RoleConfig | str | dict") -> LLMClient:
    """`local:<name>` -> in-process transformers; otherwise an OpenAI-compatible HTTP client."""
    role = RoleConfig.parse(role)
    if role.is_local:
        from fathom.llm.embedded import resolve_local_model
        from fathom.llm.local import LocalClient

        return LocalClient(resolve_local_model(role.local_name), name=role.model)
    from fathom.llm.openai import OpenAIClient

    return OpenAIClient(role)
