"""Eq. 7/8 with worked examples, the heuristic labeller, B_v, and the LLM labeller's JSON contract."""

import json

import pytest

from fathom.rl.step_reward import (
    CallInfo,
    HeuristicLabeller,
    Label,
    LabelledCall,
    LLMLabeller,
    StepRewardConfig,
    enforce_verification_budget,
    parse_labels,
    step_reward,
    tally,
)

L = Label
CFG = StepRewardConfig()


def t_of(*labels):
    return tally(list(labels))


def test_zero_tool_calls_rho_is_zero():
    t = t_of()
    assert t.total == 0 and t.rho == 0.0 and t.delta_s == 0 and t.delta_q == 0
    assert step_reward(True, 1.0, t) == pytest.approx(1.1)   # 0.1 + max(1 - 0, 0.5)
    assert step_reward(False, 1.0, t) == pytest.approx(0.1)  # no credit without exploration


def test_correct_rollout_worked_example():
    # 3 unique searches, 1 redundant search, 2 explorations, 1 verification, 1 redundant query: T = 8, ρ = 2/8
    t = t_of(L.UNIQUE_SEARCH, L.UNIQUE_SEARCH, L.UNIQUE_SEARCH, L.REDUNDANT_SEARCH, L.EXPLORATION, L.EXPLORATION,
             L.VERIFICATION, L.REDUNDANT_QUERY)
    assert (t.total, t.rho, t.delta_s, t.delta_q) == (8, 0.25, 2, 2)
    assert step_reward(True, 1.0, t) == pytest.approx(0.1 + 0.75)
    assert step_reward(True, 0.0, t) == pytest.approx(0.75)
    # wrong: 0.1 + 0.2·min(1, 2/8) + 0.2·min(1, 2/16)
    assert step_reward(False, 1.0, t) == pytest.approx(0.1 + 0.2 * 0.25 + 0.2 * 0.125)


def test_correct_floor_and_saturation_and_negative_credit():
    spam = t_of(*([L.REDUNDANT_SEARCH] * 9), L.UNIQUE_SEARCH)  # ρ = 0.9
    assert step_reward(True, 1.0, spam) == pytest.approx(0.6)  # max(0.1, 0.5) floor
    assert step_reward(False, 0.0, spam) == pytest.approx(0.2 * (1 - 9) / 8)  # negative, not clipped
    rich = t_of(*([L.UNIQUE_SEARCH] * 20), *([L.EXPLORATION] * 40))
    assert step_reward(False, 1.0, rich) == pytest.approx(0.1 + 0.2 + 0.2)  # both saturate at 1
    # a wrong rollout can never beat a correct one (c1 = c2 = 0.2)
    assert step_reward(False, 1.0, rich) <= step_reward(True, 0.0, spam)


def test_knobs_change_the_reward():
    t = t_of(*([L.UNIQUE_SEARCH] * 4), *([L.EXPLORATION] * 4))
    low = StepRewardConfig(C_S=4, C_Q=4)
    assert step_reward(False, 0.0, t, low) == pytest.approx(0.4)
    assert step_reward(False, 0.0, t, CFG) == pytest.approx(0.2 * 4 / 8 + 0.2 * 4 / 16)


def test_verification_budget():
    labs = [LabelledCall(i, "query_url", L.VERIFICATION, 7) for i in range(3)]
    out = enforce_verification_budget(labs, B_v=1)
    assert [x.label for x in out] == [L.VERIFICATION, L.REDUNDANT_QUERY, L.REDUNDANT_QUERY]
    assert [x.label for x in enforce_verification_budget(labs, B_v=2)].count(L.VERIFICATION) == 2
    other = enforce_verification_budget(labs[:1] + [LabelledCall(3, "query_url", L.VERIFICATION, 8)], 1)
    assert [x.label for x in other] == [L.VERIFICATION, L.VERIFICATION]


