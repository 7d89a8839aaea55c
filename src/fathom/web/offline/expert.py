"""A world-grounded expert search policy for the offline web.

The offline world knows the evidence path of each of its questions (:mod:`fathom.web.offline.questions`): the
entity a question starts from and the relation followed at every hop. :class:`ExpertPolicy` is an
:class:`~fathom.llm.base.LLMClient` that walks that path **through the real tool server**, in the released
Fathom-Search format, one model turn at a time:

    turn 0          search_urls(<first subject>)                          -> real search hits
    turn 1          query_url(<the hit whose title is the subject>, goal)  -> real reading of the page
    turn 2          the fact, quoted from the reading; search_urls(<next subject>)
    ...
    last turn       the fact, quoted from the reading; \\boxed{<answer>}

It reads every decision off the transcript it is given (the real tool responses), so it only succeeds when the
tool server actually serves the evidence: a URL that search did not return, or a reading that does not contain the
hop's object, ends the run without an answer (``no_answer``). That makes it a *verifier* (DuetQA: "the answer is
reachable by search"), a *teacher* (its trajectories warm-start the policy) and a *trace source* (the SFT corpus).

Run it with the one turn engine, :func:`fathom.agent.run_agent`, like any policy::

    expert = ExpertPolicy(tokenizer_counter)
    expert.register(question, qa.hops)
    traj = await run_agent(question, expert, tools, expert_agent_config())
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from fathom.agent import format as fmt
from fathom.agent.loop import AgentConfig
from fathom.llm.base import ChatMessage, Completion, LLMClient
from fathom.web.offline.world import ATTRIBUTES, RELATIONS

EXPERT_MODEL = "expert:offline-web"
#: Search hits the expert asks for (short tool responses keep CPU training cheap).
SEARCH_TOP_K = 1

_USER_Q = re.compile(re.escape(f"{fmt.IM_START}user\n") + r"(.*?)" + re.escape(fmt.IM_END), re.DOTALL)
_HIT = re.compile(r"### \d+\. (?P<title>[^\n]*)\n\*\*URL\*\*: (?P<url>\S+)")


def goal_phrase(subject: str, relation: str) -> str:
    """What a hop looks for, as a noun phrase ("the capital of Raesoland", "the population of Velport")."""
    if relation in RELATIONS:
        return RELATIONS[relation].np.format(s=subject)
    if relation in ATTRIBUTES:
        return f"the {relation.replace('_', ' ')} of {subject}"
    return f"the {relation.replace('_', ' ').replace('rd ', 'R&D ')} of {subject}"


def _call(name: str, arguments: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}\n</tool_call>"


def _last_tool_text(prompt: str) -> str:
    """The newest round of tool responses (the user turn before the final generation prefix)."""
    head = prompt.removesuffix(fmt.ASSISTANT_PREFIX)
    start = head.rfind(f"{fmt.IM_START}user\n")
    return head[start:] if start >= 0 else ""


def _hit_for(text: str, subject: str) -> str | None:
    """URL of the search hit titled exactly ``subject`` (case-insensitive), if search returned one."""
    for m in _HIT.finditer(text):
        if m.group("title").strip().casefold() == subject.casefold():
            return m.group("url")
    return None


def _quote(text: str, hop: dict) -> str | None:
    """The hop's evidence as the reading shows it: its sentence when present, else a mention of its object."""
    flat = " ".join(text.split())
    if hop["fact"] in flat:
        return hop["fact"]
    if hop["object"] and hop["object"] in flat:
        return f"{goal_phrase(hop['subject'], hop['relation'])} is {hop['object']}."
    return None


