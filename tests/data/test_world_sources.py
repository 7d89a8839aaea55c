"""World sources of the data stages on the embedded default (issue 8 items 1 and 5): worked examples of the
world obfuscator, decontamination and the world report teacher; DuetQA and the SFT corpus end to end on the
offline stack (real loopback tool server, the expert search policy); the 0-row errors; the stage-2 sources."""

from __future__ import annotations

import asyncio
import json

import pytest

from fathom.errors import ConfigError, EmptyStageError
from fathom.llm.base import Completion, LLMClient
from fathom.web.offline.world import Entity, World

# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def stack():
    from fathom.web.stack import EMBEDDED_READER, offline_stack

    with offline_stack(seed=0, n_pages=120, **EMBEDDED_READER) as st:
        yield st


class FixedChat(LLMClient):
    """A no-search solver double: answers every chat with `reply(messages)`."""

    model = "fixed"

    def __init__(self, reply):
        self.reply = reply

    async def chat(self, messages, *, max_tokens, temperature=0.0, top_p=1.0, stop=None, seed=None) -> Completion:
        return Completion(text=self.reply(messages), prompt_tokens=1, completion_tokens=1, finish_reason="stop")

    async def complete(self, prompt, **kw) -> Completion:  # pragma: no cover - not a search policy
        raise NotImplementedError

    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)


def _tiny_world() -> World:
    ents = {
        "Velport": Entity("Velport", "city", "Velport", attrs={"founded": 1405, "population": 1000},
                          rels={"country": "Raesia"}),
        "Drakmere": Entity("Drakmere", "city", "Drakmere", attrs={"founded": 1410, "population": 2000},
                           rels={"country": "Raesia"}),
        "Raesia": Entity("Raesia", "country", "Raesia", attrs={"currency": "Raesian crown", "founded": 1701},
                         rels={"capital": "Velport"}),
        "Zorb_Labs": Entity("Zorb_Labs", "company", "Zorb Labs", attrs={"industry": "optics", "founded": 1987},
                            rels={"headquarters": "Velport", "founder": "Ana_Bel"}),
        "Kiro_Works": Entity("Kiro_Works", "company", "Kiro Works", attrs={"industry": "optics", "founded": 1983},
                             rels={"headquarters": "Drakmere", "founder": "Ana_Bel"}),
        "Ana_Bel": Entity("Ana_Bel", "person", "Ana Bel", attrs={"born": "1950-03-02", "occupation": "engineer"},
                          rels={"birthplace": "Velport"}),
    }
    return World(seed=7, entities=ents, currencies={"Raesia": "Raesian crown"})


# --------------------------------------------------------------------------------------------------- units


def test_world_hop_levels_are_prefix_stable_and_follow_the_mix():
    from fathom.selfplay.world import hop_levels

    a, b = hop_levels(10, {1: 1, 2: 1, 3: 1}, seed=3), hop_levels(40, {1: 1, 2: 1, 3: 1}, seed=3)
    assert b[:10] == a and set(b) == {1, 2, 3}
    assert set(hop_levels(20, {3: 1.0, 1: 0.0}, seed=0)) == {3}


def test_world_descriptor_is_unique_soft_and_avoids_the_path():
    from fathom.selfplay.world import describe_entity

    w = _tiny_world()
    # both optics companies were founded in the 1980s: the decade does not single one out, the year does
    assert describe_entity(w, w.entities["Zorb_Labs"]) == "an optics company founded in 1987"
    # the question follows `founded`: the descriptor may not use it -> headquarters
    assert describe_entity(w, w.entities["Zorb_Labs"], exclude={"founded"}) == \
        "an optics company headquartered in Velport"
    # nothing left that is unique and hides the answer
    assert describe_entity(w, w.entities["Zorb_Labs"], exclude={"founded"}, forbid=["Velport"]) is None
    assert describe_entity(w, w.entities["Raesia"]) == "the country whose currency is the Raesian crown"


