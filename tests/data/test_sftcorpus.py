"""DeepResearch-SFT: report filters on worked examples, rewrite helpers, and the stage on stub endpoints."""

from __future__ import annotations

import json

import pytest

from fathom.datasets_io import AppendLog
from fathom.sftdata.config import ReportFilterConfig, SFTCorpusConfig
from fathom.sftdata.filters import check_report, plan_sections
from fathom.sftdata.runner import clean_rewrite, load_open_seeds, plan_sft_item, template_rewrite
from fathom.synth import parse_report

TRACE = {"http://atlas.fathom.test/wiki/A", "http://atlas.fathom.test/wiki/B"}
BODY = " ".join(["Evidence supports the finding in detail."] * 25)

GOOD = f"""<think>
Sections:
- S1: Background
- S2: Findings
| Section | Item (URLs) | Content | Confidence |
|---|---|---|---|
| S1 | http://atlas.fathom.test/wiki/A | fact | High |
</think>
# Executive Summary
- One.

## Main Body
Scope.

## S1: Background
{BODY} [http://atlas.fathom.test/wiki/A]

## S2: Findings
{BODY} [http://atlas.fathom.test/wiki/B]

## Recommendations
- Do it.

## Conclusion
Done.

## Sources used
http://atlas.fathom.test/wiki/A
http://atlas.fathom.test/wiki/B
"""


def _check(text, **kw):
    return check_report(parse_report(text, TRACE), ReportFilterConfig(**kw))


def test_sftcorpus_plan_sections():
    assert plan_sections("- S1: Background\n- SQ2 - Findings.\n| S1 | url | x |") == [
        ("S1", "Background"), ("S2", "Findings")]
    assert plan_sections("no sections here") == []


def test_sftcorpus_filters_accept_good_report():
    assert _check(GOOD) == []


def test_sftcorpus_filters_reject_with_reasons():
    no_plan = GOOD.split("</think>", 1)[1]
    assert "no_plan" in _check(no_plan)
    missing = GOOD.replace("## Recommendations\n- Do it.\n\n", "")
    assert "missing_section:Recommendations" in _check(missing)
    plan_gap = GOOD.replace("## S2: Findings", "## Other things")
    assert "plan_section_missing:S2" in _check(plan_gap)
    outside = GOOD.replace("[http://atlas.fathom.test/wiki/B]", "[http://elsewhere.test/x]").replace(
        "http://atlas.fathom.test/wiki/B\n", "http://elsewhere.test/x\n")
    assert "citation_not_in_trace" in _check(outside)
    extra_source = GOOD.replace("## Sources used\n", "## Sources used\nhttp://atlas.fathom.test/wiki/C\n")
    reasons = _check(extra_source)
    assert "sources_used_mismatch" in reasons and "citation_not_in_trace" in reasons
    fewer_sources = GOOD.replace("http://atlas.fathom.test/wiki/B\n", "")
    assert "sources_used_mismatch" in _check(fewer_sources)
    assert _check(GOOD, min_words=5000) == ["too_short"]
    no_cites = GOOD.replace(" [http://atlas.fathom.test/wiki/A]", "").replace(" [http://atlas.fathom.test/wiki/B]", "")
    assert "no_citations" in _check(no_cites)
    assert _check(no_cites, require_citations=False, sources_equal_cited=False) == []


def test_sftcorpus_rewrite_helpers():
    assert clean_rewrite('Question: "How do tariffs affect coffee prices in 2025?" more') == \
        "How do tariffs affect coffee prices in 2025?"
    assert clean_rewrite("no question mark here at all") is None and clean_rewrite("") is None
    assert template_rewrite("How do X work?", ["Coffee production"]) == \
        "How do X work, with a focus on coffee production?"
    seeds = load_open_seeds(SFTCorpusConfig().seeds_path)
    assert len(seeds) == 100 and {s.domain for s in seeds} == {"law", "business", "technology", "science", "policy"}
    a = plan_sft_item(3, seed=1, seeds=seeds, themes=["a", "b", "c"], k=1)
    assert a == plan_sft_item(3, seed=1, seeds=seeds, themes=["a", "b", "c"], k=1) and len(a.themes) == 1


def test_sftcorpus_stage_on_stubs_with_resume(tmp_path):
    import datasets

    from fathom.selfplay.stub import serve_stub
    from fathom.sftdata.runner import run_sft_corpus

    class Crash(RuntimeError):
        pass

    def crash(rec):
        raise Crash()

    with serve_stub() as (role, tools):
        cfg = SFTCorpusConfig(n=3, policy=role, teacher=role, teacher_max_tokens=4000, max_in_flight=1)
        with pytest.raises(Crash):
            run_sft_corpus(cfg, tmp_path, tools_url=tools, on_record=crash, show_progress=False)
        assert len(AppendLog(tmp_path / "work" / "items.jsonl").records()) == 1
        res = run_sft_corpus(cfg, tmp_path, tools_url=tools, show_progress=False)
    assert res.complete and res.accepted == 3 and res.funnel["accepted"] == 3
    ids = [r["id"] for r in AppendLog(tmp_path / "work" / "items.jsonl")]
    assert len(ids) == len(set(ids)) == 3
    ds = datasets.load_from_disk(str(tmp_path / "hf"))
    js = datasets.load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    assert len(ds) == len(js) == 3
    msgs = ds[0]["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert "Trace (model transcript)" in msgs[1]["content"] and msgs[2]["content"].startswith("<think>")
    assert set(ds[0]["cited_urls"]) <= set(ds[0]["trace_urls"])
    assert "## Funnel" in (tmp_path / "README.md").read_text()


def test_sftcorpus_rejections_are_kept_with_reasons(tmp_path):
    from fathom.selfplay.stub import serve_stub
    from fathom.sftdata.runner import run_sft_corpus

    from fathom.errors import EmptyStageError

    with serve_stub(lambda prompt: "I cannot write that report.") as (role, tools):
        cfg = SFTCorpusConfig(n=2, policy=role, teacher=role)
        with pytest.raises(EmptyStageError, match=r"sft-corpus kept 0 rows \(funnel: planned 2.*no_plan") as err:
            run_sft_corpus(cfg, tmp_path, tools_url=tools, show_progress=False)
    res = err.value.result
    assert res.accepted == 0 and res.funnel["written"] == 2
    rejected = [json.loads(x) for x in (tmp_path / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 2 and all("no_plan" in r["reasons"] for r in rejected)
    assert rejected[0]["rewrite"] == "template" and rejected[0]["messages"][-1]["role"] == "assistant"
    import datasets

    assert len(datasets.load_from_disk(str(tmp_path / "hf"))) == 0