class ExpertPolicy(LLMClient):
    """Scripted by the world's evidence paths, grounded in the tool responses it receives.

    `count_tokens` should be the trained policy's tokenizer (so budgets match the policy the trajectories train);
    any ``str -> int`` works. Unknown questions get a turn without a call or an answer (the run ends
    ``no_answer``)."""

    model = EXPERT_MODEL

    def __init__(self, count_tokens: Callable[[str], int] | None = None, *, top_k: int = SEARCH_TOP_K):
        self._count = count_tokens or (lambda s: max(1, len(s) // 4))
        self.top_k = top_k
        self.paths: dict[str, list[dict]] = {}

    def register(self, question: str, hops: Sequence[dict]) -> None:
        """Teach the expert the evidence path of a question (hop dicts with subject, relation, object, fact)."""
        if not hops:
            raise ValueError("an evidence path needs at least one hop")
        self.paths[question.strip()] = [dict(h) for h in hops]

    def count_tokens(self, text: str) -> int:
        return self._count(text)

    @property
    def context_length(self) -> int | None:
        return None

    def next_turn(self, prompt: str) -> str:
        """The expert's next turn for a transcript that ends with the generation prefix (pure)."""
        m = _USER_Q.search(prompt)
        hops = self.paths.get(m.group(1).strip()) if m else None
        if not hops:
            return " I have no lead for this question.\n</think>\n\nI could not find the answer."
        k = len(fmt.model_turn_texts(prompt))  # turns already taken: 2 per hop (search, read), then the answer
        hop_i, phase = divmod(k, 2)
        last = _last_tool_text(prompt)
        if hop_i >= len(hops):
            return " The evidence path is complete.\n</think>\n\nI could not find the answer."
        hop = hops[hop_i]
        want = goal_phrase(hop["subject"], hop["relation"])
        if phase == 1:  # read the subject's page found by the search
            url = _hit_for(last, hop["subject"])
            if url is None:
                return (f" The search did not return a page about {hop['subject']}.\n</think>\n\n"
                        "I could not find the answer.")
            return (f" Reading the page about {hop['subject']}.\n</think>\n"
                    + _call("query_url", {"url": url, "goal": want}))
        # phase 0: conclude the previous hop (if any), then search for this hop's subject
        lead = ""
        if hop_i > 0:
            prev = hops[hop_i - 1]
            quote = _quote(last, prev)
            if quote is None:
                return (f" The page does not state {goal_phrase(prev['subject'], prev['relation'])}.\n</think>\n\n"
                        "I could not find the answer.")
            lead = f" {quote}"
        return (f"{lead} I need {want}.\n</think>\n"
                + _call("search_urls", {"query": hop["subject"], "top_k": self.top_k}))

    def final_turn(self, prompt: str, hops: list[dict]) -> str:
        last = _last_tool_text(prompt)
        hop = hops[-1]
        quote = _quote(last, hop)
        if quote is None:
            return (f" The page does not state {goal_phrase(hop['subject'], hop['relation'])}.\n</think>\n\n"
                    "I could not find the answer.")
        return f" {quote}\n</think>\n\n\\boxed{{{hop['object']}}}"

    async def complete(self, prompt, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None,
                       repetition_penalty=None) -> Completion:
        m = _USER_Q.search(prompt)
        hops = self.paths.get(m.group(1).strip()) if m else None
        if hops and len(fmt.model_turn_texts(prompt)) == 2 * len(hops):
            text = self.final_turn(prompt, hops)
        else:
            text = self.next_turn(prompt)
        n = self._count(text)
        finish = "stop"
        if n > max_tokens:  # honour the budget like a real model: a cut turn
            finish = "length"
        return Completion(text=text, prompt_tokens=0, completion_tokens=n, finish_reason=finish)

    async def chat(self, messages: list[ChatMessage], *, max_tokens, temperature=0.0, top_p=1.0, stop=None,
                   seed=None) -> Completion:
        raise NotImplementedError("the expert search policy only speaks the raw completion format")


def expert_agent_config(**overrides) -> AgentConfig:
    """Agent settings for expert runs: greedy, one call per turn, enough turns for 3 hops (7 turns)."""
    base = dict(max_turns=8, max_total_tokens=8192, max_tokens_per_turn=256, min_answer_tokens=64,
                min_turn_tokens=64, reserve_tokens=16, temperature=0.0, max_nudges=0, repetition_penalty=None)
    return AgentConfig(**{**base, **overrides})
