"""The DuetQA stage end to end on instant stub endpoints (real HTTP on loopback): outputs, resume after a crash,
budgets, truth mode, and an endpoint outage."""

from __future__ import annotations

import json

import pytest

from fathom.datasets_io import AppendLog
from fathom.selfplay.config import DuetQAConfig
from fathom.selfplay.runner import run_duetqa
from fathom.selfplay.stub import DuetQAStub, serve_stub


@pytest.fixture(scope="module")
def stub():
    with serve_stub(DuetQAStub(easy_every=3)) as (role, tools):
        yield role, tools


def _cfg(role, **kw):
    return DuetQAConfig(m1=role, m2=role, m3=role, judge=role, **kw)


class Crash(RuntimeError):
    pass


def _run(*args, **kw):
    """run_duetqa; a run that keeps no row raises EmptyStageError, whose `result` these tests inspect."""
    from fathom.errors import EmptyStageError

    try:
        return run_duetqa(*args, **kw)
    except EmptyStageError as exc:
        return exc.result


def test_duetqa_outputs_load_and_rl_rows(stub, tmp_path):
    import datasets

    role, tools = stub
    res = run_duetqa(_cfg(role, n=6), tmp_path, tools_url=tools, show_progress=False)
    assert res.complete and res.n_done == 6
    assert res.funnel["planned"] == 6 and res.kept == res.funnel["kept"]
    assert res.kept + sum(res.rejections.values()) == 6
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    js = datasets.load_dataset("json", data_files=str(tmp_path / "duetqa.jsonl"), split="train")
    assert len(ds) == len(js) == res.kept > 0
    row = ds[0]
    for col in ("id", "question", "answer", "themes", "mode", "hops", "sources", "verification", "created_at",
                "generator_models"):
        assert col in row
    assert row["verification"]["m1"]["correct"] and not row["verification"]["m3"]["correct"]
    assert 5 <= len(row["themes"]) <= 7 and row["hops"][0]["url"].startswith("http")
    # every verdict references a stored transcript
    refs = {r["ref"] for r in AppendLog(tmp_path / "work" / "trajectories.jsonl")}
    for v in row["verification"].values():
        for ref in v["transcript_ref"].split("|"):
            assert ref in refs
    rl = datasets.load_from_disk(str(tmp_path / "rl" / "hf"))
    assert rl.column_names == ["prompt", "answer", "id", "source", "hops"] and len(rl) == res.kept
    assert set(rl["source"]) == {"duetqa-model"} and all(h >= 2 for h in rl["hops"])
    card = (tmp_path / "README.md").read_text()
    assert "## Funnel" in card and "| planned | 6 |" in card and "m1:solve" in card
    cands = [json.loads(line) for line in (tmp_path / "candidates.jsonl").read_text().splitlines()]
    assert len(cands) == 6 and {c["status"] for c in cands} <= {"kept", "rejected"}
    assert all(c["reason"] for c in cands if c["status"] == "rejected")
    usage = res.usage
    assert usage["m1:solve"]["tool_calls"] > 0 and usage["judge"]["calls"] >= 0 and usage["m3:obfuscate"]["calls"]


def test_duetqa_resume_after_crash(stub, tmp_path):
    role, tools = stub
    seen = []

    def crash_after_three(rec):
        seen.append(rec["id"])
        if len(seen) == 3:
            raise Crash("simulated crash")

    cfg = _cfg(role, n=8, max_in_flight=2)
    with pytest.raises(Crash):
        run_duetqa(cfg, tmp_path, tools_url=tools, on_record=crash_after_three, show_progress=False)
    first = AppendLog(tmp_path / "work" / "items.jsonl").records()
    assert 3 <= len(first) < 8  # at most the in-flight items are lost
    # a torn last line (crash mid-write) is tolerated
    with open(tmp_path / "work" / "items.jsonl", "a") as fh:
        fh.write('{"id": "torn')
    rerun_ids = []
    res = run_duetqa(cfg, tmp_path, tools_url=tools, on_record=lambda r: rerun_ids.append(r["id"]),
                     show_progress=False)
    recs = AppendLog(tmp_path / "work" / "items.jsonl").records()
    ids = [r["id"] for r in recs]
    assert len(ids) == len(set(ids)) == 8  # no duplicates, complete
    assert not set(rerun_ids) & {r["id"] for r in first}  # finished ids skipped
    assert res.complete and res.n_done == 8
    # usage of both runs is accounted
    assert len(AppendLog(tmp_path / "work" / "runs.jsonl").records()) == 2


