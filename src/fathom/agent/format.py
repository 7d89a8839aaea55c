"""The released search model's prompt and turn format (Fathom-Search / ReCall), byte for byte.

The *structure* below is a protocol the released weights were trained on and is reproduced exactly (pinned by the
golden-bytes test in ``tests/agent/golden/``); the *prose* of the system prompt is ours and lives in a template file
(``templates/fathom_system.txt``), which a user can replace with the released prose by passing a path.

Transcript layout (``\\n`` is a newline)::

    <|im_start|>system\\n{system prose with {func_schemas} filled in}<|im_end|>\\n
    <|im_start|>user\\n{question}<|im_end|>\\n
    <|im_start|>assistant\\n<think>                                    <- generation starts here
    {model turn}<|im_end|>                                            <- appended after every model turn
    \\n<|im_start|>user\\n<tool_response>{raw call}\\nresult: \\n{result}\\n</tool_response>\\n...<|im_end|>\\n
    <|im_start|>assistant\\n<think>                                    <- next model turn
    ...

* The system prose is a Python ``str.format`` template with one field, ``{func_schemas}`` (literal braces doubled,
  as in the reference's string). The field is filled with ``str(schemas)``: the *Python repr* of the list of schema
  dicts (single quotes), inside a ```` ```json ```` fence on lines of its own. The reference writes that fence as
  ``\\n```json\\n{func_schemas}\\n``` `` inside an ordinary (non-raw) Python string literal, so the ``\\n`` escapes
  are real newlines in the prompt the released model was trained on — our template has real newlines there too.
  (A user file holding the released prose must hold the evaluated string, i.e. real newlines.)
* One round of tool results is ONE user turn with one ``<tool_response>`` block per call; each block echoes the raw
  call text (the stripped inside of the ``<tool_call>`` tags) and the result behind ``"result: \\n"``.
* The final answer is ``\\boxed{...}`` in a turn without tool calls.
"""

from __future__ import annotations

import copy
import hashlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK = "<think>"
ASSISTANT_PREFIX = f"{IM_START}assistant\n{THINK}"
STOP_STRINGS = ["<|im_end|>", "<|endoftext|>"]

#: Version of our prompt prose (templates/fathom_system.txt and the two instruction files). Bump on any edit;
#: the golden-bytes test fails until the golden transcript is regenerated on purpose.
TEMPLATE_VERSION = "fathom-system-v2"  # v2: real newlines around the schema fence

# ---------------------------------------------------------------------------------------------------------------
# Tool schemas: the exact dicts (key order matters, the repr goes into the prompt) of the reference's eval presets.

PRESETS: dict[str, list[dict]] = {
    "fathom": [
        {
            "name": "search_urls",
            "description": "Google search and return links to web-pages with a brief snippet given a text query",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "top_k": {"type": "integer", "default": 10}},
                "required": ["query"],
            },
        },
        {
            "name": "query_url",
            "description": "Visit webpage and return evidence based retrieval for the provided goal",
            "parameters": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "The single URL to visit"},
                    "goal": {"type": "string", "description": "The specific information goal for visiting webpage"},
                },
                "required": ["url", "goal"],
            },
        },
    ],
    "legacy": [
        {
            "name": "web_search",
            "description": "Google search and return links to web-pages with a brief snippet given a text query",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
        {
            "name": "web_visit",
            "description": "Visit webpage and return its content",
            "parameters": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "The URL of the webpage to visit. Must be a single URL"},
                },
                "required": ["url"],
            },
        },
    ],
}


