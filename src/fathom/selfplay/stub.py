"""Instant, deterministic stand-ins for every DuetQA / SFT-corpus role, served as a real OpenAI-compatible endpoint
on loopback (tests of orchestration, resumability and the orchestration-overhead benchmark).

The responder recognises each request by the stage's own prompt text (no special markers are added to the real
prompts): the generator's compose step gets a JSON candidate whose hops cite the URLs it explored; the obfuscator
returns "In other words, <question>"; the search agents call `search_urls` once and then answer; the no-search
solver does not know; the judge compares normalised answers; the report teacher writes a well-formed
plan-then-write report citing the trace's URLs.

Candidates are tagged "Stub question <h>" (h = a hash of the sampled themes), and their answer is "Entity <h>", so
the solvers can answer statelessly. Items whose hash is divisible by `easy_every` are "easy": the no-search solver
knows them too (they are rejected by verification, which gives tests a mixed funnel).
"""

from __future__ import annotations

import hashlib
import json
import re
from contextlib import contextmanager
from typing import Iterator

from fathom.selfplay.text import normalize_answer
from fathom.selfplay.traces import urls_in

_TAG = re.compile(r"Stub question ([0-9a-f]{8})")


def _h(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:8]


class DuetQAStub:
    """`__call__(prompt) -> text`, for `fathom.llm.scripted.ScriptedClient`."""

    def __init__(self, *, answers: dict[str, str] | None = None, easy_every: int = 0):
        self.answers = dict(answers or {})  # truth mode: question text -> answer
        self.easy_every = easy_every

    def _is_easy(self, h: str) -> bool:
        return bool(self.easy_every) and int(h, 16) % self.easy_every == 0

    def _lookup(self, text: str) -> str | None:
        m = _TAG.search(text)
        if m:
            return f"Entity {m.group(1)}"
        for q, a in self.answers.items():
            if q in text:
                return a
        return None

    def __call__(self, prompt: str) -> str:
        if "Return one JSON object" in prompt:
            return self._compose(prompt)
        if "Rewrite the question so that it is harder" in prompt:
            last = prompt.rsplit("Question:", 1)[-1].split("<|im_end|>")[0].strip()
            return f"In other words, {last}"
        if "Gold target:" in prompt and "Predicted answer:" in prompt:  # the answer judge (fathom.answer)
            ref = re.search(r"Gold target: (.*)", prompt)
            cand = re.search(r"Predicted answer: (.*)", prompt)
            same = ref and cand and normalize_answer(ref.group(1)) == normalize_answer(cand.group(1))
            return "Compared the two answers.\nGRADE: " + ("CORRECT" if same else "INCORRECT")
        if "Provide your final answer as \\boxed{YOUR_ANSWER}" in prompt:
            q = prompt.rsplit("Q:", 1)[-1]
            m = _TAG.search(q)
            if m and self._is_easy(m.group(1)):
                return f"\\boxed{{Entity {m.group(1)}}}"
            return "\\boxed{I do not know}"
        if "DeepSearch investigation trace" in prompt:
            return self._report(prompt)
        if "rewrite" in prompt.lower() and "open-ended research question" in prompt:
            q = prompt.rsplit("Seed question:", 1)[-1].split("\n")[0].strip()
            theme = prompt.rsplit("Theme:", 1)[-1].split("\n")[0].strip()
            return f"In the field of {theme.lower()}: {q}"
        if "<|im_start|>system" in prompt:  # a search agent (raw completion prompt)
            return self._agent(prompt)
        return "I do not know."

    def _compose(self, prompt: str) -> str:
        themes = re.search(r"Themes: (.*)", prompt)
        tline = themes.group(1) if themes else prompt[:200]
        h = _h(tline)
        names = [t.strip() for t in tline.split(",") if t.strip()] or ["a theme", "another theme"]
        urls_block = prompt.split("URLs explored:", 1)[-1]
        urls = [u for u in urls_in(urls_block)][:2] or ["http://atlas.fathom.test/a", "http://atlas.fathom.test/b"]
        if len(urls) == 1:
            urls.append(urls[0] + "#2")
        cand = {
            "question": f"Stub question {h}: which entity links {names[0]} and {names[-1]} in recent records?",
            "answer": f"Entity {h}",
            "themes_used": names[:2],
            "hops": [{"fact": f"{names[0]} relates to the linking entity.", "url": urls[0], "date": "2023-05-01"},
                     {"fact": f"{names[-1]} relates to it too.", "url": urls[1], "date": "2025-03-01"}],
        }
        return "Here is the candidate:\n```json\n" + json.dumps(cand) + "\n```"

    def _agent(self, prompt: str) -> str:
        user = prompt.split("<|im_start|>user", 1)[-1]
        if "<tool_response>" not in prompt:
            query = " ".join(user.split("<|im_end|>")[0].split()[:8]).replace('"', "")
            return ('I should search for this.</think>\n<tool_call>\n{"name": "search_urls", "arguments": '
                    + json.dumps({"query": query or "query"}) + "}\n</tool_call>")
        question = user.split("<|im_end|>")[0]
        if "Research task" in question:
            return "I have notes.</think>\nThe best fact is \\boxed{a recent fact}."
        ans = self._lookup(question)
        return f"Found it.</think>\nThe answer is \\boxed{{{ans or 'unknown'}}}."

    def _report(self, prompt: str) -> str:
        trace = prompt.split("DeepSearch investigation trace", 1)[-1]
        urls = list(dict.fromkeys(u for u in urls_in(trace) if "fathom.test" in u))[:3]
        if not urls:
            urls = ["http://atlas.fathom.test/none"]
        cites = " ".join(f"[{u}]" for u in urls)
        body = " ".join(["The evidence gathered shows consistent findings across the explored sources."] * 12)
        plan = ("## Plan\nSections:\n- S1: Background\n- S2: Findings\n\n| Section | Item (URLs) | Content | "
                "Confidence |\n|---|---|---|---|\n" + "\n".join(f"| S1 | {u} | fact | High |" for u in urls))
        report = (
            "# Executive Summary\n- Key point one.\n- Key point two.\n\n## Main Body\nScope and insights.\n\n"
            f"## S1: Background\n{body} {cites}\n\n## S2: Findings\n{body} [{urls[0]}]\n\n"
            "## Recommendations\n- Act on the evidence.\n\n## Conclusion\nThe evidence is consistent. It supports "
            "the findings. Further work is needed.\n\n## Sources used\n" + "\n".join(urls) + "\n")
        return f"<think>{plan}</think>\n{report}"


@contextmanager
def serve_stub(responder=None, *, tool_delay_s: float = 0.0) -> Iterator[tuple[str, str]]:
    """Serve the stub model and the stub tool server on loopback; yields (role spec, tools URL)."""
    from fathom.agent.testing import serve_app, stub_tools_app
    from fathom.llm.scripted import ScriptedClient
    from fathom.llm.server import create_openai_app

    model_app = create_openai_app(ScriptedClient(responder or DuetQAStub(), model="stub"))
    with serve_app(model_app) as llm_url, serve_app(stub_tools_app(delay_s=tool_delay_s)) as tools_url:
        yield f"{llm_url}/v1#stub", tools_url
