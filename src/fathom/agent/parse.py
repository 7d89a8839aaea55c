"""Pure parsers of the model's output: tool calls and the boxed final answer.

Tool calls are ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` blocks, several per turn. Every
malformed block becomes a :class:`ParseError` (never an exception, never silently dropped); the agent loop turns it
into an error observation in that block's ``<tool_response>`` so the model can correct itself.

Error codes: ``unclosed_tag``, ``too_large``, ``bad_json`` (including JSON nested too deeply and integers too long
to convert), ``bad_call`` (not an object with a string ``name`` and an object ``arguments``), ``unknown_tool``,
``missing_argument``, ``unexpected_argument``, ``bad_argument_type``.

Nothing in here raises on model text: every exception a block can provoke (``RecursionError`` from deep JSON,
``ValueError`` from integers over 4,300 digits, anything else) becomes a :class:`ParseError` of that block, and
splitting a turn into blocks is linear in its length. The final answer (``extract_boxed``) lives in
:mod:`fathom.answer`, shared with the rewards and the graders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fathom.answer import extract_boxed

__all__ = ["CLOSE_TAG", "MAX_CALL_CHARS", "OPEN_TAG", "ParseError", "ParsedCall", "extract_boxed",
           "parse_tool_calls", "split_tool_calls", "validate_call"]

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
    close = -2  # the first closing tag at or after `start` (cached: closing tags are searched for once each)
    while pos != -1:
        start = pos + len(OPEN_TAG)
        if close != -1 and close < start:
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


class _Unreadable(Exception):
    """JSON that the decoder refuses for its size rather than its syntax."""


def _loads(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _Unreadable("the JSON is nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer literal over 4,300 digits
        raise _Unreadable(f"the JSON holds a value that cannot be read ({str(exc)[:120]})") from None


def _loads_call(raw: str) -> Any:
    try:
        return _loads(raw)
    except json.JSONDecodeError:
        # A common slip: a code fence inside the tags.
        inner = raw.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
        if inner != raw:
            return _loads(inner)
        raise


def parse_tool_calls(text: str, schemas: list[dict] | None = None, *,
                     max_call_chars: int = MAX_CALL_CHARS) -> list[ParsedCall | ParseError]:
    """All tool calls of one model turn, in order. With ``schemas`` each call is also validated against its tool's
    JSON schema (known tool, required/extra arguments, types) and defaults are filled in."""
    results: list[ParsedCall | ParseError] = []
    for index, (raw, closed) in enumerate(split_tool_calls(text)):
        try:
            results.append(_parse_block(raw, closed, index, schemas, max_call_chars))
        except Exception as exc:  # noqa: BLE001 - model text must never raise out of the parser
            results.append(ParseError("bad_call", f"the tool call could not be read ({type(exc).__name__})",
                                      _echo(raw), index))
    return results


def _parse_block(raw: str, closed: bool, index: int, schemas: list[dict] | None,
                 max_call_chars: int) -> ParsedCall | ParseError:
    if not closed:
        return ParseError("unclosed_tag", "the <tool_call> tag was not closed with </tool_call>; "
                          "write each call as <tool_call>\n{...}\n</tool_call>", _echo(raw), index)
    if len(raw) > max_call_chars:
        return ParseError("too_large", f"the tool call is {len(raw)} characters long; the limit is "
                          f"{max_call_chars}", _echo(raw), index)
    try:
        obj = _loads_call(raw)
    except json.JSONDecodeError as exc:
        return ParseError("bad_json", f"the tool call is not valid JSON ({exc.msg} at line {exc.lineno} "
                          f"column {exc.colno})", _echo(raw), index)
    except _Unreadable as exc:
        return ParseError("bad_json", f"the tool call is not usable JSON: {exc}", _echo(raw), index)
    call = _to_call(obj, raw, index)
    if isinstance(call, ParsedCall) and schemas is not None:
        call = validate_call(call, schemas)
    return call


def _to_call(obj: Any, raw: str, index: int) -> ParsedCall | ParseError:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj.get("name"):
        return ParseError("bad_call", 'a tool call must be a JSON object {"name": <function-name>, '
                          '"arguments": <args-json-object>}', _echo(raw), index)
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = _loads(args) if args.strip() else {}
        except (json.JSONDecodeError, _Unreadable):
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
