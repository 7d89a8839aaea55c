"""YaRN RoPE scaling, written the way every consumer reads it.

Consumers disagree on the key:

* transformers 5 and current vLLM read ``rope_parameters`` (which also carries ``rope_theta``);
* transformers 4, SGLang and older vLLM read the legacy ``rope_scaling`` dict (``rope_theta`` at the top level).

Both are dicts *nested* under their key. The reference serving command passes a flat override
(``{"rope_type": "yarn", "factor": 2.0, ...}`` at the top level of ``--json-model-override-args``); config parsers
ignore unknown top-level keys, so that override silently does nothing. :func:`check_rope_override` rejects it.
"""

from __future__ import annotations

import json
from typing import Any

from fathom.errors import ConfigError

# Keys that only make sense inside a rope dict: seeing them at the top level of an override means the flat form.
ROPE_ONLY_KEYS = {"rope_type", "type", "factor", "original_max_position_embeddings", "beta_fast", "beta_slow",
                  "attention_factor"}


def yarn_scaling(factor: float, original_max_position_embeddings: int) -> dict[str, Any]:
    """The legacy nested ``rope_scaling`` dict (SGLang, transformers 4, older vLLM)."""
    if factor < 1.0:
        raise ConfigError(f"YaRN factor must be >= 1.0, got {factor}")
    if original_max_position_embeddings <= 0:
        raise ConfigError(f"original_max_position_embeddings must be positive, got {original_max_position_embeddings}")
    return {"rope_type": "yarn", "factor": float(factor),
            "original_max_position_embeddings": int(original_max_position_embeddings)}


def yarn_parameters(factor: float, original_max_position_embeddings: int, rope_theta: float) -> dict[str, Any]:
    """The transformers-5 ``rope_parameters`` dict (also what current vLLM's ``--hf-overrides`` expects)."""
    return {**yarn_scaling(factor, original_max_position_embeddings), "rope_theta": float(rope_theta)}


def yarn_context_length(factor: float, original_max_position_embeddings: int) -> int:
    """Context the YaRN-scaled model is designed for: ``original × factor`` (what vLLM derives as the max length)."""
    return int(original_max_position_embeddings * factor)


def apply_yarn(config: dict[str, Any], factor: float, original_max_position_embeddings: int) -> dict[str, Any]:
    """Return a copy of a ``config.json`` dict with YaRN written under both keys, ``max_position_embeddings`` set
    to ``original × factor`` (so transformers' implicit-factor check agrees) and the top-level ``rope_theta`` kept
    for legacy readers."""
    out = dict(config)
    params = out.get("rope_parameters") if isinstance(out.get("rope_parameters"), dict) else {}
    theta = params.get("rope_theta", out.get("rope_theta", 10000.0))
    out["rope_parameters"] = yarn_parameters(factor, original_max_position_embeddings, theta)
    out["rope_scaling"] = yarn_scaling(factor, original_max_position_embeddings)
    out["rope_theta"] = float(theta)
    out["max_position_embeddings"] = yarn_context_length(factor, original_max_position_embeddings)
    return out


def check_rope_override(override: dict[str, Any] | str) -> dict[str, Any]:
    """Validate a model-config override (SGLang ``--json-model-override-args`` / vLLM ``--hf-overrides``).

    Returns the parsed dict; raises :class:`ConfigError` for the flat form, which parsers silently ignore."""
    data = json.loads(override) if isinstance(override, str) else dict(override)
    flat = sorted(ROPE_ONLY_KEYS & set(data))
    if flat:
        raise ConfigError(
            f"model override has rope keys at the top level ({', '.join(flat)}): config parsers ignore them, so "
            "RoPE scaling would silently not apply. Nest them: "
            '{"rope_scaling": {"rope_type": "yarn", "factor": ..., "original_max_position_embeddings": ...}}')
    for key in ("rope_scaling", "rope_parameters"):
        if key in data:
            rope = data[key]
            ok = isinstance(rope, dict) and ({"rope_type", "factor"} <= set(rope) or rope.get("rope_type") == "default")
            if not ok:
                raise ConfigError(f"model override {key}={rope!r}: expected a dict with rope_type and factor")
    return data
