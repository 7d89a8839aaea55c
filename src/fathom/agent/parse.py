"""Pure parsers of the model's output: tool calls and the boxed final answer.

Tool calls are ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` blocks, several per turn. Every
malformed block becomes a :class:`ParseError` (never an exception, never silently dropped); the agent loop turns it
into an error observation in that block's ``<tool_response>`` so the model can correct itself.

Error codes: ``unclosed_tag``, ``too_large``, ``bad_json``, ``bad_call`` (not an object with a string ``name`` and
an object ``arguments``), ``unknown_tool``, ``missing_argument``, ``unexpected_argument``, ``bad_argument_type``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
MAX_CALL_CHARS = 8_000  # a call longer than this is refused (huge arguments)
RAW_ECHO_CHARS = 500  # how much of a broken call is echoed back to the model


@dataclass(frozen=True)
class ParsedCall:
    """A well-formed call. ``raw`` is the stripped text between the tags, echoed in the tool response."""

    name: str
    arguments: dict[str, Any]
    raw: str
    index: int = 0


@dataclass(frozen=True)
class ParseError:
    """A malformed call: ``code`` is machine readable, ``message`` is shown to the model."""

    code: str
    message: str
    raw: str
    index: int = 0
    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def observation(self) -> str:
        return f"[error:{self.code}] {self.message}"


def _echo(raw: str) -> str:
    return raw if len(raw) <= RAW_ECHO_CHARS else raw[:RAW_ECHO_CHARS] + " ...[truncated]"


def split_tool_calls(text: str) -> list[tuple[str, bool]]:
    """The raw inside of every ``<tool_call>`` block in order, with ``closed`` flags. An opening tag that is not
    closed before the next opening tag (or the end of text) yields ``(rest, False)``."""
    out: list[tuple[str, bool]] = []
    pos = text.find(OPEN_TAG)
    while pos != -1:
        start = pos + len(OPEN_TAG)
        close = text.find(CLOSE_TAG, start)
        nxt = text.find(OPEN_TAG, start)
        if close == -1 or (nxt != -1 and nxt < close):
            end = nxt if nxt != -1 else len(text)
            out.append((text[start:end].strip(), False))
            pos = nxt
            continue
        out.append((text[start:close].strip(), True))
        pos = text.find(OPEN_TAG, close + len(CLOSE_TAG))
    return out


def _loads_call(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        # A common slip: a code fence inside the tags.
        inner = raw.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
        if inner != raw:
            return json.loads(inner)
        raise


def parse_tool_calls(text: str, schemas: list[dict] | None = None, *,
                     max_call_chars: int = MAX_CALL_CHARS) -> list[ParsedCall | ParseError]:
    """All tool calls of one model turn, in order. With ``schemas`` each call is also validated against its tool's
    JSON schema (known tool, required/extra arguments, types) and defaults are filled in."""
    results: list[ParsedCall | ParseError] = []
    for index, (raw, closed) in enumerate(split_tool_calls(text)):
        if not closed:
            results.append(ParseError("unclosed_tag", "the <tool_call> tag was not closed with </tool_call>; "
                                      "write each call as <tool_call>\n{...}\n</tool_call>", _echo(raw), index))
            continue
        if len(raw) > max_call_chars:
            results.append(ParseError("too_large", f"the tool call is {len(raw)} characters long; the limit is "
                                      f"{max_call_chars}", _echo(raw), index))
            continue
        try:
            obj = _loads_call(raw)
        except json.JSONDecodeError as exc:
            results.append(ParseError("bad_json", f"the tool call is not valid JSON ({exc.msg} at line {exc.lineno} "
                                      f"column {exc.colno})", _echo(raw), index))
            continue
        call = _to_call(obj, raw, index)
        if isinstance(call, ParsedCall) and schemas is not None:
            call = validate_call(call, schemas)
        results.append(call)
    return results


def _to_call(obj: Any, raw: str, index: int) -> ParsedCall | ParseError:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj.get("name"):
        return ParseError("bad_call", 'a tool call must be a JSON object {"name": <function-name>, '
                          '"arguments": <args-json-object>}', _echo(raw), index)
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            pass
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return ParseError("bad_call", '"arguments" must be a JSON object', _echo(raw), index, name=obj["name"])
    return ParsedCall(name=obj["name"], arguments=args, raw=raw, index=index)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
    "array": (list,), "object": (dict,), "null": (type(None),),
}


def _type_ok(value: Any, typ: str | list[str] | None) -> bool:
    if typ is None:
        return True
    types = [typ] if isinstance(typ, str) else list(typ)
    for t in types:
        if t in ("integer", "number") and isinstance(value, bool):
            continue
        if t == "integer" and isinstance(value, float) and value.is_integer():
            return True
        if isinstance(value, _JSON_TYPES.get(t, (object,))):
            return True
    return False


def validate_call(call: ParsedCall, schemas: list[dict]) -> ParsedCall | ParseError:
    """Check a call against the named tool's schema; fill defaults; coerce integral floats for integers."""
    by_name = {s["name"]: s for s in schemas}
    schema = by_name.get(call.name)
    if schema is None:
        return ParseError("unknown_tool", f"there is no function named {call.name!r}; available: "
                          f"{', '.join(by_name)}", _echo(call.raw), call.index, name=call.name,
                          arguments=call.arguments)
    params = schema.get("parameters") or {}
    props: dict[str, dict] = params.get("properties") or {}
    required = list(params.get("required") or [])
    missing = [r for r in required if r not in call.arguments]
    if missing:
        return ParseError("missing_argument", f"{call.name} needs the argument(s) {', '.join(missing)}",
                          _echo(call.raw), call.index, name=call.name, arguments=call.arguments)
    extra = [k for k in call.arguments if k not in props]
    if extra:
        return ParseError("unexpected_argument", f"{call.name} takes no argument(s) {', '.join(extra)}; its "
                          f"arguments are {', '.join(props)}", _echo(call.raw), call.index, name=call.name,
                          arguments=call.arguments)
    args: dict[str, Any] = {}
    for key, spec in props.items():
        if key in call.arguments:
            value = call.arguments[key]
            if not _type_ok(value, spec.get("type")):
                return ParseError("bad_argument_type", f"argument {key!r} of {call.name} must be of type "
                                  f"{spec.get('type')}, got {type(value).__name__}", _echo(call.raw), call.index,
                                  name=call.name, arguments=call.arguments)
            if spec.get("type") == "integer" and isinstance(value, float):
                value = int(value)
            if isinstance(value, str) and not value.strip() and key in required:
                return ParseError("missing_argument", f"argument {key!r} of {call.name} is empty",
                                  _echo(call.raw), call.index, name=call.name, arguments=call.arguments)
            args[key] = value
        elif "default" in spec:
            args[key] = spec["default"]
    return ParsedCall(name=call.name, arguments=args, raw=call.raw, index=call.index)