def preset_schemas(preset: str) -> list[dict]:
    """A deep copy of a preset's schemas (``fathom`` or ``legacy``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown tool preset {preset!r}; choose one of {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[preset])


# ---------------------------------------------------------------------------------------------------------------
# Templates


def _builtin(name: str) -> str:
    return resources.files("fathom.agent").joinpath("templates", name).read_text(encoding="utf-8")


@lru_cache(maxsize=32)
def load_template(template: str = "fathom") -> str:
    """The system prose: ``"fathom"`` is our built-in template; anything else is a path to a UTF-8 text file
    (e.g. the released prose), read byte-exact (no stripping). It must contain ``{func_schemas}``."""
    if template == "fathom":
        text = _builtin("fathom_system.txt")
    else:
        path = Path(template).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"prompt template {template!r} is neither 'fathom' nor an existing file")
        text = path.read_text(encoding="utf-8")
    if "{func_schemas}" not in text:
        raise ValueError(f"prompt template {template!r} has no {{func_schemas}} field")
    return text


def template_sha(template: str = "fathom") -> str:
    """Short content hash of the system template, recorded in trajectories for provenance."""
    return hashlib.sha256(load_template(template).encode("utf-8")).hexdigest()[:12]


@lru_cache(maxsize=1)
def force_answer_instruction() -> str:
    """User-turn text appended when the token budget is nearly spent."""
    return _builtin("fathom_force_answer.txt").strip()


@lru_cache(maxsize=1)
def nudge_instruction() -> str:
    """User-turn text sent when a turn has neither a tool call nor a boxed answer."""
    return _builtin("fathom_nudge.txt").strip()


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def render_system(schemas: list[dict], template: str = "fathom") -> str:
    """The system prose with the schema list's Python repr substituted (``str.format`` semantics)."""
    return load_template(template).format(func_schemas=schemas)


def build_prompt(question: str, schemas: list[dict], template: str = "fathom") -> str:
    """The initial prompt, ending in the ``<|im_start|>assistant\\n<think>`` generation prefix."""
    system = f"{IM_START}system\n{render_system(schemas, template)}{IM_END}"
    user = f"{IM_START}user\n{question}{IM_END}"
    return system + "\n" + user + "\n" + ASSISTANT_PREFIX


def tool_response_block(raw_call: str, result: str) -> str:
    """One ``<tool_response>`` block: the raw call text, then ``result: \\n`` and the result. Trailing whitespace
    of the result is dropped, as the reference executor's ``.strip()`` of its response does."""
    return f"<tool_response>{raw_call}\nresult: \n{result.rstrip()}\n</tool_response>\n"


def user_turn(content: str) -> str:
    """What follows a model turn's ``<|im_end|>``: a user turn and the next generation prefix."""
    return "\n" + f"{IM_START}user\n{content}{IM_END}" + "\n" + ASSISTANT_PREFIX


def tool_results_content(calls_and_results: list[tuple[str, str]], extra: str | None = None) -> str:
    """The user turn's content for one round: one block per (raw call, result), optionally an instruction."""
    content = "".join(tool_response_block(raw, result) for raw, result in calls_and_results)
    if extra:
        content += extra
    return content


def format_tool_response_turn(calls_and_results: list[tuple[str, str]]) -> str:
    """Everything appended after a model turn that made tool calls: its ``<|im_end|>``, the user turn with one
    ``<tool_response>`` block per call, and the next ``<|im_start|>assistant\\n<think>`` prefix."""
    return IM_END + user_turn(tool_results_content(calls_and_results))


def strip_stop(text: str) -> str:
    """Remove trailing stop tokens a server may have left in the completion text."""
    changed = True
    while changed:
        changed = False
        stripped = text.rstrip()
        for s in STOP_STRINGS:
            if stripped.endswith(s):
                text = stripped[: -len(s)]
                changed = True
    return text


def model_turn_texts(transcript: str) -> list[str]:
    """The model's turns of a transcript (the text after each ``<think>`` generation prefix, up to its
    ``<|im_end|>``); a transcript that ends with an open prefix yields no turn for it."""
    parts = transcript.split(ASSISTANT_PREFIX)[1:]
    return [p.split(IM_END, 1)[0] for p in parts if p]
