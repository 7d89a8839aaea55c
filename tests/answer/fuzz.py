"""Generators of adversarial model text, shared by the property tests and benchmarks/bench_fuzz.py."""

from __future__ import annotations

import json
import random

FRAGMENTS = [
    "<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "\\boxed{", "\\boxed ", "\\fbox{", "{", "}",
    "$", "\n", "```json", "```", '"name"', '"arguments"', ":", ",", "[", "]", "null", "NaN", "Infinity", "-0",
    "1e999", "\\ud800", "\ud800", "\u2028", "\x00", "answer:", "Final answer: ", "<answer>", "</answer>", " ",
]


def _json_call(rng: random.Random) -> str:
    name = rng.choice(["search_urls", "query_url", "nope", "", 7, None])
    args: object = rng.choice([
        {"query": "q"}, {"url": "http://a.test/", "goal": "g"}, {"query": 1}, {"top_k": 3.0}, {"top_k": 10**20},
        "{\"query\": \"x\"}", "not json", [], None, {"query": "q", "extra": 1}])
    return json.dumps({"name": name, "arguments": args})


def model_turn(rng: random.Random, max_len: int = 400) -> str:
    """One generated model turn: well-formed calls, broken calls and pathological JSON mixed with random text."""
    kind = rng.random()
    if kind < 0.15:  # deep nesting
        d = rng.randint(500, 3000)
        return "x</think>\n<tool_call>\n" + "[" * d + "]" * rng.choice([0, d]) + "\n</tool_call>"
    if kind < 0.25:  # integers over 4,300 digits (also inside double-encoded arguments)
        big = "9" * rng.randint(4301, 6000)
        inner = rng.choice([big, json.dumps('{"top_k": ' + big + "}")])
        return f'x</think>\n<tool_call>\n{{"name": "search_urls", "arguments": {inner}}}\n</tool_call>'
    if kind < 0.55:  # calls, good and bad
        calls = "".join(f"<tool_call>\n{_json_call(rng)}\n</tool_call>" for _ in range(rng.randint(1, 3)))
        return rng.choice(["", "think</think>\n"]) + calls + rng.choice(["", "\\boxed{x}", "<tool_call>"])
    parts = [rng.choice(FRAGMENTS) if rng.random() < 0.6 else chr(rng.randint(32, 0x2FFF))
             for _ in range(rng.randint(0, 40))]
    return "".join(parts)[:max_len * 10]
