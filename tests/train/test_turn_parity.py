"""One turn engine: the same scripted model turns give byte-identical transcripts through inference (``run_agent``)
and RL rollouts (``RolloutEngine``), with the rollout's token ids and env mask exact."""

from __future__ import annotations

import asyncio

import pytest
from rapo_testkit import scripted, template_file

from fathom.agent import AgentConfig, run_agent
from fathom.agent.format import IM_END, build_prompt, force_answer_instruction, nudge_instruction, preset_schemas
from fathom.llm.base import Completion, LLMClient
from fathom.rl.rollout import RolloutConfig, RolloutEngine, StubTools

QUESTION = "What is the capital of France?"
CALL = (' Search first. </think>\n<tool_call>\n{"name": "search_urls", "arguments": {"query": "capital of France"}}'
        '\n</tool_call>')
TWO_CALLS = CALL + ('\n<tool_call>\n{"name": "query_url", "arguments": {"url": "http://atlas.fathom.test/0", '
                    '"goal": "capital"}}\n</tool_call>')
MALFORMED = ' Try again. </think>\n<tool_call>\n{"name": "search_urls", "arguments": {"query": }\n</tool_call>'
ANSWER = r" The page says Paris. </think> \boxed{Paris}"
RAMBLE = " I am not sure yet, let me think about it more."
LONG_CALL = CALL + " and then I will read every page of the results one by one, slowly, carefully and thoroughly"


class FakeTools(StubTools):
    schemas = preset_schemas("fathom")

    async def call(self, name: str, arguments: dict):
        if arguments.get("url", "").endswith("/0"):
            await asyncio.sleep(0.01)  # concurrent calls of one turn finish out of order; results stay in order
        return await super().call(name, arguments)


class TokenScriptedLLM(LLMClient):
    """The inference-side twin of ``rapo_testkit.scripted``: replays the same turns token-exactly (the turn's ids +
    EOS, cut at ``max_tokens``), counting tokens with the same tokenizer."""

    model = "scripted-tokens"

    def __init__(self, tok, turns: list[str]):
        self.tok, self.turns = tok, list(turns)

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False).input_ids)

    async def complete(self, prompt, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None,
                       repetition_penalty=None) -> Completion:
        text = self.turns.pop(0) if len(self.turns) > 1 else self.turns[0]
        ids = (self.tok(text, add_special_tokens=False).input_ids + [self.tok.eos_token_id])[:max_tokens]
        stopped = ids[-1] == self.tok.eos_token_id
        out = self.tok.decode(ids[:-1] if stopped else ids)
        return Completion(text=out, completion_tokens=len(ids), finish_reason="stop" if stopped else "length")

    async def chat(self, messages, **kw) -> Completion:  # pragma: no cover - not used by the agent
        raise NotImplementedError