def test_heuristic_labeller_worked_example():
    calls = [
        CallInfo(0, "search_urls", query="Ulrich Walter employer"),
        CallInfo(1, "search_urls", query="employer of Ulrich Walter"),  # same tokens → redundant
        CallInfo(2, "search_urls", query="Technical University Munich headquarters"),
        CallInfo(3, "query_url", url="http://a.test/walter", goal="Ulrich Walter employer"),   # new claim
        CallInfo(4, "query_url", url="http://b.test/walter/", goal="employer of Ulrich Walter"),  # new URL, same claim
        CallInfo(5, "query_url", url="http://c.test/x", goal="Ulrich Walter employer"),  # beyond B_v = 1
        CallInfo(6, "query_url", url="http://a.test/walter", goal="Ulrich Walter employer"),  # repeat pair
        CallInfo(7, "query_url", url="http://a.test/walter", goal="where is TUM headquartered"),  # new claim
        CallInfo(8, "execute_code", query="x"),  # not a labelled tool
    ]
    labels = HeuristicLabeller(CFG).label("Where is Ulrich Walter's employer headquartered?", calls)
    assert [x.label for x in labels] == [L.UNIQUE_SEARCH, L.REDUNDANT_SEARCH, L.UNIQUE_SEARCH, L.EXPLORATION,
                                         L.VERIFICATION, L.REDUNDANT_QUERY, L.REDUNDANT_QUERY, L.EXPLORATION]
    t = tally(labels)
    assert (t.n_uniq_s, t.n_red_s, t.n_uniq_q, t.n_red_q, t.total) == (2, 1, 3, 2, 8)
    # deterministic
    assert HeuristicLabeller(CFG).label("q", calls) == HeuristicLabeller(CFG).label("q", calls)
    # B_v = 2 credits the second cross-check
    labels2 = HeuristicLabeller(StepRewardConfig(B_v=2)).label("q", calls)
    assert labels2[5].label is L.VERIFICATION


CALLS = [CallInfo(0, "search_urls", query="a b"), CallInfo(1, "query_url", url="http://x", goal="a")]


def test_parse_labels_contract():
    good = json.dumps([{"idx": 0, "tool": "search_urls", "label": "UniqueSearch", "claim_id": None},
                       {"idx": 1, "tool": "query_url", "label": "Exploration", "claim_id": "1"}])
    parsed = parse_labels("Sure:\n" + good + "\nDone", CALLS)
    assert [x.label for x in parsed] == [L.UNIQUE_SEARCH, L.EXPLORATION] and parsed[1].claim_id == 1
    assert parse_labels("not json", CALLS) is None
    assert parse_labels(json.dumps([{"label": "UniqueSearch"}]), CALLS) is None  # wrong count
    wrong_tool = json.dumps([{"label": "Exploration"}, {"label": "Exploration"}])
    assert parse_labels(wrong_tool, CALLS) is None  # search call labelled as a query
    assert parse_labels(json.dumps([{"label": "Bogus"}, {"label": "Exploration"}]), CALLS) is None


class _Client:
    def __init__(self, text):
        self.text = text

    async def complete(self, prompt, **kw):
        from fathom.llm.base import Completion
        assert kw["temperature"] == 0.0
        return Completion(text=self.text, prompt_tokens=1, completion_tokens=1, finish_reason="stop", latency_s=0)


async def test_llm_labeller_uses_json_and_falls_back():
    reply = json.dumps([{"idx": 0, "tool": "search_urls", "label": "RedundantSearch", "claim_id": None},
                        {"idx": 1, "tool": "query_url", "label": "Verification", "claim_id": 3}])
    lab = LLMLabeller(_Client(reply), CFG)
    out = await lab.alabel("q", CALLS)
    assert [x.label for x in out] == [L.REDUNDANT_SEARCH, L.VERIFICATION] and lab.fallbacks == 0
    bad = LLMLabeller(_Client("I cannot do that"), CFG)
    out = await bad.alabel("q", CALLS)
    assert [x.label for x in out] == [L.UNIQUE_SEARCH, L.EXPLORATION] and bad.fallbacks == 1
    assert await bad.alabel("q", []) == []
