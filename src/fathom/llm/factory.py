"""Build a client from a role spec."""

from __future__ import annotations

from fathom.config import RoleConfig
from fathom.llm.base import LLMClient


def make_client(role: "RoleConfig | str | dict", *, stop_loops: int | None = None) -> LLMClient:
    """`local:<name>` -> in-process transformers; otherwise an OpenAI-compatible HTTP client. `stop_loops`: a local
    model's output ends once one block repeats that many times (`LocalClient`); ignored for remote servers."""
    role = RoleConfig.parse(role)
    if role.is_local:
        from fathom.llm.embedded import resolve_local_model
        from fathom.llm.local import LocalClient

        return LocalClient(resolve_local_model(role.local_name), name=role.model, stop_loops=stop_loops)
    from fathom.llm.openai import OpenAIClient

    return OpenAIClient(role)