def test_world_obfuscation_replaces_the_start_entity_or_records_none():
    from fathom.selfplay.world import obfuscate_world_question
    from fathom.web.offline.questions import WorldQA

    w = _tiny_world()
    hop = {"subject": "Zorb Labs", "relation": "headquarters", "object": "Velport", "fact": "", "url": "", "date": None}
    qa = WorldQA(id="x", question="In which city is Zorb Labs headquartered?", answer="Velport", hops=[hop])
    q, kind, _desc = obfuscate_world_question(w, qa)
    assert (q, kind) == ("In which city is an optics company founded in 1987 headquartered?", "entity_descriptor")
    hop2 = {**hop, "subject": "Ana Bel", "relation": "occupation", "object": "engineer"}
    qa2 = WorldQA(id="y", question="What is the profession of Ana Bel?", answer="engineer", hops=[hop2])
    assert obfuscate_world_question(w, qa2)[1] in ("entity_descriptor", "none")
    assert "engineer" not in obfuscate_world_question(w, qa2)[0]


def test_decontamination_worked_examples(tmp_path):
    from fathom.selfplay.decontam import DecontamConfig, Decontaminator, decontaminate_rows

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "evalset.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"id": "e1", "question": "Who founded the company that distributed the film UHF?", "answer": "x"},
        {"id": "e2", "question": "Which river flows through the old town of Ravensgard in northern Velmaria "
                                 "before reaching the sea?", "answer": "y"},
    ]) + "\n")
    deco = Decontaminator(DecontamConfig(benchmarks_dir=bench, heldout_questions_per_hop=20, heldout_hops=[1, 2]))
    assert deco.match("who founded the company that distributed the film UHF?") == ("exact", "evalset:e1")
    assert deco.match("Who founded the company that distributed the film UHF, the comedy?")[0] in ("near", "ngram")
    assert deco.match("Tell me: which river flows through the old town of Ravensgard in northern Velmaria?")[0] \
        == "ngram"
    # the same world template with another entity is not contamination
    assert deco.match("What is the population of Zzyqxport?") is None
    from fathom.web.offline.questions import make_questions
    from fathom.web.offline.world import generate_world

    held = make_questions(generate_world(1000, 120), 1, hops=1, seed=0)[0]
    assert deco.match(held.question) is not None
    name = held.hops[0]["subject"]
    assert deco.match(f"What should a report on {name} and its neighbours cover?")[0] in ("entity", "ngram")
    _kept, dropped, res = decontaminate_rows([{"prompt": "What is the population of Zzyqxport?"},
                                             {"question": held.question, "id": "leak"}], deco)
    assert res.kept == 1 and res.dropped == 1 and dropped[0]["decontam_match"].startswith("offline-heldout")
    with pytest.raises(ConfigError, match="no question"):
        decontaminate_rows([{"id": "q"}], deco)


