"""The reference's ``POST /execute {env, call}`` contract, parsed safely.

Old clients send ``env = "from search_api import search_urls, query_url"`` and ``call = "query_url(url='…', goal='…')"``
and the reference server ``exec``s both. Here both strings are parsed with `ast` and never executed:

* ``env`` may only contain ``from search_api import <tool>, ...`` lines naming known tools (or be empty);
* ``call`` must be a single call of one of the tools (the ones ``env`` imported, if it imported any) whose arguments
  are plain literals (strings, numbers, booleans, None) bound to the tool's signature — no attribute access,
  subscripts, names, nested calls, ``*args``/``**kwargs``, f-strings or operators.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from fathom.errors import ToolError

# tool name -> (positional parameter names, defaults)
TOOLS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "search_urls": (("query", "top_k"), {"top_k": 10}),
    "query_url": (("url", "goal"), {}),
    "web_search": (("query",), {}),
    "web_visit": (("url",), {}),
}
MAX_ARG_CHARS = 8_000


@dataclass(frozen=True)
class LegacyCall:
    tool: str
    args: dict[str, Any]


def _bad(msg: str) -> ToolError:
    return ToolError("bad_request", msg)


def parse_env(env: str) -> set[str] | None:
    """The tools `env` imports (None if `env` is empty)."""
    if not env or not env.strip():
        return None
    try:
        tree = ast.parse(env, mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _bad(f"env is not valid Python import lines: {getattr(exc, 'msg', exc)}") from None
    names: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or node.module != "search_api" or node.level:
            raise _bad("env may only contain `from search_api import <tool>, ...` lines")
        for alias in node.names:
            if alias.name not in TOOLS or alias.asname not in (None, alias.name):
                raise _bad(f"env imports unknown tool {alias.name!r}; known tools: {', '.join(TOOLS)}")
            names.add(alias.name)
    return names


def _literal(node: ast.AST, where: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool, type(None))):
        value = node.value
    elif (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
          and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        value = -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    else:
        raise _bad(f"{where} must be a literal string or number, not {type(node).__name__}")
    if isinstance(value, str) and len(value) > MAX_ARG_CHARS:
        raise _bad(f"{where} is too long ({len(value)} chars > {MAX_ARG_CHARS})")
    return value


def parse_call(call: str, env: str = "", *, max_chars: int = 16_000) -> LegacyCall:
    """Parse ``tool(arg, key=literal, ...)``; raise ToolError(bad_request) with a precise message otherwise."""
    if not isinstance(call, str) or not call.strip():
        raise _bad("call is empty")
    if len(call) > max_chars:
        raise _bad(f"call is too long ({len(call)} chars > {max_chars})")
    if len(env or "") > max_chars:
        raise _bad(f"env is too long ({len(env)} chars > {max_chars})")
    allowed = parse_env(env)
    try:
        tree = ast.parse(call.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise _bad(f"call is not a valid tool call: {getattr(exc, 'msg', exc)}") from None
    node = tree.body
    if not isinstance(node, ast.Call):
        raise _bad("call must be a single tool call like search_urls(query='...')")
    if not isinstance(node.func, ast.Name):
        raise _bad("call must name a tool directly (no attribute access or computed callee)")
    name = node.func.id
    if name not in TOOLS:
        raise _bad(f"unknown tool {name!r}; known tools: {', '.join(TOOLS)}")
    if allowed is not None and name not in allowed:
        raise _bad(f"tool {name!r} was not imported by env")
    params, defaults = TOOLS[name]
    args: dict[str, Any] = {}
    if len(node.args) > len(params):
        raise _bad(f"{name}() takes at most {len(params)} positional arguments ({len(node.args)} given)")
    for i, a in enumerate(node.args):
        if isinstance(a, ast.Starred):
            raise _bad("*args are not accepted")
        args[params[i]] = _literal(a, f"argument {params[i]!r}")
    for kw in node.keywords:
        if kw.arg is None:
            raise _bad("**kwargs are not accepted")
        if kw.arg not in params:
            raise _bad(f"{name}() got an unexpected argument {kw.arg!r}")
        if kw.arg in args:
            raise _bad(f"{name}() got multiple values for {kw.arg!r}")
        args[kw.arg] = _literal(kw.value, f"argument {kw.arg!r}")
    for p in params:
        if p not in args:
            if p not in defaults:
                raise _bad(f"{name}() is missing the argument {p!r}")
            args[p] = defaults[p]
    for p in ("query", "url", "goal"):
        if p in args and not isinstance(args[p], str):
            raise _bad(f"argument {p!r} of {name}() must be a string")
    if "top_k" in args:
        if isinstance(args["top_k"], bool) or not isinstance(args["top_k"], int):
            raise _bad("top_k must be an integer")
        args["top_k"] = max(1, min(50, args["top_k"]))
    return LegacyCall(tool=name, args=args)


# ---- text rendering of responses for /execute: the agent's renderer, so both paths show identical text ---------

def render_error_text(err) -> str:
    from fathom.web.render import render_error

    return render_error(err)


def render_response(resp) -> str:
    from fathom.web import render
    from fathom.web.schemas import QueryUrlResponse, SearchResponse, VisitResponse

    if isinstance(resp, SearchResponse):
        return render.render_search(resp)
    if isinstance(resp, QueryUrlResponse):
        return render.render_query_url(resp)
    if isinstance(resp, VisitResponse):
        return render.render_visit(resp)
    raise TypeError(f"cannot render {type(resp).__name__}")
