"""Issue 9: one odd prediction never aborts a run, the error rate gates the exit code, the loader is strict and
strips questions as the reference does."""

from __future__ import annotations

import json

import pytest

from fathom.evaluate.agents import AgentSettings
from fathom.evaluate.datasets import DatasetError, parse_jsonl
from fathom.evaluate.runner import EvalConfig, read_results, run_eval


def _bench(tmp_path, answers):
    p = tmp_path / "nums.jsonl"
    p.write_text("\n".join(json.dumps({"id": f"n-{i}", "question": f"  question {i}\n", "answer": a})
                           for i, a in enumerate(answers)) + "\n")
    return p


def _cfg(tmp_path, bench, **kw):
    return EvalConfig(datasets=[str(bench)], out=tmp_path / "run", progress=False, report=False, grader="number",
                      agent=AgentSettings(agent="no-search"), **kw)


def test_grader_overflow_is_a_row_not_a_crash(tmp_path, instant_agent):
    bench = _bench(tmp_path, ["1", "2", "3", "4", "5", "6"])
    odd = {"question 2": "1" * 400 + "/1", "question 4": "\ud800 oops"}  # int/int overflow; a lone surrogate
    agent = instant_agent({**{f"question {i}": str(i + 1) for i in range(6)}, **odd})
    res = run_eval(_cfg(tmp_path, bench), agent=agent)
    rows = {r["id"]: r for r in read_results(tmp_path / "run" / "results.jsonl")}
    assert len(rows) == 6 and (tmp_path / "run" / "metrics.json").exists()
    assert rows["n-2"]["label"] == "incorrect" and rows["n-2"]["status"] == "ok"  # not a number: just wrong
    assert sum(r["correct"] for r in rows.values()) == 4
    assert agent.calls[0] == "question 0"  # stripped, as the reference strips questions
    assert not res.failed and res.errors == 0


def test_grading_exception_becomes_a_row_error(tmp_path, instant_agent, monkeypatch):
    from fathom.evaluate import graders

    real = graders.Grader.grade

    async def explode(self, question, gold, pred):
        if pred == "boom":
            raise RecursionError("maximum recursion depth exceeded")
        return await real(self, question, gold, pred)

    monkeypatch.setattr(graders.Grader, "grade", explode)
    bench = _bench(tmp_path, ["1", "2", "3"])
    res = run_eval(_cfg(tmp_path, bench), agent=instant_agent({"question 0": "1", "question 1": "boom"}))
    rows = {r["id"]: r for r in read_results(tmp_path / "run" / "results.jsonl")}
    assert rows["n-1"]["status"] == "error" and "RecursionError" in rows["n-1"]["error"]
    assert rows["n-0"]["correct"] and res.errors == 1


def test_error_rate_threshold_fails_the_run_and_the_cli(tmp_path, instant_agent):
    bench = _bench(tmp_path, ["1", "2"])
    res = run_eval(_cfg(tmp_path, bench, max_error_rate=0.4), agent=_Boom())
    assert res.failed and res.errors == 2 and res.error_rate == 1.0
    assert (tmp_path / "run" / "metrics.json").exists()

    from typer.testing import CliRunner

    from fathom.cli import app

    # the CLI: every row an error (the policy endpoint does not exist) -> exit 3, metrics still written
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["eval", "--dataset", str(bench), "--agent", "no-search", "--policy",
                                 "http://127.0.0.1:9/v1#nobody", "--out", str(out), "--example-timeout", "5"])
    assert r.exit_code == 3, r.output
    assert (out / "metrics.json").exists()
    r = CliRunner().invoke(app, ["eval", "--dataset", str(bench), "--agent", "no-search", "--policy",
                                 "http://127.0.0.1:9/v1#nobody", "--out", str(out), "--max-error-rate", "1"])
    assert r.exit_code == 0, r.output


class _Boom:
    name = "boom"

    async def answer(self, question):
        raise RuntimeError("down")

    async def aclose(self):
        pass


@pytest.mark.parametrize("line,match", [
    ('{"id": NaN, "question": "q", "answer": "a"}', "NaN"),
    ('{"id": "x", "question": "q", "answer": Infinity}', "Infinity"),
    ('{"id": "x", "question": "q", "answer": ' + "1" * 5000 + "}", "unreadable"),
    ('{"id": "x", "question": "q", "answer": ' + "[" * 5000 + "]" * 5000 + "}", "nested too deeply"),
    ('{"id": [1], "question": "q", "answer": "a"}', "'id' must be"),
    ('{"id": 1.5, "question": "q", "answer": "a"}', "'id' must be"),
])
def test_loader_names_file_and_line(line, match):
    text = '{"id": 1, "question": "ok", "answer": "a"}\n' + line + "\n"
    with pytest.raises(DatasetError, match=match) as err:
        parse_jsonl(text, dataset="d", source="bench.jsonl")
    assert "bench.jsonl:2:" in str(err.value)


def test_loader_strips_questions():
    ex = parse_jsonl('{"id": 7, "question": "  Who?\\n", "answer": 70}', dataset="d")[0]
    assert ex.question == "Who?" and ex.id == "7" and ex.answer == "70"
