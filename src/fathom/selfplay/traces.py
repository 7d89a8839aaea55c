"""Helpers over agent trajectories (URLs explored, compact per-call records)."""

from __future__ import annotations

import re

URL_RE = re.compile(r"https?://[^\s\)\]\}\"'<>`|]+")


def urls_in(text: str) -> list[str]:
    out = []
    for m in URL_RE.finditer(text or ""):
        out.append(m.group(0).rstrip(".,;:!?*_"))
    return out


def trajectory_urls(traj) -> list[str]:
    """URLs in the tool calls' arguments and results, first occurrence order, deduplicated."""
    seen: dict[str, None] = {}
    for call in traj.tool_calls:
        for v in (call.arguments or {}).values():
            if isinstance(v, str):
                for u in urls_in(v):
                    seen.setdefault(u, None)
        for u in urls_in(call.result or ""):
            seen.setdefault(u, None)
    return list(seen)
