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


class EmptyStageError(FathomError):
    """A data stage ended with 0 kept rows: the next step would have nothing to train on. `funnel` holds the
    stage's counts (stage -> items that reached it) and `rejections` why items were dropped."""

    def __init__(self, stage: str, funnel: dict[str, int], rejections: dict[str, int] | None = None, *,
                 out_dir: str | None = None, hint: str = "", result=None):
        self.stage = stage
        self.result = result  # the stage's result object (outputs were written before raising)
        self.funnel = dict(funnel)
        self.rejections = dict(rejections or {})
        self.out_dir = out_dir
        counts = ", ".join(f"{k} {v}" for k, v in self.funnel.items())
        top = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items(), key=lambda kv: -kv[1])[:6])
        msg = f"{stage} kept 0 rows (funnel: {counts})"
        if top:
            msg += f"; rejections: {top}"
        if out_dir:
            msg += f"; details in {out_dir}"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
