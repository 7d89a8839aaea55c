"""Comparison and quality gate: decision logic on synthetic runs, and the CLI end to end over a loopback policy."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from fathom.evaluate.compare import GateConfig, Run, compare, compare_runs
from fathom.evaluate.stats import compute_metrics


def _run(name, pattern: dict[str, list[int]]) -> Run:
    rows = [{"dataset": ds, "id": str(i), "status": "ok", "label": "correct" if c else "incorrect", "grader": "em",
             "tool_calls": 1} for ds, flags in pattern.items() for i, c in enumerate(flags)]
    return Run(name=name, path=name, metrics=compute_metrics(rows, run=name), rows=rows)


def test_clearly_better_candidate_passes():
    base = _run("base", {"a": [1] * 40 + [0] * 60, "b": [1] * 50 + [0] * 50})
    cand = _run("cand", {"a": [1] * 80 + [0] * 20, "b": [1] * 60 + [0] * 40})
    c = compare(base, cand)
    assert c.passed and c.pooled.verdict == "better" and c.pooled.delta == pytest.approx(0.25)
    assert {d.dataset: d.verdict for d in c.deltas}["a"] == "better"


def test_equal_runs_fail_better_but_pass_non_inferior():
    base = _run("base", {"a": [1, 0] * 50})
    cand = _run("cand", {"a": [1, 0] * 50})
    assert not compare(base, cand).passed
    assert compare(base, cand, GateConfig(require="non-inferior", max_drop=0.05)).passed


def test_regression_on_one_benchmark_fails_even_if_pooled_better():
    base = _run("base", {"a": [0] * 200, "b": [1] * 50})
    cand = _run("cand", {"a": [1] * 200, "b": [0] * 50})
    c = compare(base, cand)
    assert c.pooled.verdict == "better" and not c.passed and "worse on b" in c.reason


def test_unpaired_runs_cannot_pass():
    c = compare(_run("base", {"a": [1]}), _run("cand", {"z": [1]}))
    assert not c.passed and "share no examples" in c.reason


def test_min_delta():
    base = _run("base", {"a": [1] * 50 + [0] * 50})
    cand = _run("cand", {"a": [1] * 60 + [0] * 40})
    assert not compare(base, cand, GateConfig(min_delta=0.2)).passed


def test_cli_eval_and_compare_over_loopback_policy(tmp_path, llm_stub):
    from fathom.cli import app

    # a closed-book "model" that knows one answer of the first three SimpleQA questions
    llm_stub.reply = lambda u: "\\boxed{Michio Sugeno}" if "Rosenblatt" in u else "I think \\boxed{Paris}"
    runner = CliRunner()
    base_args = ["eval", "--dataset", "simpleqa", "--limit", "3", "--agent", "no-search", "--policy", llm_stub.role]
    r1 = runner.invoke(app, base_args + ["--out", str(tmp_path / "a")])
    assert r1.exit_code == 0, r1.output
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert m["benchmarks"]["simpleqa"]["n"] == 3 and m["benchmarks"]["simpleqa"]["correct"] == 1
    for f in ("results.jsonl", "metrics.json", "report.html", "report.md"):
        assert (tmp_path / "a" / f).exists()
    body = llm_stub.requests[0]
    assert body["messages"][1]["content"].startswith("Q: ")

    llm_stub.reply = lambda u: "\\boxed{nothing}"
    r2 = runner.invoke(app, base_args + ["--out", str(tmp_path / "b")])
    assert r2.exit_code == 0, r2.output
    # candidate b is worse than a: gate fails with exit 1; reversed, 3 examples cannot prove "better" either
    rc = runner.invoke(app, ["eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")])
    assert rc.exit_code == 1
    comp = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert comp["passed"] is False and comp["pooled"]["n_paired"] == 3
    md = (tmp_path / "c" / "comparison.md").read_text()
    assert "Side by side" in md and "FAIL" in md
    ok = runner.invoke(app, ["eval", "compare", str(tmp_path / "b"), str(tmp_path / "a"), "--out",
                             str(tmp_path / "d"), "--require", "non-inferior"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["eval", "compare", str(tmp_path / "a"), "--out", str(tmp_path / "e")])
    assert bad.exit_code == 2


def test_compare_runs_writes_files(tmp_path):
    from fathom.evaluate.runner import atomic_write_text

    for name, flags in (("x", [0] * 30 + [1] * 10), ("y", [1] * 30 + [0] * 10)):
        d = tmp_path / name
        d.mkdir()
        rows = [{"dataset": "a", "id": str(i), "status": "ok", "label": "correct" if c else "incorrect",
                 "tool_calls": i % 3} for i, c in enumerate(flags)]
        atomic_write_text(d / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    comp = compare_runs([tmp_path / "x", tmp_path / "y"], tmp_path / "cmp")
    assert comp.passed
    html = (tmp_path / "cmp" / "comparison.html").read_text()
    assert "PASS" in html and html.count("data:image/png;base64,") == 3
