"""The legacy /execute call parser: only named tools with literal arguments; nothing is ever executed."""

from __future__ import annotations

import pytest

from fathom.errors import ToolError
from fathom.web.legacy import parse_call, parse_env

ENV = "from search_api import search_urls, query_url"


@pytest.mark.parametrize("call,tool,args", [
    ("search_urls('veyra volcano')", "search_urls", {"query": "veyra volcano", "top_k": 10}),
    ("search_urls(query=\"a\", top_k=3)", "search_urls", {"query": "a", "top_k": 3}),
    ("search_urls('a', 500)", "search_urls", {"query": "a", "top_k": 50}),
    ("query_url(url='https://a.org/x', goal='find the date')", "query_url",
     {"url": "https://a.org/x", "goal": "find the date"}),
    ("  query_url('https://a.org/x', goal='g')  ", "query_url", {"url": "https://a.org/x", "goal": "g"}),
    ("query_url('https://a.org/' 'x', 'implicit concatenation is a literal')", "query_url",
     {"url": "https://a.org/x", "goal": "implicit concatenation is a literal"}),
])
def test_valid_calls(call, tool, args):
    parsed = parse_call(call, ENV)
    assert parsed.tool == tool and parsed.args == args


def test_legacy_preset_tools_without_env():
    assert parse_call("web_search('q')").args == {"query": "q"}
    assert parse_call("web_visit(url='http://a.org')").tool == "web_visit"
    assert parse_env("from search_api import web_search, web_visit") == {"web_search", "web_visit"}


@pytest.mark.parametrize("call,needle", [
    ("__import__('os').system('id')", "tool directly"),
    ("os.system('id')", "tool directly"),
    ("search_api.search_urls('x')", "tool directly"),
    ("search_urls.__globals__", "single tool call"),
    ("eval('1')", "unknown tool"),
    ("exec('import os')", "unknown tool"),
    ("open('/etc/passwd')", "unknown tool"),
    ("search_urls(query=open('/etc/passwd').read())", "literal"),
    ("search_urls(query=x)", "literal"),
    ("search_urls(query='a' + 'b')", "literal"),
    ("search_urls(query=f'{1}')", "literal"),
    ("search_urls(*['a'])", "*args"),
    ("search_urls(**{'query': 'a'})", "**kwargs"),
    ("search_urls(query=['a'])", "literal"),
    ("search_urls(query=(lambda: 'a')())", "literal"),
    ("search_urls('a'); import os", "not a valid tool call"),
    ("search_urls('a')\nsearch_urls('b')", "not a valid tool call"),
    ("[search_urls('a') for _ in range(9)]", "single tool call"),
    ("search_urls()", "missing"),
    ("search_urls(q='a')", "unexpected argument"),
    ("search_urls('a', query='b')", "multiple values"),
    ("search_urls('a', 'b', 'c')", "positional"),
    ("search_urls(query=1)", "must be a string"),
    ("search_urls('a', top_k='5')", "integer"),
    ("search_urls('a', top_k=True)", "integer"),
    ("query_url(url='x')", "missing"),
    ("web_visit(url='x'", "not a valid tool call"),
    ("", "empty"),
])
def test_rejected_calls(call, needle):
    with pytest.raises(ToolError) as e:
        parse_call(call, "")
    assert e.value.code == "bad_request"
    assert needle in e.value.message, e.value.message


def test_huge_arguments_and_calls_are_rejected():
    with pytest.raises(ToolError, match="too long"):
        parse_call("search_urls('" + "a" * 9_000 + "')")
    with pytest.raises(ToolError, match="too long"):
        parse_call("search_urls('a')" + " " * 20_000, max_chars=16_000)
    deep = "search_urls(" * 200 + ")" * 200  # no recursion blow-up, just a clear error
    with pytest.raises(ToolError):
        parse_call(deep)


@pytest.mark.parametrize("env", [
    "import os", "from os import system", "from search_api import *", "from search_api import eval",
    "from search_api import search_urls as s", "x = 1", "from .search_api import search_urls",
    "from search_api import search_urls\nimport subprocess",
])
def test_env_only_imports_known_tools(env):
    with pytest.raises(ToolError) as e:
        parse_call("search_urls('a')", env)
    assert e.value.code == "bad_request"


def test_call_must_be_imported_by_env():
    with pytest.raises(ToolError, match="not imported"):
        parse_call("web_visit('http://a.org')", ENV)


@pytest.mark.parametrize("call", ["(" * 5000 + "1" + ")" * 5000, "search_urls('a\x00')", "search_urls(\x00)",
                                  "search_urls(" + "[" * 3000 + "]" * 3000 + ")"])
def test_pathological_input_gives_a_clear_error(call):
    with pytest.raises(ToolError) as e:
        parse_call(call)
    assert e.value.code == "bad_request"
