"""Runner: honest accounting, resume, idempotence, torn lines, settings pinning, reports."""

from __future__ import annotations

import json

import pytest

from fathom.errors import ConfigError
from fathom.evaluate.agents import AgentSettings
from fathom.evaluate.runner import EvalConfig, read_results, run_eval


def _bench(tmp_path, n=12, boom=(3,)):
    p = tmp_path / "mini.jsonl"
    rows = [{"id": f"m-{i}", "question": (f"question {i} BOOM" if i in boom else f"question {i}"),
             "answer": f"answer {i}"} for i in range(n)]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    return p


def _cfg(tmp_path, bench, **kw):
    kw.setdefault("report", False)  # plots cost ~1 s; the report test turns them on
    return EvalConfig(datasets=[str(bench)], out=tmp_path / "run", progress=False, concurrency=4,
                      agent=AgentSettings(agent="no-search"), **kw)


def test_every_example_yields_a_row_and_errors_count(tmp_path, instant_agent):
    bench = _bench(tmp_path)
    answers = {f"question {i}": f"Answer {i}." for i in range(0, 12, 2)}  # even ids right (3 is BOOM)
    agent = instant_agent(answers)
    res = run_eval(_cfg(tmp_path, bench), agent=agent)
    rows = read_results(tmp_path / "run" / "results.jsonl")
    assert len(rows) == 12 and res.new_rows == 12
    err = [r for r in rows if r["status"] == "error"]
    assert len(err) == 1 and err[0]["id"] == "m-3" and "agent crashed" in err[0]["error"] and not err[0]["correct"]
    m = res.metrics.benchmarks["mini"]
    assert m.n == 12 and m.correct == 6 and m.accuracy == pytest.approx(0.5) and m.error_rate == pytest.approx(1 / 12)
    assert m.grader == "auto" or m.grader == "em"
    ok = next(r for r in rows if r["id"] == "m-0")
    assert ok["label"] == "correct" and ok["prediction"] == "Answer 0." and ok["answer_gt"] == "answer 0"
    assert ok["turns"] == 2 and ok["prompt_tokens"] == 100
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["benchmarks"]["mini"]["accuracy"] == pytest.approx(0.5)
    for f in ("results.jsonl", "metrics.json", "run.json"):
        assert (tmp_path / "run" / f).exists()


def test_resume_appends_only_missing_and_rerun_does_nothing(tmp_path, instant_agent):
    bench = _bench(tmp_path, boom=())
    a1 = instant_agent()
    run_eval(_cfg(tmp_path, bench, limit=5), agent=a1)
    assert len(a1.calls) == 5
    a2 = instant_agent()
    res = run_eval(_cfg(tmp_path, bench), agent=a2)
    assert res.new_rows == 7 and res.skipped == 5 and len(a2.calls) == 7
    assert sorted(a2.calls) == sorted(f"question {i}" for i in range(5, 12))
    rows = read_results(tmp_path / "run" / "results.jsonl")
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    files = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "run").iterdir()}
    a3 = instant_agent()
    res = run_eval(_cfg(tmp_path, bench), agent=a3)
    assert res.nothing_to_do and res.new_rows == 0 and a3.calls == []
    assert files == {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (tmp_path / "run").iterdir()}


def test_torn_last_line_is_dropped_and_rerun(tmp_path, instant_agent):
    bench = _bench(tmp_path, n=4, boom=())
    run_eval(_cfg(tmp_path, bench), agent=instant_agent())
    results = tmp_path / "run" / "results.jsonl"
    lines = results.read_text().split("\n")
    results.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # crash mid-write
    torn_id = json.loads(lines[3])["id"]
    a = instant_agent()
    res = run_eval(_cfg(tmp_path, bench), agent=a)
    assert res.new_rows == 1 and len(a.calls) == 1 and torn_id in {f"m-{a.calls[0].split()[1]}"}
    assert len(read_results(results)) == 4


def test_retry_errors_reruns_only_error_rows(tmp_path, instant_agent):
    bench = _bench(tmp_path, n=6, boom=(1, 4))
    run_eval(_cfg(tmp_path, bench), agent=instant_agent())
    rows = read_results(tmp_path / "run" / "results.jsonl")
    assert sum(r["status"] == "error" for r in rows) == 2
    a = instant_agent()
    run_eval(_cfg(tmp_path, bench, retry_errors=True), agent=a)
    assert sorted(a.calls) == ["question 1 BOOM", "question 4 BOOM"]
    assert len(read_results(tmp_path / "run" / "results.jsonl")) == 6


def test_changed_settings_are_refused(tmp_path, instant_agent):
    bench = _bench(tmp_path, n=3, boom=())
    run_eval(_cfg(tmp_path, bench), agent=instant_agent())
    cfg = _cfg(tmp_path, bench, limit=10)
    cfg.agent.temperature = 0.0
    with pytest.raises(ConfigError, match="temperature"):
        run_eval(cfg, agent=instant_agent())


def test_timeout_becomes_error_row(tmp_path, instant_agent):
    bench = _bench(tmp_path, n=2, boom=())
    res = run_eval(_cfg(tmp_path, bench, example_timeout_s=0.05), agent=instant_agent(delay=1.0))
    rows = read_results(tmp_path / "run" / "results.jsonl")
    assert all(r["status"] == "error" and r["error"].startswith("timeout") for r in rows)
    assert res.metrics.overall.accuracy == 0.0 and res.metrics.overall.error_rate == 1.0


def test_report_contains_tables_and_plots(tmp_path, instant_agent):
    bench = _bench(tmp_path, n=6, boom=(2,))
    run_eval(_cfg(tmp_path, bench, report=True), agent=instant_agent({"question 0": "answer 0"}))
    md = (tmp_path / "run" / "report.md").read_text()
    html = (tmp_path / "run" / "report.html").read_text()
    assert "| benchmark | n | accuracy % [95% CI]" in md and "| mini | 6 | 16.7 [" in md
    assert "## mini" in md and "agent crashed" in md
    assert html.count("data:image/png;base64,") == 3 and "<table" in html and "http" not in html.split("<body>")[0]
    assert "Accuracy vs mean tool calls per model" in html


def test_judge_grading_through_loopback(tmp_path, instant_agent, llm_stub):
    llm_stub.reply = lambda u: ("Matches.\nGRADE: CORRECT" if "Predicted answer: answer 0" in u
                                else "Wrong.\nGRADE: INCORRECT")
    bench = _bench(tmp_path, n=3, boom=())
    # "answer 0, per the record" is not the gold "answer 0" by the deterministic rule: the judge decides
    res = run_eval(_cfg(tmp_path, bench, judge=llm_stub.role),
                   agent=instant_agent({"question 0": "answer 0, per the record"}))
    rows = {r["id"]: r for r in read_results(tmp_path / "run" / "results.jsonl")}
    assert rows["m-0"]["label"] == "correct" and rows["m-0"]["rationale"] == "Matches." and rows["m-0"]["grader"] == "judge"
    assert rows["m-1"]["label"] == "incorrect"
    assert res.metrics.benchmarks["mini"].grader == "judge"


def test_rerun_with_reports_writes_nothing(tmp_path, instant_agent):
    bench = _bench(tmp_path, n=3, boom=())
    run_eval(_cfg(tmp_path, bench, report=True), agent=instant_agent())
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    res = run_eval(_cfg(tmp_path, bench, report=True), agent=instant_agent())
    assert res.nothing_to_do and before == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
