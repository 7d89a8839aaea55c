"""Build a client from a role spec."""

from __future__ import annotations

from fathom.config import RoleConfig
from fathom.llm.base import LLMClient


def make_client(role: "RoleConfig | str | dict", *, stop_loops: int | None = None,
                local_dtype: str = "fp32") -> LLMClient:
    """`local:<name>` -> in-process transformers; otherwise an OpenAI-compatible HTTP client. `stop_loops`: a local
    model's output ends once one block repeats that many times; `local_dtype`: a local model's precision (fp32,
    bf16 or auto: `fathom.llm.local.local_dtype`). Both are ignored for remote servers (they serve their own)."""
    role = RoleConfig.parse(role)
    if role.is_local:
        from fathom.llm.embedded import resolve_local_model
        from fathom.llm.local import LocalClient

        return LocalClient(resolve_local_model(role.local_name), name=role.model, stop_loops=stop_loops,
                           dtype=local_dtype)
    from fathom.llm.openai import OpenAIClient

    return OpenAIClient(role)
