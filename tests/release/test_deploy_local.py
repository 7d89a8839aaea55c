"""Local serving (a real OpenAI-compatible server process), the smoke test, run-state cleanup, and the CLI."""

import subprocess
import sys
import threading
import time

import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from fathom.deploy.local import (
    LocalServer,
    ServeError,
    create_openai_app,
    record_server,
    serve_local,
    start_local_server,
    stop_recorded,
    wait_ready,
)
from fathom.deploy.smoke import run_smoke


def test_wait_ready_reports_a_dead_child(tmp_path):
    log = tmp_path / "log"
    log.write_text("boom: cannot load model\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(ServeError, match="exited with code 3(.|\n)*boom"):
        wait_ready("http://127.0.0.1:9", proc, timeout_s=30, log_path=log, poll_s=0.1)


def test_refuses_a_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ServeError, match="fathom convert"):
        start_local_server(tmp_path)


def test_stop_recorded_stops_only_our_servers(tmp_path):
    model_dir = str(tmp_path / "model-x")
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", model_dir], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        for proc, md in ((ours, model_dir), (other, str(tmp_path / "model-y"))):  # `other` = a reused pid
            record_server(tmp_path / "run", LocalServer(pid=proc.pid, url="http://x", model="m", backend="fastapi",
                                                        model_dir=md, log_path="l"))
        assert stop_recorded(tmp_path / "run") == [ours.pid]
        assert ours.wait(5) is not None and other.poll() is None
        assert stop_recorded(tmp_path / "run") == []  # idempotent
    finally:
        other.kill()
        other.wait()


async def test_smoke_reports_failures_without_raising():
    report = await run_smoke("http://127.0.0.1:9/v1#m", tools_url="http://127.0.0.1:9", timeout_s=5)
    assert not report.ok and [c.name for c in report.checks] == ["policy_completions", "policy_chat", "tools_healthz"]
    assert report.metrics()["smoke_ok"] == 0.0 and "FAIL policy_completions" in report.summary()


def test_cli_render_and_smoke_usage(tmp_path):
    from fathom.convert.cli import register as register_convert
    from fathom.deploy.cli import register

    app = typer.Typer()
    register(app)
    register_convert(app)
    runner = CliRunner()
    res = runner.invoke(app, ["deploy", "render", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "synthesizer.yaml").exists()
    assert runner.invoke(app, ["deploy", "validate", str(tmp_path)]).exit_code == 0
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n")
    bad = runner.invoke(app, ["deploy", "validate", str(tmp_path)])
    assert bad.exit_code == 1 and "portz" in bad.output
    assert runner.invoke(app, ["deploy", "smoke"]).exit_code == 2
    res = runner.invoke(app, ["convert", "--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "not a folder" in " ".join(res.output.split())


def _serve_in_thread(app):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"


@pytest.mark.slow
async def test_fallback_server_smoke(embedded_model_dir, embedded_client):
    """The FastAPI fallback over the (session-loaded) embedded model, on loopback, through fathom.llm.OpenAIClient."""
    app = create_openai_app(embedded_model_dir, name="smollm2", client=embedded_client)
    server, thread, url = _serve_in_thread(app)
    try:
        report = await run_smoke(f"{url}/v1#smollm2", expect="paris", max_tokens=12, timeout_s=60)
        assert report.ok, report.summary()
        wrong = await run_smoke(f"{url}/v1#other-model", chat=False, timeout_s=10)
        assert not wrong.ok and "404" in wrong.checks[0].detail
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.mark.slow
def test_transformers_serve_embedded_model_smoke(embedded_model_dir, tmp_path):
    """`transformers serve` (real OpenAI-compatible server) on the embedded model: /v1/completions and
    /v1/chat/completions through fathom.llm.OpenAIClient, then stopped."""
    with serve_local(embedded_model_dir, backend="auto", log_path=tmp_path / "serve.log",
                     ready_timeout_s=240) as server:
        assert server.backend == "transformers"
        import asyncio

        report = asyncio.run(run_smoke(server.role(), expect="paris", max_tokens=10, timeout_s=120))
        assert report.ok, report.summary() + "\n" + (tmp_path / "serve.log").read_text()[-2000:]
        assert [c.name for c in report.checks] == ["policy_completions", "policy_chat"]
    time.sleep(0.5)
    with pytest.raises(OSError):
        import os

        os.kill(server.pid, 0)