def test_duetqa_budgets(stub, tmp_path):
    role, tools = stub
    res = _run(_cfg(role, n=6, max_items=2), tmp_path / "a", tools_url=tools, show_progress=False)
    assert res.n_done == 2 and not res.complete and "incomplete" in (tmp_path / "a" / "README.md").read_text()
    res = _run(_cfg(role, n=6, max_tokens=1, max_in_flight=1), tmp_path / "b", tools_url=tools,
                     show_progress=False)
    assert res.n_done == 1 and res.stopped_by == "max_tokens"


def test_duetqa_resume_refuses_changed_settings(stub, tmp_path):
    from fathom.errors import ConfigError

    role, tools = stub
    _run(_cfg(role, n=1), tmp_path, tools_url=tools, show_progress=False)
    with pytest.raises(ConfigError, match="different settings"):
        run_duetqa(_cfg(role, n=1, seed=5), tmp_path, tools_url=tools, show_progress=False)


def test_duetqa_truth_mode_checks_solvers_against_ground_truth(tmp_path):
    """source=truth: candidates are the offline web's ground-truth questions; a stub solver that knows the truth
    passes verification, one that does not is rejected."""
    from fathom.web.offline import ensure_offline_web

    web = ensure_offline_web(seed=0, n_pages=120)
    qs = web.questions(4, hops=2, seed=0)
    knows = DuetQAStub(answers={q.question: q.answer for q in qs})
    with serve_stub(knows) as (role, tools):
        cfg = _cfg(role, n=4, source="truth")
        from fathom.selfplay.runner import arun_duetqa
        from fathom.agent import HttpTools
        from fathom.web.client import ToolClient
        import asyncio

        async def go(out, cfg):
            async with ToolClient(tools) as client:
                return await arun_duetqa(cfg, out, tools=HttpTools(client), web=web, show_progress=False)

        res = asyncio.run(go(tmp_path / "knows", cfg))
    assert res.kept >= 1
    rows = [json.loads(x) for x in (tmp_path / "knows" / "duetqa.jsonl").read_text().splitlines()]
    truth = {q.question: q.answer for q in qs}
    for r in rows:
        assert r["mode"] == "truth" and r["generator_models"]["generator"] == "offline-web-truth"
        assert truth[r["original_question"]] == r["answer"]
    from fathom.errors import EmptyStageError

    with serve_stub(DuetQAStub()) as (role, tools):  # solvers that do not know the truth
        with pytest.raises(EmptyStageError, match=r"duetqa kept 0 rows \(funnel: planned 4.*m1_incorrect") as err:
            asyncio.run(go(tmp_path / "ignorant", _cfg(role, n=4, source="truth")))
    res = err.value.result
    assert res.kept == 0 and res.rejections.get("m1_incorrect", 0) >= 1 and err.value.funnel["planned"] == 4
    import datasets

    empty = datasets.load_from_disk(str(tmp_path / "ignorant" / "hf"))
    assert len(empty) == 0 and "question" in empty.column_names
    assert "No row was kept" in (tmp_path / "ignorant" / "README.md").read_text()


def test_duetqa_endpoint_outage_is_retried_not_rejected(tmp_path):
    """A dead model endpoint: items are logged as errors (not finished), the run aborts after max_errors, and a
    later run with a working endpoint completes them."""
    from fathom.errors import FathomError

    dead = "http://127.0.0.1:9/v1#dead"  # discard port: connection refused
    cfg = DuetQAConfig(m1=dead, m2=dead, m3=dead, judge=dead, n=2, max_errors=2)
    cfg.agent.max_turns = 1
    with serve_stub() as (_, tools):
        with pytest.raises(FathomError, match="failed items"):
            run_duetqa(cfg, tmp_path, tools_url=tools, show_progress=False)
        assert AppendLog(tmp_path / "work" / "items.jsonl").records() == []
        assert len(AppendLog(tmp_path / "work" / "errors.jsonl").records()) == 2
    with serve_stub() as (role, tools):
        res = run_duetqa(_cfg(role, n=2, max_errors=2), tmp_path, tools_url=tools, show_progress=False)
    assert res.complete