# ---------------------------------------------------------------------------------------------------------------
# Boxed answers

_BOX_COMMANDS = ("\\boxed", "\\fbox")


def _brace_content(s: str, open_idx: int) -> str | None:
    """Content of the brace group starting at ``s[open_idx] == '{'`` (nested braces matched), or None."""
    depth = 0
    for i in range(open_idx, len(s)):
        c = s[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return s[open_idx + 1:i]
    return None


def extract_boxed(text: str) -> str | None:
    """The content of the LAST well-formed ``\\boxed{...}`` / ``\\fbox{...}`` (brace-matched) or ``\\boxed x``
    (up to ``$`` or the end of the line) in ``text``; None when there is none or it is empty.

    Pass only the model's own turns: extracting from a whole transcript would pick up the example answer in the
    system prompt (the reference's "20c" bug)."""
    candidates: list[tuple[int, str]] = []
    for cmd in _BOX_COMMANDS:
        start = text.find(cmd)
        while start != -1:
            after = start + len(cmd)
            rest = text[after:]
            content: str | None = None
            stripped = rest.lstrip(" ")
            if stripped.startswith("{"):
                content = _brace_content(text, after + (len(rest) - len(stripped)))
            elif cmd == "\\boxed" and rest.startswith(" ") and stripped:
                content = stripped.split("$", 1)[0].split("\n", 1)[0]
            if content is not None and content.strip():
                candidates.append((start, content.strip()))
            start = text.find(cmd, after)
    if not candidates:
        return None
    return max(candidates)[1]
