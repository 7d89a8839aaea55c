"""Typed errors shared across the project. Every external call raises one of these, never a bare exception."""

from __future__ import annotations


class FathomError(Exception):
    """Base class for all project errors."""


class ConfigError(FathomError):
    """Bad or missing configuration (e.g. an API key variable that is not set)."""


class LLMError(FathomError):
    """A model endpoint failed after its retries."""

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class ToolError(FathomError):
    """A tool call failed; `code` is machine readable (e.g. blocked_url, timeout, fetch_failed)."""

    def __init__(self, code: str, message: str, *, retryable: bool = False):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
