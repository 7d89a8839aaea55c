"""Project-wide settings and the role configuration every model role shares.

A *role* (policy, synthesizer, query LLM, judge, labeller, solvers, teacher) is either

* ``local:<model>``: an in-process transformers model (``local:smollm2`` is the embedded default,
  ``local:/path/to/hf-folder`` any saved checkpoint), or
* an OpenAI-compatible endpoint: ``base_url`` + ``model`` + the *name* of the environment variable
  holding its API key (the key itself is never stored in a config or logged).

A role can be written compactly as a string: ``local:smollm2`` or ``http://host:8000/v1#model-name`` or
``http://host:8000/v1#model-name@ENV_VAR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

from fathom.errors import ConfigError

EMBEDDED_MODEL = "smollm2"


def fathom_home() -> Path:
    """Root of caches (converted models, web cache, indexes). ``FATHOM_HOME`` overrides ``~/.cache/fathom``."""
    return Path(os.environ.get("FATHOM_HOME", Path.home() / ".cache" / "fathom")).expanduser()


class RoleConfig(BaseModel):
    """How to reach one model role."""

    model: str = Field(
        default=f"local:{EMBEDDED_MODEL}",
        description="Model name served by the endpoint, or `local:<name|path>` for an in-process model.",
    )
    base_url: str | None = Field(
        default=None, description="OpenAI-compatible base URL ending in /v1 (None for local models)."
    )
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable that holds the API key (never the key)."
    )
    tokenizer: str | None = Field(
        default=None,
        description="Tokenizer (local folder) used to count prompt tokens for remote models; "
        "without it counts come from the server's usage and a chars/4 estimate.",
    )
    timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout in seconds.")
    max_retries: int = Field(default=3, ge=0, description="Retries with exponential backoff on retryable errors.")
    concurrency: int = Field(default=8, ge=1, description="Maximum requests in flight to this role.")

    @model_validator(mode="after")
    def _check(self) -> "RoleConfig":
        if not self.is_local and not self.base_url:
            raise ValueError(f"role model {self.model!r} is not local:... and has no base_url")
        return self

    @property
    def is_local(self) -> bool:
        return self.model.startswith("local:")

    @property
    def local_name(self) -> str:
        return self.model.removeprefix("local:")

    def api_key(self) -> str | None:
        """The key from the environment; a clear error names the variable when it is missing."""
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(
                f"environment variable {self.api_key_env} is not set (needed for {self.model} at {self.base_url})"
            )
        return value

    @classmethod
    def parse(cls, spec: "str | RoleConfig | dict") -> "RoleConfig":
        """Parse the compact string form (see module doc), a dict, or pass a RoleConfig through."""
        if isinstance(spec, RoleConfig):
            return spec
        if isinstance(spec, dict):
            return cls.model_validate(spec)
        spec = spec.strip()
        if spec.startswith("local:"):
            return cls(model=spec)
        if spec.startswith(("http://", "https://")):
            url, _, rest = spec.partition("#")
            if not rest:
                raise ValueError(f"role {spec!r}: write it as URL#model[@KEY_ENV]")
            model, _, env = rest.partition("@")
            return cls(model=model, base_url=url.rstrip("/"), api_key_env=env or None)
        raise ValueError(f"cannot parse role {spec!r}: expected local:<name> or http(s)://host/v1#model[@KEY_ENV]")

    def describe(self) -> str:
        return self.model if self.is_local else f"{self.model} @ {self.base_url}"