def test_decontaminate_folder_writes_rows_card_and_refuses_empty(tmp_path):
    from fathom.selfplay.decontam import DecontamConfig, decontaminate_folder

    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "b.jsonl").write_text(json.dumps({"id": 1, "question": "What is the capital of Velmaria?"}) + "\n")
    src = tmp_path / "in"
    src.mkdir()
    rows = [{"prompt": "What is the capital of Velmaria?", "answer": "a", "id": "1", "source": "duetqa-world",
             "hops": 1},
            {"prompt": "How many students does Qorvath University enrol?", "answer": "5", "id": "2",
             "source": "duetqa-world", "hops": 1}]
    (src / "rl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (src / "README.md").write_text("# DuetQA card\n")
    cfg = DecontamConfig(benchmarks_dir=bench, heldout_world=False)
    res = decontaminate_folder(src, tmp_path / "out", cfg)
    assert (res.total, res.kept, res.by_reason) == (2, 1, {"exact": 1})
    kept = [json.loads(x) for x in (tmp_path / "out" / "rl.jsonl").read_text().splitlines()]
    assert [r["id"] for r in kept] == ["2"] and kept[0]["hops"] == 1
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("# DuetQA card") and "## Decontamination" in card and "| exact | 1 |" in card
    (src / "rl.jsonl").write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(EmptyStageError, match="decontaminate kept 0 rows"):
        decontaminate_folder(src, tmp_path / "out2", cfg)


def test_stage2_sources_refuse_the_evaluation_file_and_make_math(tmp_path):
    from fathom.rl.data import synthetic_math_rows
    from fathom.rl.filter import multihop_rows
    from fathom.selfplay.dedup import default_benchmarks_dir

    with pytest.raises(ConfigError, match="refusing .*evaluation"):
        multihop_rows(default_benchmarks_dir() / "musique.jsonl", limit=2, n_offline=2)
    copy = tmp_path / "musique_copy.jsonl"  # the evaluation set under another name is refused by content
    copy.write_text((default_benchmarks_dir() / "musique.jsonl").read_text()[:20000].rsplit("\n", 1)[0] + "\n")
    with pytest.raises(ConfigError, match="evaluation questions"):
        multihop_rows(copy, limit=2, n_offline=2)
    train = tmp_path / "musique_train.jsonl"
    train.write_text(json.dumps({"id": "3hop1__9_8_7", "question": "Who is the mayor of the home town of Zed Qor?",
                                 "answer": "Ann"}) + "\n")
    assert [r["source"] for r in multihop_rows(train, limit=None, n_offline=2)] == ["musique"]
    rows = multihop_rows(None, limit=3, n_offline=2)
    assert len(rows) == 3 and {r["source"] for r in rows} == {"offline-web-3hop"} and {r["hops"] for r in rows} == {3}
    math = synthetic_math_rows(3)
    assert math == synthetic_math_rows(3) and {r["source"] for r in math} == {"math-synthetic"}
    assert math[0]["prompt"].startswith("A ") and int(math[0]["answer"]) == eval(
        "{} - {} * {} + {}".format(*[int(x) for x in __import__("re").findall(r"\d+", math[0]["prompt"])]))


def test_offline_rows_ask_about_the_world_the_tool_server_serves():
    """The sampling seed picks questions; the world stays the served one (world 0), so the answers are on its pages
    (a question of world 7 asked against world 0 is unanswerable: every RAPO rollout failed, no gradient)."""
    from fathom.rl.data import offline_rows
    from fathom.web.offline import ensure_offline_web

    served = ensure_offline_web(seed=0)
    objects = {str(f["object"]) for f in served.facts()}
    for hops in (1, 3):
        rows = offline_rows(4, hops=hops, seed=7)
        assert [r["id"] for r in rows] == [q.id for q in served.questions(4, hops=hops, seed=7)]
        assert all(r["answer"] in objects and r["hops"] == hops for r in rows)
    assert [r["id"] for r in offline_rows(4, hops=1, seed=7)] != [r["id"] for r in offline_rows(4, hops=1, seed=0)]


def test_stage2_filter_refuses_an_empty_mixture(tmp_path):
    from fathom.rl.filter import filter_against_policy

    with pytest.raises(EmptyStageError, match="stage-2 filter kept 0 rows"):
        filter_against_policy([], tmp_path, "http://127.0.0.1:9", tmp_path / "out")


# --------------------------------------------------------------------------------------------------- end to end


def _duet(stack, tmp_path, m3_reply, **kw):
    from fathom.agent import HttpTools
    from fathom.selfplay.config import DuetQAConfig
    from fathom.selfplay.runner import arun_duetqa
    from fathom.web.client import ToolClient

    cfg = DuetQAConfig(**{"n": 8, **kw})
    assert cfg.resolved_source() == "world"

    async def go():
        async with ToolClient(stack.tools_url) as client:
            return await arun_duetqa(cfg, tmp_path, tools=HttpTools(client), web=stack.web,
                                     clients={"m3": FixedChat(m3_reply)}, show_progress=False)

    return asyncio.run(go())


def test_duetqa_world_source_end_to_end(stack, tmp_path):
    """Embedded default roles (M1 = M2 = the expert): real rows, verified through the real tool server."""
    import datasets

    res = _duet(stack, tmp_path, lambda m: "I do not know.")
    assert res.complete and res.kept >= 4
    rows = [json.loads(x) for x in (tmp_path / "duetqa.jsonl").read_text().splitlines()]
    assert len(rows) == res.kept and {r["source"] for r in rows} == {"world"}
    for r in rows:
        v = r["verification"]
        assert v["m1"]["correct"] and v["m2"]["correct"] and not v["m3"]["correct"]
        assert v["m1"]["tool_calls"] >= 2 * len(r["hops"])  # search + read per hop, through the tool server
        assert r["obfuscation"] in ("entity_descriptor", "none") and 1 <= len(r["hops"]) <= 3
        if r["obfuscation"] == "entity_descriptor":
            assert r["question"] != r["original_question"]
        assert r["generator_models"]["solver_m1"] == "expert:offline-web"
    rl = datasets.load_from_disk(str(tmp_path / "rl" / "hf"))
    assert set(rl["source"]) == {"duetqa-world"} and sorted(rl["hops"]) == sorted(len(r["hops"]) for r in rows)
    card = (tmp_path / "README.md").read_text()
    assert "Source `world`" in card and "Rows by source: world" in card and "Decontamination" in card
    # the transcripts are real tool calls of the expert
    trajs = [json.loads(x) for x in (tmp_path / "work" / "trajectories.jsonl").read_text().splitlines()]
    calls = [c for t in trajs if t.get("kind") == "agent" for turn in t["turns"] for c in turn["calls"]]
    assert {c["name"] for c in calls} == {"search_urls", "query_url"}
    assert any("atlas.fathom.test/wiki/" in c["result"] for c in calls)


def test_duetqa_world_source_zero_rows_raise(stack, tmp_path):
    """A no-search solver that knows every answer: nothing is search-dependent, the stage fails loudly."""
    from fathom.web.offline.questions import WorldQA  # noqa: F401 - the answers come from the candidates

    answers = {}

    def cheat(messages):
        q = messages[-1]["content"]
        return "\\boxed{" + answers.get(q, "?") + "}"

    from fathom.selfplay.world import obfuscate_world_question, plan_world_questions

    for qa in plan_world_questions(stack.web, 4, {1: 0.2, 2: 0.5, 3: 0.3}, 0):
        if qa is not None:
            answers[f"Q: {obfuscate_world_question(stack.web.world, qa)[0]}\nA:"] = qa.answer
    with pytest.raises(EmptyStageError, match=r"duetqa kept 0 rows \(funnel: planned 4.*no_search_solver_correct"):
        _duet(stack, tmp_path, cheat, n=4)
    assert (tmp_path / "candidates.jsonl").read_text().count("no_search_solver_correct") >= 1


def test_duetqa_config_roles_and_sources():
    from fathom.selfplay.config import DuetQAConfig

    assert DuetQAConfig().resolved_source() == "world"
    assert DuetQAConfig(m1="local:smollm2", m2="local:smollm2").resolved_source() == "model"
    assert "m1" not in DuetQAConfig().roles() and DuetQAConfig().describe_roles()["m1"] == "expert:offline-web"
    with pytest.raises(ValueError, match="cannot play this role"):
        DuetQAConfig(m3="expert:offline-web")
    with pytest.raises(ValueError, match="unknown expert"):
        DuetQAConfig(m1="expert:other")


def test_sft_corpus_world_source_end_to_end(stack, tmp_path):
    """Embedded default: briefs on world entities, expert traces through the tool server, the world teacher; every
    accepted row passes the corpus filters and cites only pages the trace read."""
    from fathom.agent import HttpTools
    from fathom.sftdata.config import ReportFilterConfig, SFTCorpusConfig
    from fathom.sftdata.filters import check_report
    from fathom.sftdata.runner import arun_sft_corpus
    from fathom.synth import parse_report
    from fathom.web.client import ToolClient

    cfg = SFTCorpusConfig(n=3)
    assert cfg.resolved_source() == "world"

    async def go():
        async with ToolClient(stack.tools_url) as client:
            return await arun_sft_corpus(cfg, tmp_path, tools=HttpTools(client), web=stack.web, show_progress=False)

    res = asyncio.run(go())
    assert res.accepted == 3
    rows = [json.loads(x) for x in (tmp_path / "sft.jsonl").read_text().splitlines()]
    for r in rows:
        assert r["source"] == "world" and r["tool_calls"] >= 4 and r["teacher"] == "expert:offline-web"
        text = r["messages"][-1]["content"]
        rep = parse_report(text, set(r["trace_urls"]))
        assert check_report(rep, ReportFilterConfig()) == [] and rep.unsupported_urls == []
        assert r["messages"][0]["role"] == "system" and "Trace (model transcript)" in r["messages"][1]["content"]
    assert "Source `world`" in (tmp_path / "README.md").read_text()


def test_world_report_claims_only_what_the_trace_read():
    """Worked example: a trajectory whose one reading states two facts of the entity -> only those are claimed."""
    from fathom.agent.trajectory import Trajectory
    from fathom.sftdata.world import WorldReportPlan, trace_claims, world_report
    from fathom.web.offline.questions import fact_of

    w = _tiny_world()
    z = w.entities["Zorb_Labs"]
    facts = [fact_of(w, z, "founded"), fact_of(w, z, "headquarters")]
    url = facts[0]["url"]
    reading = f"Evidence:\n{facts[0]['fact']} | Headquarters | Velport |"
    traj = Trajectory.model_validate({
        "question": "q", "prompt": "p", "segments": [], "answer": None, "status": "answered",
        "turns": [{"index": 0, "text": "t", "calls": [{"turn": 0, "name": "query_url",
                                                       "arguments": {"url": url, "goal": "g"},
                                           "raw": "{}", "result": reading}]}]})
    claims = trace_claims(w, traj)
    assert [c["relation"] for c in claims] == ["founded", "headquarters"] and {c["cite"] for c in claims} == {url}
    plan = WorldReportPlan(entity_id="Zorb_Labs", question="Write a brief on Zorb Labs.", hops=facts,
                           related=["headquarters"])
    text = world_report(w, plan, traj)
    assert text.startswith("<think>") and "- S1: Profile of Zorb Labs" in text
    assert f"Zorb Labs was founded in 1987. [{url}]" in text and text.rstrip().endswith(url)
    assert "population" not in text.split("</think>")[1]  # nothing unread is claimed


def test_world_report_claims_per_section_keeps_the_planned_facts_first():
    """Worked example: a reading states `founded` and `headquarters`; only `headquarters` is planned. With one
    claim per section the report states the planned fact and not the other; without a cap it states both."""
    from fathom.agent.trajectory import Trajectory
    from fathom.sftdata.world import WorldReportPlan, world_report
    from fathom.web.offline.questions import fact_of

    w = _tiny_world()
    z = w.entities["Zorb_Labs"]
    founded, hq = fact_of(w, z, "founded"), fact_of(w, z, "headquarters")
    reading = f"Evidence:\n{founded['fact']} | Headquarters | Velport |"
    traj = Trajectory.model_validate({
        "question": "q", "prompt": "p", "segments": [], "answer": None, "status": "answered",
        "turns": [{"index": 0, "text": "t", "calls": [{"turn": 0, "name": "query_url",
                                                       "arguments": {"url": hq["url"], "goal": "g"},
                                                       "raw": "{}", "result": reading}]}]})
    plan = WorldReportPlan(entity_id="Zorb_Labs", question="Write a brief on Zorb Labs.", hops=[hq], related=[])
    capped = world_report(w, plan, traj, claims_per_section=1).split("</think>")[1]
    assert hq["fact"].rstrip(".") in capped and founded["fact"].rstrip(".") not in capped
    full = world_report(w, plan, traj).split("</think>")[1]
    assert hq["fact"].rstrip(".") in full and founded["fact"].rstrip(".") in full