@pytest.fixture(scope="module")
def tok(embedded_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(embedded_model_dir)


@pytest.fixture(scope="module")
def tpl(tmp_path_factory):
    return str(template_file(tmp_path_factory.mktemp("tpl")))


def _configs(tpl: str, *, turns: int = 6, total: int = 4000, per_turn: int = 200, answer: int = 40,
             turn_min: int = 30, nudges: int = 1, result_chars: int = 2000) -> tuple[AgentConfig, RolloutConfig]:
    agent = AgentConfig(max_turns=turns, max_total_tokens=total, max_tokens_per_turn=per_turn,
                        min_answer_tokens=answer, min_turn_tokens=turn_min, reserve_tokens=0, max_nudges=nudges,
                        max_result_chars=result_chars, max_parallel_calls=1, tool_timeout_s=120.0, template=tpl)
    rollout = RolloutConfig(max_tool_steps=turns - 1, max_total_tokens=total, max_tokens_per_turn=per_turn,
                            min_answer_tokens=answer, min_turn_tokens=turn_min, max_nudges=nudges,
                            max_tool_result_chars=result_chars, template=tpl)
    assert agent.turn_rules() == rollout.turn_rules()  # the two configs map onto the same engine settings
    return agent, rollout


def _both(tok, turns: list[str], agent_cfg: AgentConfig, rollout_cfg: RolloutConfig):
    traj = asyncio.run(run_agent(QUESTION, TokenScriptedLLM(tok, turns), FakeTools(), agent_cfg))
    eng = RolloutEngine(lambda: FakeTools(), rollout_cfg, schemas=FakeTools.schemas)
    try:
        [r] = eng.generate([QUESTION], tok, scripted(tok, turns))
    finally:
        eng.close()
    rt = r.trajectory
    assert rt.transcript == traj.transcript, "inference and rollout transcripts differ"
    assert (rt.status, rt.answer) == (traj.status, traj.answer)
    assert [(t.text, t.finish_reason, t.forced) for t in rt.turns] == \
        [(t.text, t.finish_reason, t.forced) for t in traj.turns]
    assert [(c.turn, c.index, c.name, c.arguments, c.raw, c.result, c.error) for c in rt.tool_calls] == \
        [(c.turn, c.index, c.name, c.arguments, c.raw, c.result, c.error) for c in traj.tool_calls]
    # token ids are the ground truth: they decode to the transcript; env_mask is 0 exactly on environment tokens
    assert len(r.env_mask) == len(r.completion_ids)
    assert tok.decode(r.prompt_ids + r.completion_ids) == rt.transcript
    policy = [t for t, m in zip(r.completion_ids, r.env_mask) if m]
    env = [t for t, m in zip(r.completion_ids, r.env_mask) if not m]
    assert tok.decode(policy) == "".join(s.text for s in rt.segments if s.role == "model")
    assert tok.decode(env) == "".join(s.text for s in rt.segments if s.role == "env")
    assert sum(r.env_mask) == sum(t.completion_tokens for t in rt.turns)
    assert "<tool_response>" not in tok.decode(policy)
    assert len(r.prompt_ids) + len(r.completion_ids) <= rollout_cfg.max_total_tokens
    return traj, r


def test_tool_calls_and_a_malformed_call(tok, tpl):
    traj, _ = _both(tok, [TWO_CALLS, MALFORMED, ANSWER], *_configs(tpl))
    assert traj.status == "answered" and traj.answer == "Paris"
    assert [c.error for c in traj.tool_calls] == [None, None, "bad_json"]
    assert "result: \n[error:bad_json] " in traj.transcript
    assert traj.transcript.count("<tool_response>") == 3


def test_nudge_then_answer(tok, tpl):
    traj, r = _both(tok, [RAMBLE, ANSWER], *_configs(tpl, nudges=1))
    assert traj.status == "answered" and nudge_instruction() in traj.transcript
    assert nudge_instruction() not in tok.decode([t for t, m in zip(r.completion_ids, r.env_mask) if m])


def test_nudges_exhausted_is_no_answer(tok, tpl):
    traj, _ = _both(tok, [RAMBLE, RAMBLE], *_configs(tpl, nudges=1))
    assert traj.status == "no_answer" and len(traj.turns) == 2


def test_cut_turn_is_closed_by_the_environment(tok, tpl):
    per_turn = len(tok(CALL, add_special_tokens=False).input_ids) + 5
    traj, r = _both(tok, [LONG_CALL, ANSWER], *_configs(tpl, per_turn=per_turn))
    assert traj.turns[0].finish_reason == "length" and len(traj.tool_calls) == 1 and traj.status == "answered"
    env = next(s for s in r.trajectory.segments if s.role == "env").text
    assert env.startswith(IM_END + "\n<|im_start|>user\n<tool_response>")
    assert r.env_mask[len(tok(traj.turns[0].text, add_special_tokens=False).input_ids)] == 0  # the added <|im_end|>


def _n_prompt(tok, tpl):
    return len(tok(build_prompt(QUESTION, preset_schemas("fathom"), tpl), add_special_tokens=False).input_ids)


@pytest.mark.parametrize("last,status", [(ANSWER, "answered"), (CALL, "budget")])
def test_forced_answer_on_budget(tok, tpl, last, status):
    total = _n_prompt(tok, tpl) + 300  # room for the two calls, not for their full results + a normal turn
    traj, _ = _both(tok, [TWO_CALLS, last], *_configs(tpl, total=total, per_turn=100, answer=40, turn_min=30))
    assert traj.turns[-1].forced and len(traj.turns) == 2 and traj.status == status
    assert force_answer_instruction() in traj.transcript and "[... truncated]" in traj.transcript
    assert len(traj.tool_calls) == 2  # no calls run after the forced turn


def test_max_turns(tok, tpl):
    traj, r = _both(tok, [CALL], *_configs(tpl, turns=3))
    assert traj.status == "max_turns" and len(traj.turns) == 3 and len(traj.tool_calls) == 3
    assert traj.transcript.count("<tool_response>") == 3 and r.env_mask[-1] == 0


def test_results_that_cannot_fit_end_the_run_with_nothing_appended(tok, tpl):
    total = _n_prompt(tok, tpl) + 160  # not even the calls' echoes fit after the first turn
    traj, r = _both(tok, [TWO_CALLS, ANSWER], *_configs(tpl, total=total, per_turn=100, answer=40, turn_min=30))
    assert traj.status == "budget" and len(traj.turns) == 1 and len(traj.tool_calls) == 2
    assert "<tool_response>" not in traj.transcript and all(r.env_mask)
