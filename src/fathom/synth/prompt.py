"""The synthesizer's plan-then-write prompt: our own system prose (a versioned template file, replaceable by a path)
and the reference's user-message structure, which the released synthesizer was trained on::

    You are given a DeepSearch investigation trace.

    Question:
    {question}

    Trace (model transcript):
    {cleaned trace}

    Tool Calls (as-recorded):
    {JSON list of {"name", "arguments"}}

    — End of trace —
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from pathlib import Path

from fathom.agent.trajectory import Trajectory
from fathom.llm.base import ChatMessage
from fathom.synth.clean import fit_trace, tool_calls_json

#: Version of templates/synth_system.txt; bump on any edit.
SYNTH_TEMPLATE_VERSION = "synth-system-v1"
END_OF_TRACE = "— End of trace —"


@lru_cache(maxsize=16)
def load_synth_template(template: str = "default") -> str:
    """``default`` is our prose; anything else is a path to a text file (e.g. the released prompt)."""
    if template == "default":
        return resources.files("fathom.synth").joinpath("templates", "synth_system.txt").read_text("utf-8").strip()
    path = Path(template).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"synthesizer template {template!r} is neither 'default' nor an existing file")
    return path.read_text(encoding="utf-8")


def render_user_message(question: str, trace: str, tool_calls: list[dict]) -> str:
    tool_str = json.dumps(tool_calls, ensure_ascii=False, indent=2)
    return (f"You are given a DeepSearch investigation trace.\n\nQuestion:\n{question}\n\n"
            f"Trace (model transcript):\n{trace}\n\nTool Calls (as-recorded):\n{tool_str}\n\n{END_OF_TRACE}")


def build_synth_messages(question: str, traj: Trajectory, *, template: str = "default",
                         max_prompt_tokens: int | None = None,
                         count_tokens: Callable[[str], int] | None = None) -> list[ChatMessage]:
    """System + user messages for the synthesizer. With ``max_prompt_tokens`` (and a token counter) the tool
    responses in the trace are cut deterministically until both messages fit."""
    system = load_synth_template(template)
    calls = tool_calls_json(traj)

    def render(trace: str) -> str:
        return render_user_message(question, trace, calls)

    if max_prompt_tokens is not None:
        counter = count_tokens or (lambda s: len(s) // 4)
        sys_tokens = counter(system)
        trace, _ = fit_trace(traj, render, counter, max(1, max_prompt_tokens - sys_tokens))
    else:
        from fathom.synth.clean import clean_trace

        trace = clean_trace(traj)
    return [{"role": "system", "content": system}, {"role": "user", "content": render(trace)}]
