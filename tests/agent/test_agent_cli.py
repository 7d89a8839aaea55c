"""`fathom research` end to end: on the embedded model (slow), and on stub model and tool servers (what it prints)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from fathom.agent.testing import serve_app, stub_tools_app


@pytest.mark.slow
def test_research_cli_embedded_model_deepresearch(embedded_model_dir, tmp_path):

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread is far faster than two on a CPU shared with other jobs
    try:
        _run(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _run(tmp_path):
    from fathom.cli import app

    save = tmp_path / "run.json"
    args = ["research", "What is the capital of France?", "--max-turns", "2", "--max-tokens-per-turn", "16",
            "--deepresearch", "--synth-max-tokens", "16", "--seed", "0", "--json", "--save", str(save)]
    runner = CliRunner()
    if importlib.util.find_spec("fathom.web.stack") is None:  # the in-process stack is not there: stub server
        with serve_app(stub_tools_app()) as url:
            result = runner.invoke(app, args + ["--tools", url])
    else:
        result = runner.invoke(app, args + ["--web-pages", "24", "--query-llm", "none"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    traj = payload["trajectory"]
    assert traj["status"] in {"answered", "no_answer", "max_turns", "budget"}
    assert 1 <= len(traj["turns"]) <= 2 and traj["prompt"].endswith("<|im_start|>assistant\n<think>")
    assert "report" in payload and isinstance(payload["report"]["report"], str)
    assert json.loads(save.read_text())["trajectory"]["question"] == "What is the capital of France?"
    # 16 tokens cannot hold a report that passes the checks: a local synthesizer samples 3 (seeds 0, 1, 2)
    assert "report attempt 3 of 3" in result.stderr and "missing_section" in result.stderr


def test_research_cli_rejects_bad_preset():
    from fathom.cli import app

    result = CliRunner().invoke(app, ["research", "Q", "--preset", "nope", "--tools", "http://127.0.0.1:9"])
    assert result.exit_code != 0 and "preset" in result.output


def test_research_cli_prints_the_answer_and_then_the_report():
    """A user who asks for a report still sees the agent's answer (first), then the report."""
    from fathom.agent.testing import stub_model_app
    from fathom.cli import app

    report = "Report body [1](http://atlas.fathom.test/wiki/Stub)."
    with (serve_app(stub_tools_app()) as tools, serve_app(stub_model_app()) as policy,
          serve_app(stub_model_app(tool_turn=report, answer_turn=report)) as synth):
        result = CliRunner().invoke(app, ["research", "What is the answer?", "--tools", tools, "--policy",
                                          f"{policy}/v1#stub", "--deepresearch", "--synthesizer", f"{synth}/v1#stub",
                                          "--synth-max-tokens", "64"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "answer" in out and "42" in out and "Report body" in out
    assert out.index("42") < out.index("Report body")
    assert "report:" in result.stderr and "cited URL" in result.stderr
