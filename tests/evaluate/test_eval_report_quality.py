"""Report quality: RACE-like arithmetic from a worked example, citation extraction, and FACT-like checks that fetch
pages through a real tool server (loopback) from a loopback site, with a stub judge and without one."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from fathom.evaluate.report_quality import (
    Criterion,
    ReportQualityConfig,
    ReportTask,
    extract_citations,
    fact_for_task,
    race_for_task,
    race_score,
    run_report_quality,
)
from fathom.llm import make_client
from fathom.web.client import ToolClient
from fathom.web.schemas import SearchHit
from fathom.web.server import ToolService, create_app, serve_in_thread
from fathom.web.settings import ToolServerSettings

HOST = "facts.test"
PAGE = """<!doctype html><html><head><title>Mount Veyra</title></head><body><article><h1>Mount Veyra</h1>
<p>Mount Veyra is a dormant volcano on the island of Kestrel. It rises 2,417 metres above sea level and last
erupted in 1893, when ash fell on the harbour town of Orlen for eleven days.</p>
<p>The first recorded ascent of Mount Veyra was made in 1921 by the climber Ada Lindqvist, who reached the summit
crater after a nine-hour climb from the northern ridge of the mountain.</p></article></body></html>"""


def test_race_score_worked_example():
    crit = [Criterion(dimension="comprehensiveness", criterion="c1", weight=0.75),
            Criterion(dimension="comprehensiveness", criterion="c2", weight=0.25),
            Criterion(dimension="readability", criterion="r1", weight=1.0)]
    dims, overall = race_score({"comprehensiveness": 3, "readability": 1}, crit, [8, 4, 6], [4, 8, 6])
    # comp: S_t = 0.75*8+0.25*4 = 7, S_r = 0.75*4+0.25*8 = 5 -> 7/12; read: 6/12
    assert dims["comprehensiveness"] == pytest.approx(100 * 7 / 12)
    assert dims["readability"] == pytest.approx(50.0)
    # overall: weights .75/.25 (insight/inst have no criteria): t = .75*7+.25*6 = 6.75, r = .75*5+.25*6 = 5.25
    assert overall == pytest.approx(100 * 6.75 / 12)
    with pytest.raises(ValueError):
        race_score({}, crit, [1], [1])


def test_extract_citations():
    report = ("# Executive Summary\n"
              "- Mount Veyra last erupted in 1893. [http://facts.test/veyra] It is 2,417 m high. "
              "[http://facts.test/veyra][http://facts.test/other]\n"
              "The first ascent was in 1921 ([source](http://facts.test/ascent)).\n"
              "## Sources used\nhttp://facts.test/veyra\n[http://facts.test/other]\n")
    pairs = extract_citations(report)
    assert ("Mount Veyra last erupted in 1893.", "http://facts.test/veyra") in pairs
    assert ("It is 2,417 m high.", "http://facts.test/veyra") in pairs
    assert ("It is 2,417 m high.", "http://facts.test/other") in pairs
    assert any(u == "http://facts.test/ascent" and "first ascent was in 1921" in c for c, u in pairs)
    assert len(pairs) == 4  # the Sources-used URL lines carry no claim


class _NoSearch:
    provider = "none"

    async def search(self, query, top_k, *, gl=None, hl=None) -> list[SearchHit]:
        return []

    async def aclose(self):
        pass


@pytest.fixture(scope="module")
def tool_server():
    site = FastAPI()

    @site.get("/veyra")
    async def veyra():
        return HTMLResponse(PAGE)

    with serve_in_thread(site) as site_url:
        port = site_url.rsplit(":", 1)[1]
        settings = ToolServerSettings(query_llm="none", allow_hosts=[HOST], host_overrides={HOST: f"127.0.0.1:{port}"},
                                      cache_enabled=False)
        app = create_app(settings, service=ToolService(settings, backend=_NoSearch()))
        with serve_in_thread(app) as url:
            yield url


REPORT = ("# Mount Veyra\n\nMount Veyra last erupted in 1893, when ash fell on Orlen. [http://facts.test/veyra]\n"
          "The first ascent was made in 1921 by Ada Lindqvist. [http://facts.test/veyra]\n"
          "Mount Veyra is the tallest volcano in Europe with 9000 metres. [http://facts.test/veyra]\n"
          "Its glaciers are melting fast. [http://facts.test/missing]\n")


async def test_fact_checks_without_judge(tool_server):
    async with ToolClient(tool_server) as tools:
        fact = await fact_for_task(ReportTask(id="t", prompt="Mount Veyra", report=REPORT), tools)
    status = {c.claim[:25]: c.status for c in fact.checks}
    assert fact.method == "heuristic" and fact.n_citations == 4
    assert status["Mount Veyra last erupted "] == "supported"
    assert status["The first ascent was made"] == "supported"
    assert status["Mount Veyra is the talles"] == "unsupported"
    assert status["Its glaciers are melting "] == "fetch_failed"
    assert fact.n_checked == 3 and fact.n_supported == 2 and fact.effective_citations == 2
    assert fact.citation_accuracy == pytest.approx(2 / 3) and fact.citation_accuracy_strict == pytest.approx(0.5)


async def test_fact_and_race_with_stub_judge(tool_server, llm_stub):
    def reply(text: str) -> str:
        if "Does the web page excerpt support the claim?" in text:
            claim = text.split("Claim: ")[1].split("\n")[0]
            ok = "1893" in claim and "ash" in text
            return json.dumps({"verdict": "supported" if ok else "unsupported", "reason": "checked the excerpt"})
        if "You design evaluation criteria" in text:
            return "```json\n" + json.dumps({"dimension_weights": {"comprehensiveness": 0.4, "insight": 0.2,
                                                                 "instruction_following": 0.2, "readability": 0.2},
                                             "criteria": [{"dimension": d, "criterion": f"{d} ok", "weight": 1}
                                                          for d in ("comprehensiveness", "insight",
                                                                    "instruction_following", "readability")]}) + "\n```"
        if "Score two research reports" in text:
            return json.dumps({"scores": [{"index": i, "article_1": 6, "article_2": 4} for i in range(4)]})
        return "?"

    llm_stub.reply = reply
    judge = make_client(llm_stub.role)
    task = ReportTask(id="t", prompt="Write about Mount Veyra", report=REPORT, reference="# Ref\nMount Veyra ...")
    async with ToolClient(tool_server) as tools:
        fact = await fact_for_task(task, tools, judge)
    race = await race_for_task(task, judge)
    await judge.aclose()
    assert fact.method == "judge" and fact.n_supported == 1 and fact.n_checked == 3 and fact.fetch_failed == 1
    assert next(c for c in fact.checks if c.status == "supported").rationale == "checked the excerpt"
    assert race.method == "judge" and race.criteria_source == "judge" and race.judge_errors == 0
    assert race.overall == pytest.approx(60.0) and race.dimension_weights["comprehensiveness"] == pytest.approx(0.4)


def test_run_report_quality_stage_resumes(tmp_path, tool_server):
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text("\n".join(json.dumps(t) for t in [
        {"id": "t1", "prompt": "Mount Veyra history", "report": REPORT, "reference": "# Veyra\nErupted 1893."},
        {"id": "t2", "prompt": "Nothing", "report": "No citations here."}]))
    cfg = ReportQualityConfig(tasks=tasks, out=tmp_path / "rq", tools_url=tool_server)
    s = run_report_quality(cfg)
    assert s.n_tasks == 2 and s.effective_citations == pytest.approx(1.0) and s.method == "heuristic"
    assert s.race_overall is not None and 0 < s.race_overall < 100
    assert "| t1 |" in (tmp_path / "rq" / "report_quality.md").read_text()
    before = (tmp_path / "rq" / "report_quality.jsonl").read_text()
    run_report_quality(cfg)
    assert (tmp_path / "rq" / "report_quality.jsonl").read_text() == before
